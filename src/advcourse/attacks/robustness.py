"""Evaluation helpers for attacks: robust accuracy, accuracy-vs-eps curves,
per-example worst case over several attacks, transfer matrices, and a strong
default evaluation (PGD-CE + PGD-margin with restarts + Square)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ._validate import check_inputs, check_logits, check_nonneg, check_norm, check_positive_int, eval_mode
from .pgd import pgd
from .square import square

__all__ = [
    "robust_accuracy",
    "robust_mask",
    "accuracy_vs_eps",
    "worst_case_over",
    "WorstCase",
    "transfer_matrix",
    "strong_evaluation",
]

Attack = Callable[..., torch.Tensor]


def _predict(model, x, batch_size):
    with eval_mode(model), torch.no_grad():
        outs = [model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    if not outs:
        return torch.empty(0, dtype=torch.long, device=x.device)
    logits = torch.cat(outs)
    check_logits(logits)
    return logits.argmax(1)


def _attack_batched(model, x, y, attack, batch_size, **kw):
    return torch.cat([attack(model, x[i : i + batch_size], y[i : i + batch_size], **kw)
                      for i in range(0, x.shape[0], batch_size)]) if x.shape[0] else x.clone()


def robust_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None = None, *, batch_size: int = 256, **kw
) -> torch.Tensor:
    """Bool (N,): example is classified correctly on x *and* on ``attack(model, x, y, **kw)``.

    The attack runs in chunks of ``batch_size`` and only on the examples that
    are correct on clean data (the others count as non-robust anyway).
    """
    y = check_inputs(model, x, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    ok = _predict(model, x, batch_size) == y
    if attack is None:
        return ok
    idx = ok.nonzero().squeeze(1)
    if idx.numel():
        x_adv = _attack_batched(model, x[idx], y[idx], attack, batch_size, **kw)
        ok[idx] = _predict(model, x_adv, batch_size) == y[idx]
    return ok


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None = None, *, batch_size: int = 256, **kw
) -> float:
    """Fraction of examples still correctly classified under ``attack`` (clean accuracy if None).

    ``attack`` is any ``attack(model, x, y, **kw) -> x_adv`` (e.g.
    ``robust_accuracy(m, x, y, pgd, eps=8/255, early_stop=True)``).
    """
    mask = robust_mask(model, x, y, attack, batch_size=batch_size, **kw)
    return float(mask.float().mean()) if mask.numel() else float("nan")


def accuracy_vs_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    eps_values: Sequence[float],
    *,
    batch_size: int = 256,
    **kw,
) -> list[float]:
    """Robust accuracy for each ``eps`` in ``eps_values`` (same order); ``attack(model, x, y, eps=e, **kw)``."""
    eps_values = [check_nonneg(e, "eps_values") for e in eps_values]
    return [robust_accuracy(model, x, y, attack, batch_size=batch_size, eps=e, **kw) for e in eps_values]


@dataclass
class WorstCase:
    """Result of :func:`worst_case_over`.

    ``x_adv`` (N, ...): per example, the output of the first attack that fooled
    it (else of the last attack run on it, or x).  ``robust`` (N,) bool: correct
    on clean data and under every attack.  ``accuracy_after`` maps each attack
    name to the robust accuracy after that attack and all previous ones
    (cumulative worst case).  ``fooled_by`` (N,) long: index of the first
    attack that fooled the example, -1 if none (-2: misclassified when clean).
    """

    x_adv: torch.Tensor
    robust: torch.Tensor
    fooled_by: torch.Tensor
    accuracy_after: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.robust.numel() else float("nan")


def _named(attacks) -> list[tuple[str, Attack]]:
    if isinstance(attacks, Mapping):
        items = list(attacks.items())
    else:
        items = [(getattr(a, "__name__", getattr(getattr(a, "func", None), "__name__", f"attack{i}")), a)
                 for i, a in enumerate(attacks)]
    if not items:
        raise ValueError("attacks must contain at least one attack")
    for name, a in items:
        if not callable(a):
            raise TypeError(f"attacks[{name!r}] is not callable")
    return items


def worst_case_over(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, Attack] | Sequence[Attack],
    *,
    batch_size: int = 256,
) -> WorstCase:
    """Per-example worst case over several attacks (each ``attack(model, x, y)``,
    use ``functools.partial`` for parameters).

    An example is robust only if it survives *all* attacks: the per-example
    minimum of the correctness indicator.  Attack k runs only on the examples
    that survived attacks 0..k-1 (same result, less compute).
    """
    y = check_inputs(model, x, y)
    batch_size = check_positive_int(batch_size, "batch_size")
    items = _named(attacks)
    robust = _predict(model, x, batch_size) == y
    fooled_by = torch.where(robust, -1, -2).to(device=x.device, dtype=torch.long)
    x_adv = x.detach().clone()
    acc_after = {}
    for k, (name, attack) in enumerate(items):
        idx = robust.nonzero().squeeze(1)
        if idx.numel():
            xa = _attack_batched(model, x[idx], y[idx], attack, batch_size)
            still = _predict(model, xa, batch_size) == y[idx]
            x_adv[idx] = xa
            robust[idx] = still
            fooled_by[idx[~still]] = k
        acc_after[name] = float(robust.float().mean()) if robust.numel() else float("nan")
    return WorstCase(x_adv, robust, fooled_by, acc_after)


def transfer_matrix(
    models: Mapping[str, nn.Module] | Sequence[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack,
    *,
    batch_size: int = 256,
    **kw,
) -> torch.Tensor:
    """M[i, j] = accuracy of model j on ``attack(models[i], x, y, **kw)`` (crafted on model i).

    The diagonal is the white-box robust accuracy; off-diagonal entries measure
    transfer.  ``models`` may be a list or a dict (rows/columns follow its
    order).  Returns a float64 CPU tensor (M, M).
    """
    mods = list(models.values()) if isinstance(models, Mapping) else list(models)
    if not mods:
        raise ValueError("models must contain at least one model")
    y = check_inputs(mods[0], x, y)
    out = torch.empty(len(mods), len(mods), dtype=torch.float64)
    for i, src in enumerate(mods):
        x_adv = _attack_batched(src, x, y, attack, batch_size, **kw)
        for j, dst in enumerate(mods):
            out[i, j] = float((_predict(dst, x_adv, batch_size) == y).float().mean())
    return out


def strong_evaluation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "inf",
    *,
    steps: int = 100,
    restarts: int = 5,
    square_queries: int = 5000,
    square_p_init: float = 0.8,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> WorstCase:
    """A strong default robustness evaluation: per-example worst case over

    1. PGD with cross-entropy loss (``restarts`` random restarts, ``steps`` steps, early stop),
    2. PGD with the C&W margin loss (same budget; robust to logit scaling/masking),
    3. Square attack (score-based, gradient-free; L-inf only) -- it catches gradient
       masking.  The default budget is AutoAttack's (Croce & Hein 2020): 5000 queries
       with ``p_init = 0.8``; on adversarially trained networks fewer queries leave
       points that a gradient-free search would still find.

    Step size ``2.5 * eps / steps``.  Returns :class:`WorstCase`; its
    ``accuracy_after`` holds the cumulative robust accuracy after each attack
    (keys ``"pgd_ce"``, ``"pgd_margin"``, ``"square"``) and ``accuracy`` the final one.
    """
    eps = check_nonneg(eps, "eps")
    norm = check_norm(norm)
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    square_queries = check_positive_int(square_queries, "square_queries")
    common = dict(eps=eps, steps=steps, restarts=restarts, norm=norm, early_stop=True, generator=generator)
    attacks = {
        "pgd_ce": functools.partial(pgd, loss="ce", **common),
        "pgd_margin": functools.partial(pgd, loss="margin", **common),
    }
    if norm == "inf" and x.ndim == 4 and x.shape[2] >= 2 and x.shape[3] >= 2:
        attacks["square"] = functools.partial(square, eps=eps, n_queries=square_queries, p_init=square_p_init,
                                              generator=generator)
    return worst_case_over(model, x, y, attacks, batch_size=batch_size)
