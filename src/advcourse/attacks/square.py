"""Square Attack (L-inf), Andriushchenko, Croce, Flammarion & Hein, ECCV 2020."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._utils import bview, margin, project_linf_exact, rand, randint
from ._validate import check_inputs, check_logits, check_nonneg, check_positive_int, eval_mode

__all__ = ["square", "square_p_schedule"]

_CHECK_EVERY = 10


def square_p_schedule(p_init: float, it: int, n_queries: int) -> float:
    """Fraction p of pixels changed at iteration ``it`` (the authors' piecewise
    constant schedule, halving at iterations 10, 50, 200, 500, 1k, 2k, 4k, 6k, 8k
    when rescaled to a 10k-query budget).

    Andriushchenko et al. 2020, section 3.1 ("the schedule of p") and the authors' code.

    Args:
        p_init: initial fraction of pixels, in (0, 1] (not checked here; :func:`square`
            checks it).
        it: current iteration, int >= 0.
        n_queries: total query budget, int >= 1 (``it`` is rescaled by
            ``10000 / n_queries``).

    Returns:
        ``p_init / 2**k`` with k in 0..9 given by the rescaled iteration.

    Raises:
        TypeError: ``it`` or ``n_queries`` is not an int.
        ValueError: ``it < 0`` or ``n_queries < 1`` (no budget, no schedule; :func:`square`
            refuses ``n_queries=0`` too).

    Examples:
        >>> from advcourse.attacks import square_p_schedule
        >>> square_p_schedule(0.8, 0, 1000) == 0.8
        True
        >>> square_p_schedule(0.8, 100, 1000) == 0.8 / 16  # iteration 1000 of 10k
        True
        >>> square_p_schedule(0.8, 999, 1000) == 0.8 / 512
        True
    """
    it = check_positive_int(it, "it", allow_zero=True)
    n_queries = check_positive_int(n_queries, "n_queries")
    i = int(it / n_queries * 10000)
    for k, bound in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if i <= bound:
            return p_init / 2**k
    return p_init / 512


def _loss(logits, y, targeted):
    """Margin loss to *minimise*, (N,); the attack treats ``loss <= 0`` as success."""
    m = margin(logits, y)  # z_y - max_{j!=y} z_j
    return -m if targeted else m


def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    n_queries: int = 1000,
    p_init: float = 0.05,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Square Attack, L-inf version (Algorithm 1 and section 3.1 of the paper).

    Score-based (uses only the logits, no gradients).  Minimises the margin
    loss ``L = z_y - max_{j!=y} z_j`` (targeted: ``max_{j!=t} z_j - z_t``) by
    random search:

    * init: vertical stripes, ``x + eps * s`` with ``s in {-1, +1}`` per
      (channel, column), clipped to [0, 1];
    * each iteration, per example, draw a square window of side
      ``h = round(sqrt(p * H * W))`` (``1 <= h <= min(H, W) - 1``) at a uniform
      position and set the perturbation inside it to ``+-eps`` (one sign per
      channel), resampling the signs (twice) if that would not change the
      image; keep the proposal iff the loss decreases;
    * p follows :func:`square_p_schedule` starting at ``p_init``.

    Only examples not yet successful are queried; the loop stops when all are.
    The perturbation stays on the eps-sphere corners, so ``||x_adv - x||_inf <= eps``.

    Args:
        model: classifier returning logits (N, K); evaluated in eval mode, its
            previous mode is restored.  Only its outputs are used.
        x: images, float tensor (N, C, H, W) with values in [0, 1] and H, W >= 2.
        y: labels (N,) int in [0, K); target labels if ``targeted``.
        eps: L-inf radius >= 0 (in [0, 1] pixel units); ``eps=0`` returns a copy of ``x``.
        n_queries: query budget per example, int >= 1 (default 1000; the
            initialisation is one, the clean forward pass is not counted, so
            ``n_queries=1`` returns the better of x and the initial stripes).
        p_init: initial fraction of pixels in a square, in (0, 1] (default 0.05).
        targeted: reach the class ``y`` instead of leaving it. Default False.
        generator: ``torch.Generator`` for reproducibility (None: the global RNG).

    Returns:
        x_adv (N, C, H, W) in [0, 1] with ``(x_adv - x).abs().max() <= eps``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``x``/``y`` have the wrong dtype,
            ``eps``/``p_init`` are not real numbers, or ``n_queries`` is not an int.
        ValueError: ``x`` outside [0, 1] or not of shape (N, C, H, W) with H, W >= 2, bad
            ``y`` shape or labels, ``eps`` negative, ``n_queries < 1``, ``p_init`` not in
            (0, 1], or the model does not return (N, K) logits.

    Examples:
        >>> import torch
        >>> from advcourse.models import MnistCNN
        >>> from advcourse.attacks import square
        >>> _ = torch.manual_seed(0)
        >>> model = MnistCNN().eval()
        >>> x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
        >>> gen = torch.Generator().manual_seed(0)
        >>> x_adv = square(model, x, y, eps=0.1, n_queries=20, generator=gen)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1)
        (torch.Size([4, 1, 28, 28]), True)
    """
    y = check_inputs(model, x, y)
    eps = check_nonneg(eps, "eps")
    n_queries = check_positive_int(n_queries, "n_queries")
    p_init = check_nonneg(p_init, "p_init", positive=True)
    if p_init > 1:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    if x.ndim != 4 or x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f"x must be images of shape (N, C, H, W) with H, W >= 2, got {tuple(x.shape)}")
    x = x.detach()
    n, c, h, w = x.shape
    dev = x.device
    with eval_mode(model), torch.no_grad():
        logits0 = model(x)
        check_logits(logits0, y)
        if eps == 0 or n == 0:
            return x.clone()
        stripes = (randint(2, (n, c, 1, w), device=dev, generator=generator) * 2 - 1).to(x.dtype)
        x_best = (x + eps * stripes).clamp(0.0, 1.0)
        loss_best = _loss(model(x_best), y, targeted)
        loss0 = _loss(logits0, y, targeted)
        keep_clean = loss0 < loss_best  # the clean point may already be better (e.g. misclassified)
        x_best = torch.where(bview(keep_clean, x), x, x_best)
        loss_best = torch.minimum(loss0, loss_best)
        idx = torch.arange(n, device=dev)
        rows_h = torch.arange(h, device=dev)
        rows_w = torch.arange(w, device=dev)
        for it in range(1, n_queries):
            if it % _CHECK_EVERY == 1:  # occasional sync: drop finished examples
                idx = idx[loss_best[idx] > 0]
                if idx.numel() == 0:
                    break
            m = idx.numel()
            xs, xb = x[idx], x_best[idx]
            p = square_p_schedule(p_init, it, n_queries)
            s = min(max(int(round(math.sqrt(p * h * w))), 1), min(h, w) - 1)
            vh = (rand((m,), like=x, generator=generator) * (h - s + 1)).long().clamp(max=h - s)
            vw = (rand((m,), like=x, generator=generator) * (w - s + 1)).long().clamp(max=w - s)
            mh = (rows_h[None] >= vh[:, None]) & (rows_h[None] < vh[:, None] + s)
            mw = (rows_w[None] >= vw[:, None]) & (rows_w[None] < vw[:, None] + s)
            win = mh[:, None, :, None] & mw[:, None, None, :]  # (m, 1, H, W)
            signs = (randint(2, (m, c, 1, 1), device=dev, generator=generator) * 2 - 1).to(x.dtype)
            for _ in range(2):  # resample signs where the window would not change anything
                prop = torch.where(win, (xs + eps * signs).clamp(0.0, 1.0), xb)
                same = ((prop - xb).abs() < 1e-7).flatten(1).all(1)
                new_signs = (randint(2, (m, c, 1, 1), device=dev, generator=generator) * 2 - 1).to(x.dtype)
                signs = torch.where(bview(same, signs), new_signs, signs)
            prop = torch.where(win, (xs + eps * signs).clamp(0.0, 1.0), xb)
            loss_new = _loss(model(prop), y[idx], targeted)
            lb = loss_best[idx]
            improved = (loss_new < lb) & (lb > 0)
            x_best.index_copy_(0, idx, torch.where(bview(improved, xb), prop, xb))
            loss_best.index_copy_(0, idx, torch.where(improved, loss_new, lb))
        return project_linf_exact(x_best, x, eps)
