"""Evaluation: what a trained model says about a set of inputs.

The one place for the model's mode (:func:`eval_mode`), its batched outputs (:func:`logits`,
:func:`probabilities`), its predictions and accuracy (:func:`predict`, :func:`accuracy`), its
error and confidence (:func:`error_report`) and for running any attack batch by batch
(:func:`adversarial_examples`, :func:`attack_report`). Robust accuracy under an attack lives with the attacks
(:func:`advcourse.attacks.robust_accuracy`), which build on this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .runtime import device_of

__all__ = ["eval_mode", "logits", "probabilities", "predict", "accuracy", "ErrorReport", "error_report",
           "adversarial_examples", "attack_report"]

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` (and every submodule) in eval mode for the ``with`` block.

    The previous ``training`` flag of *each* submodule is restored on exit, also
    when the block raises, so a model with e.g. a frozen BatchNorm inside a
    training network comes back exactly as it was.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The model's outputs (N, K) for inputs ``x`` (N, ...), in eval mode and batches of
    ``batch_size``, on the model's device."""
    _check_batch_size(batch_size)
    device = device_of(model)
    with eval_mode(model):
        outs = [model(xb.to(device)) for xb in x.split(batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, device=device)


@torch.no_grad()
def probabilities(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Class probabilities (N, K) on the CPU: the model's own ``probabilities`` if it has them
    (the RBF network's independent detectors), else the softmax of its logits."""
    _check_batch_size(batch_size)
    device = device_of(model)
    out = []
    with eval_mode(model):
        for xb in x.split(batch_size):
            xb = xb.to(device)
            p = model.probabilities(xb) if hasattr(model, "probabilities") else model(xb).softmax(1)
            out.append(p.cpu())
    return torch.cat(out)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024):
    """Predicted labels (N,) and their softmax confidence (N,) in [0, 1], on x's device."""
    _check_batch_size(batch_size)
    device = device_of(model)
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


@dataclass
class ErrorReport:
    """Error rate and mean confidences of a model on a set of examples (fractions in [0, 1])."""

    error: float            # fraction misclassified
    confidence: float       # mean confidence in the predicted class, all examples
    wrong_confidence: float  # mean confidence in the predicted class, on the mistakes (nan if none)


def error_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> ErrorReport:
    """The :class:`ErrorReport` of ``model`` on images ``x`` (N, ...) with labels ``y`` (N,),
    confidences from :func:`probabilities`."""
    p = probabilities(model, x)
    conf, pred = p.max(1)
    wrong = pred != y.cpu()
    return ErrorReport(wrong.float().mean().item(), conf.mean().item(),
                       conf[wrong].mean().item() if wrong.any() else float("nan"))


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                         batch_size: int = 256) -> torch.Tensor:
    """Run ``attack(model, xb, yb)`` batch by batch and return all adversarial examples (on x's device)."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    _check_batch_size(batch_size)
    device = device_of(model)
    out = [attack(model, xb.to(device), yb.to(device)).to(x.device)
           for xb, yb in zip(x.split(batch_size), y.split(batch_size))]
    return torch.cat(out)


def attack_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack,
                  source: nn.Module | None = None):
    """Adversarial examples made by ``attack(source, x, y)`` (``source`` defaults to ``model``)
    and the error and confidence of ``model`` on them: returns (x_adv, :class:`ErrorReport`)."""
    x_adv = adversarial_examples(source if source is not None else model, x, y, attack)
    return x_adv, error_report(model, x_adv, y)
