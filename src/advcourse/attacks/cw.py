"""Carlini & Wagner attacks, "Towards Evaluating the Robustness of Neural
Networks", IEEE S&P 2017: the L2 attack with its seven objectives f1..f7 and
three box-constraint methods (section V), plus the L-inf (section VI.C) and L0
(section VI.B) attacks built on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import bview, margin, write_rows
from ._utils import success as _succ
from ._validate import (
    check_choice,
    check_inputs,
    check_logits,
    check_nonneg,
    check_positive_int,
    eval_mode,
)

__all__ = ["cw_l2", "cw_linf", "cw_l0", "cw_objective", "OBJECTIVES", "BOXES"]

OBJECTIVES = ("f1", "f2", "f3", "f4", "f5", "f6", "f7")
BOXES = ("tanh", "clipped", "projected")
_LN2 = math.log(2.0)
_NEG_INF = float("-inf")


def _others_max(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return v.masked_fill(F.one_hot(c, v.shape[1]).bool(), _NEG_INF).amax(1)


def cw_objective(
    logits: torch.Tensor, y: torch.Tensor, objective: str = "f6", *, targeted: bool = False, kappa: float = 0.0
) -> torch.Tensor:
    """The objectives f1..f7 of Carlini & Wagner 2017, section V.A, per example (N,).

    Each f satisfies ``f(x') <= 0  iff  the attack succeeded`` (targeted:
    ``C(x') = t``; untargeted: ``C(x') != y``, for f1/f4/f5 the necessary
    condition ``F_y <= 1/2``).  With Z = logits, F = softmax(Z), targeted:

    * f1 = -log2 F_t - 1  (the printed ``-loss_{F,t}(x') + 1`` with the sign and
      base fixed so that f1 <= 0 iff F_t >= 1/2)
    * f2 = (max_{i!=t} F_i - F_t)^+
    * f3 = softplus(max_{i!=t} F_i - F_t) - log 2
    * f4 = (0.5 - F_t)^+
    * f5 = log(2 - 2 F_t)  (the printed ``-log(2F_t - 2)`` is undefined for
      F_t < 1; this is the intended ``f5 <= 0 iff F_t >= 1/2``)
    * f6 = max(max_{i!=t} Z_i - Z_t, -kappa)      (the paper's choice)
    * f7 = softplus(max_{i!=t} Z_i - Z_t) - log 2

    Untargeted versions exchange the roles: ``max_{i!=t} . - ._t`` becomes
    ``._y - max_{i!=y} .`` and ``F_t >= 1/2`` becomes ``F_y <= 1/2``.
    ``kappa`` (confidence, eq. for f6) only enters f6.

    Args:
        logits: model outputs Z (N, K), any real values (not probabilities).
        y: labels (N,) long in [0, K): the true class (untargeted) or the target ``t``.
        objective: one of ``"f1"`` .. ``"f7"`` (:data:`OBJECTIVES`); default ``"f6"``.
        targeted: use the targeted form (towards ``y``) instead of the untargeted one.
            Default False.
        kappa: confidence >= 0 for f6 (``f6 >= -kappa``); ignored by the other objectives.
            Default 0.

    Returns:
        Float tensor (N,), differentiable w.r.t. ``logits``; ``<= 0`` where the attack
        has succeeded (see above for f1/f4/f5).

    Raises:
        ValueError: ``objective`` is not one of :data:`OBJECTIVES`.

    Examples:
        >>> import torch
        >>> from advcourse.attacks import cw_objective
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
        >>> y = torch.tensor([0, 0])  # example 0 is classified as 0, example 1 is not
        >>> (cw_objective(logits, y, "f6") <= 0).tolist()
        [False, True]
        >>> (cw_objective(logits, y, "f2", targeted=True) <= 0).tolist()  # targeted: reach class 0
        [True, False]
    """
    check_choice(objective, "objective", OBJECTIVES)
    c = y
    if objective in ("f6", "f7"):
        d = -margin(logits, c)  # max_{i!=c} Z_i - Z_c
        if not targeted:
            d = -d
        if objective == "f6":
            return torch.clamp(d, min=-kappa)
        return F.softplus(d) - _LN2
    logp = logits.log_softmax(1)
    logp_c = logp.gather(1, c[:, None]).squeeze(1)
    if objective in ("f2", "f3"):
        p = logp.exp()
        d = _others_max(p, c) - p.gather(1, c[:, None]).squeeze(1)
        if not targeted:
            d = -d
        return F.relu(d) if objective == "f2" else F.softplus(d) - _LN2
    if objective == "f1":
        return -logp_c / _LN2 - 1 if targeted else logp_c / _LN2 + 1
    if objective == "f4":
        p_c = logp_c.exp()
        return F.relu(0.5 - p_c) if targeted else F.relu(p_c - 0.5)
    # f5
    if targeted:
        log_rest = logp.masked_fill(F.one_hot(c, logp.shape[1]).bool(), _NEG_INF).logsumexp(1)  # log(1 - F_t)
        return _LN2 + log_rest
    return _LN2 + logp_c


def _cw_success(logits, y, targeted, kappa):
    """Success with confidence: margin towards the goal >= kappa (and > 0)."""
    m = margin(logits, y)
    m = m if targeted else -m
    return (m > 0) & (m >= kappa)


class _Adam:
    """Adam (Kingma & Ba 2015) on a batch tensor whose rows all step together.

    Rows may leave between steps (:meth:`keep`, when the batch is compacted); the moment
    estimates of the remaining rows stay with them, so each example's trajectory does not
    depend on the rest of the batch.
    """

    def __init__(self, var, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, (self.b1, self.b2), self.eps, self.t = lr, betas, eps, 0
        self.m = torch.zeros_like(var)
        self.v = torch.zeros_like(var)

    def step(self, var, g):
        """``var - lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected moments (a new tensor)."""
        self.t += 1
        self.m.mul_(self.b1).add_(g, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
        denom = (self.v / (1 - self.b2**self.t)).sqrt_().add_(self.eps)
        return var.addcdiv(self.m, denom, value=-self.lr / (1 - self.b1**self.t))

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the moment estimates of ``rows``."""
        self.m, self.v = self.m[rows], self.v[rows]


class _MaskedAdam:
    """Adam with a per-example 'active' mask: frozen examples keep their variable *and*
    their moment estimates (and step count), so each example's trajectory is independent
    of the rest of the batch."""

    def __init__(self, var, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = torch.zeros_like(var)
        self.v = torch.zeros_like(var)
        self.t = torch.zeros(var.shape[0], device=var.device, dtype=var.dtype)

    def step(self, var, g, active):
        """One Adam step on the rows where ``active`` (bool (N,)) is True."""
        a = bview(active, var)
        self.t = self.t + active.to(var.dtype)
        self.m = torch.where(a, self.b1 * self.m + (1 - self.b1) * g, self.m)
        self.v = torch.where(a, self.b2 * self.v + (1 - self.b2) * g * g, self.v)
        t = bview(self.t.clamp(min=1), var)
        mhat = self.m / (1 - self.b1**t)
        vhat = self.v / (1 - self.b2**t)
        return torch.where(a, var - self.lr * mhat / (vhat.sqrt() + self.eps), var)


def _to_var(x, box):
    if box == "tanh":
        return torch.atanh((2 * x - 1) * (1 - 1e-6))
    return x.clone()


def _from_var(w, box):
    if box == "tanh":
        return (torch.tanh(w) + 1) / 2
    if box == "clipped":
        return w.clamp(0.0, 1.0)
    return w  # projected: w is kept inside the box after every step


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    targeted: bool = False,
    c: float = 1e-3,
    kappa: float = 0.0,
    steps: int = 1000,
    lr: float = 0.01,
    binary_search_steps: int = 9,
    abort_early: bool = True,
    objective: str = "f6",
    box: str = "tanh",
) -> torch.Tensor:
    """Carlini & Wagner L2 attack (section VI.A).

    Per example minimise, over the change-of-variables w with
    ``x' = (tanh(w) + 1) / 2`` (section V.B, "change of variables"),

        ||x' - x||_2^2 + c * f(x')                                  (problem (2)/(3))

    with ``f = f6(x') = max(max_{i!=t} Z(x')_i - Z(x')_t, -kappa)`` by default,
    using Adam (lr 0.01).  A per-example binary search over ``c`` (starting at
    ``c``; x10 while never successful, then bisection) runs for
    ``binary_search_steps`` rounds; with ``abort_early`` an example stops a
    round when its loss has not decreased by 0.01% over ``steps // 10``
    iterations, and leaves the batch (the model is no longer evaluated on it;
    the authors' code stops the whole batch at once).  The result is, per
    example, the successful point with the smallest L2 distortion over all
    rounds (``x`` itself if none succeeded, or if ``x`` already succeeds).

    ``objective`` selects f1..f7 (:func:`cw_objective`) and ``box`` the
    box-constraint method of section V.B: ``"tanh"`` (change of variables),
    ``"clipped"`` (optimise w, evaluate f(clip(w)) -- "clipped gradient
    descent") or ``"projected"`` (clip w into [0, 1] after every step --
    "projected gradient descent"), so the paper's comparison can be rerun.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K), or target labels if ``targeted``.
        targeted: reach the class ``y`` instead of leaving it. Default False.
        c: initial constant of the binary search, > 0 (default 1e-3, as in the authors' code).
        kappa: confidence >= 0: success needs a logit margin of at least ``kappa``
            (default 0).
        steps: Adam iterations per binary-search round, int >= 0 (default 1000).
        lr: Adam learning rate > 0 (default 0.01).
        binary_search_steps: rounds of the binary search over ``c``, int >= 1 (default 9).
        abort_early: stop an example's round when its loss stalls (see above). Default True.
        objective: ``"f1"`` .. ``"f7"``, see :func:`cw_objective`; default ``"f6"``.
        box: ``"tanh"`` (default), ``"clipped"`` or ``"projected"`` (:data:`BOXES`).

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1].  Deterministic and
        independent of the batch up to float rounding.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            a float argument is not a real number, or an int argument is not an int.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, ``c``/``lr`` not > 0,
            ``kappa`` negative, ``steps < 0``, ``binary_search_steps < 1``, unknown
            ``objective`` or ``box``, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import cw_l2
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> x_adv = cw_l2(model, x, y, steps=20, binary_search_steps=2)
        >>> x_adv.shape, bool(x_adv.min() >= 0 and x_adv.max() <= 1)
        (torch.Size([4, 1, 8, 8]), True)
        >>> torch.equal(cw_l2(model, x, y, steps=20, binary_search_steps=2), x_adv)  # deterministic
        True
    """
    y = check_inputs(model, x, y)
    c = check_nonneg(c, "c", positive=True)
    kappa = check_nonneg(kappa, "kappa")
    steps = check_positive_int(steps, "steps", allow_zero=True)
    lr = check_nonneg(lr, "lr", positive=True)
    binary_search_steps = check_positive_int(binary_search_steps, "binary_search_steps")
    check_choice(objective, "objective", OBJECTIVES)
    check_choice(box, "box", BOXES)
    x = x.detach()
    n = x.shape[0]
    with eval_mode(model):
        with torch.no_grad():
            logits0 = model(x)
        check_logits(logits0, y)
        lower = torch.zeros(n, device=x.device, dtype=x.dtype)
        upper = torch.full((n,), 1e10, device=x.device, dtype=x.dtype)
        const = torch.full((n,), c, device=x.device, dtype=x.dtype)
        # an example that already succeeds (with confidence kappa) has distortion 0: x itself is
        # its answer and it is not optimised (the attack's first iterate would be x up to rounding)
        done = _cw_success(logits0, y, targeted, kappa)
        best_l2 = torch.where(done, 0.0, float("inf")).to(x.dtype)
        best_adv = x.clone()
        check_every = max(steps // 10, 1)
        todo = (~done).nonzero().squeeze(1)
        for _ in range(binary_search_steps if todo.numel() else 0):
            # This round's batch: every example still to do until it aborts.  Its best-so-far (l2,
            # point) and success flag are kept in batch order and written back when the batch shrinks.
            idx, xs, ys, cs = todo, x[todo], y[todo], const[todo]
            b_l2, b_adv = best_l2[todo], best_adv[todo]
            b_found = torch.zeros(todo.numel(), dtype=torch.bool, device=x.device)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            w = _to_var(xs, box)
            opt = _Adam(w, lr)
            prev = None
            for it in range(steps):
                w.requires_grad_(True)
                with torch.enable_grad():
                    xp = _from_var(w, box)
                    logits = model(xp)
                    l2 = ((xp - xs) ** 2).flatten(1).sum(1)
                    loss = l2 + cs * cw_objective(logits, ys, objective, targeted=targeted, kappa=kappa)
                    (g,) = torch.autograd.grad(loss.sum(), w)
                with torch.no_grad():
                    xp, l2, loss = xp.detach(), l2.detach(), loss.detach()
                    succ = _cw_success(logits.detach(), ys, targeted, kappa)
                    improve = succ & (l2 < b_l2)
                    b_l2 = torch.where(improve, l2, b_l2)
                    b_adv = torch.where(bview(improve, xs), xp, b_adv)
                    b_found |= succ
                    w = opt.step(w.detach(), g)
                    if box == "projected":
                        w = w.clamp(0.0, 1.0)
                    if abort_early and it % check_every == 0:
                        if prev is not None:
                            # the paper's abort: no 0.01% decrease over steps // 10 iterations, per example
                            going = loss <= prev * 0.9999
                            keep = going.nonzero().squeeze(1)
                            if keep.numel() == 0:
                                break
                            if keep.numel() < idx.numel():
                                leave = (~going).nonzero().squeeze(1)
                                write_rows(idx[leave], (best_l2, best_adv, found),
                                           (b_l2[leave], b_adv[leave], b_found[leave]))
                                idx, xs, ys, cs, w, loss = idx[keep], xs[keep], ys[keep], cs[keep], w[keep], loss[keep]
                                b_l2, b_adv, b_found = b_l2[keep], b_adv[keep], b_found[keep]
                                opt.keep(keep)
                        prev = loss
            write_rows(idx, (best_l2, best_adv, found), (b_l2, b_adv, b_found))
            # per-example binary search on c
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < 1e9, (lower + upper) / 2, torch.where(found, const, const * 10))
        return best_adv.clamp(0.0, 1.0)


def _tanh_var(x):
    return torch.atanh((2 * x - 1) * (1 - 1e-6))


def _hinge_f6(logits, y, targeted):
    """The f6 loss with kappa = 0 as used by the L-inf and L0 attacks: max(.., 0)."""
    return cw_objective(logits, y, "f6", targeted=targeted, kappa=0.0)


def _any_all_done(active) -> bool:
    return not bool(active.any())


def cw_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    targeted: bool = False,
    c: float = 1e-5,
    largest_c: float = 20.0,
    c_factor: float = 2.0,
    tau_decay: float = 0.9,
    min_tau: float = 1 / 256,
    steps: int = 1000,
    lr: float = 5e-3,
    max_rounds: int = 200,
) -> torch.Tensor:
    """Carlini & Wagner L-inf attack (section VI.C, the tau-decay scheme).

    ||delta||_inf is not differentiable in a useful way, so the paper minimises

        c * f(x + delta) + sum_i (|delta_i| - tau)^+                 (section VI.C)

    (f = f6 with kappa = 0, change of variables x' = (tanh(w)+1)/2, Adam).
    Start with tau = 1.  Each round optimises from the previous solution (warm
    start); when it succeeds (loss < 1e-4 * c and x' is adversarial),
    ``tau <- tau_decay * min(tau, ||x' - x||_inf)`` and the solution is kept;
    when it fails, ``c <- c_factor * c`` and the round is retried.  An example
    stops when ``tau < min_tau`` or ``c >= largest_c`` (defaults follow the
    authors' code) and returns its last successful point (x if none).
    All bookkeeping (tau, c, rounds) is per example and batched.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K), or target labels if ``targeted``.
        targeted: reach the class ``y`` instead of leaving it. Default False.
        c: initial constant > 0 (default 1e-5).
        largest_c: an example gives up once ``c`` would reach this, > 0 (default 20).
        c_factor: factor by which ``c`` grows after a failed round, > 0 (default 2).
        tau_decay: factor by which ``tau`` shrinks after a successful round, in (0, 1)
            (default 0.9).
        min_tau: an example stops once ``tau`` falls below this, > 0 (default 1/256).
        steps: Adam iterations per round, int >= 1 (default 1000).
        lr: Adam learning rate > 0 (default 5e-3).
        max_rounds: safety cap on the total number of rounds, int >= 1 (default 200).

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1]; deterministic and
        independent of the batch up to float rounding.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            a float argument is not a real number, or an int argument is not an int.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, ``c``/``largest_c``/
            ``c_factor``/``min_tau``/``lr`` not > 0, ``tau_decay`` not in (0, 1),
            ``steps``/``max_rounds`` < 1, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import cw_linf
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> x_adv = cw_linf(model, x, y, steps=20, max_rounds=3)
        >>> x_adv.shape, bool(x_adv.min() >= 0 and x_adv.max() <= 1)
        (torch.Size([4, 1, 8, 8]), True)
    """
    y = check_inputs(model, x, y)
    c = check_nonneg(c, "c", positive=True)
    largest_c = check_nonneg(largest_c, "largest_c", positive=True)
    c_factor = check_nonneg(c_factor, "c_factor", positive=True)
    tau_decay = check_nonneg(tau_decay, "tau_decay", positive=True)
    if tau_decay >= 1:
        raise ValueError(f"tau_decay must be in (0, 1), got {tau_decay}")
    min_tau = check_nonneg(min_tau, "min_tau", positive=True)
    steps = check_positive_int(steps, "steps")
    lr = check_nonneg(lr, "lr", positive=True)
    max_rounds = check_positive_int(max_rounds, "max_rounds")
    x = x.detach()
    n = x.shape[0]
    with eval_mode(model):
        with torch.no_grad():
            check_logits(model(x), y)
        opts = dict(device=x.device, dtype=x.dtype)
        tau = torch.ones(n, **opts)
        const = torch.full((n,), c, **opts)
        result = x.clone()
        todo = torch.ones(n, dtype=torch.bool, device=x.device)
        for _ in range(max_rounds):
            idx = todo.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xs, ys, ts, cs = x[idx], y[idx], tau[idx], const[idx]
            w = _tanh_var(result[idx])  # warm start from the previous solution
            opt = _MaskedAdam(w, lr)
            active = torch.ones(idx.numel(), dtype=torch.bool, device=x.device)
            sol = xs.clone()
            for it in range(steps):
                w.requires_grad_(True)
                with torch.enable_grad():
                    xp = (torch.tanh(w) + 1) / 2
                    logits = model(xp)
                    pen = F.relu((xp - xs).abs() - bview(ts, xs)).flatten(1).sum(1)
                    loss = cs * _hinge_f6(logits, ys, targeted) + pen
                    (g,) = torch.autograd.grad(loss.sum(), w)
                with torch.no_grad():
                    w = w.detach()
                    ok = active & (loss.detach() < 1e-4 * cs) & _succ(logits.detach(), ys, targeted)
                    sol = torch.where(bview(ok, xs), xp.detach(), sol)
                    active &= ~ok
                    w = opt.step(w, g, active)
                if it % 10 == 9 and _any_all_done(active):
                    break
            worked = ~active
            with torch.no_grad():
                actual = (sol - xs).abs().flatten(1).amax(1)
                new_tau = torch.where(worked, torch.minimum(ts, actual) * tau_decay, ts)
                new_c = torch.where(worked, cs, cs * c_factor)
                result.index_copy_(0, idx, torch.where(bview(worked, xs), sol, result[idx]))
                tau.index_copy_(0, idx, new_tau)
                const.index_copy_(0, idx, new_c)
                finished = (worked & (new_tau < min_tau)) | (~worked & (new_c >= largest_c))
                todo.index_copy_(0, idx, ~finished)
        return result.clamp(0.0, 1.0)


def _pixel_view(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H*W) summing channels (a 'pixel' is a location); else (N, D)."""
    if t.ndim == 4:
        return t.sum(1).flatten(1)
    return t.flatten(1)


def _pixel_mask_to_x(valid_pix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 4:
        return valid_pix.view(x.shape[0], 1, x.shape[2], x.shape[3]).expand_as(x)
    return valid_pix.view_as(x)


def cw_l0(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    targeted: bool = False,
    c: float = 1e-3,
    largest_c: float = 2e6,
    c_factor: float = 2.0,
    steps: int = 1000,
    lr: float = 0.01,
    max_rounds: int | None = None,
) -> torch.Tensor:
    """Carlini & Wagner L0 attack (section VI.B): iterative pixel elimination.

    Keep a set of *allowed* pixels (initially all; a pixel is a spatial
    location over all channels for (N, C, H, W) input, else a feature).  Each
    round runs the L2 attack restricted to the allowed pixels (forbidden ones
    are reset to x; warm start from the previous solution; c is doubled until
    the round succeeds).  From the adversarial x' found, with g the gradient of
    the round's loss ``c * f6(x') + ||x' - x||_2^2`` w.r.t. x', it freezes the
    allowed pixels i with the smallest ``|g_i| * |delta_i|`` (summed over channels):
    at least one, at most ``ceil(0.3 * sqrt(#changed pixels))``, stopping after the
    first one with ``|g_i| * |delta_i| > 0.01`` (as in the authors' code).  When a
    round fails (c would exceed ``largest_c``) the last successful x' is returned
    (x if none).  An example stops when no allowed pixel is left or its solution
    changes no pixel (by 1e-4 or more); one that ``x`` already solves is returned
    as ``x`` without any round.  Batched: all bookkeeping is per example.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: inputs, float tensor (N, ...) with values in [0, 1]; for (N, C, H, W) a pixel
            is a location (all channels), otherwise a feature.
        y: true labels (N,) int in [0, K), or target labels if ``targeted``.
        targeted: reach the class ``y`` instead of leaving it. Default False.
        c: initial constant > 0 (default 1e-3).
        largest_c: an example gives up once ``c`` would reach this, > 0 (default 2e6).
        c_factor: factor by which ``c`` grows after a failed round, > 0 (default 2).
        steps: Adam iterations per round, int >= 1 (default 1000).
        lr: Adam learning rate > 0 (default 0.01).
        max_rounds: safety cap on the total number of rounds, int >= 1; default (None)
            ``4 * #pixels + 64``.

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1]; deterministic and
        independent of the batch up to float rounding.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            a float argument is not a real number, or an int argument is not an int.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, ``c``/``largest_c``/
            ``c_factor``/``lr`` not > 0, ``steps``/``max_rounds`` < 1, or the model does
            not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import cw_l0
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
        >>> x_adv = cw_l0(model, x, y, steps=10, max_rounds=3)
        >>> x_adv.shape, bool(x_adv.min() >= 0 and x_adv.max() <= 1)
        (torch.Size([2, 1, 4, 4]), True)
    """
    y = check_inputs(model, x, y)
    c = check_nonneg(c, "c", positive=True)
    largest_c = check_nonneg(largest_c, "largest_c", positive=True)
    c_factor = check_nonneg(c_factor, "c_factor", positive=True)
    steps = check_positive_int(steps, "steps")
    lr = check_nonneg(lr, "lr", positive=True)
    x = x.detach()
    n = x.shape[0]
    n_pix = _pixel_view(x).shape[1]
    if max_rounds is None:
        max_rounds = 4 * n_pix + 64
    max_rounds = check_positive_int(max_rounds, "max_rounds")
    with eval_mode(model):
        with torch.no_grad():
            logits0 = model(x)
        check_logits(logits0, y)
        const = torch.full((n,), c, device=x.device, dtype=x.dtype)
        valid = torch.ones(n, n_pix, dtype=torch.bool, device=x.device)
        prev = x.clone()  # warm start / last successful solution
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        # an example x already solves changes no pixel: it is returned as x and not optimised (each round would
        # find x again, change no pixel and freeze one, #pixels rounds for nothing)
        todo = ~_succ(logits0, y, targeted)
        for _ in range(max_rounds):
            idx = todo.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xs, ys, cs = x[idx], y[idx], const[idx]
            vmask = _pixel_mask_to_x(valid[idx], xs).to(x.dtype)
            w = _tanh_var(prev[idx])
            opt = _MaskedAdam(w, lr)
            active = torch.ones(idx.numel(), dtype=torch.bool, device=x.device)
            sol, sol_g = xs.clone(), torch.zeros_like(xs)
            for it in range(steps):
                w.requires_grad_(True)
                with torch.enable_grad():
                    xp = vmask * (torch.tanh(w) + 1) / 2 + (1 - vmask) * xs
                    logits = model(xp)
                    f = _hinge_f6(logits, ys, targeted)
                    loss = cs * f + ((xp - xs) ** 2).flatten(1).sum(1)
                    gw, gx = torch.autograd.grad(loss.sum(), (w, xp))
                with torch.no_grad():
                    w = w.detach()
                    ok = active & (f.detach() < 1e-4) & _succ(logits.detach(), ys, targeted)
                    sol = torch.where(bview(ok, xs), xp.detach(), sol)
                    sol_g = torch.where(bview(ok, xs), gx, sol_g)
                    active &= ~ok
                    w = opt.step(w, gw, active)
                if it % 10 == 9 and _any_all_done(active):
                    break
            worked = ~active
            with torch.no_grad():
                # failed rounds: raise c (and retry) or give up
                new_c = torch.where(worked, cs, cs * c_factor)
                const.index_copy_(0, idx, new_c)
                give_up = ~worked & (new_c >= largest_c)
                # successful rounds: keep the solution and freeze pixels
                prev.index_copy_(0, idx, torch.where(bview(worked, xs), sol, prev[idx]))
                found.index_copy_(0, idx, found[idx] | worked)
                change = _pixel_view((sol - xs).abs() * sol_g.abs())
                changed = _pixel_view(((sol - xs).abs() >= 1e-4).to(x.dtype)) > 0
                v = valid[idx]
                n_valid = v.sum(1)
                tc = torch.where(v, change, torch.full_like(change, float("inf")))
                sorted_tc, order = tc.sort(dim=1, stable=True)
                limit = torch.ceil(0.3 * changed.sum(1).to(x.dtype).sqrt()).long().clamp(min=1)
                pos = torch.arange(n_pix, device=x.device).expand_as(sorted_tc)
                big = (sorted_tc > 0.01) & (pos < n_valid[:, None])
                first_big = torch.where(big.any(1), big.long().argmax(1) + 1, torch.full_like(n_valid, n_pix))
                count = torch.minimum(torch.minimum(limit, first_big), n_valid)
                freeze_sorted = pos < count[:, None]
                freeze = torch.zeros_like(v).scatter(1, order, freeze_sorted)
                freeze &= worked[:, None]
                v = v & ~freeze
                valid.index_copy_(0, idx, v)
                # done when no pixel is left to free, or when the solution changes no pixel: no pixel can be removed
                finished = give_up | (worked & ((v.sum(1) == 0) | (changed.sum(1) == 0)))
                todo.index_copy_(0, idx, ~finished)
        return torch.where(bview(found, x), prev, x).clamp(0.0, 1.0)
