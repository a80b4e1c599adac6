"""Training: one loop, :func:`fit`, for every objective in the book.

``fit(model, batches, step)`` runs the epochs; ``step(model, batch)`` returns the loss of one
batch. Everything that belongs to an objective lives in its step, so the same loop trains

* a classifier with cross-entropy on images — :func:`train`, the wrapper below;
* a student on a teacher's soft targets — ``advcourse.defenses.distillation.train_distilled``;
* an autoencoder on reconstruction, a masked autoencoder on its masked patches, a BERT on
  masked tokens (a batch is any tuple of tensors, integer token ids included);
* a GAN: with ``optimizer=None`` the step makes its own updates — the discriminator's and the
  generator's optimisers, k discriminator steps per generator step — and returns what to log.

Adversarial training plugs in through ``adversary(model, batch) -> batch``, run before each
step. :func:`train` uses it to append the adversarial examples to the batch and minimises
Goodfellow et al.'s mixed objective (eq. 6)  J̃ = α·J(θ, x, y) + (1 − α)·J(θ, x_adv, y),
α = ``clean_weight`` (α = 0: Madry et al.'s saddle-point objective, adversarial examples only).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .attacks import robust_accuracy
from .evaluate import accuracy
from .runtime import device_of

__all__ = ["Shuffled", "fit", "train", "l1_penalty", "make_optimizer"]

Batch = tuple
Step = Callable[[nn.Module, Batch], "torch.Tensor | tuple[torch.Tensor, dict]"]


class Shuffled:
    """Mini-batches of one or more aligned tensors, reshuffled at every pass.

    ``Shuffled(x, y, batch_size=128, seed=0)`` yields ``(x[idx], y[idx])`` for the index chunks
    of a fresh random permutation each time it is iterated (once per epoch); the permutations
    come from one generator seeded with ``seed``, so a run is reproducible. The tensors stay
    where they are (e.g. on the CPU); :func:`fit` moves each batch to the model's device.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int = 128, seed: int = 0):
        if not tensors:
            raise ValueError("Shuffled needs at least one tensor")
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"tensors must have the same length, got {[len(t) for t in tensors]}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.tensors, self.batch_size = tensors, int(batch_size)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.tensors[0]), generator=self.generator)
        for idx in order.split(self.batch_size):
            yield tuple(t[idx] for t in self.tensors)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the weight matrices (biases are not decayed)."""
    return sum(p.abs().sum() for name, p in model.named_parameters() if name.endswith("weight"))


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9) over ``params``."""
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw', 'sgd', an Optimizer or None, got {name!r}")


