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
    """The PGD/BIM loop shared by :func:`pgd` and :func:`bim`: best iterate per example over steps and restarts.

    The caller has validated every argument and put ``model`` in eval mode; this function
    neither checks nor restores anything except the model's output shape and label range
    (:func:`check_logits` on the clean forward pass).

    What it does:

    * One no-grad forward pass on the clean ``x`` initialises the per-example best point
      (``x`` itself), its success flag and its objective, so the clean point competes like any
      iterate (an example the model already gets wrong returns ``x`` unless a later iterate is
      also successful with a higher objective).  ``eps == 0`` or an empty batch returns a copy
      of ``x``.
    * Restart 0 runs on every example, each later restart only on the examples whose best
      point is not yet successful (``best_succ``); when there are none the restarts stop.
    * Within a restart, iterations ``t = 0 .. steps`` each make one forward pass on the current
      point ``xa`` and update the best point with :func:`_better` (successful beats
      unsuccessful, then the higher objective wins; ties keep the old point).  For
      ``t < steps`` a backward pass gives ``g = grad_x objective`` and the step is
      ``clamp(xa + alpha * sign(g), lo, hi)`` (L-inf; ``lo``/``hi`` the exact bounds of
      :func:`linf_bounds`, so iterates never leave the ball) or
      ``project_l2(xa + alpha * g / ||g||_2, xs, eps)`` (L2).  The point reached after the
      last step (``t == steps``) is only evaluated, not differentiated.
    * At the end the best points are projected once more: ``clamp_linf`` with the exact
      bounds (the random start, ``x + U[-eps, eps]`` rounded in the input dtype, is not
      clamped to them and may be the best point), or :func:`project_l2_exact`, which
      verifies the L2 bound in float64.

    Per-example bookkeeping.  A restart works on a compacted copy of its examples: ``idx``
    (their rows in the full batch) and, in the same order, ``xs``, ``ys``, ``lo``/``hi`` and
    the best-so-far triple ``b_x``/``b_succ``/``b_score``.  Updating these small tensors with
    ``torch.where`` needs no indexing into the full batch at every step; the triple is written
    back into ``best``/``best_succ``/``best_score`` with :func:`write_rows` (``index_copy_``)
    only when rows leave the batch and at the end of the restart.

    With ``early_stop`` an example becomes inactive once its *current iterate* is successful
    (``active &= ~succ``; the flag is about the iterate, not about ``best_succ``, so an
    example misclassified when clean still iterates until an iterate is misclassified).
    Removing rows needs ``nonzero()``, a host sync, so it is done every ``check_every``
    steps: every step on the CPU, every 5 on an accelerator (``_CHECK_EVERY``).  At a check
    the inactive rows are written back and dropped from every batch tensor, so later forward
    and backward passes are not spent on them; between checks they stay in the batch with
    their point frozen (``xa`` is only replaced where ``active``), so re-evaluating them
    changes nothing (the same point does not beat itself in :func:`_better`) and the result
    is the same as with a check every step.  Without ``early_stop`` every example runs all
    ``steps`` steps and keeps its best point by :func:`_better` (among successful points,
    the one with the highest objective).

    Apart from the random starts, each example's trajectory depends only on that example.
    The random start of a restart is drawn for its whole compacted batch at once from
    ``generator``, so an example's start depends on its position among the examples in that
    restart.

    Args:
        model: logits model (N, K), already in eval mode.
        x: inputs (N, ...) in [0, 1] (validated).
        y: labels (N,) long on ``x.device``; target labels if ``targeted``.
        eps: radius of the ``norm``-ball, float >= 0.
        alpha: step size, float >= 0.
        steps: gradient steps per restart, int >= 0 (0: only the start point is evaluated).
        restarts: number of restarts, int >= 1.
        norm: ``"inf"`` or ``"2"`` (normalised by :func:`check_norm`).
        targeted: whether success means ``argmax == y`` (else ``argmax != y``) and the
            objective is the negated loss of the target.
        loss: ``"ce"`` or ``"margin"``, see :func:`objective`.
        early_stop: drop examples from the batch once an iterate is successful (see above).
        random_start: start each restart uniformly in the ball (:func:`_random_start`),
            else at ``x``.
        generator: ``torch.Generator`` for the random starts, or None.

    Returns:
        The best point per example, (N, ...) in [0, 1] and in the ``eps``-ball around ``x``.
    """
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
    times radius ``eps * U^(1/d)``; then clipped to [0, 1]), where Pi also clips to the box [0, 1].

    Per example the best point seen over all steps and restarts is returned: a
    misclassifying point beats a correctly classified one, ties are broken by
    the loss.  Restarts after the first only run on examples not yet fooled.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: labels (N,) int in [0, K); target labels if ``targeted``.
        eps: radius of the ``norm``-ball, >= 0 (in [0, 1] pixel units); ``eps=0``
            returns a copy of ``x``.
        alpha: step size >= 0; default (None) ``2.5 * eps / steps`` (Madry et al.),
            ``2.5 * eps`` when ``steps=0``.
        steps: gradient steps per restart, int >= 0 (default 40; 0 evaluates the
            start point only).
        restarts: number of random restarts, int >= 1 (default 1).
        norm: ``"inf"`` (default) or ``"2"`` (aliases such as ``"linf"``, ``"l2"`` accepted).
        targeted: maximise the target class ``y`` instead of leaving the true class.
            Default False.
        loss: ``"ce"`` (cross-entropy, default) or ``"margin"`` (C&W margin
            ``max_{j!=y} z_j - z_y``; works when all logits are negative).
        early_stop: stop iterating on each example once an iterate is misclassified
            (targeted: classified as the target); robust accuracy is unchanged and
            compute is saved, so use it for evaluation. Default False.
        random_start: start uniformly inside the ball (default True), else at x.
        generator: ``torch.Generator`` for reproducible random starts (None: the
            global RNG).

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1] with ``||x_adv - x|| <= eps``
        (L-inf exactly, L2 up to 1e-6 relative rounding).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            ``eps``/``alpha`` are not real numbers, or ``steps``/``restarts`` are not ints.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, ``eps``/``alpha``
            negative or not finite, ``steps < 0``, ``restarts < 1``, unsupported ``norm``
            or ``loss``, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import pgd
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> gen = torch.Generator().manual_seed(0)
        >>> x_adv = pgd(model, x, y, eps=8 / 255, steps=5, generator=gen)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 8 / 255)
        (torch.Size([4, 1, 28, 28]), True)
        >>> x_l2 = pgd(model, x, y, eps=0.5, steps=5, norm="2", early_stop=True, generator=gen)
        >>> bool(((x_l2 - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
        True
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
    ``steps = ceil(min(255*eps + 4, 1.25 * 255*eps))``.  Deterministic; the result
    for an example does not depend on the rest of the batch (up to float rounding).  ``norm="2"``
    gives the L2 analogue (normalised-gradient steps).  Returns, like
    :func:`pgd`, the best iterate per example.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: labels (N,) int in [0, K); target labels if ``targeted``.
        eps: radius of the ``norm``-ball, >= 0 (in [0, 1] pixel units).
        alpha: step size >= 0; default ``1/255`` (one grey level, as in the paper).
        steps: number of iterations, int >= 0; default (None) the paper's
            ``ceil(min(255*eps + 4, 1.25 * 255*eps))``.
        norm: ``"inf"`` (default, the paper's attack) or ``"2"``.
        targeted: move towards the class ``y`` instead of away from it. Default False.
        loss: ``"ce"`` (cross-entropy, default) or ``"margin"`` (C&W margin).
        early_stop: stop iterating on each example once an iterate succeeds. Default False.

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1] with ``||x_adv - x|| <= eps``
        (L-inf exactly, L2 up to 1e-6 relative rounding).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            ``eps``/``alpha`` are not real numbers, or ``steps`` is not an int.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, ``eps``/``alpha``
            negative or not finite, ``steps < 0``, unsupported ``norm`` or ``loss``, or
            the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import bim
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> x_adv = bim(model, x, y, eps=4 / 255)  # 5 steps of 1/255
        >>> bool((x_adv - x).abs().max() <= 4 / 255)
        True
        >>> torch.equal(bim(model, x, y, eps=4 / 255), x_adv)  # deterministic
        True
    """
    if steps is None:
        e = check_nonneg(eps, "eps")
        steps = int(math.ceil(min(255 * e + 4, 1.25 * 255 * e)))
    y, eps, alpha, steps, restarts, norm = _common_checks(model, x, y, eps, alpha, steps, 1, norm, loss)
    with eval_mode(model):
        return _iterative(model, x, y, eps=eps, alpha=alpha, steps=steps, restarts=1, norm=norm,
                          targeted=targeted, loss=loss, early_stop=early_stop, random_start=False,
                          generator=None)
