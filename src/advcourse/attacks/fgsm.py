"""Fast gradient sign method (FGSM) and its L2 twin, the fast gradient method (FGM).

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015, eq. (3):  eta = eps * sign(grad_x J(theta, x, y)).
"""

from __future__ import annotations

import torch
from torch import nn

from ._utils import bview, l2_norm, objective, project_l2_exact, project_linf_exact
from ._validate import check_choice, check_inputs, check_logits, check_nonneg, eval_mode

__all__ = ["fgsm", "fgm"]


def _loss_grad(model, x, y, loss, targeted):
    """Gradient of the per-example objective (summed, so independent of N) w.r.t. x only."""
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xr)
        check_logits(logits, y)
        obj = objective(logits, y, loss, targeted)
        (g,) = torch.autograd.grad(obj.sum(), xr)
    return g


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    targeted: bool = False,
    loss: str = "ce",
) -> torch.Tensor:
    """Fast gradient sign method, Goodfellow et al. 2015, eq. (3).

    ``x_adv = clip_[0,1]( x + eps * sign(grad_x J(x, y)) )``; with ``targeted=True``
    the step *descends* the loss of the target class: ``x - eps * sign(grad_x J(x, t))``.

    Args:
        model: classifier returning logits (N, K). Put in eval mode during the
            attack; its previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: labels (N,) int64 in [0, K); target labels if ``targeted``.
        eps: L-inf radius >= 0 (in [0, 1] pixel units).
        targeted: see above.
        loss: ``"ce"`` (cross-entropy, as in the paper) or ``"margin"``
            (C&W logit margin max_{j!=y} z_j - z_y).

    Returns:
        x_adv with the shape/dtype/device of x, in [0, 1] and with
        ``(x_adv - x).abs().max() <= eps`` exactly.
    """
    y = check_inputs(model, x, y)
    eps = check_nonneg(eps, "eps")
    check_choice(loss, "loss", ("ce", "margin"))
    with eval_mode(model):
        g = _loss_grad(model, x, y, loss, targeted)
        if eps == 0:
            return x.detach().clone()
        return project_linf_exact(x.detach() + eps * g.sign(), x.detach(), eps)


def fgm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    targeted: bool = False,
    loss: str = "ce",
) -> torch.Tensor:
    """Fast gradient method, the L2 version of FGSM.

    ``x_adv = clip_[0,1]( x + eps * g / ||g||_2 )`` with ``g = grad_x J(x, y)``
    per example (an example with zero gradient is left unchanged).  This is the
    steepest-ascent step of Goodfellow et al. 2015 eq. (3) with the sign (the
    L-inf dual) replaced by the L2-normalised gradient.

    Args/Returns: as :func:`fgsm`, except ``eps`` is an L2 radius and the
    result satisfies ``||x_adv - x||_2 <= eps`` (up to 1e-6 relative rounding).
    """
    y = check_inputs(model, x, y)
    eps = check_nonneg(eps, "eps")
    check_choice(loss, "loss", ("ce", "margin"))
    with eval_mode(model):
        g = _loss_grad(model, x, y, loss, targeted)
        if eps == 0:
            return x.detach().clone()
        step = g / bview(l2_norm(g).clamp_min(1e-30), g)
        return project_l2_exact(x.detach() + eps * step, x.detach(), eps)
