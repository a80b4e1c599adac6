"""Scaled dot-product attention and multi-head attention, written out (Vaswani et al. 2017, §3.2).

Attention lets every query position take a weighted average of the value vectors, the weights
measuring how well the query matches each key (eq. 1):

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Multi-head attention runs h such attentions side by side on learned d_k = d_model / h dimensional
projections and concatenates their outputs (§3.2.2):

    MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

:class:`MultiHeadAttention` names its parameters exactly like :class:`torch.nn.MultiheadAttention`
(``in_proj_weight`` holds W^Q, W^K, W^V stacked, ``out_proj`` is W^O), so state dicts copy across in
both directions, torchvision's ViT ``self_attention`` modules load into it, and its ``forward`` takes
the same arguments. Tensors are batch-first, (N, T, d).

Masks follow PyTorch's convention for ``nn.MultiheadAttention``: a boolean mask is True where
attention is **blocked**; a float mask is **added** to the scores (0 keeps, −inf blocks). Beware that
:func:`torch.nn.functional.scaled_dot_product_attention` uses the opposite boolean convention
(True = may attend).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiHeadAttention", "causal_mask", "scaled_dot_product_attention"]


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (True = blocked) or float (additive) mask as a float mask of ``dtype``."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise ValueError(f"mask must be boolean (True = blocked) or floating (additive), got {mask.dtype}")
    return mask.to(dtype)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The (T, T) boolean mask that stops position t attending to positions after t (True = blocked).

    Row t is False for columns 0…t and True for t+1…T−1: the strict upper triangle.
    """
    if T < 1:
        raise ValueError(f"T must be positive, got {T}")
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(diagonal=1)  # (T, T)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None,
                                 dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d_k + mask) V, eq. 1 of Vaswani et al. (2017).

    Args:
        q: queries (..., T, d_k).
        k: keys (..., S, d_k).
        v: values (..., S, d_v).
        mask: broadcastable to (..., T, S); boolean True = query may NOT attend to that key,
            or float, added to the scores (0 keeps, −inf blocks).
        dropout: probability of dropping an attention weight (applied to the output only).

    Returns:
        ``(output, weights)``: output (..., T, d_v) and the attention weights (..., T, S), each row a
        probability vector over the S keys (before dropout), exactly 0 on blocked keys. A row whose
        keys are all blocked is NaN, as in PyTorch.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys S, got {k.shape[-2]} and {v.shape[-2]}")
    # Dividing by √d_k keeps the scores' variance near 1 whatever d_k, so softmax does not saturate (§3.2.1).
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S)
    if mask is not None:
        scores = scores + _additive(mask, scores.dtype)  # (..., T, S); −inf where blocked
    weights = scores.softmax(dim=-1)  # (..., T, S); rows sum to 1
    dropped = F.dropout(weights, p=dropout) if dropout > 0 else weights
    return dropped @ v, weights  # (..., T, d_v), (..., T, S)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, a readable drop-in for ``nn.MultiheadAttention(d, h, batch_first=True)``.

    Parameters (same names and shapes as PyTorch's):
        in_proj_weight: (3·d_model, d_model), the rows of W^Q, W^K and W^V stacked.
        in_proj_bias: (3·d_model,) or None when ``bias=False``.
        out_proj: ``nn.Linear(d_model, d_model)``, W^O.

    Args:
        d_model: model width d; must be divisible by ``n_heads``.
        n_heads: number of heads h; each works in d_k = d / h dimensions.
        dropout: dropout probability on the attention weights.
        bias: whether the projections have biases.
    """

    batch_first = True  # read by some PyTorch code that accepts nn.MultiheadAttention

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model < 1 or n_heads < 1:
            raise ValueError(f"d_model and n_heads must be positive, got {d_model} and {n_heads}")
        if d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model, self.n_heads, self.d_head, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.embed_dim, self.num_heads = d_model, n_heads  # PyTorch's attribute names
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model)) if bias else None
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        # PyTorch's initialisation, so a fresh module behaves like a fresh nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, d) → (N, h, T, d_k): each head gets its own slice of the features."""
        N, T, _ = x.shape
        return x.view(N, T, self.n_heads, self.d_head).transpose(1, 2)  # (N, h, T, d_k)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` (N, T, d) to ``key`` (N, S, d) / ``value`` (N, S, d).

        Args:
            key_padding_mask: (N, S); True (or −inf) marks padding keys nobody may attend to.
            need_weights: also return the attention weights.
            attn_mask: (T, S), or (N·h, T, S) for a mask per example and head as in PyTorch;
                True (or −inf) blocks query t from key s.
            average_attn_weights: return the weights averaged over heads (N, T, S) rather than per
                head (N, h, T, S).
            is_causal: apply :func:`causal_mask` (T = S required). Unlike PyTorch, where it is only a
                hint that ``attn_mask`` is causal, here it builds the mask when ``attn_mask`` is None.

        Returns:
            ``(output, weights)``: output (N, T, d) and the weights, or None unless ``need_weights``.
        """
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"query, key and value must be batch-first (N, T, d), got shapes {tuple(query.shape)}, "
                             f"{tuple(key.shape)}, {tuple(value.shape)}")
        if query.shape[-1] != self.d_model:
            raise ValueError(f"query must have {self.d_model} features, got {query.shape[-1]}")
        N, T, d = query.shape
        S = key.shape[1]
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)  # each (d, d)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q = self._split(F.linear(query, w_q, b_q))  # (N, h, T, d_k)
        k = self._split(F.linear(key, w_k, b_k))  # (N, h, S, d_k)
        v = self._split(F.linear(value, w_v, b_v))  # (N, h, S, d_k)

        mask = None  # float, broadcastable to (N, h, T, S)
        if is_causal and attn_mask is None:
            if T != S:
                raise ValueError(f"is_causal needs as many queries as keys, got T={T}, S={S}")
            attn_mask = causal_mask(T, device=query.device)
        if attn_mask is not None:
            if attn_mask.ndim == 3:  # PyTorch's (N·h, T, S) layout
                attn_mask = attn_mask.view(N, self.n_heads, T, S)
            elif attn_mask.ndim != 2:
                raise ValueError(f"attn_mask must be (T, S) or (N*h, T, S), got {tuple(attn_mask.shape)}")
            mask = _additive(attn_mask, q.dtype)  # (T, S) or (N, h, T, S)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (N, S):
                raise ValueError(f"key_padding_mask must be (N, S) = ({N}, {S}), got {tuple(key_padding_mask.shape)}")
            pad = _additive(key_padding_mask, q.dtype)[:, None, None, :]  # (N, 1, 1, S): same for all heads, queries
            mask = pad if mask is None else mask + pad

        out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(N, T, d)  # (N, T, d): the heads concatenated
        out = self.out_proj(out)  # (N, T, d)
        if not need_weights:
            return out, None
        return out, weights.mean(dim=1) if average_attn_weights else weights  # (N, T, S) or (N, h, T, S)
