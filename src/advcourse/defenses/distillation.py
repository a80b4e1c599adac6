"""Defensive distillation (Papernot et al. 2016): the soft labels and the student's training.

The recipe, at a distillation temperature T:

1. train a *teacher* network with the softmax at temperature T, softmax(Z(x) / T)
   (:func:`temperature_loss` as the training loss);
2. label every training image with the teacher's *soft labels* softmax(Z_teacher(x) / T)
   (:func:`soft_labels`);
3. train a *student* of the same architecture on those soft labels, again at temperature T
   (:func:`train_distilled`, minimising :func:`distillation_loss`);
4. at test time use the student with temperature 1: its logits Z are used as they are.

Because the student was trained to make softmax(Z / T) confident, its logits come out
about T times larger than a normal network's; at T = 1 the softmax then saturates and
the gradient of the cross-entropy underflows to exactly zero in float32 (Carlini & Wagner
2017, §VIII; chapters 5 and 6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate import logits
from ..train import Shuffled, fit

__all__ = ["temperature_loss", "soft_labels", "distillation_loss", "train_distilled"]


def temperature_loss(temperature: float):
    """The teacher's loss: cross-entropy of softmax(Z / T) against hard labels, as
    ``loss(logits (N, K), y (N,)) -> scalar``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return lambda logits, y: F.cross_entropy(logits / temperature, y)


@torch.no_grad()
def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float, batch_size: int = 1024) -> torch.Tensor:
    """Step 2: softmax(Z_teacher(x) / T), shape (N, K), rows summing to 1, on the CPU."""
    return (logits(teacher, x, batch_size) / temperature).softmax(1).cpu()


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's softmax(Z / T) against the soft labels (N, K): a scalar."""
    return -(soft * (logits / temperature).log_softmax(1)).sum(1).mean()


def train_distilled(student: nn.Module, x: torch.Tensor, soft: torch.Tensor, temperature: float, *,
                    epochs: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                    progress: bool = True) -> dict:
    """Step 3: train ``student`` in place on soft labels at temperature T (Hinton et al. 2015).

    ``x`` (N, C, H, W) in [0, 1], ``soft`` (N, K) probabilities; Adam with ``lr``, batches
    shuffled with ``seed``. Returns :func:`advcourse.train.fit`'s history: ``loss`` and
    ``train_acc`` (agreement with the soft labels' argmax) per epoch, and ``seconds``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if len(x) != len(soft):
        raise ValueError(f"x and soft must have the same length, got {len(x)} and {len(soft)}")

    def step(model, batch):
        xb, pb = batch
        z = model(xb)
        return distillation_loss(z, pb, temperature), {"train_acc": (z.argmax(1) == pb.argmax(1)).sum().item()}

    return fit(student, Shuffled(x, soft, batch_size=batch_size, seed=seed), step, epochs=epochs, lr=lr,
               progress=progress, desc=f"student (T = {temperature:g})")
