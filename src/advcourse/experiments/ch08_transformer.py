"""Chapter 8 — the Transformer (Vaswani et al. 2017, "Attention is all you need").

The chapter's experiments as small functions:

* why the scores are divided by √d_k: the variance of q·k, and the entropy and gradient of the
  softmax with and without the scaling (:func:`score_statistics`);
* the from-scratch multi-head attention against ``torch.nn.MultiheadAttention``
  (:func:`compare_with_torch`), masks checked on a trained model (:func:`mask_checks`);
* order: the sinusoidal table, and permutation equivariance with and without it
  (:func:`shuffle_test`); LayerNorm against BatchNorm on padded batches (:func:`norm_dependence`);
* the cost of a layer (:func:`cost_table`, :func:`time_attention`);
* a tiny encoder–decoder trained to sort sequences of numbers (:func:`train_sorter`), with the
  paper's warm-up schedule and label smoothing, its attention maps (:func:`cross_attention`);
* adversarial examples for it: PGD on the source token vectors (:func:`embedding_pgd`) and
  single-token substitutions (:func:`substitution_attack`).

Token ids: 0 = padding, 1 = begin, 2 = end, 3 + v for the number v ∈ [0, n_values). A source is
(N, max_len) with padding at the end; its target is (N, max_len + 2): begin, the sorted numbers,
end, then padding. Every model returns logits.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..cache import load_or_train
from ..models.attention import MultiHeadAttention, causal_mask
from ..models.transformer import Transformer, TransformerConfig, sinusoidal_positions, warmup_schedule
from ..runtime import device_of
from ..train import Shuffled, fit

PAD, BOS, EOS, FIRST = 0, 1, 2, 3  # special token ids; number v is token FIRST + v


@dataclass(frozen=True)
class Settings:
    """Chapter 8's settings, shared by the chapter and its claim tests.

    Task: sort ``min_len``…``max_len`` numbers drawn from ``n_values`` values. Model: ``layers``
    encoder and decoder layers of width ``d_model`` with ``n_heads`` heads and FFN width ``d_ff``
    (the paper's base model: 6, 512, 8, 2048). Training: ``n_train`` fresh random sequences,
    ``epochs`` passes in batches of ``batch_size``, Adam with the warm-up schedule (``warmup``
    steps), label smoothing ``label_smoothing``, dropout ``dropout``. Evaluation: ``n_test``
    sequences; the attacks use ``n_attack`` of them, ``pgd_steps`` steps and the ``radii`` (as
    fractions of half the distance between the two closest number tokens); ``n_subst`` sequences
    for the substitution attack. ``d_ks`` and ``n_keys`` for the score statistics.
    """

    n_values: int = 30
    min_len: int = 8
    max_len: int = 12
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 128
    layers: int = 2
    dropout: float = 0.0
    norm_first: bool = False  # the paper's post-LN
    n_train: int = 40_000
    epochs: int = 2
    batch_size: int = 128
    warmup: int = 200
    label_smoothing: float = 0.1
    n_test: int = 1_000
    n_attack: int = 200
    pgd_steps: int = 20
    radii: tuple = (0.02, 0.05, 0.1, 0.25)
    n_subst: int = 100
    d_ks: tuple = (1, 4, 16, 64, 256, 1024)
    n_keys: int = 32
    n_queries: int = 2_000

    def model_config(self) -> TransformerConfig:
        """The sorter's :class:`TransformerConfig` (shared embeddings, tied output, as in §3.4)."""
        vocab = FIRST + self.n_values
        return TransformerConfig(src_vocab=vocab, tgt_vocab=vocab, d_model=self.d_model, n_heads=self.n_heads,
                                 d_ff=self.d_ff, n_enc_layers=self.layers, n_dec_layers=self.layers,
                                 dropout=self.dropout, max_len=self.max_len + 2, norm_first=self.norm_first,
                                 share_embeddings=True, tie_output=True)

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # The base model's depth, heads, dropout and warm-up at width 64: at d = 512 greedy decoding alone
        # takes minutes on one CPU thread.
        return replace(self, d_model=64, d_ff=256, n_train=256, epochs=1, batch_size=64, n_test=64, n_attack=16,
                       pgd_steps=3, n_subst=4, n_queries=100)


#: The CPU profile: a 2 + 2-layer model of width 64 sorts up to 12 numbers.
FAST = Settings()
#: The GPU profile: the paper's base model (6 + 6 layers, d = 512, 8 heads, d_ff = 2048, dropout 0.1,
#: 4,000 warm-up steps) on longer sequences of more values.
FULL = Settings(n_values=100, min_len=16, max_len=32, d_model=512, n_heads=8, d_ff=2048, layers=6, dropout=0.1,
                n_train=400_000, epochs=10, batch_size=256, warmup=4000, n_test=10_000, n_attack=2_000,
                pgd_steps=50, n_subst=300, d_ks=(1, 4, 16, 64, 256, 1024, 4096), n_queries=1_000)


# --- the data --------------------------------------------------------------------------------

def sort_targets(src: torch.Tensor) -> torch.Tensor:
    """The target sequences for sources ``src`` (N, L) (padding = 0 at the end of each row):
    (N, L + 2) = begin, the source's numbers sorted in increasing order, end, padding."""
    n, L = src.shape
    lengths = (src != PAD).sum(1)  # (N,)
    big = torch.iinfo(src.dtype).max
    ordered = torch.where(src != PAD, src, big).sort(dim=1).values  # pads sort last
    ordered = torch.where(ordered == big, PAD, ordered)
    tgt = torch.full((n, L + 2), PAD, dtype=src.dtype, device=src.device)
    tgt[:, 0] = BOS
    tgt[:, 1:L + 1] = ordered
    tgt[torch.arange(n, device=src.device), lengths + 1] = EOS
    return tgt


def sorting_data(n: int, S: Settings = FAST, generator: torch.Generator | None = None, *,
                 lengths: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random sorting problems: sources (n, S.max_len) and targets (n, S.max_len + 2), int64.

    Each source holds a uniform number of tokens in ``lengths`` (default S.min_len…S.max_len), each
    a uniform value in [0, S.n_values) (repeats allowed), then padding.
    """
    lo, hi = lengths or (S.min_len, S.max_len)
    if not 1 <= lo <= hi <= S.max_len:
        raise ValueError(f"lengths must satisfy 1 <= lo <= hi <= {S.max_len}, got {(lo, hi)}")
    length = torch.randint(lo, hi + 1, (n,), generator=generator)  # (n,)
    values = torch.randint(0, S.n_values, (n, S.max_len), generator=generator) + FIRST
    src = torch.where(torch.arange(S.max_len)[None] < length[:, None], values, PAD)  # (n, max_len)
    return src, sort_targets(src)


# --- the model and its training --------------------------------------------------------------

def teacher_forced_logits(model: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Logits (N, T − 1, vocab) for every target position, fed the true prefix (teacher forcing):
    position t sees target tokens 0…t and predicts token t + 1."""
    return model(src, tgt[:, :-1], src_pad_mask=src == PAD, tgt_pad_mask=tgt[:, :-1] == PAD)


def sorting_step(label_smoothing: float):
    """The training step for :func:`advcourse.train.fit`: cross-entropy (with label smoothing ε)
    over the non-padding target tokens; logs the token accuracy (per-batch total, as fit expects)."""

    def step(model, batch):
        src, tgt = batch
        logits = teacher_forced_logits(model, src, tgt)  # (N, T-1, V)
        y = tgt[:, 1:]  # (N, T-1): what each position must predict
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD,
                               label_smoothing=label_smoothing)
        real = y != PAD
        correct = ((logits.argmax(-1) == y) & real).sum().item()
        return loss, {"token_acc": correct / real.sum().item() * len(src)}

    return step


def train_sorter(S: Settings = FAST, *, label_smoothing: float | None = None, warmup: bool = True,
                 seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) the sorting Transformer of ``S``.

    Adam (β = (0.9, 0.98), ε = 1e-9) with the learning rate of eq. (3): linear warm-up over
    ``S.warmup`` steps, then ∝ step^−1/2 — or, with ``warmup=False``, constant at that schedule's
    peak from the first step. ``label_smoothing`` defaults to ``S.label_smoothing``. The training
    sequences are drawn fresh from ``seed``. Returns ``(model, meta)``; ``meta["metrics"]`` holds
    ``loss`` and ``token_acc`` per epoch and ``seconds``.
    """
    ls = S.label_smoothing if label_smoothing is None else label_smoothing
    config = {**asdict(S.model_config()), "task": "sort", "n_values": S.n_values, "lengths": [S.min_len, S.max_len],
              "n_train": S.n_train, "epochs": S.epochs, "batch_size": S.batch_size, "warmup": S.warmup,
              "schedule": "warmup" if warmup else "constant", "label_smoothing": ls, "seed": seed}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return Transformer(S.model_config())

    def train(model, cfg):
        src, tgt = sorting_data(cfg["n_train"], S, torch.Generator().manual_seed(cfg["seed"]))
        lrate = warmup_schedule(S.d_model, cfg["warmup"])
        peak = lrate(cfg["warmup"])
        rate = lrate if cfg["schedule"] == "warmup" else (lambda step: peak)
        opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)  # lr × rate(step)
        history = fit(model, Shuffled(src, tgt, batch_size=cfg["batch_size"], seed=cfg["seed"]),
                      sorting_step(cfg["label_smoothing"]), epochs=cfg["epochs"], optimizer=opt,
                      schedule=lambda optimizer: LambdaLR(optimizer, rate), progress=progress,
                      desc=f"sorter (ε_ls = {cfg['label_smoothing']})")
        return {k: history[k] for k in ("loss", "token_acc", "seconds")}

    suffix = f"ls{ls:g}" + ("" if warmup else "-nowarmup")
    return load_or_train(f"ch08-sorter-{suffix}", config, build, train, device=device)


@torch.no_grad()
def evaluate_sorter(model: Transformer, src: torch.Tensor, tgt: torch.Tensor, batch_size: int = 500) -> dict:
    """Teacher-forced scores on ``src`` (N, L), ``tgt`` (N, L + 2).

    Returns ``token_acc`` (argmax right, over non-padding target tokens), ``seq_acc`` (every token
    of a sequence right — exactly when greedy decoding reproduces the whole target, since each
    greedy step then sees the true prefix), ``nll`` (mean negative log-likelihood per token, nats)
    and ``p_true`` (mean probability given to the right token), all floats.
    """
    model.eval()
    device = device_of(model)
    right = tokens = nll = p_true = 0.0
    seq_right = 0
    for s, t in zip(src.split(batch_size), tgt.split(batch_size)):
        s, t = s.to(device), t.to(device)
        logp = teacher_forced_logits(model, s, t).log_softmax(-1)  # (n, T-1, V)
        y = t[:, 1:]
        real = y != PAD
        lp = logp.gather(-1, y[..., None])[..., 0]  # (n, T-1)
        ok = (logp.argmax(-1) == y) | ~real
        right += (ok & real).sum().item()
        tokens += real.sum().item()
        seq_right += ok.all(1).sum().item()
        nll -= lp[real].sum().item()
        p_true += lp[real].exp().sum().item()
    return {"token_acc": right / tokens, "seq_acc": seq_right / len(src), "nll": nll / tokens,
            "p_true": p_true / tokens}


def greedy_sequence_accuracy(model: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> float:
    """Fraction of sources (N, L) whose greedy decoding equals the target (N, L + 2) exactly."""
    model.eval()
    src, tgt = src.to(device_of(model)), tgt.to(device_of(model))
    out = model.greedy_decode(src, BOS, EOS, max_len=tgt.shape[1], src_pad_mask=src == PAD, pad_id=PAD)
    out = F.pad(out, (0, tgt.shape[1] - out.shape[1]), value=PAD)  # (N, L + 2)
    return (out == tgt).all(1).float().mean().item()


# --- why divide by √d_k ----------------------------------------------------------------------

def softmax_jacobian_norm(p: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the softmax Jacobian diag(p) − p pᵀ for each row of p (…, n) → (…,).

    It is the factor by which the softmax can pass a gradient back to its scores: about
    1/√n for uniform weights, and 0 for a one-hot row (a saturated softmax passes nothing).
    """
    jac = torch.diag_embed(p) - p[..., :, None] * p[..., None, :]  # (…, n, n)
    return jac.flatten(-2).norm(dim=-1)


def score_statistics(d_ks, n_keys: int = 32, n_queries: int = 2000,
                     generator: torch.Generator | None = None) -> dict:
    """Dot-product scores of random queries and keys with i.i.d. N(0, 1) components, per d_k.

    For each d_k in ``d_ks``: ``n_queries`` queries (d_k,) each against ``n_keys`` keys. Returns
    ``{"d_k": [...], "var_raw": [...], "var_scaled": [...], and for "raw" and "scaled" (scores
    divided by √d_k): "<kind>_entropy" (mean softmax entropy, nats; ≤ log n_keys), "<kind>_max"
    (mean largest weight), "<kind>_jac" (median :func:`softmax_jacobian_norm`),
    "<kind>_saturated" (fraction of rows whose largest weight exceeds 0.99)}``; lists of floats.
    """
    out: dict = {"d_k": list(d_ks), "var_raw": [], "var_scaled": []}
    for kind in ("raw", "scaled"):
        for stat in ("entropy", "max", "jac", "saturated"):
            out[f"{kind}_{stat}"] = []
    for d in d_ks:
        q = torch.randn(n_queries, 1, d, generator=generator)
        k = torch.randn(n_queries, n_keys, d, generator=generator)
        raw = (q * k).sum(-1)  # (n_queries, n_keys): q·k
        out["var_raw"].append(raw.var().item())
        out["var_scaled"].append((raw / math.sqrt(d)).var().item())
        for kind, s in (("raw", raw), ("scaled", raw / math.sqrt(d))):
            p = s.softmax(-1)
            out[f"{kind}_entropy"].append(-torch.special.xlogy(p, p).sum(-1).mean().item())
            out[f"{kind}_max"].append(p.max(-1).values.mean().item())
            out[f"{kind}_jac"].append(softmax_jacobian_norm(p).median().item())
            out[f"{kind}_saturated"].append((p.max(-1).values > 0.99).float().mean().item())
    return out


# --- multi-head attention against PyTorch's ---------------------------------------------------

def compare_with_torch(d_model: int = 64, n_heads: int = 4, n: int = 3, T: int = 7,
                       dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    """Max |difference| of outputs and attention weights between a fresh ``nn.MultiheadAttention``
    and :class:`MultiHeadAttention` loaded from its state dict (strict), on random (n, T, d) input,
    for no mask, a causal mask, key padding, and both. Returns ``{case: (out_diff, weight_diff)}``."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(d_model, n_heads, batch_first=True, dtype=dtype).eval()
    ours = MultiHeadAttention(d_model, n_heads).to(dtype).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(n, T, d_model, dtype=dtype)
    pad = torch.zeros(n, T, dtype=torch.bool)
    pad[0, T - 2:] = True  # the first sequence ends in two padding tokens
    cases = {"no mask": {}, "causal": {"attn_mask": causal_mask(T)}, "key padding": {"key_padding_mask": pad},
             "causal + padding": {"attn_mask": causal_mask(T), "key_padding_mask": pad}}
    out = {}
    with torch.no_grad():
        for name, kw in cases.items():
            o_ref, w_ref = ref(x, x, x, average_attn_weights=False, **kw)
            o, w = ours(x, x, x, average_attn_weights=False, **kw)
            out[name] = ((o - o_ref).abs().max().item(), (w - w_ref).abs().max().item())
    return out


@torch.no_grad()
def mask_checks(model: Transformer, src: torch.Tensor, tgt: torch.Tensor, generator=None) -> dict:
    """Masks verified on a model, for sources (N, L) without padding and targets (N, T).

    ``future``: max |Δ logits| at positions ≤ t when the target token at t + 1 is changed (should
    be 0: the causal mask); ``present``: min over t of the max |Δ logits| at position t when token
    t itself is changed (> 0: position t sees its own token). ``pad_masked`` / ``pad_unmasked``:
    max |Δ logits| when random tokens are appended to each source (up to the model's max_len),
    masked as padding, and the same without the mask.
    """
    model.eval()
    src, tgt = src.to(device_of(model)), tgt.to(device_of(model))
    base = model(src, tgt)
    V = model.config.tgt_vocab
    future, present = 0.0, float("inf")
    for t in range(tgt.shape[1] - 1):
        changed = tgt.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1 - FIRST) % (V - FIRST) + FIRST  # another number token
        out = model(src, changed)
        future = max(future, (out[:, :t + 1] - base[:, :t + 1]).abs().max().item())
        present = min(present, (out[:, t + 1] - base[:, t + 1]).abs().max().item())
    n_extra = model.config.max_len - src.shape[1]
    if n_extra < 1:
        raise ValueError(f"src must be shorter than the model's max_len={model.config.max_len}")
    extra = torch.randint(FIRST, V, (len(src), n_extra), generator=generator).to(src.device)
    padded = torch.cat([src, extra], dim=1)
    pad = torch.zeros_like(padded, dtype=torch.bool)
    pad[:, src.shape[1]:] = True
    masked = (model(padded, tgt, src_pad_mask=pad) - base).abs().max().item()
    unmasked = (model(padded, tgt) - base).abs().max().item()
    return {"future": future, "present": present, "pad_masked": masked, "pad_unmasked": unmasked}


# --- order: positions, permutations, normalisation ---------------------------------------------

def source_vectors(model: Transformer, src: torch.Tensor) -> torch.Tensor:
    """The source token vectors before positions are added: embedding · √d_model (§3.4), (N, S, d)."""
    return model.src_embed(src) * math.sqrt(model.config.d_model)


def encode_vectors(model: Transformer, vectors: torch.Tensor, src_pad_mask: torch.Tensor | None = None,
                   positions: bool = True) -> torch.Tensor:
    """The encoder run on token vectors (N, S, d) instead of token ids, with the sinusoidal
    positions added (or, with ``positions=False``, left out). Returns the memory (N, S, d); with
    positions it equals ``model.encode(src)`` for ``vectors = source_vectors(model, src)``."""
    x = vectors + model.positions[:vectors.shape[1]] if positions else vectors
    x = model.dropout(x)
    for layer in model.encoder:
        x = layer(x, src_pad_mask)
    return model.enc_norm(x)


def logits_from_vectors(model: Transformer, vectors: torch.Tensor, src_pad: torch.Tensor, tgt: torch.Tensor,
                        positions: bool = True) -> torch.Tensor:
    """Teacher-forced logits (N, T − 1, V) with the source given as token vectors (N, S, d)."""
    memory = encode_vectors(model, vectors, src_pad, positions)
    return model.decode(tgt[:, :-1], memory, src_pad, tgt[:, :-1] == PAD)


@torch.no_grad()
def shuffle_test(model: Transformer, src: torch.Tensor, tgt: torch.Tensor,
                 generator: torch.Generator | None = None) -> dict:
    """Shuffle the tokens of full-length sources ``src`` (N, L) (no padding), one permutation per
    sequence, and compare (a) the encoder's output: ``equivariance`` = max |enc(shuffled) −
    shuffled(enc)|, relative to max |enc|, with and without positions; (b) the sorter's logits for
    the target ``tgt`` (the same: sorting ignores the order), max |Δ|, with and without positions,
    and its teacher-forced sequence accuracy on the shuffled sources (with positions)."""
    model.eval()
    src, tgt = src.to(device_of(model)), tgt.to(device_of(model))
    perm = torch.stack([torch.randperm(src.shape[1], generator=generator) for _ in range(len(src))])  # (N, L)
    perm = perm.to(src.device)
    shuffled = src.gather(1, perm)
    out = {}
    for name, pos in (("with positions", True), ("without positions", False)):
        mem = encode_vectors(model, source_vectors(model, src), positions=pos)  # (N, L, d)
        mem_s = encode_vectors(model, source_vectors(model, shuffled), positions=pos)
        permuted = mem.gather(1, perm[..., None].expand_as(mem))
        logits = logits_from_vectors(model, source_vectors(model, src), src == PAD, tgt, pos)
        logits_s = logits_from_vectors(model, source_vectors(model, shuffled), shuffled == PAD, tgt, pos)
        out[name] = {"equivariance": ((mem_s - permuted).abs().max() / mem.abs().max()).item(),
                     "logit_change": (logits_s - logits).abs().max().item()}
    out["seq_acc"] = evaluate_sorter(model, src, tgt)["seq_acc"]
    out["seq_acc_shuffled"] = evaluate_sorter(model, shuffled, tgt)["seq_acc"]
    return out


def norm_dependence(model: Transformer, src: torch.Tensor, companions: torch.Tensor, extra_pad: int = 12) -> dict:
    """How a sequence's normalised token vectors depend on the rest of its batch.

    The first source of ``src`` (N, L) is the probe; its real tokens' input vectors (embedding · √d
    + positions) are normalised (a) in the batch ``src``; (b) in the same batch padded with
    ``extra_pad`` more padding tokens; (c) beside other ``companions`` (M, L) instead of src[1:].
    For LayerNorm over the d features of each token and for BatchNorm over the N·L positions of the
    batch (training-mode statistics; padding included, or the real tokens only), returns
    ``{name: (max |Δ| for (b), max |Δ| for (c))}`` against (a). LayerNorm's are exactly 0.
    """
    src, companions = src.to(device_of(model)), companions.to(device_of(model))
    n_real = int((src[0] != PAD).sum())

    def normalise(batch, kind):
        d = model.config.d_model
        pe = sinusoidal_positions(batch.shape[1], d).to(batch.device)
        x = (source_vectors(model, batch) + pe).detach()  # (N, L, d)
        if kind.startswith("LayerNorm"):
            y = F.layer_norm(x, (d,))  # each token over its own d features
        else:
            rows = x.reshape(-1, d) if "included" in kind else x[batch != PAD]  # statistics over these rows
            mean, var = rows.mean(0), rows.var(0, unbiased=False)
            y = (x - mean) / torch.sqrt(var + 1e-5)  # each feature over the batch's positions
        return y[0, :n_real]  # the probe's real tokens (n_real, d)

    more = F.pad(src, (0, extra_pad), value=PAD)
    other = torch.cat([src[:1], companions])
    out = {}
    with torch.no_grad():
        for kind in ("LayerNorm (per token)", "BatchNorm, padding included", "BatchNorm, real tokens only"):
            base = normalise(src, kind)
            out[kind] = ((normalise(more, kind) - base).abs().max().item(),
                         (normalise(other, kind) - base).abs().max().item())
    return out


def batchnorm_formula_check(x: torch.Tensor) -> dict:
    """``nn.BatchNorm1d`` (training mode, no affine) on x (N, d) against (x − μ)/√(σ² + ε), the
    standard deviation, and (x − μ)/σ², the variance (the notes' formula): max |difference| each."""
    bn = nn.BatchNorm1d(x.shape[1], affine=False).train()
    y = bn(x)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    return {"divide by std": (y - (x - mean) / torch.sqrt(var + bn.eps)).abs().max().item(),
            "divide by variance": (y - (x - mean) / (var + bn.eps)).abs().max().item()}


# --- the cost of a layer -------------------------------------------------------------------------

def cost_table(d: int, ns, k: int = 3, r: int = 64) -> dict:
    """Multiply–adds per layer (the paper's Table 1, with constants): self-attention's scores and
    weighted sum 2·n²·d, its four projections 4·n·d², a recurrent layer n·d² (one d × d matrix per
    step; an LSTM has 4), a convolution k·n·d², restricted self-attention (neighbourhood r) 2·r·n·d.
    Returns ``{n: {name: count}}`` for each n in ``ns``."""
    return {n: {"self-attention (n²·d part)": 2 * n * n * d, "attention projections": 4 * n * d * d,
                "recurrent": n * d * d, "convolution": k * n * d * d,
                "restricted self-attention": 2 * min(r, n) * n * d} for n in ns}


def time_attention(d: int, ns, n_heads: int = 4, repeats: int = 5, seed: int = 0) -> dict:
    """Measured seconds (median of ``repeats``) of one self-attention layer's two parts on one
    sequence of length n, width d: the projections (Q, K, V and output: n·d² work) and the scores
    with the weighted sum (n²·d work). Returns ``{"n": [...], "projections": [...], "scores": [...]}``."""
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d, n_heads).eval()
    out = {"n": list(ns), "projections": [], "scores": []}

    def median_time(fn, *args):
        fn(*args)  # warm up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    def projections(x):  # W^Q, W^K, W^V (stacked) and W^O: n·d² work
        F.linear(x, mha.in_proj_weight, mha.in_proj_bias)
        mha.out_proj(x)

    def scores(q, k, v):  # softmax(QKᵀ/√d_k) V: n²·d work
        ((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])).softmax(-1) @ v

    with torch.no_grad():
        for n in ns:
            x = torch.randn(1, n, d)
            q = mha._split(x)  # (1, h, n, d/h)
            out["projections"].append(median_time(projections, x))
            out["scores"].append(median_time(scores, q, q, q))
    return out


# --- inside the trained sorter ----------------------------------------------------------------

@torch.no_grad()
def cross_attention(model: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> list[torch.Tensor]:
    """The cross-attention weights of each decoder layer for one teacher-forced pass:
    a list (one per layer) of (N, h, T − 1, S) tensors — decoder position t's weights over the
    source tokens (0 on padding)."""
    model.eval()
    captured, handles = [], []

    def grab(module, args, kwargs):
        query, key, value = args[:3]
        w = module.forward(query, key, value, key_padding_mask=kwargs.get("key_padding_mask"), need_weights=True,
                   average_attn_weights=False)[1]
        captured.append(w)

    for layer in model.decoder:
        handles.append(layer.cross_attn.register_forward_pre_hook(grab, with_kwargs=True))
    try:
        teacher_forced_logits(model, src.to(device_of(model)), tgt.to(device_of(model)))
    finally:
        for h in handles:
            h.remove()
    return captured


def attention_entropy(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each attention row of ``weights`` (N, h, T, S) at the query positions where
    ``mask`` (N, T) is True; returns a 1-D tensor of entropies."""
    ent = -torch.special.xlogy(weights, weights).sum(-1)  # (N, h, T)
    return ent.permute(0, 2, 1)[mask].flatten()


# --- adversarial examples ---------------------------------------------------------------------

def token_radius(model: Transformer, n_values: int) -> float:
    """Half the smallest distance between the input vectors (embedding · √d) of two different
    number tokens: a perturbation of a token vector smaller than this leaves it nearest to its
    own token, so the sorted answer is still well defined."""
    vec = model.src_embed.weight[FIRST:FIRST + n_values].detach() * math.sqrt(model.config.d_model)
    dist = torch.cdist(vec, vec) + torch.eye(n_values, device=vec.device) * 1e9
    return 0.5 * dist.min().item()


def _sequence_wrong(logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """(N,) bool: some non-padding target token's argmax is wrong (teacher forcing)."""
    y = tgt[:, 1:]
    return ((logits.argmax(-1) != y) & (y != PAD)).any(1)


def embedding_pgd(model: Transformer, src: torch.Tensor, tgt: torch.Tensor, eps: float, *, steps: int = 20,
                  alpha: float | None = None, random: bool = False,
                  generator: torch.Generator | None = None) -> dict:
    """PGD on the source token vectors, in a per-token L2 ball of radius ``eps``.

    Every real token's vector e_i = embedding · √d (positions are added afterwards, untouched) may
    move by δ_i with ‖δ_i‖₂ ≤ ε; padding stays put. Ascends the teacher-forced cross-entropy of
    the clean target with normalised per-token gradient steps of ``alpha`` (default 2.5ε/steps),
    projecting back onto each ball; an example counts as broken from the first step at which some
    target token's argmax is wrong (kept, as the package's attacks keep the best per example).
    With ``random=True`` it draws one random δ with ‖δ_i‖₂ = ε instead (the control).
    The model's parameters get no gradient and its mode is restored. Returns ``{"accuracy":
    fraction of sequences still sorted right, "broken": (N,) bool}``.
    """
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    was_training = model.training
    model.eval()
    src, tgt = src.to(device_of(model)), tgt.to(device_of(model))
    pad = src == PAD
    real = (~pad)[..., None].float()  # (N, S, 1)
    with torch.no_grad():
        e = source_vectors(model, src)  # (N, S, d)
        broken = _sequence_wrong(logits_from_vectors(model, e, pad, tgt), tgt)

    def per_token_unit(v):
        return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    if random or eps == 0:
        delta = per_token_unit(torch.randn(e.shape, generator=generator).to(e.device)) * eps * real
        with torch.no_grad():
            broken |= _sequence_wrong(logits_from_vectors(model, e + delta, pad, tgt), tgt)
    else:
        params = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            delta = torch.zeros_like(e)
            for _ in range(steps):
                delta.requires_grad_(True)
                logits = logits_from_vectors(model, e + delta, pad, tgt)
                loss = F.cross_entropy(logits.transpose(1, 2), tgt[:, 1:], ignore_index=PAD, reduction="sum")
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    broken |= _sequence_wrong(logits, tgt)
                    delta = delta + alpha * per_token_unit(grad) * real
                    norms = delta.norm(dim=-1, keepdim=True)
                    delta = (delta * (eps / norms.clamp_min(1e-12)).clamp(max=1.0)).detach()  # onto the ball
            with torch.no_grad():
                broken |= _sequence_wrong(logits_from_vectors(model, e + delta, pad, tgt), tgt)
        finally:
            for p, flag in zip(model.parameters(), params):
                p.requires_grad_(flag)
    model.train(was_training)
    return {"accuracy": 1.0 - broken.float().mean().item(), "broken": broken.cpu()}


@torch.no_grad()
def substitution_attack(model: Transformer, src: torch.Tensor, n_values: int, batch_size: int = 2000) -> dict:
    """Every single-token substitution of every source (N, L): replace one number by another value.

    Each substituted source has its own right answer (its sorted numbers); a substitution *breaks*
    the sorter when the model gets some token of that answer wrong (teacher forcing; equivalently
    greedy decoding fails). Returns ``clean_acc`` (sequences sorted right unchanged),
    ``any_broken`` (fraction of sequences sorted right for which some substitution breaks the
    sorter), ``random_broken`` (fraction of all substitutions of those sequences that break it:
    the chance that one random substitution does) and ``per_sequence`` (N,) counts of breaking
    substitutions (−1 for sequences already wrong).
    """
    model.eval()
    src = src.to(device_of(model))
    tgt = sort_targets(src)
    clean_ok = ~_sequence_wrong(teacher_forced_logits(model, src, tgt), tgt)
    counts, total = torch.full((len(src),), -1), 0
    for i in torch.nonzero(clean_ok).flatten().tolist():
        s = src[i]
        L = int((s != PAD).sum())
        pos = torch.arange(L, device=src.device).repeat_interleave(n_values)
        val = torch.arange(n_values, device=src.device).repeat(L) + FIRST
        keep = s[pos] != val  # a real change
        cand = s.repeat(int(keep.sum()), 1)
        cand[torch.arange(len(cand), device=src.device), pos[keep]] = val[keep]
        wrong = 0
        for c in cand.split(batch_size):
            t = sort_targets(c)
            wrong += _sequence_wrong(teacher_forced_logits(model, c, t), t).sum().item()
        counts[i], total = wrong, total + len(cand)
    clean_ok = clean_ok.cpu()
    ok = counts >= 0
    return {"clean_acc": clean_ok.float().mean().item(),
            "any_broken": (counts[ok] > 0).float().mean().item(),
            "random_broken": counts[ok].sum().item() / max(total, 1), "per_sequence": counts}


# --- figures ------------------------------------------------------------------------------------

def plot_score_statistics(stats: dict):
    """Three panels from :func:`score_statistics`: the variance of the scores, the softmax's entropy
    and the norm of its Jacobian against d_k, with and without the division by √d_k."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(6.8, 2.4))
    d = stats["d_k"]
    panels = [("variance of the scores", "var", True), ("softmax entropy (nats)", "entropy", False),
              ("softmax Jacobian norm", "jac", True)]
    for ax, (title, key, logy) in zip(axes, panels):
        raw = stats["var_raw"] if key == "var" else stats[f"raw_{key}"]
        scaled = stats["var_scaled"] if key == "var" else stats[f"scaled_{key}"]
        ax.plot(d, raw, "o-", ms=3, label="q·k")
        ax.plot(d, scaled, "s-", ms=3, label="q·k / √d_k")
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("d_k", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_schedules(curves: dict, total_steps: dict):
    """Learning rate against step for each ``curves`` entry (name -> (d_model, warmup)), one panel
    each, over ``total_steps[name]`` steps."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6.8, 2.3))
    for ax, (name, (d, w)) in zip(axes, curves.items()):
        lrate = warmup_schedule(d, w)
        steps = list(range(1, total_steps[name] + 1))
        ax.plot(steps, [lrate(s) for s in steps])
        ax.axvline(w, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{name}: d = {d}, warm-up {w:,}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("learning rate", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_cross_attention(weights: list, src: torch.Tensor, tgt: torch.Tensor):
    """Heat maps of the head-averaged cross-attention of each decoder layer for one example:
    ``weights`` from :func:`cross_attention` for a batch of one, ``src`` (L,), ``tgt`` (L + 2,)."""
    import matplotlib.pyplot as plt

    src, tgt = src.cpu(), tgt.cpu()
    S = int((src != PAD).sum())
    T = int((tgt != PAD).sum()) - 1  # the positions that predict a real token
    xs = [str(v - FIRST) for v in src[:S].tolist()]
    ys = [str(v - FIRST) if v >= FIRST else "end" for v in tgt[1:T + 1].tolist()]
    fig, axes = plt.subplots(1, len(weights), figsize=(6.8, 3.2))
    axes = [axes] if len(weights) == 1 else axes
    for i, (ax, w) in enumerate(zip(axes, weights)):
        ax.imshow(w[0].mean(0)[:T, :S].cpu().numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(S), xs, fontsize=8)
        ax.set_yticks(range(T), ys, fontsize=8)
        ax.set_xlabel("source number", fontsize=8)
        ax.set_ylabel("number being predicted", fontsize=8)
        ax.set_title(f"decoder layer {i + 1}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_positions(max_len: int = 64, d: int = 64):
    """The sinusoidal table (max_len, d) as a heat map, and the dot products PE[i]·PE[j]."""
    import matplotlib.pyplot as plt

    pe = sinusoidal_positions(max_len, d)
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.9))
    im = axes[0].imshow(pe.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    axes[0].set_xlabel("dimension", fontsize=8)
    axes[0].set_ylabel("position", fontsize=8)
    axes[0].set_title("PE[pos, i]", fontsize=9)
    fig.colorbar(im, ax=axes[0])
    im = axes[1].imshow((pe @ pe.T).numpy(), cmap="viridis")
    axes[1].set_xlabel("position j", fontsize=8)
    axes[1].set_ylabel("position i", fontsize=8)
    axes[1].set_title("PE[i] · PE[j]", fontsize=9)
    fig.colorbar(im, ax=axes[1])
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def weight_on_value(model: Transformer, src: torch.Tensor, tgt: torch.Tensor) -> dict:
    """How much cross-attention weight (head-averaged) the decoder row that predicts a number puts
    on source tokens holding that number. Returns ``{"layers": [mean weight per decoder layer],
    "uniform": what uniform attention over the real source tokens would put there}``, in [0, 1]."""
    y = tgt[:, 1:]  # (N, T-1): the token each decoder row predicts
    equal = (src[:, None, :] == y[..., None]).float()  # (N, T-1, S): source token s holds that number
    rows = y >= FIRST  # rows that predict a number (not the end token or padding)
    layers = [(w.mean(1).cpu() * equal).sum(-1)[rows].mean().item() for w in cross_attention(model, src, tgt)]
    uniform = (equal.sum(-1) / (src != PAD).sum(1, keepdim=True))[rows].mean().item()
    return {"layers": layers, "uniform": uniform}
