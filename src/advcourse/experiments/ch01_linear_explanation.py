"""Chapter 1 — the linear explanation of adversarial examples (Goodfellow et al. 2015).

The experiments of the chapter as small functions: the growth of wᵀη with the
dimension, the linear models trained on the embedded MNIST (cached), their
error and confidence under FGSM, and their answers on Gaussian rubbish.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..attacks import fgsm
from ..cache import load_or_train
from ..data import subset
from ..evaluate import ErrorReport, attack_report, probabilities
from ..models import LogisticRegression, RBFNetwork, SoftmaxRegression, rbf_loss
from ..train import train


@dataclass(frozen=True)
class Settings:
    """Chapter 1's settings, shared by the chapter and its claim tests.

    ``epochs`` and ``lr`` (Adam) train the logistic regression of 3 vs 7; the ten-class softmax
    regression and RBF network train for ``epochs // 2``.
    """

    epochs: int = 20
    lr: float = 1e-2
    #: the L2 weight decay of the scale test (Experiment 5)
    weight_decay: float = 0.01

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        return replace(self, epochs=2)


#: The CPU profile (the embedded 8,000 training digits).
FAST = Settings()
#: The GPU profile (all of MNIST).
FULL = Settings(epochs=40)


# --- §3: the linear explanation -------------------------------------------------

def activation_growth(dims, eps: float, trials: int = 20, generator: torch.Generator | None = None) -> dict:
    """Measure how much a max-norm perturbation of size ε moves wᵀx, against the dimension n.

    For each n, draw ``trials`` weight vectors w ~ N(0, I_n) and compare
    the aligned perturbation η = ε·sign(w), for which wᵀη = ε‖w‖₁ = ε·m·n
    (m = mean |w_i|), with a random-sign perturbation of the same max-norm, whose
    effect only grows like ε·‖w‖₂ ≈ ε·√n.

    Returns lists over ``dims``: ``aligned`` and ``random`` (mean |wᵀη| over the
    trials), ``emn`` (ε·m·n, averaged) and ``max_change`` (ε, the per-pixel change).
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if trials < 1:
        raise ValueError(f"trials must be positive, got {trials}")
    out = {"n": [], "aligned": [], "random": [], "emn": [], "max_change": []}
    for n in dims:
        w = torch.randn(trials, n, generator=generator)
        aligned = (w * eps * w.sign()).sum(1)
        random_signs = torch.randint(0, 2, (trials, n), generator=generator) * 2 - 1
        rand = (w * eps * random_signs).sum(1).abs()
        out["n"].append(n)
        out["aligned"].append(aligned.mean().item())
        out["random"].append(rand.mean().item())
        out["emn"].append((eps * w.abs().mean(1) * n).mean().item())
        out["max_change"].append(eps)
    return out


