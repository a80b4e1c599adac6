"""Jacobian-based saliency map attack (JSMA), Papernot, McDaniel, Jha,
Fredrikson, Celik & Swami, "The Limitations of Deep Learning in Adversarial
Settings", EuroS&P 2016."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import check_choice, check_inputs, check_logits, check_nonneg, eval_mode

__all__ = ["jsma"]

_PAIR_BUDGET = 1 << 24  # max elements of one (examples x D x D) pair-score chunk


def _best_pairs(alpha, beta, domain, increase):
    """Eq. (10)/Alg. 3: argmax_{p<q in domain} -(a_p+a_q)(b_p+b_q) with a > 0, b < 0
    (a < 0, b > 0 when decreasing).  Returns p, q (N,) and found (N,)."""
    n, d = alpha.shape
    ps, qs, found = [], [], []
    chunk = max(1, _PAIR_BUDGET // (d * d))
    tri = torch.ones(d, d, dtype=torch.bool, device=alpha.device).triu(1)
    for s in range(0, n, chunk):
        a, b, dom = alpha[s : s + chunk], beta[s : s + chunk], domain[s : s + chunk]
        A = a[:, :, None] + a[:, None, :]
        B = b[:, :, None] + b[:, None, :]
        ok = (A > 0) & (B < 0) if increase else (A < 0) & (B > 0)
        ok &= dom[:, :, None] & dom[:, None, :] & tri
        score = torch.where(ok, -A * B, torch.full_like(A, -math.inf))
        flat = score.flatten(1).argmax(1)
        found.append(ok.flatten(1).any(1))
        ps.append(flat // d)
        qs.append(flat % d)
    return torch.cat(ps), torch.cat(qs), torch.cat(found)


def jsma(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    theta: float = 1.0,
    gamma: float = 0.145,
    variant: str = "z",
) -> torch.Tensor:
    """JSMA, Algorithms 2 and 3 of Papernot et al. 2016 (targeted, L0).

    Repeat while the prediction is not the target ``t``, fewer than
    ``floor(gamma * D / 2)`` iterations were made and the search domain Gamma
    is non-empty: compute the forward derivative (Jacobian) of F at x*
    (eq. 8), pick the pair of features (Alg. 3, pair saliency map)

        (p, q) = argmax_{p<q in Gamma} -alpha * beta   s.t. alpha > 0, beta < 0,
        alpha = sum_{i in {p,q}} dF_t/dx_i,  beta = sum_{i in {p,q}} sum_{j!=t} dF_j/dx_i,

    set ``x*_i <- clip_[0,1](x*_i + theta)`` for i in {p, q} and remove p, q
    from Gamma.  Gamma starts as the features that can still move in the
    direction of ``theta`` (x_i < 1 for theta > 0; x_i > 0 and the conditions
    alpha < 0, beta > 0 for theta < 0, the paper's "decreasing" variant).

    ``variant="z"`` differentiates the logits (JSMA-Z, as Carlini & Wagner call
    it), ``variant="f"`` the softmax probabilities (JSMA-F; there
    sum_j F_j = 1 so beta = -alpha exactly, which we use).  The pair search
    costs O(D^2) memory per example (chunked over the batch).  One forward and
    one (Z: two) input-gradient passes per iteration, batched over the
    examples still running; each example stops on its own.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.
        x: inputs, float tensor (N, ...) with values in [0, 1] (features are flattened).
        target: target labels (N,) int in [0, K).
        theta: change per selected feature, a non-zero number in [-1, 1] (default 1:
            set features to 1; negative values decrease them).
        gamma: maximum fraction of features changed, in (0, 1] (default 0.145, the
            paper's MNIST setting).
        variant: ``"z"`` (differentiate the logits, default) or ``"f"`` (the softmax).

    Returns:
        x_adv (N, ...) with the dtype/device of x, in [0, 1]; at most
        ``2 * floor(gamma * D / 2)`` features differ from ``x``.  Deterministic and
        independent of the batch up to float rounding.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``target`` have the wrong
            dtype, or ``gamma`` is not a real number.
        ValueError: ``x`` outside [0, 1], bad ``target`` shape or labels, ``theta`` not a
            non-zero number in [-1, 1] (also raised for a non-number ``theta``), ``gamma``
            not in (0, 1], unknown ``variant``, or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from advcourse.attacks import jsma
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
        >>> x, target = torch.rand(4, 1, 8, 8), torch.tensor([5, 6, 7, 8])
        >>> x_adv = jsma(model, x, target)  # at most 2 * floor(0.145 * 64 / 2) = 8 features
        >>> x_adv.shape, int((x_adv != x).flatten(1).sum(1).max()) <= 8
        (torch.Size([4, 1, 8, 8]), True)
    """
    target = check_inputs(model, x, target, y_name="target")
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta == 0 or abs(theta) > 1:
        raise ValueError(f"theta must be a non-zero number in [-1, 1], got {theta!r}")
    gamma = check_nonneg(gamma, "gamma", positive=True)
    if gamma > 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    check_choice(variant, "variant", ("z", "f"))
    x = x.detach()
    n = x.shape[0]
    flat = x.flatten(1).clone()
    d = flat.shape[1]
    increase = theta > 0
    max_iter = int(math.floor(d * gamma / 2))
    with eval_mode(model):
        with torch.no_grad():
            logits0 = model(x)
        check_logits(logits0, target, name="target")
        domain = flat < 1 if increase else flat > 0
        idx = torch.arange(n, device=x.device)[logits0.argmax(1) != target]
        for _ in range(max_iter):
            if idx.numel() == 0:
                break
            xa = flat[idx].requires_grad_(True)
            t = target[idx]
            with torch.enable_grad():
                logits = model(xa.view(-1, *x.shape[1:]))
                out = logits.softmax(1) if variant == "f" else logits
                f_t = out.gather(1, t[:, None]).squeeze(1)
                (alpha,) = torch.autograd.grad(f_t.sum(), xa, retain_graph=variant == "z")
                if variant == "z":
                    (total,) = torch.autograd.grad(out.sum(), xa)
                    beta = total - alpha
                else:
                    beta = -alpha
            with torch.no_grad():
                running = logits.argmax(1) != t
                p, q, found = _best_pairs(alpha, beta, domain[idx], increase)
                move = running & found
                rows = torch.arange(idx.numel(), device=x.device)
                upd = xa.detach().clone()
                for j in (p, q):
                    new = (upd[rows, j] + theta).clamp(0.0, 1.0)
                    upd[rows, j] = torch.where(move, new, upd[rows, j])
                    dom = domain[idx]
                    dom[rows, j] = dom[rows, j] & ~move
                    domain[idx] = dom
                flat[idx] = upd
                idx = idx[move]
        return flat.view_as(x).clamp(0.0, 1.0)
