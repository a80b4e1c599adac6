"""Iterative gradient attacks: BIM (Kurakin et al. 2017) and PGD (Madry et al. 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._utils import (
    bview,
    clamp_linf,
    l2_norm,
    linf_bounds,
    objective,
    project_l2,
    project_l2_exact,
    rand,
    randn,
    success,
    write_rows,
)
from ._validate import (
    check_choice,
    check_inputs,
    check_logits,
    check_nonneg,
    check_norm,
    check_positive_int,
    eval_mode,
)

__all__ = ["pgd", "bim"]

# Early stop asks "all done?" (a host sync) every step on the CPU, where it costs nothing,
# and every few steps on an accelerator, where it stalls the queue.
_CHECK_EVERY = {"cpu": 1}
_CHECK_EVERY_DEFAULT = 5


def _random_start(x, eps, norm, generator):
    if norm == "inf":
        delta = (2 * rand(x.shape, like=x, generator=generator) - 1) * eps
    else:
        # uniform in the L2 ball: gaussian direction, radius eps * U^(1/d)
        d = x[0].numel()
        g = randn(x.shape, like=x, generator=generator)
        g = g / bview(l2_norm(g).clamp_min(1e-30), x)
        r = rand((x.shape[0],), like=x, generator=generator) ** (1.0 / d)
        delta = g * bview(r * eps, x)
    return (x + delta).clamp(0.0, 1.0)


def _better(succ, score, old_succ, old_score):
    """Where the new point beats the best so far: successful beats unsuccessful, then higher score."""
    return (succ & ~old_succ) | ((succ == old_succ) & (score > old_score))


def _iterative(model, x, y, *, eps, alpha, steps, restarts, norm, targeted, loss, early_stop, random_start, generator):
    x = x.detach()
    n = x.shape[0]
    with torch.no_grad():
        logits0 = model(x)
    check_logits(logits0, y)
    if eps == 0 or n == 0:
        return x.clone()
    best = x.clone()
    best_succ = success(logits0, y, targeted)
    best_score = objective(logits0, y, loss, targeted)
    all_idx = torch.arange(n, device=x.device)
    if norm == "inf":
        lo_all, hi_all = linf_bounds(x, eps)  # exact, so the final projection needs no second pass
    check_every = _CHECK_EVERY.get(x.device.type, _CHECK_EVERY_DEFAULT)
    for r in range(restarts):
        if r == 0:
            idx = all_idx
        else:
            idx = all_idx[~best_succ]  # later restarts only on examples not yet fooled
            if idx.numel() == 0:
                break
        xs, ys = x[idx], y[idx]
        # the best point so far of the examples in the batch, in batch order (written back as they leave)
        b_x, b_succ, b_score = best[idx], best_succ[idx], best_score[idx]
        if norm == "inf":
            lo, hi = lo_all[idx], hi_all[idx]
        xa = _random_start(xs, eps, norm, generator) if random_start else xs.clone()
        active = torch.ones(idx.shape[0], dtype=torch.bool, device=x.device)
        for t in range(steps + 1):
            xr = xa.requires_grad_(t < steps)
            with torch.enable_grad():
                logits = model(xr)
                obj = objective(logits, ys, loss, targeted)
            with torch.no_grad():
                succ = success(logits.detach(), ys, targeted)
                better = _better(succ, obj.detach(), b_succ, b_score)
                b_x = torch.where(bview(better, xa), xa.detach(), b_x)
                b_succ, b_score = b_succ | succ, torch.where(better, obj.detach(), b_score)
            if t == steps:  # the last point is only evaluated
                break
            (g,) = torch.autograd.grad(obj.sum(), xr)
            xa = xa.detach()
            with torch.no_grad():
                if norm == "inf":
                    x_new = clamp_linf(xa.add(g.sign(), alpha=alpha), lo, hi)
                else:
                    step = g / bview(l2_norm(g).clamp_min(1e-30), g)
                    x_new = project_l2(xa + alpha * step, xs, eps)
                if early_stop:
                    active &= ~succ
                    if (t + 1) % check_every == 0:
                        keep = active.nonzero().squeeze(1)
                        if keep.numel() < active.numel():
                            leave = (~active).nonzero().squeeze(1)
                            write_rows(idx[leave], (best, best_succ, best_score),
                                       (b_x[leave], b_succ[leave], b_score[leave]))
                            idx, ys, active, x_new = idx[keep], ys[keep], active[keep], x_new[keep]
                            b_x, b_succ, b_score = b_x[keep], b_succ[keep], b_score[keep]
                            if keep.numel() == 0:
                                break
                            if norm == "inf":
                                lo, hi = lo[keep], hi[keep]
                            else:
                                xs = xs[keep]
                        xa = x_new  # every example left in the batch is still active
                    else:  # fooled examples keep their point until the next check
                        xa = torch.where(bview(active, xa), x_new, xa)
                else:
                    xa = x_new
        write_rows(idx, (best, best_succ, best_score), (b_x, b_succ, b_score))
    with torch.no_grad():
        if norm == "inf":
            return clamp_linf(best, lo_all, hi_all)  # the exact bounds: inside the ε-ball in float64
        return project_l2_exact(best, x, eps)


def _common_checks(model, x, y, eps, alpha, steps, restarts, norm, loss):
    y = check_inputs(model, x, y)
    eps = check_nonneg(eps, "eps")
    steps = check_positive_int(steps, "steps", allow_zero=True)
    restarts = check_positive_int(restarts, "restarts")
    norm = check_norm(norm)
    check_choice(loss, "loss", ("ce", "margin"))
    alpha = check_nonneg(alpha, "alpha")
    return y, eps, alpha, steps, restarts, norm


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float | None = None,
    steps: int = 40,
    restarts: int = 1,
    norm: str = "inf",
    *,
    targeted: bool = False,
    loss: str = "ce",
    early_stop: bool = False,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent, Madry et al. 2018.

    Approximately solves the inner maximisation of the saddle-point problem
    (eq. 2.1) ``min_theta E[ max_{delta in S} L(theta, x + delta, y) ]`` with
    projected steepest-ascent steps

    * ``norm="inf"``: ``x^{t+1} = Pi_{x+S}( x^t + alpha * sign(grad_x L(x^t, y)) )``
    * ``norm="2"``:   ``x^{t+1} = Pi_{x+S}( x^t + alpha * g / ||g||_2 )``

    from a uniform random start in the eps-ball (for L2: gaussian direction
    times radius ``eps * U^(1/d)``), where Pi also clips to the box [0, 1].

    Per example the best point seen over all steps and restarts is returned: a
    misclassifying point beats a correctly classified one, ties are broken by
    the loss.  Restarts after the first only run on examples not yet fooled.

    Args:
        model: logits model (N, K); evaluated in eval mode, mode restored.
        x: images (N, ...) float in [0, 1].  y: labels (N,) (targets if ``targeted``).
        eps: radius of the ``norm``-ball, >= 0.
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.).
        steps: gradient steps per restart.  restarts: number of random restarts.
        norm: ``"inf"`` or ``"2"``.
        targeted: maximise the target class instead of leaving the true class.
        loss: ``"ce"`` or ``"margin"`` (C&W margin ``max_{j!=y} z_j - z_y``;
            works when all logits are negative).
        early_stop: freeze each example once it is misclassified (robust accuracy
            is unchanged; saves compute; use for evaluation).
        random_start: start uniformly inside the ball (else at x).
        generator: ``torch.Generator`` for reproducible random starts.

    Returns:
        x_adv (N, ...) in [0, 1] with ``||x_adv - x|| <= eps`` (L-inf exactly,
        L2 up to 1e-6 relative rounding).
    """
    if alpha is None:
        e = check_nonneg(eps, "eps")
        s = check_positive_int(steps, "steps", allow_zero=True)
        alpha = 2.5 * e / max(s, 1)
    y, eps, alpha, steps, restarts, norm = _common_checks(model, x, y, eps, alpha, steps, restarts, norm, loss)
    with eval_mode(model):
        return _iterative(model, x, y, eps=eps, alpha=alpha, steps=steps, restarts=restarts, norm=norm,
                          targeted=targeted, loss=loss, early_stop=early_stop, random_start=random_start,
                          generator=generator)


