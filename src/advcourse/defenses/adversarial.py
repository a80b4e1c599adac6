"""Adversarial training's inner solver: an adversary that records the inner maximum it reaches.

Madry et al. 2018 train on  min_θ E[max_{δ∈S} L(θ, x + δ, y)]  (their eq. 2.1); the adversary
below solves the inner maximisation for each batch (FGSM or PGD), for
:func:`advcourse.train.train`'s ``adversary`` argument, and keeps the loss it reached — the
value of the saddle-point objective at the current parameters — so it can be plotted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import fgsm, pgd
from ..evaluate import eval_mode

__all__ = ["Adversary"]


class Adversary:
    """``adversary(model, xb, yb) -> x_adv`` for :func:`advcourse.train.train`, which records the
    inner maximum it reaches.

    ``method``: "fgsm" (one signed step from x, no random start) or "pgd" (``steps`` steps of
    size ``alpha`` from a uniform random start; default α = 2.5·ε / steps). ``warmup_batches``
    > 0 grows ε linearly from 0 to ``eps`` over that many batches (a small network trained at
    ε = 0.3 from the first batch can get stuck at chance). ``losses`` collects, per batch, the
    mean cross-entropy on the adversarial examples: the value of the inner problem at the current
    parameters; ``eps_used`` the ε of that batch.
    """

    def __init__(self, method: str, eps: float, steps: int = 1, alpha: float | None = None,
                 warmup_batches: int = 0, generator: torch.Generator | None = None):
        if method not in ("fgsm", "pgd"):
            raise ValueError(f"method must be 'fgsm' or 'pgd', got {method!r}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.method, self.eps, self.steps, self.alpha = method, eps, steps, alpha
        self.warmup_batches, self.generator = warmup_batches, generator
        self.losses: list[float] = []
        self.eps_used: list[float] = []

    def current_eps(self) -> float:
        """ε for the next batch: the warm-up ramp, then the full budget."""
        done = len(self.losses) + 1
        if self.warmup_batches and done < self.warmup_batches:
            return self.eps * done / self.warmup_batches
        return self.eps

    def __call__(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        eps = self.current_eps()
        if self.method == "fgsm":
            x_adv = fgsm(model, xb, yb, eps)
        else:
            # α (default 2.5·ε / steps) shrinks with the ramp, so crossing the ball takes as many steps
            alpha = self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps
            alpha = alpha * eps / self.eps if self.eps > 0 else 0.0
            x_adv = pgd(model, xb, yb, eps, alpha, steps=self.steps, generator=self.generator)
        with eval_mode(model), torch.no_grad():
            self.losses.append(F.cross_entropy(model(x_adv), yb).item())
        self.eps_used.append(eps)
        return x_adv
