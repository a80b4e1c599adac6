"""Chapter 4 checkers: PGD and the saddle point."""

from __future__ import annotations

import torch


def _pgd_step_reference(x_t, x, grad, eps, alpha):
    """Ascend along sign(grad), then clip into [x − ε, x + ε] ∩ [0, 1] (exact for L-inf)."""
    return torch.min(torch.max(x_t + alpha * grad.sign(), x - eps), x + eps).clamp(0.0, 1.0)


def check_pgd_step(fn, trials: int = 24, seed: int = 0) -> str:
    """Chapter 4, exercise "One step of PGD".

    ``fn(x_t, x, grad, eps, alpha) -> x_next`` takes the current iterate ``x_t``, the clean
    images ``x`` and the loss gradient ``grad`` at ``x_t`` (all of shape (N, C, H, W), images in
    [0, 1], ``x_t`` inside the ε-ball around ``x``), a radius ``eps`` ≥ 0 and a step ``alpha`` > 0.
    It must return the L-inf PGD iterate: one signed-gradient ascent step, projected back onto
    the intersection of the ε-ball around ``x`` and the box [0, 1].
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n, c, h = int(torch.randint(1, 6, (1,), generator=g)), int(torch.randint(1, 4, (1,), generator=g)), 5
        eps = [0.0, 0.03, 0.1, 0.3][t % 4]
        alpha = [0.01, 0.05, 0.5][t % 3]
        x = torch.rand(n, c, h, h, generator=g)
        x[torch.rand(x.shape, generator=g) < 0.3] = 0.0  # MNIST-like: many pixels on the box's faces
        x[torch.rand(x.shape, generator=g) < 0.2] = 1.0
        x_t = (x + (2 * torch.rand(x.shape, generator=g) - 1) * eps).clamp(0, 1)
        grad = torch.randn(x.shape, generator=g)
        grad[torch.rand(x.shape, generator=g) < 0.1] = 0.0  # zero gradient: that pixel stays put
        inputs = (x_t.clone(), x.clone(), grad.clone())
        x_next = fn(x_t.clone(), x.clone(), grad.clone(), eps, alpha)
        assert isinstance(x_next, torch.Tensor) and x_next.shape == x.shape, \
            f"trial {t}: expected a tensor of shape {tuple(x.shape)}, got {getattr(x_next, 'shape', type(x_next))}"
        assert x_next.min() >= 0 and x_next.max() <= 1, f"trial {t}: the step leaves the box [0, 1]"
        assert (x_next - x).abs().max() <= eps + 1e-6, \
            f"trial {t}: the step leaves the ε-ball around the clean image (ε = {eps}); did you project?"
        ref = _pgd_step_reference(*inputs, eps, alpha)
        err = (x_next - ref).abs().max().item()
        assert err <= 1e-6, (f"trial {t}: differs from the PGD step by up to {err:.3g} (ε = {eps}, α = {alpha}); "
                             "the step is α·sign(∇), then a clip to the ball around the CLEAN x, then to [0, 1]")
    return f"All {trials} checks passed: your function is one step of L∞ PGD."
