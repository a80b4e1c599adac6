"""Chapter 13 checkers: generative adversarial nets."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _optimal_value_reference(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """C(G) = Σ p log(p/(p+q)) + q log(q/(p+q)) in float64, with 0·log 0 = 0."""
    p, q = p.double(), q.double()
    s = p + q

    def term(a):
        return torch.where(a > 0, a * (a / s.where(s > 0, torch.ones_like(s))).log(), torch.zeros_like(a))

    return (term(p) + term(q)).sum()


def check_optimal_value(fn, trials: int = 20, seed: int = 0) -> str:
    """Chapter 13, exercise "The value of the game against the best discriminator".

    ``fn(p_data, p_g) -> C`` takes two probability vectors of the same length (≥ 0, each summing to 1;
    either may have zeros, even where the other is positive) and returns the value of the game when the
    discriminator is optimal, C(G) = max_D V(D, G) = Σ_x p_data(x) log D*(x) + p_g(x) log(1 − D*(x)) with
    D* = p_data / (p_data + p_g) — a float or a scalar tensor, in [−log 4, 0].
    """
    g = torch.Generator().manual_seed(seed)
    cases = [("equal", torch.full((5,), 0.2), torch.full((5,), 0.2)),
             ("disjoint supports", torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.3, 0.7])),
             ("one zero", torch.tensor([0.6, 0.4, 0.0]), torch.tensor([0.2, 0.3, 0.5]))]
    for t in range(trials):
        k = 2 + t % 7
        p, q = torch.rand(k, generator=g) ** 3, torch.rand(k, generator=g) ** 3
        p[torch.rand(k, generator=g) < 0.2] = 0.0
        p[0] = p[0] + 1e-3  # never all zero
        cases.append((f"random {t}", p / p.sum(), q / q.sum()))
    for name, p, q in cases:
        got = fn(p.clone(), q.clone())
        try:
            got = float(got)
        except (TypeError, ValueError, RuntimeError) as why:
            raise AssertionError(f"{name}: expected a number, got {type(got).__name__} ({why})") from None
        assert math.isfinite(got), (f"{name}: got {got}; where one density is 0 its term is 0·log 0 = 0 "
                                    f"(p_data = {p.tolist()}, p_g = {q.tolist()})")
        expected = _optimal_value_reference(p, q).item()
        if abs(got - expected) > 1e-5:
            hint = ""
            if abs(got - (expected + math.log(4)) / 2) < 1e-5:
                hint = " — that is the Jensen–Shannon divergence; C(G) = −log 4 + 2·JSD"
            elif abs(got + math.log(4)) < 1e-5:
                hint = " — that is −log 4, the value only when p_g = p_data"
            raise AssertionError(f"{name}: expected C(G) = {expected:.6f}, got {got:.6f}{hint} "
                                 f"(p_data = {[round(v, 3) for v in p.tolist()]}, "
                                 f"p_g = {[round(v, 3) for v in q.tolist()]})")
    return (f"All {len(cases)} checks passed: C(G) = −log 4 when p_g = p_data, 0 when the supports are disjoint, "
            "and −log 4 + 2·JSD in between.")


def check_nonsaturating_loss(fn, seed: int = 0) -> str:
    """Chapter 13, exercise "A generator loss that does not saturate".

    ``fn(fake_logits) -> loss`` takes the discriminator's logits ℓ (N,) on generated samples (D = σ(ℓ)) and
    returns the non-saturating generator loss −mean log D(G(z)) as a scalar tensor that autograd can
    differentiate — finite, with finite gradients, even for logits of ±200, where σ rounds to exactly 0 or 1.
    """
    g = torch.Generator().manual_seed(seed)
    tests = [torch.randn(16, generator=g) * 3, torch.tensor([0.0, 0.0]),
             torch.tensor([-200.0, -60.0, -20.0, 0.0, 20.0, 60.0, 200.0])]
    for i, logits in enumerate(tests):
        x = logits.clone().requires_grad_(True)
        loss = fn(x)
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0, \
            f"case {i}: expected a scalar tensor, got {getattr(loss, 'shape', type(loss).__name__)}"
        assert loss.requires_grad, f"case {i}: the loss does not depend on the logits through autograd"
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), (
            f"case {i}: got a loss of {loss.item()} and gradients {grad.tolist()} for logits {logits.tolist()}; "
            "σ(ℓ) rounds to 0 for very negative ℓ, so take the log of the sigmoid with logsigmoid")
        expected = -F.logsigmoid(logits.double()).mean()
        exp_grad = -(1 - torch.sigmoid(logits.double())) / len(logits)
        sat = F.logsigmoid(-logits.double()).mean()
        if abs(loss.item() - sat.item()) < 1e-5 and abs(sat.item() - expected.item()) > 1e-5:
            raise AssertionError(f"case {i}: that is the saturating loss log(1 − D(G(z))); the non-saturating one "
                                 "is −log D(G(z))")
        assert abs(loss.item() - expected.item()) <= 1e-5 * max(1.0, abs(expected.item())), (
            f"case {i}: expected {expected.item():.6f}, got {loss.item():.6f} (the mean over the batch of "
            "−log σ(ℓ))")
        assert torch.allclose(grad.double(), exp_grad, atol=1e-6), (
            f"case {i}: the gradient w.r.t. the logits should be −(1 − σ(ℓ))/N, got {grad.tolist()}")
    return ("All checks passed: your loss is −mean log D(G(z)), finite for any logit, and its gradient tends to "
            "−1/N, not 0, where D rejects the sample.")
