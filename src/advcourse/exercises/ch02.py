"""Chapter 2 checkers: the fast gradient sign method."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _small_network(d: int, generator: torch.Generator) -> nn.Module:
    """A random two-layer ReLU network on d inputs with 4 classes (no training needed)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return net.eval()


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    return g


def check_fgsm(fn, trials: int = 12, seed: int = 0) -> str:
    """Chapter 2, exercise "FGSM from scratch".

    ``fn(model, x, y, eps) -> x_adv`` with ``model`` returning logits, ``x`` (N, 1, H, W)
    in [0, 1], ``y`` (N,) int labels and ``eps`` ≥ 0 must return
    clip_[0,1](x + ε·sign(∇ₓJ(θ, x, y))) for the cross-entropy J — without changing
    ``x`` and without leaving gradients in the model's parameters.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        side = int(torch.randint(2, 6, (1,), generator=g))
        n = int(torch.randint(1, 9, (1,), generator=g))
        model = _small_network(side * side, g)
        x = torch.rand(n, 1, side, side, generator=g)
        x[torch.rand(x.shape, generator=g) < 0.2] = 0.0  # pixels on the box boundary
        x[torch.rand(x.shape, generator=g) < 0.2] = 1.0
        y = torch.randint(0, 4, (n,), generator=g)
        eps = [0.0, 0.1, 0.3][t % 3]
        x_before = x.clone()
        x_adv = fn(model, x, y, eps)
        assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape, \
            f"trial {t}: expected a tensor of shape {tuple(x.shape)}, got {getattr(x_adv, 'shape', type(x_adv))}"
        assert torch.equal(x, x_before), f"trial {t}: your function modified its input x in place"
        assert all(p.grad is None for p in model.parameters()), (
            f"trial {t}: gradients were left in the model's parameters (.grad); FGSM changes the input, "
            "not the weights — differentiate with torch.autograd.grad(loss, x_adv) instead of loss.backward()")
        x_adv = x_adv.detach()
        assert x_adv.min() >= 0 and x_adv.max() <= 1, f"trial {t}: x_adv leaves the box [0, 1]"
        assert (x_adv - x).abs().max() <= eps + 1e-6, f"trial {t}: x_adv leaves the max-norm ball (ε = {eps})"
        grad = _gradient(model, x, y)
        expected = (x + eps * grad.sign()).clamp(0, 1)
        decided = grad != 0  # where the gradient is exactly zero, any move within the ball is accepted
        gap = (x_adv - expected)[decided].abs().max().item() if decided.any() else 0.0
        assert gap <= 1e-5, (f"trial {t}: some pixel is {gap:.3g} away from x + ε·sign(∇ₓJ) clipped to [0, 1] "
                             f"(ε = {eps}); check the direction (up the loss) and the size of the step")
    return f"All {trials} checks passed: your FGSM matches ε·sign(∇ₓJ), stays in the box and leaves the weights alone."
