"""Chapter 5 checkers: the C&W attacks and defensive distillation."""

from __future__ import annotations

import torch

from ..attacks import cw_objective


def check_f6(fn, trials: int = 30, seed: int = 0) -> str:
    """Chapter 5, exercise "The objective f6, by hand".

    ``fn(logits, target, kappa) -> f`` takes logits (N, K), target labels (N,) and a
    confidence κ ≥ 0, and must return the per-example objective (N,)

        f6 = max( max_{i ≠ t} Z_i − Z_t , −κ ),

    which is ≤ 0 exactly when the target t wins (by at least κ when f6 = −κ). The cases
    include ties, logits in the thousands (as a distilled network's) and many classes.
    """
    g = torch.Generator().manual_seed(seed)
    for trial in range(trials):
        n = int(torch.randint(1, 8, (1,), generator=g))
        k = int(torch.randint(2, 12, (1,), generator=g))
        scale = [1.0, 10.0, 1000.0][trial % 3]
        logits = torch.randn(n, k, generator=g) * scale
        if trial % 5 == 0:  # ties between the target and its strongest rival
            logits[:, 1] = logits[:, 0]
        target = torch.randint(0, k, (n,), generator=g)
        kappa = [0.0, 0.5, 20.0][trial % 3] * scale
        got = fn(logits.clone(), target.clone(), kappa)
        assert isinstance(got, torch.Tensor) and got.shape == (n,), \
            f"trial {trial}: expected a tensor of shape ({n},), got {getattr(got, 'shape', type(got))}"
        want = cw_objective(logits, target, "f6", targeted=True, kappa=kappa)
        assert torch.allclose(got.float(), want, rtol=1e-5, atol=1e-5 * scale), (
            f"trial {trial}: f6 differs from max(max_(i≠t) Z_i − Z_t, −κ) by up to "
            f"{(got.float() - want).abs().max():.4g} (κ = {kappa}); is the target itself excluded "
            f"from the max over the other classes, and is the result clipped at −κ?")
    return f"All {trials} checks passed: your f6 matches Carlini & Wagner's objective."
