"""Chapter 3 checkers: blind spots found by L-BFGS (Szegedy et al. 2014)."""

from __future__ import annotations

import torch


def _matrix_with_gap(rows: int, cols: int, gap: float, g: torch.Generator) -> torch.Tensor:
    """A random (rows, cols) matrix whose two largest singular values differ by the factor ``gap``."""
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g, dtype=torch.float64))
    k = min(rows, cols)
    s = torch.sort(torch.rand(k, generator=g, dtype=torch.float64), descending=True).values
    s[0] = s[1] * gap if k > 1 else 1.0 + s[0]
    s *= 10 ** float(torch.empty(1).uniform_(-1, 1, generator=g))  # scales from 0.1x to 10x
    return u[:, :k] @ torch.diag(s) @ v[:, :k].T


def check_operator_norm(fn, trials: int = 12, seed: int = 0) -> str:
    """Chapter 3, exercise "The operator norm by power iteration".

    ``fn(w) -> float`` with ``w`` a float64 matrix of shape (out, in) must return ‖w‖₂, the
    largest singular value, to a relative error below 1e-4.
    """
    g = torch.Generator().manual_seed(seed)
    shapes = [(10, 784), (100, 100), (784, 3), (1, 50), (50, 1), (37, 64)]
    for t in range(trials):
        rows, cols = shapes[t % len(shapes)]
        w = _matrix_with_gap(rows, cols, gap=1.5 + t / 4, g=g)
        got = fn(w.clone())
        if isinstance(got, torch.Tensor):
            assert got.numel() == 1, f"trial {t}: expected one number, got a tensor of shape {tuple(got.shape)}"
            got = got.item()
        assert isinstance(got, (int, float)), f"trial {t}: expected a float, got {type(got).__name__}"
        want = torch.linalg.matrix_norm(w, ord=2).item()
        frob = torch.linalg.matrix_norm(w).item()
        hint = " (that is the Frobenius norm, the root of the sum of ALL squared singular values)" \
            if abs(got - frob) <= 1e-4 * frob else ""
        assert abs(got - want) <= 1e-4 * want, (
            f"trial {t}: for a {rows}×{cols} matrix expected the largest singular value {want:.6g}, "
            f"got {got:.6g}{hint}")
    return f"All {trials} checks passed: your function computes the operator norm ‖W‖₂."
