"""Defensive distillation (Papernot et al. 2016), as evaluated by Carlini & Wagner 2017, §VIII.

The recipe, at a distillation temperature T:

1. train a *teacher* network with the softmax at temperature T, softmax(Z(x) / T);
2. label every training image with the teacher's *soft labels* softmax(Z_teacher(x) / T);
3. train a *student* of the same architecture on those soft labels, again at temperature T;
4. at test time use the student with temperature 1: its logits Z are used as they are.

Because the student was trained to make softmax(Z / T) confident, its logits come out
about T times larger than a normal network's; at T = 1 the softmax then saturates and
the gradient of the cross-entropy underflows to exactly zero in float32.

Every model goes through :func:`advcourse.cache.load_or_train`, so the chapter and its
claim tests share one trained copy.
"""

from __future__ import annotations

import hashlib
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from .cache import load_or_train
from .evaluate import eval_mode
from .models.cnn import MnistCNN
from .train import train

__all__ = ["ModelSpec", "train_standard", "train_teacher", "soft_labels", "distill", "distillation_loss",
           "logit_scale", "zero_gradient_fraction", "ce_input_gradients"]


class ModelSpec(dict):
    """The settings that determine a trained network (the cache key), as a plain dict.

    ``channels``, ``hidden``: the MnistCNN widths; ``epochs``, ``lr``, ``batch_size``:
    Adam training; ``seed``; ``data``: a tag naming the training images (e.g. "embedded").
    """

    def __init__(self, *, channels=(8, 16), hidden=64, epochs=3, lr=1e-2, batch_size=128, seed=0,
                 data="embedded"):
        super().__init__(channels=list(channels), hidden=hidden, epochs=epochs, lr=lr,
                         batch_size=batch_size, seed=seed, data=data)


def _architecture_tag() -> str:
    """A short hash of MnistCNN's source: a changed architecture gets a new cache entry."""
    return hashlib.sha256(inspect.getsource(MnistCNN).encode()).hexdigest()[:12]


def _build(cfg: dict) -> nn.Module:
    torch.manual_seed(cfg["seed"])
    return MnistCNN(tuple(cfg["channels"]), cfg["hidden"])


def _train_at_temperature(name: str, x, y, spec: dict, temperature: float, device, progress: bool):
    """A network trained with cross-entropy of softmax(Z / T) on hard labels ``y`` (N,)."""
    config = {**spec, "arch": _architecture_tag(), "n": len(x), "temperature": float(temperature)}

    def fit(model, cfg):
        T = cfg["temperature"]
        history = train(model, x, y, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                        loss_fn=lambda logits, yb: F.cross_entropy(logits / T, yb), seed=cfg["seed"],
                        progress=progress, desc=f"{name} (T = {T:g})")
        return {k: history[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train(name, config, _build, fit, device=device)


def train_standard(x: torch.Tensor, y: torch.Tensor, spec: dict, *, device="cpu", progress: bool = True):
    """An undefended network, trained as usual (temperature 1). Returns ``(model, meta)``."""
    return _train_at_temperature("ch05-standard", x, y, spec, 1.0, device, progress)


def train_teacher(x: torch.Tensor, y: torch.Tensor, spec: dict, temperature: float, *, device="cpu",
                  progress: bool = True):
    """Step 1: the teacher, trained with softmax(Z / T). At T = 1 this *is* the standard network."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if temperature == 1:
        return train_standard(x, y, spec, device=device, progress=progress)
    return _train_at_temperature("ch05-teacher", x, y, spec, temperature, device, progress)


@torch.no_grad()
def soft_labels(teacher: nn.Module, x: torch.Tensor, temperature: float, batch_size: int = 1024) -> torch.Tensor:
    """Step 2: softmax(Z_teacher(x) / T), shape (N, K), rows summing to 1, on the CPU."""
    device = next(teacher.parameters()).device
    with eval_mode(teacher):
        return torch.cat([(teacher(xb.to(device)) / temperature).softmax(1).cpu() for xb in x.split(batch_size)])


def distillation_loss(logits: torch.Tensor, soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's softmax(Z / T) against the soft labels (N, K): a scalar."""
    return -(soft * (logits / temperature).log_softmax(1)).sum(1).mean()


def distill(x: torch.Tensor, y: torch.Tensor, spec: dict, temperature: float, *, device="cpu",
            progress: bool = True):
    """Defensive distillation at temperature T: teacher at T, soft labels, student at T.

    ``x`` (N, 1, 28, 28) in [0, 1], ``y`` (N,) hard labels (used by the teacher only).
    Returns ``(student, meta)``; use the student at temperature 1, i.e. its logits as they are.
    """
    teacher, teacher_meta = train_teacher(x, y, spec, temperature, device=device, progress=progress)
    soft = soft_labels(teacher, x, temperature)
    config = {**spec, "arch": _architecture_tag(), "n": len(x), "temperature": float(temperature),
              "teacher": teacher_meta["key"]}

    def fit(student, cfg):
        T = cfg["temperature"]
        # train() hands the loss each batch's labels; we hand it example *indices* instead,
        # so that the loss can look up each example's soft label. (Its "train_acc" is then
        # meaningless, so we keep only the loss.)
        index = torch.arange(len(x))
        history = train(student, x, index, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                        loss_fn=lambda logits, idx: distillation_loss(logits, soft[idx.cpu()].to(logits.device), T),
                        seed=cfg["seed"], progress=progress, desc=f"student (T = {T:g})")
        return {k: history[k] for k in ("loss", "seconds")}

    return load_or_train("ch05-student", config, _build, fit, device=device)


# --- what distillation does to the network ---------------------------------------------

@torch.no_grad()
def logit_scale(model: nn.Module, x: torch.Tensor) -> float:
    """Mean over ``x`` of the largest logit minus the mean logit: how far the winning score
    stands out (a scale; a network with T-fold logits has a T-fold value)."""
    device = next(model.parameters()).device
    with eval_mode(model):
        z = model(x.to(device)).cpu()
    return (z.max(1).values - z.mean(1)).mean().item()


def ce_input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """∇ₓ of the cross-entropy at temperature 1, per example, in float32: shape of ``x``."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb = xb.to(device).detach().requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(xb), yb.to(device), reduction="sum")
                (g,) = torch.autograd.grad(loss, xb)
            out.append(g.cpu())
    return torch.cat(out)


def zero_gradient_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of examples whose cross-entropy input gradient is *exactly* zero in float32."""
    g = ce_input_gradients(model, x, y)
    return (g.flatten(1).abs().amax(1) == 0).float().mean().item()
