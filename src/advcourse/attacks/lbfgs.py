"""Box-constrained L-BFGS attack of Szegedy et al., "Intriguing properties of
neural networks", ICLR 2014, section 4.1."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import Bounds, minimize
from torch import nn

from ._utils import bview, l2_norm
from ._validate import check_inputs, check_logits, check_nonneg, check_positive_int, eval_mode

__all__ = ["lbfgs", "lbfgs_untargeted"]


def lbfgs(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    c: float = 1.0,
    search_steps: int = 10,
    max_iter: int = 100,
) -> torch.Tensor:
    """Box-constrained L-BFGS (Szegedy et al. 2014, section 4.1), targeted.

    The paper approximates ``min ||r||_2  s.t.  f(x + r) = l,  x + r in [0, 1]``
    by
        minimise  c * |r| + loss_f(x + r, l)   subject to  x + r in [0, 1]

    solved with box-constrained L-BFGS, plus a line search over c.  We use
    ``|r| = ||r||_2^2`` (smooth at r = 0, where L-BFGS starts; like the paper's
    penalty it trades distortion against the loss as c varies, though a given c
    does not give the same minimiser under both) and ``loss_f`` = cross-entropy of
    the target ``l``.  The N examples' problems are separable, so they are solved
    as one flat vector by ``scipy.optimize.minimize(method="L-BFGS-B", bounds=[0,1])``
    with a per-example c: the joint problem has the same minimisers as the N
    separate ones, but the solver's iterates do not: its line searches, curvature
    pairs and stopping test (on the summed objective) are shared, so after
    ``max_iter`` iterations an example's point depends on the rest of the batch
    (by up to 0.5 in a pixel on a small MLP with ``max_iter=10``; with 500 it still
    decided whether one of 6 examples succeeded).  Run examples
    one at a time where that matters.  Given the batch, the result is deterministic.

    Line search over c (per example): a larger c penalises distortion more.
    The paper asks for the extreme c whose minimiser still satisfies
    ``f(x + r) = l`` -- with the penalty written as above, the *largest* such c,
    the least distorted solution when the solver finds the minimisers.  We
    bracket it geometrically (x10 while successful, /10 while failing) and then
    bisect in log-space, for ``search_steps`` solves in total.  Success is checked
    with the model on the point actually returned (in the dtype of x); the
    successful point with the smallest L2 distortion over the solves is returned
    (x itself where no c succeeded).  L-BFGS-B finds a local solution, so neither
    the minimal distortion nor success is guaranteed.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        target: target labels (N,) int in [0, K) (required: this is a targeted attack;
            see :func:`lbfgs_untargeted`).
        c: initial constant of the line search, > 0 (default 1).
        search_steps: number of L-BFGS-B solves (values of c) per example, int >= 1
            (default 10).
        max_iter: L-BFGS-B iterations per solve, int >= 1 (default 100).

    Returns:
        x_adv (N, ...) in [0, 1], same dtype/device as x.  Examples already classified
        as their target, and examples for which no c succeeded, are returned unchanged.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``target`` have the wrong
            dtype, ``c`` is not a real number, or ``search_steps``/``max_iter`` are not ints.
        ValueError: ``x`` outside [0, 1], bad ``target`` shape or labels, ``c`` not > 0,
            ``search_steps``/``max_iter`` < 1, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import lbfgs
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, target = torch.rand(4, 1, 8, 8), torch.tensor([5, 6, 7, 8])
        >>> x_adv = lbfgs(model, x, target, search_steps=2, max_iter=10)
        >>> x_adv.shape, x_adv.dtype, bool(x_adv.min() >= 0 and x_adv.max() <= 1)
        (torch.Size([4, 1, 8, 8]), torch.float32, True)
    """
    target = check_inputs(model, x, target, y_name="target")
    c = check_nonneg(c, "c", positive=True)
    search_steps = check_positive_int(search_steps, "search_steps")
    max_iter = check_positive_int(max_iter, "max_iter")
    x = x.detach()
    n = x.shape[0]
    with eval_mode(model):
        with torch.no_grad():
            logits0 = model(x)
        check_logits(logits0, target, name="target")
        if n == 0:
            return x.clone()
        opts = dict(device=x.device, dtype=torch.float64)
        const = torch.full((n,), c, **opts)
        c_ok = torch.zeros(n, **opts)  # largest successful c so far (0: none)
        c_bad = torch.full((n,), float("inf"), **opts)  # smallest failing c so far
        best = x.clone()
        best_d = torch.full((n,), float("inf"), **opts)
        already = logits0.argmax(1) == target
        best_d[already] = 0.0
        x64 = x.double().cpu().numpy().ravel()
        lb, ub = np.zeros_like(x64), np.ones_like(x64)

        for _ in range(search_steps):
            cw = const.to(x.dtype)

            def fun(v, cw=cw):  # bind this round's constant
                xp = torch.from_numpy(v).to(device=x.device, dtype=x.dtype).view_as(x).requires_grad_(True)
                with torch.enable_grad():
                    dist = ((xp - x) ** 2).flatten(1).sum(1)
                    obj = (cw * dist).sum() + F.cross_entropy(model(xp), target, reduction="sum")
                    (g,) = torch.autograd.grad(obj, xp)
                return float(obj.detach()), g.detach().double().cpu().numpy().ravel()

            res = minimize(fun, x64, jac=True, method="L-BFGS-B", bounds=Bounds(lb, ub), options={"maxiter": max_iter})
            xp = torch.from_numpy(res.x).to(device=x.device, dtype=x.dtype).view_as(x).clamp(0.0, 1.0)
            with torch.no_grad():
                ok = model(xp).argmax(1) == target
            d = l2_norm((xp - x).double())
            better = ok & (d < best_d)
            best = torch.where(bview(better, x), xp, best)
            best_d = torch.where(better, d, best_d)
            c_ok = torch.where(ok, torch.maximum(c_ok, const), c_ok)
            c_bad = torch.where(ok, c_bad, torch.minimum(c_bad, const))
            bracketed = (c_ok > 0) & torch.isfinite(c_bad)
            const = torch.where(
                bracketed, (c_ok * c_bad.clamp(max=1e300)).sqrt(), torch.where(ok, const * 10, const / 10)
            )
        return best


def lbfgs_untargeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
    """Untargeted convenience for :func:`lbfgs`: targets, per example, the
    runner-up class (highest clean logit other than ``y``).

    This is the box-constrained L-BFGS attack of Szegedy et al. 2014 (section 4.1) aimed
    at the class the model ranks second on the clean input, usually the nearest one.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K).
        **kwargs: passed on to :func:`lbfgs` (``c``, ``search_steps``, ``max_iter``).

    Returns:
        x_adv (N, ...) in [0, 1], same dtype/device as x (see :func:`lbfgs`).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            or an argument in ``kwargs`` is not accepted by :func:`lbfgs`.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, the model does not
            return (N, K) logits, or a value in ``kwargs`` is out of range.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import lbfgs_untargeted
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x = torch.rand(4, 1, 8, 8)
        >>> y = model(x).argmax(1)
        >>> x_adv = lbfgs_untargeted(model, x, y, search_steps=2, max_iter=10)
        >>> x_adv.shape
        torch.Size([4, 1, 8, 8])
    """
    y = check_inputs(model, x, y)
    with eval_mode(model), torch.no_grad():
        logits = model(x.detach())
    check_logits(logits, y)
    target = logits.scatter(1, y[:, None], float("-inf")).argmax(1)
    return lbfgs(model, x, target, **kwargs)
