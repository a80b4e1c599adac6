"""DeepFool, Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016 (multi-class, L2)."""

from __future__ import annotations

import torch
from torch import nn

from ._utils import bview, l2_norm, success
from ._validate import check_inputs, check_logits, check_nonneg, check_positive_int, eval_mode

__all__ = ["deepfool"]


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    overshoot: float = 0.02,
    num_candidates: int = 10,
    max_iter: int = 50,
) -> torch.Tensor:
    """DeepFool for multi-class classifiers (Algorithm 2 of the paper), L2 version.

    Starting from ``x_0 = x``, while ``k(x_i) == y``: linearise the classifier
    at ``x_i`` and step to the nearest linearised decision boundary,

        w'_k = grad f_k(x_i) - grad f_y(x_i),   f'_k = f_k(x_i) - f_y(x_i)      (Alg. 2)
        l = argmin_{k != y} |f'_k| / ||w'_k||_2                                  (eq. 12)
        r_i = (|f'_l| + 1e-4) / ||w'_l||_2^2 * w'_l                             (eq. 13)

    accumulate ``r = sum_i r_i`` and set ``x_{i+1} = clip_[0,1](x + (1 + overshoot) r)``
    (the overshoot and the 1e-4 follow the authors' reference code; the clip to
    the box is our addition, and r keeps only what the clip let through, so
    ``x_{i+1} = clip_[0,1](x_i + (1 + overshoot) r_i)``).  For an affine classifier one step lands exactly
    on the boundary of eq. (4)-(6): r = |f(x)| w / ||w||^2 (times 1 + overshoot).

    Only ``y`` and the ``num_candidates - 1`` other classes with the highest clean
    logits are considered (as in the reference code, where ``y`` is the top class).  The loop runs batched over the
    examples still correctly classified; each example stops as soon as it is
    misclassified (or after ``max_iter`` iterations, returning its last iterate).
    Per iteration one forward pass (two when some examples were just fooled:
    the rest are evaluated again without them) and one vectorised backward pass
    for the ``num_candidates - 1`` gradients ``w'_k``.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: images, float tensor (N, ...) with values in [0, 1].
        y: true labels (N,) int in [0, K) (untargeted attack only).
        overshoot: relative overshoot of each step, float >= 0 (default 0.02, as in
            the authors' code); pushes the point across the linearised boundary.
        num_candidates: number of classes considered, int >= 2 (default 10; capped at K):
            the true class plus the ``num_candidates - 1`` other classes with the highest
            clean logits.
        max_iter: maximum number of linearisation steps per example, int >= 0 (default 50).

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1].  Examples already
        misclassified are returned unchanged; examples not fooled within ``max_iter``
        steps return their last iterate.  Deterministic, and each example's iterates depend on
        that example only, so the batched result equals the one-by-one result up to rounding
        (tested in float64 to 1e-6).  In float32 the two may differ by far more than rounding
        (1e-4 to 1e-2 in a pixel on an MNIST CNN with BatchNorm and max-pooling): the model's
        kernels round differently for different batch sizes (a convolution's reduction order,
        ~1e-6 in an activation), and where that breaks a near-tie at a kink of the model (a
        max-pool window whose two largest inputs are within 1e-5, a ReLU at 0) the gradient,
        hence the step direction, changes by ~1%, and the later steps follow it.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            ``overshoot`` is not a real number, or ``num_candidates``/``max_iter`` are not ints.
        ValueError: ``x`` outside [0, 1], bad ``y`` shape or labels, ``overshoot``
            negative or not finite, ``num_candidates < 2``, ``max_iter < 0``, or the model
            does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import deepfool
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()  # an affine classifier
        >>> x = torch.rand(4, 1, 8, 8)
        >>> y = model(x).argmax(1)  # attack the model's own predictions
        >>> x_adv = deepfool(model, x, y, max_iter=10)
        >>> x_adv.shape
        torch.Size([4, 1, 8, 8])
        >>> bool((model(x_adv).argmax(1) != y).all())
        True
    """
    y = check_inputs(model, x, y)
    overshoot = check_nonneg(overshoot, "overshoot")
    num_candidates = check_positive_int(num_candidates, "num_candidates")
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be >= 2, got {num_candidates}")
    max_iter = check_positive_int(max_iter, "max_iter", allow_zero=True)
    x = x.detach()
    with eval_mode(model):
        with torch.no_grad():
            logits0 = model(x)
        check_logits(logits0, y)
        k = min(num_candidates, logits0.shape[1])
        # candidate classes: top-(k-1) clean logits other than y
        cand = logits0.scatter(1, y[:, None], float("-inf")).topk(k - 1, dim=1).indices  # (N, k-1)
        eye = torch.eye(logits0.shape[1], device=x.device, dtype=logits0.dtype)  # one-hot rows
        x_adv = x.clone()
        idx = torch.arange(x.shape[0], device=x.device)[~success(logits0, y, False)]
        for it in range(max_iter):
            if idx.numel() == 0:
                break
            xi = x_adv[idx].requires_grad_(True)
            with torch.enable_grad():
                logits = model(xi)
            if it > 0:
                # examples fooled by the previous step stop here (their point is final); the rest are
                # evaluated again without them, so no gradient is spent on a finished example
                still = ~success(logits.detach(), y[idx], False)
                if not bool(still.all()):
                    idx = idx[still]
                    if idx.numel() == 0:
                        break
                    xi = x_adv[idx].requires_grad_(True)
                    with torch.enable_grad():
                        logits = model(xi)
            with torch.no_grad():
                ci = cand[idx]
                # f'_k = f_k - f_y for every candidate, and the one-hot differences that select it
                f = logits.gather(1, ci) - logits.gather(1, y[idx, None])  # (n, k-1)
                sel = (eye[ci] - eye[y[idx]][:, None, :]).transpose(0, 1)  # (k-1, n, K)
            # w'_k for all candidates in one vectorised backward pass (k-1 vector-Jacobian products)
            (w,) = torch.autograd.grad(logits, xi, grad_outputs=sel, is_grads_batched=True)  # (k-1, n, ...)
            with torch.no_grad():
                ratio = f.abs() / l2_norm(w.flatten(0, 1)).view(k - 1, -1).T.clamp_min(1e-12)  # eq. (12)
                l_hat = ratio.argmin(1)  # the first of equal minima, as a loop over candidates would pick
                rows = torch.arange(idx.numel(), device=x.device)
                best_f, best_w = f[rows, l_hat], w[l_hat, rows]
                wn = l2_norm(best_w).clamp_min(1e-12)
                r_i = best_w * bview((best_f.abs() + 1e-4) / wn**2, best_w)
                # x + (1 + overshoot)(r + r_i) with r the total step applied so far, i.e. the point
                # reached plus the scaled new step: the part of r the box clipped is dropped, so later
                # steps start from the point actually reached instead of pushing against the box
                x_adv.index_copy_(0, idx, (x_adv[idx] + (1 + overshoot) * r_i).clamp(0.0, 1.0))
        return x_adv