def _to(batch, device):
    """A batch (tensor or tuple of tensors) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)


def _size(batch) -> int:
    """Number of examples in a batch: the length of its first tensor."""
    return len(batch if isinstance(batch, torch.Tensor) else batch[0])


def fit(model: nn.Module, batches: Iterable, step: Step, *, epochs: int = 1,
        optimizer: str | torch.optim.Optimizer | None = "adam", lr: float = 1e-3, weight_decay: float = 0.0,
        schedule: Callable | None = None, clip_grad: float | None = None,
        adversary: Callable | None = None, validate: Callable | None = None, keep_best: str | None = None,
        progress: bool = True, desc: str = "train") -> dict:
    """Train ``model`` in place: ``epochs`` passes over ``batches``, one update per batch.

    Args:
        model: any ``nn.Module``; put in train mode before each step, in eval mode at the end.
        batches: re-iterable, one pass per epoch (e.g. :class:`Shuffled`, a ``DataLoader``, a
            list); each batch a tensor or a tuple of tensors, moved to the model's device.
        step: ``step(model, batch) -> loss`` (a scalar tensor), or ``-> (loss, logs)`` where
            ``logs`` maps names to per-batch *totals* (e.g. the number of correct predictions);
            the history keeps each log's total over the epoch divided by the examples seen.
        epochs: passes over ``batches``, ≥ 1.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"`` (built over the trainable parameters with
            ``lr`` and ``weight_decay``), an optimiser you built (e.g. over a subset of the
            parameters), or ``None``: the step makes its own updates (a GAN's two optimisers) and
            its returned loss is only logged.
        schedule: ``schedule(optimizer) -> lr_scheduler``, stepped after every batch.
        clip_grad: if set, clip the gradients' global L2 norm to this value before each update.
        adversary: ``adversary(model, batch) -> batch``, run before each step (adversarial training).
        validate: ``validate(model) -> {name: value}``, run after each epoch; values kept per epoch.
        keep_best: a name returned by ``validate``: restore the epoch where it was highest
            (early stopping on a validation score).
        progress: show a tqdm progress bar; ``desc`` labels it.
    Returns:
        history: ``loss`` and each log and validation value as a list per epoch, ``best_epoch``
        (or None) and ``seconds``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if keep_best is not None and validate is None:
        raise ValueError("keep_best needs validate")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad], lr, weight_decay)
    scheduler = schedule(optimizer) if schedule is not None else None
    device = device_of(model)

    history: dict = {"loss": [], "best_epoch": None}
    best_score, best_state = float("-inf"), None
    start = time.perf_counter()
    total = len(batches) * epochs if hasattr(batches, "__len__") else None
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for epoch in range(epochs):
        sums: dict = {"loss": 0.0}
        seen = 0
        for batch in batches:
            batch = _to(batch, device)
            if adversary is not None:
                batch = adversary(model, batch)
            model.train()
            out = step(model, batch)
            loss, logs = out if isinstance(out, tuple) else (out, {})
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            n = _size(batch)
            seen += n
            sums["loss"] += (loss.item() if torch.is_tensor(loss) else float(loss)) * n
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            bar.update(1)
        for key, value in sums.items():
            history.setdefault(key, []).append(value / max(seen, 1))
        if validate is not None:
            scores = validate(model)
            for key, value in scores.items():
                history.setdefault(key, []).append(value)
            if keep_best is not None and scores[keep_best] > best_score:
                best_score, best_state = scores[keep_best], copy.deepcopy(model.state_dict())
                history["best_epoch"] = epoch
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history["seconds"] = time.perf_counter() - start
    return history


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
    """Train a classifier in place on images ``x`` (N, C, H, W) in [0, 1] and labels ``y`` (N,).

    :func:`fit` with the classifier's step: ``loss_fn(model(x), y)`` (cross-entropy by default),
    plus ``l1``·:func:`l1_penalty`, mixed with the loss on ``adversary(model, x, y)`` if given.

    Args:
        optimizer: "adam" or "sgd" (momentum 0.9).
        weight_decay: L2 decay passed to the optimiser; ``l1``: coefficient of ``l1_penalty``.
        adversary: ``adversary(model, x, y) -> x_adv`` for each batch (adversarial training).
        clean_weight: α of eq. 6, the weight of the clean loss when ``adversary`` is set.
        x_val, y_val: validation data, evaluated after each epoch.
        val_adversary: if given, also record adversarial validation accuracy.
        loss_fn: ``loss_fn(logits, y) -> scalar``; cross-entropy by default.
        keep_best: restore the epoch with the best validation accuracy (adversarial if
            ``val_adversary`` is set) — early stopping on the validation error.
        seed: seeds the shuffling of the batches.
    Returns:
        history: lists per epoch (``loss``, ``train_acc``, ``val_acc``, ``val_adv_acc``),
        ``best_epoch`` and ``seconds``.
    """
    _check(x, y)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if not 0 <= clean_weight <= 1:
        raise ValueError(f"clean_weight must be in [0, 1], got {clean_weight}")
    if keep_best and x_val is None:
        raise ValueError("keep_best needs x_val and y_val")
    if x_val is not None:
        _check(x_val, y_val, "x_val", "y_val")
    loss_fn = loss_fn or F.cross_entropy

    def step(model, batch):
        xb, yb, *adv = batch
        logits = model(xb)
        loss = loss_fn(logits, yb)
        if adv:
            loss = clean_weight * loss + (1 - clean_weight) * loss_fn(model(adv[0]), yb)
        if l1:
            loss = loss + l1 * l1_penalty(model)
        return loss, {"train_acc": (logits.argmax(1) == yb).sum().item()}

    def with_adversarial(model, batch):
        xb, yb = batch
        return xb, yb, adversary(model, xb, yb).detach()

    def validate(model):
        scores = {"val_acc": accuracy(model, x_val, y_val)}
        if val_adversary is not None:
            scores["val_adv_acc"] = robust_accuracy(model, x_val, y_val, val_adversary)
        return scores

    history = fit(model, Shuffled(x, y, batch_size=batch_size, seed=seed), step, epochs=epochs,
                  optimizer=optimizer, lr=lr, weight_decay=weight_decay,
                  adversary=with_adversarial if adversary is not None else None,
                  validate=validate if x_val is not None else None,
                  keep_best=("val_adv_acc" if val_adversary is not None else "val_acc") if keep_best else None,
                  progress=progress, desc=desc)
    return {"loss": history["loss"], "train_acc": history["train_acc"], "val_acc": history.get("val_acc", []),
            "val_adv_acc": history.get("val_adv_acc", []), "best_epoch": history["best_epoch"],
            "seconds": history["seconds"]}
