"""Chapter 8 checkers: the Transformer."""

from __future__ import annotations

import math

import torch


def _reference(q, k, v, mask):
    """softmax(Q Kᵀ / √d_k) V with a boolean mask, True = blocked (eq. 1 of Vaswani et al.)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return scores.softmax(-1) @ v


def check_attention(fn, trials: int = 16, seed: int = 0) -> str:
    """Chapter 8, exercise "Scaled dot-product attention with a mask".

    ``fn(q, k, v, mask) -> out`` takes queries ``q`` (B, T, d_k), keys ``k`` (B, S, d_k), values
    ``v`` (B, S, d_v) and ``mask`` (T, S) boolean, True where query t may NOT attend to key s (or
    None), and must return softmax(Q Kᵀ / √d_k) V, shape (B, T, d_v), with blocked keys given
    weight exactly 0. Every row of the mask leaves at least one key open.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        B, T, S = (int(torch.randint(1, 4, (1,), generator=g)), int(torch.randint(1, 7, (1,), generator=g)),
                   int(torch.randint(2, 8, (1,), generator=g)))
        d_k, d_v = [1, 4, 16, 64][t % 4], [3, 5][t % 2]
        q = torch.randn(B, T, d_k, generator=g, dtype=torch.float64)
        k = torch.randn(B, S, d_k, generator=g, dtype=torch.float64)
        v = torch.randn(B, S, d_v, generator=g, dtype=torch.float64)
        mask = None
        if t % 3:
            mask = torch.rand(T, S, generator=g) < 0.4
            mask[:, int(torch.randint(0, S, (1,), generator=g))] = False  # one key always open
        out = fn(q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone())
        assert isinstance(out, torch.Tensor) and out.shape == (B, T, d_v), \
            f"trial {t}: expected a tensor of shape {(B, T, d_v)}, got {getattr(out, 'shape', type(out))}"
        ref = _reference(q, k, v, mask)
        err = (out.double() - ref).abs().max().item()
        if err <= 1e-5:
            continue
        # Diagnose the usual mistakes.
        if mask is not None and (out.double() - _reference(q, k, v, ~mask)).abs().max() <= 1e-5:
            raise AssertionError(f"trial {t}: the mask is inverted: True means the key is BLOCKED")
        if mask is not None and (out.double() - _reference(q, k, v, None)).abs().max() <= 1e-5:
            raise AssertionError(f"trial {t}: the mask is ignored: blocked keys must get weight 0")
        if d_k > 1 and (out.double() - _reference(q * math.sqrt(d_k), k, v, mask)).abs().max() <= 1e-5:
            raise AssertionError(f"trial {t}: the scores are not divided by √d_k (d_k = {d_k})")
        if d_k > 1 and (out.double() - _reference(q / math.sqrt(d_k), k, v, mask)).abs().max() <= 1e-5:
            raise AssertionError(f"trial {t}: the scores are divided by d_k, not by √d_k (d_k = {d_k})")
        raise AssertionError(f"trial {t}: differs from softmax(QKᵀ/√d_k)V by up to {err:.3g}; is the softmax "
                             "taken over the keys (the last axis of the scores)?")
    return f"All {trials} checks passed: your function is scaled dot-product attention with a mask."
