"""Chapter 4 — PGD and the saddle point (Madry et al. 2018).

The chapter's experiments as small functions:

* the MNIST CNNs of the capacity study (widths ×1, ×2, ×4, … of a tiny base network),
  trained by standard, FGSM or PGD training and cached (:func:`train_cnn`);
* training on the inner maximiser, with :class:`advcourse.defenses.Adversary` recording the value
  of the inner maximisation while it trains, so the saddle-point objective can be plotted;
* the loss along PGD from many random starts (:func:`pgd_paths`), for the landscape
  of the inner problem;
* the attack table of the paper (:func:`attack_table`), the capacity sweep
  (:func:`capacity_sweep`), robust accuracy against ε for both norms (:func:`norm_curves`)
  and PGD against a stronger evaluation (:func:`overstatement`);
* the paper's CIFAR-10 experiment at a smaller scale (the full profile only): a CIFAR ResNet
  trained on PGD-7 examples (:func:`train_cifar_resnet`) and measured under PGD-7 and PGD-20
  (:func:`cifar_experiment`).

MNIST images are (N, 1, 28, 28), CIFAR-10 images (N, 3, 32, 32), all in [0, 1]; every model
returns logits.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .. import checkpoint
from ..attacks import bim, fgsm, pgd, robust_accuracy, square, strong_evaluation, transfer
from ..cache import load_or_train
from ..data import ChecksumError
from ..defenses import Adversary
from ..evaluate import accuracy, eval_mode
from ..models import MnistCNN
from ..models.resnet import cifar_resnet, count_parameters
from ..runtime import device_of
from ..train import Shuffled, fit, train

EPS = 0.3  # the paper's L-inf budget on MNIST
BASE = ((2, 4), 64)  # the capacity study's smallest network: 2 and 4 filters, 64 hidden units
METHODS = ("standard", "fgsm", "pgd")


@dataclass(frozen=True)
class Settings:
    """Chapter 4's settings, shared by the chapter and its claim tests.

    Models: width ``scale`` (×16 is the paper's network), the capacity study's ``scales``; every
    adversarially trained model trains ``epochs`` epochs (the paper: about 83) with PGD-``steps``
    of step ``alpha`` (None: 2.5·ε / steps), every standard one ``standard_epochs`` (cheap, so
    trained until its training accuracy levels off). Evaluation: ``n_eval`` test digits,
    ``restarts`` for the PGD rows of the attack table; the landscape runs ``land_restarts`` random
    starts of ``land_steps`` steps; the norm curves use ``n_curve`` digits and PGD-``curve_steps``;
    the strong evaluation runs on ``n_strong`` digits with ``strong_restarts`` × ``strong_steps``
    PGD and ``square_queries``. CIFAR-10 (the full profile only): a ResNet-``cifar_depth`` is trained
    ``cifar_epochs`` epochs on PGD-7 examples of the first ``cifar_n_train`` training images and
    evaluated on ``cifar_n_eval`` random test images.
    """

    scale: int = 4
    scales: tuple = (1, 2, 4)
    epochs: int = 4
    standard_epochs: int = 20
    steps: int = 5
    alpha: float | None = None
    n_eval: int = 300
    restarts: int = 2
    land_steps: int = 20
    land_restarts: int = 150
    n_curve: int = 150
    curve_steps: int = 20
    n_strong: int = 150
    strong_restarts: int = 1
    strong_steps: int = 100
    square_queries: int = 1000
    cifar_epochs: int = 30
    cifar_depth: int = 20
    cifar_n_train: int = 50_000
    cifar_n_eval: int = 10_000

    def recipe(self) -> dict:
        """The training settings every model of the chapter shares, as :func:`train_cnn` keywords."""
        return {"epochs": self.epochs, "steps": self.steps, "alpha": self.alpha}

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        return replace(self, scales=(1, self.scale), epochs=1, standard_epochs=1, steps=2, n_eval=100, restarts=2,
                       land_steps=5, land_restarts=20, n_curve=50, curve_steps=5, n_strong=30, strong_restarts=1,
                       strong_steps=5, square_queries=50, cifar_epochs=1, cifar_depth=8, cifar_n_train=128,
                       cifar_n_eval=20)


#: The CPU profile (the embedded MNIST).
FAST = Settings()
#: The GPU profile (all of MNIST, the paper's network and PGD-40 training).
FULL = Settings(scale=16, scales=(1, 2, 4, 8, 16), epochs=10, standard_epochs=10, steps=40, alpha=0.01,
                n_eval=10_000, restarts=20, land_steps=100, land_restarts=10_000, n_curve=2_000, curve_steps=100,
                n_strong=2_000, strong_restarts=5, strong_steps=100, square_queries=5_000)


# --- the inner maximisation: one PGD path, the textbook algorithm ------------------

def pgd_step(x_t: torch.Tensor, x: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float) -> torch.Tensor:
    """One L-inf PGD step: ascend along sign(grad), then project onto {‖x' − x‖∞ ≤ ε} ∩ [0, 1]^d.

    All tensors have the same shape (N, ...); ``x`` is the clean point, ``x_t`` the current
    iterate. For the L-inf ball the projection onto the intersection with the box is a
    coordinate-wise clip, so it is exact.
    """
    x_next = x_t + alpha * grad.sign()
    return torch.min(torch.max(x_next, x - eps), x + eps).clamp(0.0, 1.0)


def pgd_paths(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int,
              restarts: int, generator: torch.Generator | None = None, batch_size: int = 4096,
              return_points: bool = False):
    """Cross-entropy loss along PGD from ``restarts`` uniform random starts in the ε-ball.

    ``x`` (N, 1, 28, 28) in [0, 1], ``y`` (N,). Returns a CPU tensor (N, restarts, steps + 1):
    entry [i, r, t] is the loss of example i after t steps of run r (t = 0: the random start).
    Every run is the plain algorithm of eq. (ch04-pgd): no early stopping, no best-iterate.
    With ``return_points``, also the perturbations the runs end at, x^T − x: a CPU tensor
    (N, restarts, 784) — the local maxima that :func:`maxima_geometry` compares.
    """
    device = device_of(model)
    out, points = [], []
    with eval_mode(model):
        for i in range(len(x)):
            xs = x[i:i + 1].to(device).expand(restarts, *x.shape[1:])
            ys = y[i:i + 1].to(device).expand(restarts)
            noise = torch.rand(xs.shape, generator=generator).to(device)
            x_t = (xs + (2 * noise - 1) * eps).clamp(0.0, 1.0)
            path = []
            for t in range(steps + 1):
                losses, grads = [], []
                for xb, yb in zip(x_t.split(batch_size), ys.split(batch_size)):
                    xb = xb.detach().requires_grad_(True)
                    with torch.enable_grad():
                        loss = F.cross_entropy(model(xb), yb, reduction="none")
                        (g,) = torch.autograd.grad(loss.sum(), xb)
                    losses.append(loss.detach())
                    grads.append(g)
                path.append(torch.cat(losses).cpu())
                if t < steps:
                    x_t = pgd_step(x_t, xs, torch.cat(grads), eps, alpha)
            out.append(torch.stack(path, dim=1))
            points.append((x_t - xs).flatten(1).cpu())
    losses = torch.stack(out)
    return (losses, torch.stack(points)) if return_points else losses


def maxima_geometry(points: torch.Tensor, eps: float) -> dict:
    """How far apart the local maxima of PGD from random starts are (the paper's Appendix A).

    ``points``: (N, R, d) perturbations x^T − x of R runs on each of N examples (from
    :func:`pgd_paths`). Over all pairs of runs on the same example: ``angle`` the median angle
    between the two perturbations in degrees, ``angle_lo``/``angle_hi`` its 5% and 95% quantiles,
    ``distance`` the median L2 distance between them as a fraction of the largest possible one
    (the diagonal 2ε·√d of the L∞ ball), and ``norm`` the median perturbation norm as a fraction
    of ε·√d (1: every pixel moved by the full ε).
    """
    if points.ndim != 3 or points.shape[1] < 2:
        raise ValueError(f"points must have shape (N, R >= 2, d), got {tuple(points.shape)}")
    n, r, d = points.shape
    iu = torch.triu_indices(r, r, offset=1)
    unit = F.normalize(points.double(), dim=2)
    cos = (unit @ unit.transpose(1, 2))[:, iu[0], iu[1]].clamp(-1, 1)
    angles = torch.rad2deg(torch.arccos(cos)).flatten()
    dist = torch.cdist(points.double(), points.double())[:, iu[0], iu[1]].flatten()
    q = torch.quantile(angles, torch.tensor([0.05, 0.5, 0.95], dtype=torch.float64))
    return {"angle": q[1].item(), "angle_lo": q[0].item(), "angle_hi": q[2].item(),
            "distance": (dist.median() / (2 * eps * d ** 0.5)).item(),
            "norm": (points.double().norm(dim=2).median() / (eps * d ** 0.5)).item()}


# --- the outer minimisation: training on the inner maximiser (Danskin) -------------
# The adversary that solves the inner problem for each batch and records its value is
# advcourse.defenses.Adversary.

def widths(scale: int, base=BASE) -> tuple[tuple[int, int], int]:
    """The capacity study's network at ``scale`` (1, 2, 4, …): every width of ``base`` times scale.
    Scale 16 is the paper's main MNIST network (32 and 64 filters, 1,024 hidden units)."""
    (c1, c2), hidden = base
    return (c1 * scale, c2 * scale), hidden * scale


def train_cnn(data, *, scale: int, method: str, epochs: int, eps: float = EPS, steps: int = 5,
              alpha: float | None = None, warmup_epochs: float = 1.0, lr: float = 2e-3, batch_size: int = 64,
              seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) a :class:`MnistCNN` of width ``scale`` on ``data``'s training set.

    ``method``: "standard" (clean examples), "fgsm" or "pgd" (the saddle-point objective with
    that inner solver: the model is trained on adversarial examples only, as in the paper).
    ``steps``/``alpha``: PGD's steps and step size during training (default α = 2.5ε/steps);
    ``warmup_epochs``: ε grows linearly from 0 over this many epochs.
    Returns ``(model, meta)``; ``meta["metrics"]`` holds ``loss`` (per epoch), ``adv_loss`` and
    ``eps_used`` (per batch, adversarial methods) and ``seconds``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    adversarial = method != "standard"
    channels, hidden = widths(scale)
    config = {"arch": "MnistCNN", "channels": channels, "hidden": hidden, "method": method,
              "data": data.source, "n": len(data.x_train), "epochs": epochs, "lr": lr, "batch_size": batch_size,
              "seed": seed, "eps": eps if adversarial else None,
              "steps": (steps if method == "pgd" else 1) if adversarial else None,
              "alpha": alpha if method == "pgd" else None,
              "warmup_epochs": warmup_epochs if adversarial else None}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MnistCNN(tuple(cfg["channels"]), cfg["hidden"])

    def fit(model, cfg):
        adversary = None
        if adversarial:
            n_batches = -(-cfg["n"] // cfg["batch_size"])
            adversary = Adversary(method, cfg["eps"], steps=cfg["steps"], alpha=cfg["alpha"],
                                  warmup_batches=int(cfg["warmup_epochs"] * n_batches),
                                  generator=torch.Generator().manual_seed(cfg["seed"] + 1))
        history = train(model, data.x_train, data.y_train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                        lr=cfg["lr"], adversary=adversary, clean_weight=0.0, seed=cfg["seed"],
                        progress=progress, desc=f"{method} ×{scale}")
        metrics = {k: history[k] for k in ("loss", "train_acc", "seconds")}
        if adversary is not None:
            metrics.update(adv_loss=adversary.losses, eps_used=adversary.eps_used)
        return metrics

    return load_or_train(f"ch04-cnn-{method}-x{scale}", config, build, fit, device=device)


# --- a PGD-trained network trained to convergence (the shipped checkpoint) ----------

#: The recipe of the checkpoint ``make checkpoints`` trains (scripts/train_checkpoints.py): a
#: width-×8 network (half the paper's width; ×4 after 30 epochs reached 80% under PGD-40, short of
#: the chapter's 88% goal), PGD-7 of the default step 2.5ε/7 (training, not evaluation, uses fewer
#: steps than the paper's 40), many more epochs than the 3-minute budget allows, ε ramped up over
#: the first epochs and a cosine learning-rate schedule that anneals to zero.
CHECKPOINT_RECIPE = {"scale": 8, "epochs": 60, "steps": 7, "alpha": None, "lr": 1e-3, "batch_size": 64,
                     "warmup_epochs": 2.0, "eps": EPS, "seed": 0}


def train_robust(x: torch.Tensor, y: torch.Tensor, *, scale: int, epochs: int, steps: int, alpha: float | None,
                 lr: float, batch_size: int, warmup_epochs: float, eps: float = EPS, seed: int = 0,
                 x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, val_steps: int = 40,
                 progress: bool = True, log=None):
    """PGD adversarial training of a width-``scale`` :class:`MnistCNN` on ``x`` (N, 1, 28, 28) in
    [0, 1], ``y`` (N,), recording the training curves. Not cached: see :func:`train_cnn` for that.

    Madry et al.'s objective (adversarial examples only) with PGD-``steps`` of step ``alpha``
    (None: 2.5ε / steps), ε ramped from 0 over ``warmup_epochs``, Adam at ``lr`` annealed to 0 by a
    cosine schedule. After every epoch, if ``x_val``/``y_val`` are given, the natural accuracy and
    the accuracy under PGD-``val_steps`` (step 0.01, one random start, a fixed seed) are measured.
    Returns ``(model, history)``: :func:`advcourse.train.fit`'s history with per-epoch lists
    ``loss`` and ``train_acc`` (on the PGD examples), ``natural`` and ``pgd`` (validation), and
    ``adv_loss`` (per batch, the value of the inner problem). ``log``: e.g. ``print``, called with
    one line per epoch.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    torch.manual_seed(seed)
    channels, hidden = widths(scale)
    model = MnistCNN(channels, hidden)
    batches = Shuffled(x, y, batch_size=batch_size, seed=seed)
    adversary = Adversary("pgd", eps, steps=steps, alpha=alpha, warmup_batches=int(warmup_epochs * len(batches)),
                          generator=torch.Generator().manual_seed(seed + 1))

    def attack(model, batch):  # the inner maximisation; the step below is the outer one (Danskin)
        xb, yb = batch
        return adversary(model, xb, yb).detach(), yb

    def step(model, batch):
        xb, yb = batch
        logits = model(xb)
        return F.cross_entropy(logits, yb), {"train_acc": (logits.argmax(1) == yb).sum().item()}

    def validate(model):
        scores = {"natural": accuracy(model, x_val, y_val),
                  "pgd": robust_accuracy(model, x_val, y_val, pgd, eps=eps, alpha=0.01, steps=val_steps,
                                         early_stop=True, generator=torch.Generator().manual_seed(seed + 2))}
        if log is not None:
            log(f"epoch {len(adversary.losses) // len(batches)}: natural {100 * scores['natural']:.1f}%, "
                f"PGD-{val_steps} {100 * scores['pgd']:.1f}%")
        return scores

    total = epochs * len(batches)
    history = fit(model, batches, step, epochs=epochs, lr=lr, adversary=attack,
                  schedule=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total),
                  validate=validate if x_val is not None else None, progress=progress,
                  desc=f"PGD-{steps} training ×{scale}")
    history["adv_loss"], history["eps_used"] = adversary.losses, adversary.eps_used
    return model, history


#: Name and SHA-256 of the shipped checkpoint (``make checkpoints`` prints the new checksum).
CHECKPOINT = "ch04_pgd_mnist"
CHECKPOINT_SHA256 = "c2a7017dd9c53f2e02c2e99f39f9615e8c0c0fc98e82f65311eda207c635ef35"


def load_checkpoint(folder=None):
    """The shipped PGD-trained network (:data:`CHECKPOINT_RECIPE`), its SHA-256 verified.

    Returns ``(model, meta)``: an eval-mode :class:`MnistCNN` and the checkpoint's metadata
    (:func:`advcourse.checkpoint.save`): ``recipe``, ``seed``, versions, ``train_seconds``, final
    ``metrics``, per-epoch ``curves`` and per-batch ``adv_loss``/``eps_used``. Raises
    :class:`advcourse.data.ChecksumError` if the file or its recipe is not the pinned one.
    """
    channels, hidden = widths(CHECKPOINT_RECIPE["scale"])
    model = MnistCNN(channels, hidden)
    meta = checkpoint.load(model, CHECKPOINT, CHECKPOINT_SHA256, folder)
    if meta["recipe"] != CHECKPOINT_RECIPE:
        raise ChecksumError(f"checkpoint {CHECKPOINT} was trained with {meta['recipe']}, not with "
                            f"CHECKPOINT_RECIPE = {CHECKPOINT_RECIPE}; run `make checkpoints`")
    return model, meta


def plot_training_curves(history: dict, ax=None):
    """Natural and PGD accuracy (%) on held-out digits after each epoch of :func:`train_robust`."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    epochs = range(1, len(history["natural"]) + 1)
    ax.plot(epochs, [100 * a for a in history["natural"]], marker=".", color="C0", label="natural")
    ax.plot(epochs, [100 * a for a in history["pgd"]], marker=".", color="C3", label="PGD-40, ε = 0.3")
    ax.plot(epochs, [100 * a for a in history["train_acc"]], ls="--", color="C1",
            label="training batches (PGD examples)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


# --- evaluation --------------------------------------------------------------------

def test_subset(data, n: int, seed: int = 0):
    """``n`` test images (n, 1, 28, 28) and labels (n,), drawn at random (fixed ``seed``), so
    that the sample does not depend on the order in which a data set stores its images."""
    idx = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:n]
    return data.x_test[idx], data.y_test[idx]


def attack_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, sources: dict, eps: float = EPS,
                 steps=(40, 100), restarts: int = 5, alpha: float = 0.01,
                 generator: torch.Generator | None = None) -> dict:
    """Accuracy of ``model`` on ``x`` (N, 1, 28, 28), ``y`` (N,) under the attacks of the paper's Table 1.

    White-box (source "A"): FGSM, BIM (PGD without random start) with ``steps[0]`` steps, PGD with
    each number of ``steps`` (step ``alpha``, one random start), and PGD with ``steps[-1]`` steps
    and ``restarts`` random restarts. Black-box: for each ``sources`` entry (name -> model, e.g.
    "A′" an independently trained copy, "B" the same network trained on clean data), FGSM and
    PGD crafted on that model and shown to ``model``; PGD uses ``steps[-1]`` steps from "A′" and
    ``steps[0]`` from other sources, as in the paper.
    Returns an ordered dict: row name -> (source, accuracy in [0, 1]).
    """
    first, last = steps[0], steps[-1]
    rows = {"natural": ("—", accuracy(model, x, y)),
            "FGSM": ("A", robust_accuracy(model, x, y, fgsm, eps=eps)),
            f"BIM (no random start), {first} steps": ("A", robust_accuracy(model, x, y, bim, eps=eps, alpha=alpha,
                                                                           steps=first, early_stop=True))}
    for k in steps:
        rows[f"PGD, {k} steps"] = ("A", robust_accuracy(model, x, y, pgd, eps=eps, alpha=alpha, steps=k,
                                                        early_stop=True, generator=generator))
    rows[f"PGD, {last} steps, {restarts} restarts"] = (
        "A", robust_accuracy(model, x, y, pgd, eps=eps, alpha=alpha, steps=last, restarts=restarts,
                             early_stop=True, generator=generator))
    for name, src in sources.items():
        k = last if name == "A′" else first
        rows[f"FGSM from {name}"] = (name, transfer(src, model, x, y, fgsm, eps=eps).target_accuracy)
        rows[f"PGD, {k} steps, from {name}"] = (
            name, transfer(src, model, x, y, pgd, eps=eps, alpha=alpha, steps=k, generator=generator).target_accuracy)
    return rows


def capacity_sweep(data, scales, *, epochs: int, n_test: int, eps: float = EPS, steps: int = 5,
                   alpha: float | None = None, eval_steps: int = 20, warmup_epochs: float = 1.0, seed: int = 0,
                   copy_seed: int | None = None, standard_epochs: int | None = None, device="cpu",
                   generator: torch.Generator | None = None, progress: bool = False) -> dict:
    """Train every (method, scale) of the capacity study and measure it on the first ``n_test``
    random test images (trained with :func:`train_cnn`'s settings ``steps``, ``alpha``, ``warmup_epochs``;
    the standard networks for ``standard_epochs``, default ``epochs``):
    clean, FGSM and PGD (``eval_steps`` steps of 2.5ε/steps, random start) accuracy,
    and the final training loss (the value of the saddle-point problem for adversarial methods).
    The test images are :func:`test_subset`'s.

    With ``copy_seed``, an independent copy of every network (same recipe, that seed) is trained
    too, and ``transfer`` records the network's accuracy on the PGD examples crafted on its copy,
    ``transfer_rate`` the fraction of the copy's adversarial examples that also fool it.

    Returns ``{method: {"clean": [...], "fgsm": [...], "pgd": [...], "train_loss": [...]}}`` (and
    ``transfer``, ``transfer_rate``) with one entry per scale, in the order of ``scales``.
    """
    x, y = test_subset(data, n_test)
    out = {}
    for method in METHODS:
        res = {"clean": [], "fgsm": [], "pgd": [], "train_loss": []}
        if copy_seed is not None:
            res.update(transfer=[], transfer_rate=[])
        for s in scales:
            n_epochs = standard_epochs if method == "standard" and standard_epochs else epochs
            kw = dict(scale=s, method=method, epochs=n_epochs, eps=eps, steps=steps, alpha=alpha,
                      warmup_epochs=warmup_epochs, device=device, progress=progress)
            model, meta = train_cnn(data, seed=seed, **kw)
            res["clean"].append(accuracy(model, x, y))
            res["fgsm"].append(robust_accuracy(model, x, y, fgsm, eps=eps))
            res["pgd"].append(robust_accuracy(model, x, y, pgd, eps=eps, steps=eval_steps, early_stop=True,
                                              generator=generator))
            res["train_loss"].append(meta["metrics"]["loss"][-1])
            if copy_seed is not None:
                copy = train_cnn(data, seed=copy_seed, **kw)[0]
                moved = transfer(copy, model, x, y, pgd, eps=eps, steps=eval_steps, generator=generator)
                res["transfer"].append(moved.target_accuracy)
                res["transfer_rate"].append(moved.transfer_rate)
        out[method] = res
    return out


def norm_curves(models: dict, x: torch.Tensor, y: torch.Tensor, eps_values: dict, *, steps: int = 40,
                generator: torch.Generator | None = None) -> dict:
    """Robust accuracy against ε for each model and norm.

    ``models``: name -> model; ``eps_values``: norm ("inf" or "2") -> list of radii. PGD uses
    ``steps`` steps of 2.5ε/steps from a random start, as in the paper's Figure 6.
    Returns ``{name: {norm: [accuracy per ε]}}``.
    """
    return {name: {norm: [robust_accuracy(m, x, y, pgd, eps=e, steps=steps, norm=norm, early_stop=True,
                                          generator=generator) for e in radii]
                   for norm, radii in eps_values.items()}
            for name, m in models.items()}


def overstatement(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = EPS, pgd_steps: int = 40,
                  restarts: int = 1, strong_steps: int = 100, square_queries: int = 1000,
                  generator: torch.Generator | None = None) -> dict:
    """How much a single PGD run overstates robustness.

    Returns fractions in [0, 1]: ``pgd`` (one run of ``pgd_steps`` steps of 0.01), ``square`` (the
    gradient-free Square attack alone) and ``strong`` (:func:`advcourse.attacks.strong_evaluation`:
    the per-example worst case over APGD-CE, then APGD-T with the targeted DLR loss, each with
    ``restarts`` runs of ``strong_steps`` iterations, then Square with ``square_queries``, each run
    on the digits the previous ones left), with ``strong_after`` the cumulative accuracy after each
    component and ``caught`` the number of digits each component was the first to fool.
    """
    single = robust_accuracy(model, x, y, pgd, eps=eps, alpha=0.01, steps=pgd_steps, early_stop=True,
                             generator=generator)
    sq = robust_accuracy(model, x, y, functools.partial(square, n_queries=square_queries, generator=generator),
                         eps=eps)
    strong = strong_evaluation(model, x, y, eps, steps=strong_steps, restarts=restarts,
                               square_queries=square_queries, generator=generator)
    return {"pgd": single, "square": sq, "strong": strong.accuracy, "strong_after": strong.accuracy_after,
            "caught": strong.caught}


# --- CIFAR-10: the paper's second data set (the full profile only) -----------------

CIFAR_EPS = 8 / 255    # the paper's L∞ budget on CIFAR-10 (8 grey levels; pixels in [0, 1])
CIFAR_ALPHA = 2 / 255  # the paper's PGD step, in training (7 steps) and in evaluation
CIFAR_BATCH = 128      # the paper's batch size
#: The paper's CIFAR-10 run: 80,000 SGD steps of 128 images on a ResNet ten times wider than
#: He et al.'s (five residual units per stage, 160, 320 and 640 filters): about 46 million
#: parameters, as ``count_parameters(cifar_resnet(32, (160, 320, 640)))`` counts them.
CIFAR_PAPER_STEPS, CIFAR_PAPER_PARAMS = 80_000, 46_100_000
#: Its results (Table 2: white-box attacks on the network itself, ε = 8/255), as fractions.
CIFAR_PAPER = {"natural": 0.873, "pgd7": 0.500, "pgd20": 0.458}


def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """The paper's data augmentation of a batch ``x`` (N, C, H, W): each image flipped left-right
    with probability 1/2, then a random H × W crop of it padded by ``pad`` black pixels on every side
    (a shift by up to ``pad`` pixels in each direction). Returns a new tensor on ``x``'s device."""
    n, c, h, w = x.shape
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    shift = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))                           # (N, C, H + 2·pad, W + 2·pad)
    rows = shift[0].view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = shift[1].view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
    images = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[images, channels, rows, cols]                        # (N, C, H, W)


def cifar_sgd_steps(n_train: int, epochs: int, batch_size: int = CIFAR_BATCH) -> int:
    """The number of SGD steps :func:`train_cifar_resnet` takes: ``epochs`` passes over ``n_train``
    images in batches of ``batch_size`` (the last batch of a pass may be smaller)."""
    return epochs * -(-n_train // batch_size)


def train_cifar_resnet(cifar, *, epochs: int, depth: int = 20, n_train: int | None = None, steps: int = 7,
                       eps: float = CIFAR_EPS, alpha: float = CIFAR_ALPHA, lr: float = 0.1,
                       weight_decay: float = 2e-4, batch_size: int = CIFAR_BATCH, augmented: bool = True,
                       seed: int = 0, device="cpu", progress: bool = True):
    """PGD adversarial training of a CIFAR ResNet-``depth`` (:func:`advcourse.models.resnet.cifar_resnet`)
    on the first ``n_train`` (None: all) training images of ``cifar`` (an ``ImageData``); cached.

    The paper's recipe, shortened to ``epochs`` epochs: every batch (random crop and flip if
    ``augmented``) is replaced by its PGD-``steps`` examples of step ``alpha`` in the ε-ball (a random
    start, no ε warm-up), and SGD (momentum 0.9, ``weight_decay``) descends their loss, with the
    learning rate ``lr`` divided by 10 after half and after three quarters of the steps (the paper: at
    40,000 and 60,000 of its 80,000).
    Returns ``(model, meta)``; ``meta["metrics"]`` holds per epoch ``loss`` and ``train_acc`` (on the
    PGD examples), per batch ``adv_loss``, and ``sgd_steps`` and ``seconds``.
    """
    n = len(cifar.x_train) if n_train is None else min(n_train, len(cifar.x_train))
    config = {"arch": "cifar_resnet", "depth": depth, "data": cifar.source, "n": n, "epochs": epochs,
              "steps": steps, "eps": eps, "alpha": alpha, "lr": lr, "weight_decay": weight_decay,
              "batch_size": batch_size, "augmented": augmented, "seed": seed}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return cifar_resnet(cfg["depth"])

    def fit_pgd(model, cfg):
        batches = Shuffled(cifar.x_train[:cfg["n"]], cifar.y_train[:cfg["n"]], batch_size=cfg["batch_size"],
                           seed=cfg["seed"])
        adversary = Adversary("pgd", cfg["eps"], steps=cfg["steps"], alpha=cfg["alpha"],
                              generator=torch.Generator().manual_seed(cfg["seed"] + 1))
        crops = torch.Generator().manual_seed(cfg["seed"] + 2)

        def attack(model, batch):  # the inner maximisation, on the augmented batch
            xb, yb = batch
            xb = augment(xb, crops) if cfg["augmented"] else xb
            return adversary(model, xb, yb).detach(), yb

        def step(model, batch):  # the outer minimisation: the loss on the PGD examples only
            xb, yb = batch
            logits = model(xb)
            return F.cross_entropy(logits, yb), {"train_acc": (logits.argmax(1) == yb).sum().item()}

        total = cfg["epochs"] * len(batches)
        history = fit(model, batches, step, epochs=cfg["epochs"], optimizer="sgd", lr=cfg["lr"],
                      weight_decay=cfg["weight_decay"], adversary=attack,
                      schedule=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, [total // 2, 3 * total // 4]),
                      progress=progress, desc=f"CIFAR-10 ResNet-{cfg['depth']}, PGD-{cfg['steps']} training")
        return {"loss": history["loss"], "train_acc": history["train_acc"], "adv_loss": adversary.losses,
                "sgd_steps": total, "seconds": history["seconds"]}

    return load_or_train(f"ch04-cifar-resnet{depth}-pgd", config, build, fit_pgd, device=device)


def cifar_accuracies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float = CIFAR_EPS,
                     alpha: float = CIFAR_ALPHA, steps=(7, 20), seed: int = 0) -> dict:
    """Natural accuracy of ``model`` on ``x`` (N, 3, 32, 32), ``y`` (N,), and its accuracy under PGD-k
    (step ``alpha``, one random start) for each k of ``steps``: ``{"natural": …, "pgd7": …, "pgd20": …}``
    in [0, 1]. Every PGD run starts from the same random points (a generator seeded with ``seed``) and
    keeps each example's best iterate, so a longer run never reports more accuracy than a shorter one,
    and no PGD number exceeds the natural one (an example counts only if it is also correct when clean).
    """
    out = {"natural": robust_accuracy(model, x, y)}
    for k in steps:
        out[f"pgd{k}"] = robust_accuracy(model, x, y, pgd, eps=eps, alpha=alpha, steps=k, early_stop=True,
                                         generator=torch.Generator().manual_seed(seed))
    return out


def cifar_experiment(cifar, settings: Settings, *, seed: int = 0, device="cpu", progress: bool = False) -> dict:
    """The chapter's CIFAR-10 run: :func:`train_cifar_resnet` with ``settings``' ``cifar_*`` fields,
    then :func:`cifar_accuracies` on ``cifar_n_eval`` random test images (:func:`test_subset`).

    Returns the accuracies ``natural``, ``pgd7``, ``pgd20`` and the setting: ``depth``,
    ``parameters``, ``epochs``, ``n_train``, ``sgd_steps``, ``n_eval``, ``train_seconds``, ``data``.
    """
    model, meta = train_cifar_resnet(cifar, depth=settings.cifar_depth, epochs=settings.cifar_epochs,
                                     n_train=settings.cifar_n_train, seed=seed, device=device, progress=progress)
    x, y = test_subset(cifar, settings.cifar_n_eval)
    return {**cifar_accuracies(model, x, y, seed=seed), "depth": settings.cifar_depth,
            "parameters": count_parameters(model), "epochs": settings.cifar_epochs, "n_train": meta["config"]["n"],
            "sgd_steps": meta["metrics"]["sgd_steps"], "n_eval": len(x), "train_seconds": meta["train_seconds"],
            "data": cifar.source}


# --- figures -------------------------------------------------------------------------

def plot_paths(paths: dict, ax=None, max_runs: int = 20):
    """Loss along PGD for one example: ``paths`` maps a model name to a (restarts, steps + 1)
    tensor; ``max_runs`` runs of each are drawn, thin, in the model's colour."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for k, (name, p) in enumerate(paths.items()):
        for r in range(min(max_runs, len(p))):
            ax.plot(p[r].numpy(), color=f"C{k}", lw=0.8, alpha=0.6, label=name if r == 0 else None)
    ax.set_xlabel("PGD step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


def plot_final_losses(final: dict, bins: int = 40):
    """Histograms of the final PGD loss, one panel per example: ``final`` maps a model name to an
    (N, restarts) tensor. Returns the figure."""
    import matplotlib.pyplot as plt

    n = next(iter(final.values())).shape[0]
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        lo = min(f[i].min().item() for f in final.values())
        hi = max(f[i].max().item() for f in final.values())
        edges = torch.linspace(lo, hi + 1e-6, bins + 1).numpy()  # the same bins for every model
        for k, (name, f) in enumerate(final.items()):
            ax.hist(f[i].numpy(), bins=edges, color=f"C{k}", alpha=0.7, label=name)
        ax.set_yscale("log")
        ax.set_ylim(0.7, None)
        ax.set_title(f"example {i + 1}", fontsize=9)
        ax.set_xlabel("final loss", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("restarts")
    axes[0][0].legend(frameon=False, fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig


#: The cross-entropy loss below which the true class keeps more than half the probability, so the
#: prediction cannot have flipped: ln 2.
FLIP_LOSS = math.log(2)


def spread(final: torch.Tensor, floor: float = 0.0) -> dict:
    """Summary of final losses (N, restarts): per-example relative spread and the worst outlier.

    Each example's spread is measured against its scale ``max(median, floor)``. With ``floor = 0``
    that is the median; with ``floor = FLIP_LOSS`` a digit whose runs all end far below ln 2 (the
    attack fails from every start, at losses like 0.004 and 0.008) is not called spread out because
    two tiny losses differ by a factor of two: what would matter is a run that comes near flipping it.

    ``rel_iqr``: median over examples of (q75 − q25) / scale; ``max_excess``: the largest
    (max − median) / scale over the examples (an outlier far above the typical maximum would show here);
    ``above_110``: the fraction of all runs ending more than 10% of the scale above their example's
    median; ``median``: the median of all final losses.
    """
    med = final.median(dim=1).values
    scale = med.clamp_min(max(floor, 1e-12))
    q = torch.quantile(final, torch.tensor([0.25, 0.75]), dim=1)
    return {"rel_iqr": ((q[1] - q[0]) / scale).median().item(),
            "max_excess": ((final.max(dim=1).values - med) / scale).max().item(),
            "median": final.median().item(),
            "above_110": (final > (med + 0.1 * scale).unsqueeze(1)).float().mean().item()}


def plot_adversarial_loss(record: dict, ax=None, window: int = 20):
    """The training loss on adversarial examples, batch by batch (thin) and as a moving average
    over ``window`` batches, with the ε warm-up shaded. ``record``: per-batch lists ``adv_loss``
    and ``eps_used`` — :func:`train_cnn`'s ``meta["metrics"]`` or the checkpoint's metadata."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    losses = torch.tensor(record["adv_loss"])
    eps_used = torch.tensor(record["eps_used"])
    batches = torch.arange(1, len(losses) + 1)
    ax.plot(batches.numpy(), losses.numpy(), lw=0.5, alpha=0.4, color="C1")
    if len(losses) >= window:
        smooth = losses.unfold(0, window, 1).mean(1)
        ax.plot(batches[window - 1:].numpy(), smooth.numpy(), color="C1", label=f"mean of {window} batches")
    warm = int((eps_used < eps_used.max()).sum())
    if warm:
        ax.axvspan(0, warm, color="0.85", label="ε warm-up")
    ax.set_xlabel("training batch")
    ax.set_ylabel("loss on PGD examples")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


def plot_capacity(sweep: dict, scales):
    """The paper's Figure 4 for our sweep: accuracy (clean, FGSM, PGD) against width for each
    training method, and the final training loss. ``sweep``: :func:`capacity_sweep`'s result."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(12, 3), sharex=True)
    titles = {"standard": "standard training", "fgsm": "FGSM training", "pgd": "PGD training"}
    for ax, method in zip(axes, METHODS):
        for k, what in enumerate(("clean", "fgsm", "pgd")):
            ax.plot(scales, [100 * v for v in sweep[method][what]], marker="o", color=f"C{k}",
                    label={"clean": "natural", "fgsm": "FGSM", "pgd": "PGD"}[what])
        ax.set_title(titles[method], fontsize=10)
        ax.set_ylim(-3, 103)
        ax.set_ylabel("accuracy (%)")
    axes[0].legend(frameon=False, fontsize=8)
    for k, method in enumerate(METHODS):
        axes[3].plot(scales, sweep[method]["train_loss"], marker="o", color=f"C{k + 3}", label=titles[method])
    axes[3].set_title("training loss (last epoch)", fontsize=10)
    axes[3].legend(frameon=False, fontsize=8)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(scales), [f"×{s}" for s in scales])
        ax.set_xlabel("capacity (width)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
