"""Shared argument checks (and :func:`advcourse.evaluate.eval_mode`, re-exported for the attacks).

Every attack in :mod:`advcourse.attacks` calls these helpers so that bad input
fails early with an error message that names the offending argument.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import nn

from ..evaluate import eval_mode

__all__ = [
    "eval_mode",
    "check_x",
    "check_y",
    "check_logits",
    "check_nonneg",
    "check_positive_int",
    "check_norm",
    "check_choice",
    "check_inputs",
]


def check_x(x: torch.Tensor, name: str = "x") -> None:
    """``x`` must be a floating tensor of shape (N, ...) with finite values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension, shape (N, ...), got a 0-d tensor")
    if x.numel() == 0:
        return
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    lo, hi = torch.aminmax(x)
    if float(lo) < 0.0 or float(hi) > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1] (normalisation belongs inside the model); "
            f"got values in [{float(lo):.4g}, {float(hi):.4g}]"
        )


def check_y(y: torch.Tensor, x: torch.Tensor, name: str = "y") -> torch.Tensor:
    """``y`` must be an integer tensor of shape (N,); returned on ``x.device``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} must have shape (N,) = ({x.shape[0]},), got {tuple(y.shape)}")
    return y.to(device=x.device, dtype=torch.long)


def check_logits(logits: torch.Tensor, y: torch.Tensor | None = None, name: str = "y") -> None:
    """Check the model output: (N, K) with K >= 2, labels in range, logits not probabilities."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must return logits of shape (N, K), got {shape}")
    k = logits.shape[1]
    if k < 2:
        raise ValueError(f"model must return at least 2 logits per example (one per class), got K={k}")
    if y is not None and y.numel() > 0:
        lo, hi = torch.aminmax(y)
        if int(lo) < 0 or int(hi) >= k:
            raise ValueError(
                f"{name} holds labels in [{int(lo)}, {int(hi)}] but the model has only {k} outputs "
                f"(labels must be in [0, {k - 1}])"
            )
    if logits.numel() > 0:
        z = logits.detach()
        if bool((z >= 0).all()) and bool(torch.allclose(z.sum(1), torch.ones_like(z[:, 0]), atol=1e-4)):
            warnings.warn(
                "model outputs look like probabilities (non-negative rows summing to 1); "
                "attacks expect logits, remove the final softmax",
                UserWarning,
                stacklevel=3,
            )


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_nonneg(value, name: str, *, positive: bool = False) -> float:
    """A finite real number >= 0 (> 0 if ``positive``); returns it as float."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


def check_positive_int(value, name: str, *, allow_zero: bool = False) -> int:
    """An int >= 1 (>= 0 if ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value}")
    return value


def check_norm(norm, supported=("inf", "2")) -> str:
    """Normalise a norm spec to ``"inf"`` or ``"2"``; raise if unsupported."""
    key = str(norm).strip().lower()
    aliases = {"inf": "inf", "linf": "inf", "l_inf": "inf", "2": "2", "2.0": "2", "l2": "2", "l_2": "2"}
    out = aliases.get(key)
    if out is None or out not in supported:
        raise ValueError(f"norm must be one of {list(supported)}, got {norm!r}")
    return out


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_name: str = "y") -> torch.Tensor:
    """Type and range checks shared by every attack. Returns ``y`` as long on ``x.device``.

    The label-range and logits-vs-probabilities checks need the model output;
    attacks run :func:`check_logits` on the first forward pass they make.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_x(x)
    return check_y(y, x, name=y_name)
