"""The exact L∞ projection: inside the ball with no tolerance, and never further than needed."""

import torch

from advcourse.attacks._utils import linf_bounds, project_linf_exact


def test_projection_keeps_points_on_the_sphere():
    # A pixel at 86/255 pushed down by exactly eps = 0.3: rounding puts x - 0.3 a few ulps
    # outside the ball; the projection must move it by an ulp, not back to x.
    x = torch.full((1, 4), 86 / 255, dtype=torch.float32)
    x_adv = x - 0.3
    out = project_linf_exact(x_adv, x, 0.3)
    assert ((out.double() - x.double()).abs() <= 0.3).all()
    assert (out - x_adv).abs().max() < 1e-6


def test_bounds_are_exact_over_many_values():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.randint(0, 256, (10000,), generator=g).to(dtype) / 255
        for eps in (0.3, 0.1, 8 / 255, 1e-3):
            lo, hi = linf_bounds(x, eps)
            xd = x.double()
            assert ((xd - lo.double()) <= eps).all() and ((hi.double() - xd) <= eps).all()
            assert (lo >= 0).all() and (hi <= 1).all() and (lo <= x).all() and (x <= hi).all()
            # tight (float32, where the float64 check is exact): one ulp further out leaves the ball
            if dtype == torch.float32:
                assert (((xd - torch.nextafter(lo, torch.zeros_like(lo)).double()) > eps) | (lo == 0)).all()
            far = torch.rand(x.shape, generator=g, dtype=dtype) * 2 - 0.5
            out = project_linf_exact(far, x, eps)
            assert ((out.double() - xd).abs() <= eps).all() and (out >= 0).all() and (out <= 1).all()
