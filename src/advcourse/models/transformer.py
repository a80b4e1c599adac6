"""The original encoder–decoder Transformer (Vaswani et al. 2017, "Attention is all you need").

A stack of encoder layers turns the source tokens into one vector per position (the "memory"); a
stack of decoder layers reads the target tokens so far, each attending only to earlier target
positions (masked self-attention) and to the whole memory (cross-attention), and predicts the next
token at every position:

    src (N, S) → embed·√d + PE → [self-attn → FFN] × n_enc_layers                      → memory (N, S, d)
    tgt (N, T) → embed·√d + PE → [masked self-attn → cross-attn(memory) → FFN] × n_dec_layers
               → linear → logits (N, T, tgt_vocab)

Every sub-layer is wrapped in a residual connection and a LayerNorm, after the addition as in the
paper (post-LN, x = LN(x + f(x))) or, with ``norm_first``, before the sub-layer (pre-LN,
x = x + f(LN(x)); Xiong et al. 2020), which can train without a learning-rate warm-up and is what GPT-2
and ViT use. Pre-LN stacks end with a final LayerNorm.

Attention is :class:`~advcourse.models.attention.MultiHeadAttention`; the layers' parameter names
(``self_attn``, ``cross_attn``, ``ffn.linear1``, ``ffn.linear2``, ``norm1``…``norm3``) match
:class:`torch.nn.TransformerEncoderLayer` / ``DecoderLayer`` up to the ``ffn.`` prefix and
``cross_attn`` (PyTorch: ``multihead_attn``).

Masks: ``src_pad_mask`` (N, S) and ``tgt_pad_mask`` (N, T) are True at padding tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .attention import MultiHeadAttention, causal_mask

__all__ = ["DecoderLayer", "EncoderLayer", "FeedForward", "Transformer", "TransformerConfig",
           "sinusoidal_positions", "warmup_schedule"]


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of :class:`Transformer`; the defaults are the paper's base model (Table 3).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes of source and target.
        d_model: width d of every token vector.
        n_heads: attention heads h (d_model divisible by h).
        d_ff: hidden width of the position-wise feed-forward network.
        n_enc_layers, n_dec_layers: number of encoder and decoder layers.
        dropout: P_drop on each sub-layer output, on embeddings + positions and on attention weights.
        max_len: longest sequence the sinusoidal position table covers.
        norm_first: pre-LN (True) instead of the paper's post-LN (False).
        tie_output: share the target embedding matrix with the output projection (§3.4).
        share_embeddings: also share it with the source embedding (needs src_vocab == tgt_vocab; the
            paper shares all three over a joint BPE vocabulary).
    """

    src_vocab: int
    tgt_vocab: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_enc_layers: int = 6
    n_dec_layers: int = 6
    dropout: float = 0.1
    max_len: int = 512
    norm_first: bool = False
    tie_output: bool = True
    share_embeddings: bool = False

    def __post_init__(self):
        for name in ("src_vocab", "tgt_vocab", "d_model", "n_heads", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("n_enc_layers", "n_dec_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got {self.d_model} and {self.n_heads}")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for sinusoidal positions, got {self.d_model}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.share_embeddings and self.src_vocab != self.tgt_vocab:
            raise ValueError(f"share_embeddings needs src_vocab == tgt_vocab, got {self.src_vocab} and "
                             f"{self.tgt_vocab}")


def sinusoidal_positions(max_len: int, d: int) -> torch.Tensor:
    """The (max_len, d) table of §3.5: PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…).

    Each pair of columns is a sinusoid whose wavelength grows geometrically from 2π to 10000·2π, so
    PE[pos + k] is a fixed linear function (a rotation per pair) of PE[pos]. Values in [−1, 1].
    """
    if max_len < 1 or d < 2 or d % 2:
        raise ValueError(f"max_len must be positive and d even and ≥ 2, got max_len={max_len}, d={d}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,): 1 / 10000^(2i/d)
    angles = pos * inv_freq  # (max_len, d/2)
    pe = torch.empty(max_len, d, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()  # interleaved: sin in even, cos in odd columns
    return pe.float()  # (max_len, d)


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, applied to each position separately (eq. 2). (…, d) → (…, d)."""

    def __init__(self, d_model: int, d_ff: int, activation: Callable[[torch.Tensor], torch.Tensor] = torch.relu):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))  # (…, d) → (…, d_ff) → (…, d)


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each with residual + LayerNorm (§3.1). (N, S, d) → (N, S, d).

    With no position information and no mask the layer is permutation-equivariant: permuting the
    input positions permutes the output the same way; only the positional encodings tell order.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def _sa(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        return self.dropout1(self.self_attn(x, x, x, key_padding_mask=pad_mask, need_weights=False)[0])

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, S, d); pad_mask (N, S), True at padding keys. Returns (N, S, d)."""
        if self.norm_first:  # pre-LN: the residual stream itself is never normalised
            x = x + self._sa(self.norm1(x), pad_mask)
            return x + self.dropout2(self.ffn(self.norm2(x)))
        x = self.norm1(x + self._sa(x, pad_mask))  # post-LN, the paper's LayerNorm(x + Sublayer(x))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the memory, FFN; each with residual + LayerNorm.

    Shapes: x (N, T, d), memory (N, S, d) → (N, T, d).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def _sa(self, x, tgt_mask, tgt_pad_mask):
        out = self.self_attn(x, x, x, key_padding_mask=tgt_pad_mask, attn_mask=tgt_mask, need_weights=False)[0]
        return self.dropout1(out)

    def _ca(self, x, memory, src_pad_mask):
        # Queries come from the decoder, keys and values from the encoder's output (§3.2.3).
        out = self.cross_attn(x, memory, memory, key_padding_mask=src_pad_mask, need_weights=False)[0]
        return self.dropout2(out)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                tgt_pad_mask: torch.Tensor | None = None, src_pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, T, d), memory (N, S, d); tgt_mask (T, T) True = blocked (usually :func:`causal_mask`);
        tgt_pad_mask (N, T), src_pad_mask (N, S) True at padding. Returns (N, T, d)."""
        if self.norm_first:
            x = x + self._sa(self.norm1(x), tgt_mask, tgt_pad_mask)
            x = x + self._ca(self.norm2(x), memory, src_pad_mask)
            return x + self.dropout3(self.ffn(self.norm3(x)))
        x = self.norm1(x + self._sa(x, tgt_mask, tgt_pad_mask))
        x = self.norm2(x + self._ca(x, memory, src_pad_mask))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class Transformer(nn.Module):
    """The encoder–decoder Transformer; ``forward(src, tgt)`` returns next-token logits.

    Tokens are integer ids: src (N, S) in [0, src_vocab), tgt (N, T) in [0, tgt_vocab), with
    S, T ≤ max_len. Logits (N, T, tgt_vocab): position t predicts tgt token t+1 from tgt[:, :t+1]
    (teacher forcing: feed ``tgt[:, :-1]``, score against ``tgt[:, 1:]``).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab, c.d_model)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab, c.d_model)
        # A fixed table, not a parameter; not saved in the state dict since it is a pure function of the config.
        self.register_buffer("positions", sinusoidal_positions(c.max_len, c.d_model), persistent=False)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
                                     for _ in range(c.n_enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first)
                                     for _ in range(c.n_dec_layers))
        # Pre-LN leaves the residual stream un-normalised, so each stack needs a last LayerNorm.
        self.enc_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.generator = nn.Linear(c.d_model, c.tgt_vocab, bias=False)
        # std d^-1/2, so the embeddings times √d (§3.4) have unit scale like the positions.
        for emb in dict.fromkeys([self.src_embed, self.tgt_embed]):  # once each if shared, in a fixed order
            nn.init.normal_(emb.weight, std=c.d_model ** -0.5)
        if c.tie_output:
            self.generator.weight = self.tgt_embed.weight  # one (tgt_vocab, d) matrix, used both ways

    def _embed(self, tokens: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (N, T), got {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={self.config.max_len}")
        x = embedding(tokens) * math.sqrt(self.config.d_model)  # (N, T, d)
        return self.dropout(x + self.positions[:T])  # (N, T, d)

    def encode(self, src: torch.Tensor, src_pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source tokens (N, S) → memory (N, S, d)."""
        x = self._embed(src, self.src_embed)  # (N, S, d)
        for layer in self.encoder:
            x = layer(x, src_pad_mask)
        return self.enc_norm(x)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_pad_mask: torch.Tensor | None = None,
               tgt_pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Target tokens (N, T) and memory (N, S, d) → logits (N, T, tgt_vocab), causally masked."""
        x = self._embed(tgt, self.tgt_embed)  # (N, T, d)
        mask = causal_mask(tgt.shape[1], device=tgt.device)  # (T, T): position t sees only ≤ t
        for layer in self.decoder:
            x = layer(x, memory, mask, tgt_pad_mask, src_pad_mask)
        return self.generator(self.dec_norm(x))  # (N, T, tgt_vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_pad_mask: torch.Tensor | None = None,
                tgt_pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """src (N, S), tgt (N, T) token ids; pad masks (N, S), (N, T) True at padding → logits (N, T, tgt_vocab)."""
        return self.decode(tgt, self.encode(src, src_pad_mask), src_pad_mask, tgt_pad_mask)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, bos_id: int, eos_id: int, max_len: int | None = None,
                      src_pad_mask: torch.Tensor | None = None, pad_id: int = 0) -> torch.Tensor:
        """Translate by taking the most likely next token until every sequence has produced ``eos_id``.

        Encodes once, then re-runs the decoder on the growing prefix (no key/value cache: quadratic
        in length, but short and clear). Returns (N, T') token ids starting with ``bos_id``, T' ≤
        ``max_len`` (default config.max_len); positions after a sequence's ``eos_id`` hold ``pad_id``.
        Call ``model.eval()`` first, or dropout stays on.
        """
        max_len = self.config.max_len if max_len is None else max_len
        if not 1 <= max_len <= self.config.max_len:
            raise ValueError(f"max_len must be in [1, {self.config.max_len}], got {max_len}")
        memory = self.encode(src, src_pad_mask)  # (N, S, d)
        ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)  # (N, 1)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)  # (N,)
        while ys.shape[1] < max_len and not done.all():
            logits = self.decode(ys, memory, src_pad_mask)[:, -1]  # (N, tgt_vocab): the last position only
            nxt = logits.argmax(dim=-1).masked_fill(done, pad_id)  # (N,)
            ys = torch.cat([ys, nxt[:, None]], dim=1)  # (N, t+1)
            done |= nxt == eos_id
        return ys


def warmup_schedule(d_model: int, warmup: int = 4000, factor: float = 1.0) -> Callable[[int], float]:
    """The learning rate of §5.3 (eq. 3) as a function of the step number:

        lrate(step) = factor · d_model^−0.5 · min(step^−0.5, step · warmup^−1.5)

    It grows linearly for ``warmup`` steps, peaks at step = warmup with d_model^−0.5 · warmup^−0.5
    (·factor), then decays as step^−0.5. Step 0 is treated as step 1. For
    ``torch.optim.lr_scheduler.LambdaLR``, which multiplies the optimiser's lr, give the optimiser
    lr=1 (the paper: Adam with β = (0.9, 0.98), ε = 1e-9).
    """
    if d_model < 1 or warmup < 1:
        raise ValueError(f"d_model and warmup must be positive, got {d_model} and {warmup}")

    def lrate(step: int) -> float:
        step = max(step, 1)
        return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)

    return lrate
