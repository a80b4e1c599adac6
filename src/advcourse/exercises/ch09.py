"""Chapter 9 checkers: the Vision Transformer."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def _conv_reference(x, weight, bias, p):
    """The patch embedding as torchvision computes it: a p×p convolution of stride p, flattened row by row."""
    return F.conv2d(x, weight, bias, stride=p).flatten(2).transpose(1, 2)  # (N, L, d)


@contextlib.contextmanager
def _no_convolution():
    """Make every 2-D convolution raise while the reader's function runs: the exercise is to do without."""
    saved = F.conv2d, torch.conv2d

    def refuse(*args, **kwargs):
        raise AssertionError("your function called a convolution; compute the embedding with reshapes and a "
                             "matrix product instead")

    F.conv2d = torch.conv2d = refuse
    try:
        yield
    finally:
        F.conv2d, torch.conv2d = saved


def check_patch_embedding(fn, trials: int = 12, seed: int = 0) -> str:
    """Chapter 9, exercise "The patch embedding is one linear map".

    ``fn(x, weight, bias, p) -> tokens`` takes images ``x`` (N, C, H, W) with H and W divisible by
    ``p``, a convolution kernel ``weight`` (d, C, p, p) and ``bias`` (d,). Without calling a
    convolution, it must return the patch tokens (N, L, d), L = HW/p², patches numbered row by row
    (left to right, top to bottom): exactly what ``conv2d(x, weight, bias, stride=p)`` gives once
    flattened to (N, d, L) and transposed.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        p = [2, 4, 7][t % 3]
        c = [1, 3][t % 2]
        n, d = 1 + t % 3, 5 + t
        h, w = p * (1 + t % 4), p * (2 + t % 3)  # non-square images catch a row/column mix-up
        x = torch.rand(n, c, h, w, generator=g)
        weight, bias = torch.randn(d, c, p, p, generator=g), torch.randn(d, generator=g)
        expected = _conv_reference(x, weight, bias, p)
        with _no_convolution():
            got = fn(x.clone(), weight.clone(), bias.clone(), p)
        assert isinstance(got, torch.Tensor), f"trial {t}: expected a tensor, got {type(got).__name__}"
        assert got.shape == expected.shape, (f"trial {t}: expected shape (N, L, d) = {tuple(expected.shape)} for "
                                             f"images {tuple(x.shape)} and p = {p}, got {tuple(got.shape)}")
        err = (got - expected).abs().max().item()
        if err > 1e-4:
            by_columns = _conv_reference(x.transpose(2, 3), weight.transpose(2, 3), bias, p)
            if (got - by_columns).abs().max() <= 1e-4:
                raise AssertionError(f"trial {t}: your patches are numbered column by column; number them row by "
                                     "row, as the convolution's output grid is flattened")
            raise AssertionError(f"trial {t}: differs from the convolution by up to {err:.3g} (p = {p}, C = {c}); "
                                 "flatten each patch in the same (channel, row, column) order as the kernel, "
                                 "or reorder the kernel to match your patches, and add the bias")
    return f"All {trials} checks passed: your reshape and matrix product is the strided convolution."


def _rollout_reference(maps):
    out = None
    for w in maps:
        a = w.mean(1)
        a = 0.5 * (a + torch.eye(a.shape[-1]))
        a = a / a.sum(-1, keepdim=True)
        out = a if out is None else a @ out
    return out


def _random_maps(n, heads, tokens, depth, g):
    return [torch.softmax(3 * torch.randn(n, heads, tokens, tokens, generator=g), -1) for _ in range(depth)]


def check_rollout(fn, trials: int = 8, seed: int = 0) -> str:
    """Chapter 9, exercise "Attention rollout".

    ``fn(maps) -> rollout`` takes a list of per-layer attention weights, layer 1 first, each
    (N, heads, T, T) with rows summing to 1, and returns the rollout (N, T, T) of Abnar & Zuidema:
    average over heads, add the identity for the residual connection and renormalise the rows
    (Ā = (A + I)/2), and multiply the layers so that the LAST layer is leftmost, R = Ā_L ⋯ Ā_1.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n, heads, tokens, depth = 1 + t % 3, 1 + t % 4, 3 + t, 1 + t % 4 + (t > 3)
        maps = _random_maps(n, heads, tokens, depth, g)
        expected = _rollout_reference(maps)
        got = fn([m.clone() for m in maps])
        assert isinstance(got, torch.Tensor), f"trial {t}: expected a tensor, got {type(got).__name__}"
        assert got.shape == expected.shape, (f"trial {t}: expected shape (N, T, T) = {tuple(expected.shape)}, got "
                                             f"{tuple(got.shape)}; did you average over the heads (dim 1)?")
        if (got - expected).abs().max() <= 1e-5:
            continue
        assert torch.allclose(got.sum(-1), torch.ones(n, tokens), atol=1e-4), \
            f"trial {t}: the rows of a rollout must sum to 1; renormalise (A + I) or use (A + I) / 2"
        if depth > 1:
            wrong_order = _rollout_reference(maps[::-1])
            if (got - wrong_order).abs().max() <= 1e-5:
                raise AssertionError(f"trial {t}: the layers are multiplied in the wrong order; the last layer acts "
                                     "on the output of the earlier ones, so it goes on the LEFT")
        no_residual = maps[0].mean(1)
        for w in maps[1:]:
            no_residual = w.mean(1) @ no_residual
        if (got - no_residual).abs().max() <= 1e-5:
            raise AssertionError(f"trial {t}: add the identity for the residual connection before multiplying")
        raise AssertionError(f"trial {t}: differs from the rollout by up to {(got - expected).abs().max():.3g}")
    return f"All {trials} checks passed: your function computes attention rollout."
