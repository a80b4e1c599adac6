"""Training: one loop for standard, regularised and adversarial training.

Adversarial training plugs in through ``adversary``, any callable
``adversary(model, x, y) -> x_adv``; the loss is then Goodfellow et al.'s mixed
objective (eq. 6)  J̃ = α·J(θ, x, y) + (1 − α)·J(θ, x_adv, y)  with α = ``clean_weight``.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .evaluate import accuracy, robust_accuracy


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the weight matrices (biases are not decayed)."""
    return sum(p.abs().sum() for name, p in model.named_parameters() if name.endswith("weight"))


def _check(x, y, name_x="x", name_y="y"):
    if not torch.is_floating_point(x):
        raise TypeError(f"{name_x} must be a float tensor, got {x.dtype}")
    if len(x) != len(y):
        raise ValueError(f"{name_x} and {name_y} must have the same length, got {len(x)} and {len(y)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name_x} contains non-finite values")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"{name_x} must lie in [0, 1], got range [{x.min():.3g}, {x.max():.3g}]")


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 5,
          batch_size: int = 128, lr: float = 1e-3, optimizer: str = "adam",
          weight_decay: float = 0.0, l1: float = 0.0,
          adversary: Callable | None = None, clean_weight: float = 0.5,
          x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
          val_adversary: Callable | None = None, keep_best: bool = False,
          loss_fn: Callable | None = None,
          seed: int = 0, progress: bool = True, desc: str = "train") -> dict:
    """Train ``model`` in place on images ``x`` (N, C, H, W) in [0, 1] and labels ``y`` (N,).

    Args:
        optimizer: "adam" or "sgd" (momentum 0.9).
        weight_decay: L2 decay passed to the optimiser; ``l1``: coefficient of ``l1_penalty``.
        adversary: makes adversarial examples for each batch (adversarial training).
        clean_weight: α of eq. 6, the weight of the clean loss when ``adversary`` is set.
        x_val, y_val: validation data, evaluated after each epoch.
        val_adversary: if given, also record adversarial validation accuracy.
        loss_fn: ``loss_fn(logits, y) -> scalar``; cross-entropy by default.
        keep_best: restore the epoch with the best validation accuracy (adversarial if
            ``val_adversary`` is set) — early stopping on the validation error.
    Returns:
        history: lists per epoch (``loss``, ``train_acc``, ``val_acc``, ``val_adv_acc``),
        ``best_epoch`` and ``seconds``.
    """
    _check(x, y)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not 0 <= clean_weight <= 1:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
    if keep_best and x_val is None:
        raise ValueError("keep_best needs x_val and y_val")
    if x_val is not None:
        _check(x_val, y_val, "x_val", "y_val")

    loss_fn = loss_fn or F.cross_entropy
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")

    gen = torch.Generator().manual_seed(seed)
    history = {"loss": [], "train_acc": [], "val_acc": [], "val_adv_acc": [], "best_epoch": None}
    best_score, best_state = -1.0, None
    start = time.perf_counter()
    n_batches = (len(x) + batch_size - 1) // batch_size
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress, leave=False)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total_loss, correct = 0.0, 0
        for idx in order.split(batch_size):
            xb, yb = x[idx].to(device), y[idx].to(device)
            if adversary is not None:
                x_adv = adversary(model, xb, yb).detach()
            model.train()
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if adversary is not None:
                loss = clean_weight * loss + (1 - clean_weight) * loss_fn(model(x_adv), yb)
            if l1:
                loss = loss + l1 * l1_penalty(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            bar.update(1)
        history["loss"].append(total_loss / len(x))
        history["train_acc"].append(correct / len(x))
        if x_val is not None:
            score = accuracy(model, x_val, y_val)
            history["val_acc"].append(score)
            if val_adversary is not None:
                score = robust_accuracy(model, x_val, y_val, val_adversary)
                history["val_adv_acc"].append(score)
            if keep_best and score > best_score:
                best_score, best_state = score, copy.deepcopy(model.state_dict())
                history["best_epoch"] = epoch
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    bar.close()
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history["seconds"] = time.perf_counter() - start
    return history
