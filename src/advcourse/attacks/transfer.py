"""Transfer (black-box) attacks and Goodfellow's "rubbish class" noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ._validate import check_inputs, check_logits, check_positive_int, eval_mode

__all__ = ["transfer", "TransferResult", "gaussian_rubbish"]


@dataclass
class TransferResult:
    """Outcome of :func:`transfer`. All masks have shape (N,)."""

    x_adv: torch.Tensor
    surrogate_fooled: torch.Tensor  # attack succeeded on the surrogate
    target_fooled: torch.Tensor  # ... and on the target model

    @property
    def transfer_rate(self) -> float:
        """Fraction of the examples that fool the surrogate which also fool the target."""
        k = int(self.surrogate_fooled.sum())
        return float((self.target_fooled & self.surrogate_fooled).sum()) / k if k else float("nan")

    @property
    def target_accuracy(self) -> float:
        """Accuracy of the target on x_adv w.r.t. the true labels (untargeted attacks)."""
        return 1.0 - float(self.target_fooled.float().mean())


def _fooled(model, x_adv, y, targeted):
    with eval_mode(model), torch.no_grad():
        logits = model(x_adv)
    check_logits(logits, y)
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


def transfer(
    surrogate: nn.Module,
    target: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Callable[..., torch.Tensor],
    **kwargs,
) -> TransferResult:
    """Craft adversarial examples on ``surrogate`` and evaluate them on ``target``.

    ``x_adv = attack(surrogate, x, y, **kwargs)``; the target model is only
    queried for its predictions on ``x_adv`` (a black-box transfer attack,
    Szegedy et al. 2014 section 4.2, Papernot et al. 2017).  Success means
    "prediction != y" (or "== y" if ``kwargs["targeted"]``), on each model.
    Both models are used in eval mode and restored.

    Args:
        surrogate: the model the attack is run on (white-box access), returning logits (N, K).
        target: the model the examples are transferred to; only its predictions are used.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K), or target labels if ``kwargs["targeted"]``.
        attack: any ``attack(model, x, y, **kwargs) -> x_adv``, e.g. :func:`fgsm` or :func:`pgd`.
        **kwargs: passed on to ``attack`` (e.g. ``eps``); ``targeted`` also decides what
            counts as success.

    Returns:
        :class:`TransferResult` with ``x_adv`` (N, ...) and the masks
        ``surrogate_fooled`` / ``target_fooled`` (N,) bool.

    Raises:
        TypeError: ``surrogate`` or ``target`` is not an ``nn.Module``, ``attack`` is not
            callable, or ``x``/``y`` have the wrong dtype.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, or a model does not
            return (N, K) logits (``attack`` may raise its own errors for ``kwargs``).

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import fgsm, transfer
        >>> _ = torch.manual_seed(0)
        >>> surrogate, target = MnistCNN().eval(), MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> res = transfer(surrogate, target, x, y, fgsm, eps=0.1)
        >>> res.x_adv.shape, res.target_fooled.dtype
        (torch.Size([4, 1, 28, 28]), torch.bool)
        >>> 0.0 <= res.target_accuracy <= 1.0
        True
    """
    y = check_inputs(surrogate, x, y)
    if not isinstance(target, nn.Module):
        raise TypeError(f"target must be a torch.nn.Module, got {type(target).__name__}")
    if not callable(attack):
        raise TypeError("attack must be a callable attack(model, x, y, **kwargs)")
    targeted = bool(kwargs.get("targeted", False))
    x_adv = attack(surrogate, x, y, **kwargs)
    return TransferResult(x_adv, _fooled(surrogate, x_adv, y, targeted), _fooled(target, x_adv, y, targeted))


def gaussian_rubbish(
    shape,
    n: int,
    generator: torch.Generator | None = None,
    *,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian "rubbish class" inputs (Goodfellow et al. 2015, appendix).

    Exactly what is done: draw ``z ~ N(0, I)`` with shape ``(n, *shape)``
    (mean 0, standard deviation 1 per entry, independent) and clip every
    entry to the box: ``x = clamp(z, 0, 1)``.  Hence about 50% of the entries
    are exactly 0, about 16% exactly 1 and the remaining ~34% lie in (0, 1)
    (with the density of N(0,1) restricted to (0, 1)).  No rescaling and no
    normalisation is applied.  Feed the result to a model to see how
    confidently it assigns such noise to real classes.

    Args:
        shape: per-example shape, e.g. ``(1, 28, 28)`` (an int for 1-d samples);
            every size > 0.
        n: number of samples, int >= 0.
        generator: optional ``torch.Generator`` (samples are drawn on its
            device and moved to ``device``).
        device: device of the result (default: the generator's device, else the CPU).
        dtype: floating dtype of the samples (default ``torch.float32``).

    Returns:
        (n, *shape) tensor in [0, 1].

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n < 0`` or ``shape`` contains a size <= 0.

    Examples:
        >>> import torch
        >>> from advcourse.attacks import gaussian_rubbish
        >>> x = gaussian_rubbish((1, 28, 28), 5, generator=torch.Generator().manual_seed(0))
        >>> x.shape, bool(x.min() >= 0 and x.max() <= 1)
        (torch.Size([5, 1, 28, 28]), True)
        >>> bool(0.4 < (x == 0).float().mean() < 0.6)  # about half the entries clip to 0
        True
    """
    n = check_positive_int(n, "n", allow_zero=True)
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
    if any(s <= 0 for s in shape):
        raise ValueError(f"shape must contain positive sizes, got {shape}")
    gen_dev = generator.device if generator is not None else (device or "cpu")
    z = torch.randn((n, *shape), generator=generator, device=gen_dev, dtype=dtype)
    return z.clamp(0.0, 1.0).to(device or gen_dev)
