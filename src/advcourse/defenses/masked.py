"""Chapter 6's zoo of models whose gradients lie, and the wrappers that unmask them.

Every model takes images (N, 1, 28, 28) in [0, 1] and returns logits (N, K), like
every model of the course, so that each attack of :mod:`advcourse.attacks` runs on
them unchanged. They "defend" in three ways that Athalye et al. 2018 call
*obfuscated gradients*:

* **saturation** — :class:`ScaledLogits` multiplies the logits by a large factor, so
  the softmax saturates and the cross-entropy gradient underflows to exactly zero
  (this is what defensive distillation does implicitly);
* **shattering** — :class:`Quantise` rounds every pixel to a few grey levels: a step
  function whose derivative is zero almost everywhere;
* **randomness** — :class:`Randomised` shifts the image and adds noise afresh at every
  call, so one gradient is one noisy sample.

And the two standard ways to see through them:

* :class:`BPDA` (Backward Pass Differentiable Approximation): run the transform
  forward, but differentiate as if it were the identity;
* :class:`EOT` (Expectation over Transformation): average the model's probabilities
  over many random draws, so the gradient is the expected one.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["swap_activation", "Quantise", "BPDA", "Randomised", "EOT", "ScaledLogits", "Preprocessed"]


def swap_activation(model: nn.Module, make) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` replaced by ``make()``
    (e.g. ``lambda: nn.LeakyReLU(0.1)`` or ``nn.GELU``). The original is untouched."""
    model = copy.deepcopy(model)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, make())
    return model


class Quantise(nn.Module):
    """Round each pixel in [0, 1] to the nearest of ``levels`` equally spaced grey levels.

    Output in [0, 1], same shape. The derivative of ``round`` is zero wherever it is
    defined, so ``∂ output / ∂ x = 0``: every input gradient through it vanishes.
    """

    def __init__(self, levels: int = 8):
        super().__init__()
        if int(levels) < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        self.levels = int(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.levels - 1
        return torch.round(x * k) / k


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation of a transform (Athalye et al. 2018, §4.1).

    Forward: exactly ``transform(x)``. Backward: the identity, i.e. the
    straight-through estimate ``x + (transform(x) − x).detach()``. Right when the
    transform is close to the identity (``transform(x) ≈ x``), as quantisation is.
    """

    def __init__(self, transform: nn.Module):
        super().__init__()
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.transform(x) - x).detach()


class Randomised(nn.Module):
    """A random input transform: shift by up to ``shift`` pixels each way, add
    Gaussian noise of standard deviation ``noise``, clip to [0, 1] — fresh randomness
    at every call (from torch's global generator), in train and eval mode alike.

    Input and output (N, C, H, W) in [0, 1]. The shift is a circular ``torch.roll``
    per example; MNIST digits have empty borders, so nothing wraps visibly.
    """

    def __init__(self, shift: int = 2, noise: float = 0.2):
        super().__init__()
        if shift < 0 or noise < 0:
            raise ValueError(f"shift and noise must be non-negative, got {shift} and {noise}")
        self.shift, self.noise = int(shift), float(noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift:
            s = torch.randint(-self.shift, self.shift + 1, (len(x), 2)).tolist()
            x = torch.stack([torch.roll(xi, shifts=(a, b), dims=(-2, -1)) for xi, (a, b) in zip(x, s)])
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        return x.clamp(0, 1)


class Preprocessed(nn.Module):
    """``model(transform(x))``: a classifier behind an input transform (a "pre-processing
    defence"). Returns the classifier's logits."""

    def __init__(self, transform: nn.Module, model: nn.Module):
        super().__init__()
        self.transform, self.model = transform, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x))


class EOT(nn.Module):
    """Expectation over Transformation (Athalye et al. 2018, §4.3) of a random model.

    Returns ``log E_t[softmax(model_t(x))]`` over ``samples`` random draws, shape (N, K):
    log-probabilities, which the attacks use as logits (cross-entropy of them is
    ``−log E_t[p_y]``). Its gradient averages the draws' gradients, so the noise of a
    single draw cancels out.
    """

    def __init__(self, model: nn.Module, samples: int = 8):
        super().__init__()
        if samples < 1:
            raise ValueError(f"samples must be positive, got {samples}")
        self.model, self.samples = model, int(samples)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reps = x.repeat(self.samples, *([1] * (x.ndim - 1)))
        logp = F.log_softmax(self.model(reps), dim=1).view(self.samples, len(x), -1)
        return torch.logsumexp(logp, dim=0) - math.log(self.samples)


class ScaledLogits(nn.Module):
    """``scale · model(x)``: the same decisions, a saturated softmax.

    With ``scale`` = 100 the softmax of a confident example is exactly one-hot in
    float32 and the cross-entropy's input gradient underflows to zero — the effect of
    deploying a model distilled at temperature T = 100 at temperature 1.
    """

    def __init__(self, model: nn.Module, scale: float = 100.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.model, self.scale = model, float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.model(x)
