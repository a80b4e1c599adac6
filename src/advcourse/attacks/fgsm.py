"""Fast gradient sign method (FGSM) and its L2 twin, the fast gradient method (FGM).

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015, eq. (3):  eta = eps * sign(grad_x J(theta, x, y)).
"""

from __future__ import annotations

import torch
from torch import nn

from ._utils import bview, l2_norm, project_l2_exact, project_linf_exact
from ._validate import check_choice, check_inputs, check_nonneg, eval_mode
from .gradients import loss_gradient

__all__ = ["fgsm", "fgm"]


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
    One forward and one backward pass; deterministic and independent of the batch
    up to float rounding (see :func:`~advcourse.attacks.deepfool`: rounding can grow at a kink of the model).

    Args:
        model: classifier returning logits (N, K). Put in eval mode during the
            attack; its previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: labels (N,) int64 in [0, K); target labels if ``targeted``.
        eps: L-inf radius >= 0 (in [0, 1] pixel units); ``eps=0`` returns a copy of ``x``.
        targeted: if True, move towards the class ``y`` (descend its loss) instead of
            away from it. Default False.
        loss: ``"ce"`` (cross-entropy, as in the paper; the default) or ``"margin"``
            (C&W logit margin max_{j!=y} z_j - z_y).

    Returns:
        x_adv with the shape/dtype/device of x, in [0, 1] and with
        ``(x_adv - x).abs().max() <= eps`` exactly.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x`` is not a floating tensor,
            ``y`` does not hold integers, or ``eps`` is not a real number.
        ValueError: ``x`` has values outside [0, 1] or non-finite ones, ``y`` has the
            wrong shape or labels outside [0, K), ``eps`` is negative or not finite,
            ``loss`` is not ``"ce"``/``"margin"``, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import fgsm
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> x_adv = fgsm(model, x, y, eps=0.1)
        >>> x_adv.shape
        torch.Size([4, 1, 28, 28])
        >>> bool((x_adv - x).abs().max() <= 0.1), bool(x_adv.min() >= 0 and x_adv.max() <= 1)
        (True, True)
    """
    y = check_inputs(model, x, y)
    eps = check_nonneg(eps, "eps")
    check_choice(loss, "loss", ("ce", "margin"))
    with eval_mode(model):
        g = loss_gradient(model, x, y, loss, targeted)
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

    Args:
        model: classifier returning logits (N, K). Put in eval mode during the
            attack; its previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: labels (N,) int64 in [0, K); target labels if ``targeted``.
        eps: L2 radius >= 0 (of the whole perturbation of one example, in [0, 1]
            pixel units); ``eps=0`` returns a copy of ``x``.
        targeted: if True, move towards the class ``y`` (descend its loss) instead of
            away from it. Default False.
        loss: ``"ce"`` (cross-entropy; the default) or ``"margin"``
            (C&W logit margin max_{j!=y} z_j - z_y).

    Returns:
        x_adv with the shape/dtype/device of x, in [0, 1] and with
        ``||x_adv - x||_2 <= eps`` per example (up to 1e-6 relative rounding).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x`` is not a floating tensor,
            ``y`` does not hold integers, or ``eps`` is not a real number.
        ValueError: ``x`` has values outside [0, 1] or non-finite ones, ``y`` has the
            wrong shape or labels outside [0, K), ``eps`` is negative or not finite,
            ``loss`` is not ``"ce"``/``"margin"``, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import fgm
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> x_adv = fgm(model, x, y, eps=1.0)
        >>> bool(((x_adv - x).flatten(1).norm(dim=1) <= 1.0 + 1e-6).all())
        True
    """
    y = check_inputs(model, x, y)
    eps = check_nonneg(eps, "eps")
    check_choice(loss, "loss", ("ce", "margin"))
    with eval_mode(model):
        g = loss_gradient(model, x, y, loss, targeted)
        if eps == 0:
            return x.detach().clone()
        step = g / bview(l2_norm(g).clamp_min(1e-30), g)
        return project_l2_exact(x.detach() + eps * step, x.detach(), eps)
