"""Private helpers shared by the attacks: losses, norms, projections, RNG."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_NEG_INF = float("-inf")


def bview(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector (N,) so it broadcasts against x (N, ...)."""
    return v.view(-1, *([1] * (x.ndim - 1)))


def write_rows(idx: torch.Tensor, targets, values) -> None:
    """``target[idx] = value`` for each pair: the rows of a compacted batch back into the full one."""
    for target, value in zip(targets, values):
        target.index_copy_(0, idx, value)


def l2_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shape (N,)."""
    return t.flatten(1).norm(p=2, dim=1)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{j != y} z_j, shape (N,). Positive iff class y wins.

    Works for any logits (also all negative): the other classes are masked with -inf.
    """
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), _NEG_INF).amax(1)
    return z_y - other


def objective(logits: torch.Tensor, y: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    """Per-example quantity the attack *maximises*, shape (N,).

    * ``"ce"``: CE(z, y) untargeted, -CE(z, t) targeted;
    * ``"margin"``: max_{j!=y} z_j - z_y untargeted, z_t - max_{j!=t} z_j targeted.
    """
    if loss == "ce":
        ce = F.cross_entropy(logits, y, reduction="none")
        return -ce if targeted else ce
    m = margin(logits, y)
    return m if targeted else -m


def success(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Bool (N,): predicted class == target (targeted) or != true label (untargeted)."""
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


def linf_bounds(x: torch.Tensor, eps: float):
    """Exact box-and-ball bounds (lo, hi) with x - eps <= lo, hi <= x + eps and 0 <= lo <= hi <= 1.

    ``x ± eps`` is computed in float64 and rounded to x's dtype; where rounding
    moved a bound outside the ε-ball it is moved one ulp towards ``x``, which
    always suffices (rounding errs by at most half an ulp).
    """
    xw = x.to(torch.float64)
    lo = (xw - eps).clamp(min=0.0).to(x.dtype)
    hi = (xw + eps).clamp(max=1.0).to(x.dtype)
    lo = torch.where(xw - lo.to(torch.float64) > eps, torch.nextafter(lo, x), lo)
    hi = torch.where(hi.to(torch.float64) - xw > eps, torch.nextafter(hi, x), hi)
    return lo, hi


def project_linf_exact(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the box [0, 1] intersected with the L∞ ball of radius eps around x.

    Uses the exact bounds of :func:`linf_bounds`, so ``(x_adv - x).abs().max() <= eps``
    holds exactly (checked in float64) and no coordinate is moved further than the
    projection requires.
    """
    lo, hi = linf_bounds(x, eps)
    return torch.min(torch.max(x_adv, lo), hi)


def clamp_linf(x_new: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Fast in-loop projection with lo = max(x-eps, 0), hi = min(x+eps, 1) (one pass: lo <= hi)."""
    return torch.clamp(x_new, lo, hi)


def project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Rescale x_adv - x into the L2 ball of radius eps, then clamp to [0, 1] (in-loop version)."""
    delta = x_adv - x
    n = l2_norm(delta)
    factor = torch.clamp(eps / n.clamp_min(1e-30), max=1.0)
    return (x + delta * bview(factor, x)).clamp(0.0, 1.0)


def project_l2_exact(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Final L2 projection: rescale, clamp to the box, then *verify* ||x_adv - x||_2 <= eps.

    Rows that still exceed eps after float rounding are shrunk slightly (a few
    times); a row that cannot be fixed falls back to x itself (no sync).
    """
    x_adv = project_l2(x_adv, x, eps)
    wide = torch.float64 if x.dtype != torch.float64 else x.dtype
    for k in range(4):
        d = x_adv - x
        n = l2_norm(d)
        over = (n > eps) | (l2_norm(d.to(wide)) > eps)
        shrink = (eps / n.clamp_min(1e-30)) * (1.0 - 1e-6 * 4**k)
        fixed = (x + d * bview(shrink.clamp(max=1.0), x)).clamp(0.0, 1.0)
        x_adv = torch.where(bview(over, x), fixed, x_adv)
    d = x_adv - x
    over = (l2_norm(d) > eps) | (l2_norm(d.to(wide)) > eps)
    return torch.where(bview(over, x), x, x_adv)


def _gen_device(generator, device):
    return generator.device if generator is not None else device


def rand(shape, *, like: torch.Tensor, generator=None) -> torch.Tensor:
    """U[0, 1) samples with an optional generator (which may live on another device)."""
    device = _gen_device(generator, like.device)
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def randn(shape, *, like: torch.Tensor, generator=None) -> torch.Tensor:
    device = _gen_device(generator, like.device)
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def randint(high: int, shape, *, device, generator=None) -> torch.Tensor:
    return torch.randint(high, shape, generator=generator, device=_gen_device(generator, device)).to(device)


def input_grad(fn, x: torch.Tensor):
    """Return (value, grad) of ``fn(x).sum()`` w.r.t. x only (never touches params' .grad).

    ``fn`` returns a per-example tensor (N,); the sum keeps each example's
    gradient independent of the batch size.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        val = fn(x)
        (g,) = torch.autograd.grad(val.sum(), x)
    return val.detach(), g