def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float = 1 / 255,
    steps: int | None = None,
    norm: str = "inf",
    *,
    targeted: bool = False,
    loss: str = "ce",
    early_stop: bool = False,
) -> torch.Tensor:
    """Basic iterative method (iterative FGSM), Kurakin, Goodfellow & Bengio 2017.

    ``X_0 = X;  X_{N+1} = Clip_{X,eps}{ X_N + alpha * sign(grad_X J(X_N, y)) }``
    (section 2.1), i.e. PGD without random start and with one restart.  Defaults
    follow the paper (pixel units rescaled to [0, 1]): ``alpha = 1/255`` and
    ``steps = min(255*eps + 4, 1.25 * 255*eps)``.  Deterministic; the result
    for an example does not depend on the rest of the batch.  ``norm="2"``
    gives the L2 analogue (normalised-gradient steps).  Returns, like
    :func:`pgd`, the best iterate per example.
    """
    if steps is None:
        e = check_nonneg(eps, "eps")
        steps = int(math.ceil(min(255 * e + 4, 1.25 * 255 * e)))
    y, eps, alpha, steps, restarts, norm = _common_checks(model, x, y, eps, alpha, steps, 1, norm, loss)
    with eval_mode(model):
        return _iterative(model, x, y, eps=eps, alpha=alpha, steps=steps, restarts=1, norm=norm,
                          targeted=targeted, loss=loss, early_stop=early_stop, random_start=False,
                          generator=None)
