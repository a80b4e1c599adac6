"""Chapter 6 checkers: gradient masking."""

from __future__ import annotations

import torch


def check_straight_through(fn, trials: int = 10, seed: int = 0) -> str:
    """Chapter 6, exercise "A straight-through quantiser".

    ``fn(x, levels) -> x_q`` with ``x`` a float tensor of any shape in [0, 1] and ``levels`` ≥ 2
    must (a) in the forward pass round every value to the nearest of ``levels`` equally spaced
    grey levels in [0, 1] and (b) in the backward pass let the gradient through unchanged
    (∂L/∂x = ∂L/∂x_q), as BPDA does for a quantiser.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        levels = [2, 3, 8, 17, 256][t % 5]
        x = torch.rand(int(torch.randint(1, 6, (1,), generator=g)), 1, 7, 7, generator=g)
        x[..., 0, 0] = 0.0
        x[..., 0, 1] = 1.0
        xr = x.clone().requires_grad_(True)
        out = fn(xr, levels)
        assert isinstance(out, torch.Tensor) and out.shape == x.shape, \
            f"trial {t}: expected a tensor of shape {tuple(x.shape)}, got {getattr(out, 'shape', type(out))}"
        expected = torch.round(x * (levels - 1)) / (levels - 1)
        assert torch.allclose(out.detach(), expected, atol=1e-6), \
            f"trial {t}: the forward values are not x rounded to {levels} levels (is the step 1/(levels − 1)?)"
        assert out.requires_grad, f"trial {t}: the output is detached from x: no gradient can flow back"
        upstream = torch.randn(x.shape, generator=g)
        (grad,) = torch.autograd.grad(out, xr, upstream)
        assert torch.allclose(grad, upstream, atol=1e-6), \
            (f"trial {t}: the backward pass is not the identity (max deviation "
             f"{(grad - upstream).abs().max():.3g}); use x + (q(x) − x).detach()")
    return f"All {trials} checks passed: forward quantises, backward is the identity."
