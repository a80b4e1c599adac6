"""Chapter 1 checkers: the linear explanation."""

from __future__ import annotations

import torch


def _worst_case_reference(w, b, x, y, eps):
    """Exact minimiser of ỹ(wᵀx' + b) over ‖x' − x‖∞ ≤ ε, x' ∈ [0, 1] (separable per pixel)."""
    ytilde = (2 * y - 1).to(x.dtype).unsqueeze(1)
    return (x - eps * ytilde * w.sign()).clamp(0, 1).clamp(x - eps, x + eps)


def check_linear_worst_case(fn, trials: int = 20, seed: int = 0) -> str:
    """Chapter 1, exercise "The exact worst case of a linear classifier".

    ``fn(w, b, x, y, eps) -> x_adv`` with ``w`` (d,), ``b`` a float, ``x`` (N, d) in
    [0, 1], ``y`` (N,) in {0, 1} and ``eps`` ≥ 0 must return the point of the
    box-constrained ε-ball around each x that does the most damage to a logistic
    regression σ(wᵀx + b), i.e. that minimises ỹ(wᵀx' + b) with ỹ = 2y − 1.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        d, n = int(torch.randint(2, 50, (1,), generator=g)), int(torch.randint(1, 20, (1,), generator=g))
        w = torch.randn(d, generator=g)
        w[torch.rand(d, generator=g) < 0.1] = 0.0  # zero weights: any move is optimal, none needed
        b = float(torch.randn(1, generator=g))
        x = torch.rand(n, d, generator=g)
        x[torch.rand(n, d, generator=g) < 0.2] = 0.0  # pixels on the box boundary
        x[torch.rand(n, d, generator=g) < 0.2] = 1.0
        y = torch.randint(0, 2, (n,), generator=g)
        eps = [0.0, 0.05, 0.25, 0.7][t % 4]
        x_adv = fn(w.clone(), b, x.clone(), y.clone(), eps)
        assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape, \
            f"trial {t}: expected a tensor of shape {tuple(x.shape)}, got {getattr(x_adv, 'shape', type(x_adv))}"
        assert x_adv.min() >= 0 and x_adv.max() <= 1, f"trial {t}: x_adv leaves the box [0, 1]"
        assert (x_adv - x).abs().max() <= eps + 1e-6, f"trial {t}: x_adv leaves the ε-ball (ε = {eps})"
        ytilde = (2 * y - 1).float()
        achieved = ytilde * (x_adv @ w + b)
        best = ytilde * (_worst_case_reference(w, b, x, y, eps) @ w + b)
        gap = (achieved - best).max().item()
        assert gap <= 1e-4, (f"trial {t}: the margin ỹ(wᵀx' + b) is {gap:.4g} above the optimum for some "
                             f"example (ε = {eps}); is every pixel pushed as far as the box allows?")
    return f"All {trials} checks passed: your perturbation is the exact worst case."
