"""Input gradients: the one helper every attack, defence and chapter uses.

``input_gradient(model, x, y)`` is ∇ₓ J(θ, x, y) for every example: the gradient of the
per-example objective summed over the batch, so row i is example i's own gradient whatever the
batch size. Only the input is differentiated; the parameters' ``.grad`` is never touched.
"""

from __future__ import annotations

import torch
from torch import nn

from ..evaluate import eval_mode
from ..runtime import device_of
from ._utils import input_grad, objective
from ._validate import check_choice, check_logits

__all__ = ["input_gradient", "zero_gradient_fraction"]


def loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                  targeted: bool = False) -> torch.Tensor:
    """∇ₓ of the summed per-example objective, in the model's current mode (the attacks' core).

    ``x`` (N, ...) on the model's device, ``y`` (N,); ``loss``: "ce" or "margin"; with
    ``targeted`` the objective is the negative loss of the target class ``y``.
    """
    def per_example(xr):
        z = model(xr)
        check_logits(z, y)
        return objective(z, y, loss, targeted)

    return input_grad(per_example, x)[1]


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
                   targeted: bool = False, batch_size: int | None = None) -> torch.Tensor:
    """∇ₓ J(θ, x, y) per example, in eval mode: same shape as ``x`` (N, ...), on x's device.

    The gradient every attack of the course is built from: Goodfellow et al. 2015, eq. (3)
    takes its sign, Madry et al. 2018 iterate it.

    Args:
        model: classifier returning logits (N, K); its mode is restored afterwards.
        x: inputs (N, ...) (moved to the model's device chunk by chunk; not range-checked).
        y: labels (N,) int in [0, K) (targets if ``targeted``).
        loss: ``"ce"`` (cross-entropy, default) or ``"margin"`` (max_{j≠y} z_j − z_y).
        targeted: differentiate the objective a targeted attack ascends (−CE of the target).
            Default False.
        batch_size: compute in chunks of this many examples, int >= 1 (None: all at once).

    Returns:
        Tensor with the shape, dtype and device of ``x``: row i is ∇ₓ of example i's objective.

    Raises:
        ValueError: ``loss`` is not ``"ce"``/``"margin"``, ``x`` and ``y`` differ in length,
            ``batch_size < 1``, or the model does not return (N, K) logits / ``y`` holds
            labels outside [0, K).

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import input_gradient
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> g = input_gradient(model, x, y)
        >>> g.shape == x.shape
        True
        >>> torch.allclose(input_gradient(model, x, y, batch_size=1), g, atol=1e-6)  # per example
        True
        >>> x_fgsm = (x + 0.1 * g.sign()).clamp(0, 1)  # an FGSM step by hand
    """
    check_choice(loss, "loss", ("ce", "margin"))
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = device_of(model)
    chunks = zip(x.split(batch_size), y.split(batch_size)) if batch_size else [(x, y)]
    with eval_mode(model):
        out = [loss_gradient(model, xb.to(device), yb.to(device), loss, targeted).to(x.device) for xb, yb in chunks]
    return torch.cat(out)


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of examples whose cross-entropy input gradient is *exactly* zero (every entry), in [0, 1].

    In float32 a saturated softmax (one-hot to the last bit) gives such gradients: the
    symptom of gradient masking that defensive distillation produces (Papernot et al. 2016;
    Carlini & Wagner 2017 explain why it fails).

    Args:
        model: classifier returning logits (N, K); its mode is restored afterwards.
        x: inputs (N, ...).
        y: labels (N,) int in [0, K).
        batch_size: chunk size of the gradient computation, int >= 1 (default 500).

    Returns:
        The fraction as a float (nan for an empty batch).

    Raises:
        ValueError: as :func:`input_gradient` (``x``/``y`` lengths, ``batch_size < 1``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import zero_gradient_fraction
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, y = torch.rand(8, 1, 8, 8), torch.arange(8)
        >>> 0.0 <= zero_gradient_fraction(model, x, y) <= 1.0
        True
    """
    g = input_gradient(model, x, y, batch_size=batch_size)
    return (g.flatten(1).abs().amax(1) == 0).float().mean().item()
