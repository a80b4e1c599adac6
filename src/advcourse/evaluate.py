"""Evaluation: predictions, accuracy and robust accuracy under any attack.

``robust_accuracy`` (the fraction of examples classified correctly both clean and
under the attack) and ``eval_mode`` are the attack library's, re-exported here.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .attacks._validate import eval_mode
from .attacks.evaluate import robust_accuracy, robust_mask

__all__ = ["eval_mode", "predict", "accuracy", "adversarial_examples", "robust_accuracy", "robust_mask"]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024):
    """Predicted labels (N,) and their softmax confidence (N,) in [0, 1], on x's device."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _device_of(model)
    labels, conf = [], []
    with eval_mode(model):
        for xb in x.split(batch_size):
            p = model(xb.to(device)).softmax(dim=1)
            c, k = p.max(dim=1)
            labels.append(k.to(x.device))
            conf.append(c.to(x.device))
    return torch.cat(labels), torch.cat(conf)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``x`` classified as ``y``, in [0, 1]."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    pred, _ = predict(model, x, batch_size)
    return (pred == y.to(pred.device)).float().mean().item()


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                         batch_size: int = 256) -> torch.Tensor:
    """Run ``attack(model, xb, yb)`` batch by batch and return all adversarial examples."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = _device_of(model)
    out = [attack(model, xb.to(device), yb.to(device)).to(x.device)
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out)