def fgsm_logistic_exact(model: LogisticRegression, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The exact worst case of a logistic regression in the box-constrained max-norm ball.

    With ỹ = 2y − 1 ∈ {−1, 1} the loss ζ(−ỹ(wᵀx + b)) grows as wᵀx moves against ỹ,
    and the problem separates over pixels, so the optimum moves every pixel by
    −ε·ỹ·sign(w_i) and clips to [0, 1]:  x̃ = clip(x − ε·ỹ·sign(w)).  (§5)
    """
    ytilde = (2 * y - 1).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
    step = model.w.detach().sign().view(1, *x.shape[1:])
    return (x - eps * ytilde * step).clamp(0, 1).clamp(x - eps, x + eps)


def margins(model: LogisticRegression, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The signed margins ỹ(wᵀx + b), ỹ = 2y − 1, shape (N,): positive means correct."""
    with torch.no_grad():
        score = model.score(x.to(model.w.device)).cpu()
    return (2 * y - 1).to(score.dtype) * score


def margin_histogram(clean: torch.Tensor, adversarial: torch.Tensor, budget: float, ax=None):
    """Histograms of clean and adversarial margins, with the FGSM budget ε‖w‖₁ marked."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    lo = min(clean.min().item(), adversarial.min().item())
    hi = max(clean.max().item(), adversarial.max().item())
    bins = torch.linspace(lo, hi, 60).numpy()
    ax.hist(clean.numpy(), bins=bins, alpha=0.6, label="clean")
    ax.hist(adversarial.numpy(), bins=bins, alpha=0.6, label="FGSM")
    ax.axvline(0, color="k", lw=1)
    ax.axvline(budget, color="C3", ls="--", label="ε‖w‖₁ (largest possible drop)")
    ax.set_xlabel("margin ỹ(wᵀx + b)  (< 0: misclassified)")
    ax.set_ylabel("test examples")
    ax.legend(frameon=False)
    return ax


# --- the models of the chapter, trained once and cached --------------------------

def _build(config: dict) -> nn.Module:
    kind, d = config["kind"], config["in_features"]
    if kind == "logistic":
        return LogisticRegression(d)
    if kind == "softmax":
        return SoftmaxRegression(d, 10)
    if kind == "rbf":
        return RBFNetwork(d, 10, beta0=config["beta0"])
    raise ValueError(f"kind must be 'logistic', 'softmax' or 'rbf', got {kind!r}")


def train_linear(kind: str, x: torch.Tensor, y: torch.Tensor, *, data_tag: str, epochs: int, lr: float,
                 seed: int = 0, device="cpu", l1: float = 0.0, weight_decay: float = 0.0,
                 adv_eps: float = 0.0, clean_weight: float = 0.5, beta0: float = 0.3, progress: bool = True):
    """Train (or load from the cache) one of the chapter's models on images ``x`` in [0, 1].

    ``kind``: "logistic" (binary, labels 0/1), "softmax" or "rbf" (10 classes).
    ``l1``: L1 weight decay; ``weight_decay``: L2 decay of every parameter (Adam's, coupled);
    ``adv_eps`` > 0: FGSM adversarial training (eq. 6) with
    weight ``clean_weight`` on the clean loss. ``data_tag`` names the training data in
    the cache key. Returns ``(model, meta)``; ``meta["metrics"]`` has the training history.
    """
    config = {"kind": kind, "in_features": x[0].numel(), "data": data_tag, "n": len(x),
              "epochs": epochs, "lr": lr, "seed": seed, "l1": l1, "weight_decay": weight_decay, "adv_eps": adv_eps,
              "clean_weight": clean_weight, "beta0": beta0 if kind == "rbf" else None}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        model = _build(cfg)
        if kind == "rbf":  # start each centre at its class mean: training then refines it
            with torch.no_grad():
                model.mu.copy_(torch.stack([x[y == c].flatten(1).mean(0) for c in range(10)]))
        return model

    def fit(model, cfg):
        adversary = (lambda m, xb, yb: fgsm(m, xb, yb, cfg["adv_eps"])) if cfg["adv_eps"] > 0 else None
        history = train(model, x, y, epochs=cfg["epochs"], lr=cfg["lr"], l1=cfg["l1"],
                        weight_decay=cfg["weight_decay"], adversary=adversary,
                        clean_weight=cfg["clean_weight"], loss_fn=rbf_loss if kind == "rbf" else None,
                        seed=cfg["seed"], progress=progress, desc=f"{kind} ({data_tag})")
        return {k: history[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train(f"ch01-{kind}-{data_tag}", config, build, fit, device=device)


# --- measuring a model: error and confidence, clean, adversarial and rubbish -----

def fgsm_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float):
    """FGSM at ``eps`` on every example; returns (x_adv, ErrorReport on x_adv)."""
    return attack_report(model, x, y, lambda m, xb, yb: fgsm(m, xb, yb, eps))


def rubbish_report(model: nn.Module, noise: torch.Tensor, threshold: float = 0.5) -> ErrorReport:
    """Goodfellow et al.'s rubbish-class test (appendix): an error is any class given
    probability above ``threshold`` on a pure-noise input. ``confidence`` is the mean of
    the top probability; ``wrong_confidence`` its mean over the errors."""
    top = probabilities(model, noise).max(1).values
    wrong = top > threshold
    return ErrorReport(wrong.float().mean().item(), top.mean().item(),
                       top[wrong].mean().item() if wrong.any() else float("nan"))


def weight_scale(model: nn.Module) -> float:
    """How large a ten-class model's weights are: ‖W‖_F of a softmax regression, the mean of
    ‖β_c‖₂ over the RBF units of an RBF network (whose confidence near FGSM examples falls with it)."""
    if isinstance(model, RBFNetwork):
        return model.beta.detach().norm(dim=1).mean().item()
    if isinstance(model, SoftmaxRegression):
        return model.linear.weight.detach().norm().item()
    raise TypeError(f"model must be a SoftmaxRegression or an RBFNetwork, got {type(model).__name__}")


def three_vs_seven(data):
    """The binary task of §5: MNIST 3s (label 0) against 7s (label 1), train and test."""
    return (*subset(data.x_train, data.y_train, [3, 7]), *subset(data.x_test, data.y_test, [3, 7]))
