"""Chapter 12 — BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding"), with attacks on text.

The chapter's experiments as small functions:

* the input: WordPiece, [CLS]/[SEP], segments and positions (:func:`show_tokens`, :class:`SubVocab`),
  next-sentence-prediction pairs (:func:`nsp_pairs`);
* masked language modelling: the empirical 15 % / 80-10-10 rates of the corruption
  (:func:`corruption_rates`), a tiny BERT pretrained from scratch on the movie-review snippets
  (:func:`pretrain_tiny_bert`), its held-out loss against a unigram model (:func:`mlm_loss`,
  :func:`unigram_loss`) and its guesses for masked words (:func:`fill_mask`); the same tiny BERT
  fine-tuned on sentiment, pretrained or not (:func:`finetune_tiny`);
* the real all-MiniLM-L6-v2 loaded into the book's BERT and checked against the stored reference
  (:func:`reference_check`), its frozen sentence embeddings with a logistic-regression head on sentiment
  (:func:`train_sentiment_head`, :class:`SentenceClassifier`);
* attacks on that classifier (:mod:`advcourse.attacks.text`): PGD on the word embeddings against ε
  (:func:`pgd_sweep`) and greedy word substitution against the number of words changed
  (:func:`substitution_run`).

Texts are Python strings; token ids are int64 tensors (N, T) with an attention mask (N, T) of 0/1;
sentiment labels are 1 (rating > 0) and 0.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.text import embedding_pgd, word_substitution
from ..cache import load_or_train
from ..evaluate import eval_mode
from ..models.bert import (
    BertClassifier,
    BertConfig,
    BertMLMHead,
    BertModel,
    embed_sentences,
    encode,
    mean_pool,
    mlm_corrupt,
)
from ..runtime import device_of
from ..train import Shuffled, fit

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class Settings:
    """Chapter 12's settings, shared by the chapter and its claim tests.

    Sentiment: the first ``n_train`` training and ``n_test`` test snippets (label: rating > 0); MiniLM's
    frozen sentence embeddings feed a logistic-regression head trained ``head_epochs`` epochs with Adam
    (``head_lr``, weight decay ``head_wd``).
    Tiny BERT: a WordPiece vocabulary of ``vocab_size`` tokens trained on the training snippets; ``layers``
    layers of width ``dim`` with ``heads`` heads and ``4·dim`` feed-forward units, sequences of at most
    ``max_len`` tokens; MLM pretraining for ``pretrain_steps`` steps of ``batch_size`` snippets (AdamW,
    ``lr``, linear warm-up over a tenth of the steps then linear decay); fine-tuning on sentiment for
    ``finetune_epochs`` epochs at ``finetune_lr``.
    Attacks: ``n_attack`` correctly classified test snippets; PGD with ``pgd_steps`` steps at each of
    ``eps_values`` (per-token L2 radius in MiniLM's embedding units); word substitution with up to
    ``max_changes`` words, each replaced by one of its ``n_neighbours`` nearest words in embedding space,
    ``n_try`` pairs checked exactly per round. ``batch`` sentences are attacked at a time.
    """

    n_train: int = 2000
    n_test: int = 1000
    head_epochs: int = 60
    head_lr: float = 1e-2
    head_wd: float = 1e-4
    vocab_size: int = 8000
    dim: int = 128
    layers: int = 2
    heads: int = 2
    max_len: int = 64
    pretrain_steps: int = 800
    batch_size: int = 32
    lr: float = 2e-3
    finetune_epochs: int = 3
    finetune_lr: float = 3e-4
    n_attack: int = 100
    pgd_steps: int = 5
    eps_values: tuple = (0.05, 0.1, 0.2, 0.5)
    max_changes: int = 4
    n_neighbours: int = 10
    n_try: int = 8
    batch: int = 25

    def tiny_config(self) -> BertConfig:
        """The tiny BERT's :class:`BertConfig` (its vocabulary is a :class:`SubVocab` of ``vocab_size`` tokens)."""
        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.dim, num_layers=self.layers,
                          num_heads=self.heads, intermediate_size=4 * self.dim, max_position=self.max_len,
                          dropout=0.0)  # a few hundred steps: nothing to regularise

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        return replace(self, n_train=300, n_test=100, head_epochs=2, pretrain_steps=5, batch_size=32, finetune_epochs=1,
                       n_attack=10, pgd_steps=2, batch=10)


#: The CPU profile: about 2.5 minutes on two cores.
FAST = Settings()
#: The GPU profile: all labelled snippets, a BERT-mini-sized model pretrained 10× longer, more attacks.
FULL = Settings(n_train=8484, n_test=2121, vocab_size=16000, dim=256, layers=4, heads=4, max_len=96,
                pretrain_steps=8000, batch_size=128, finetune_epochs=4, n_attack=1000, pgd_steps=20,
                max_changes=6, n_try=16, batch=100)


def sentiment_labels(ratings: torch.Tensor) -> torch.Tensor:
    """Mean human ratings in [−4, 4] (N,) → labels (N,) int64: 1 positive (rating > 0), 0 otherwise."""
    return (ratings > 0).long()


def sentiment_split(texts, ratings: torch.Tensor, n: int, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """``n`` snippets, half positive and half negative, alternating: ``(texts, labels (n,))``.

    The stored snippets come grouped by sentiment (positives first), so a plain prefix would be one-sided;
    this draws each class in a seeded random order and interleaves them, so any prefix is balanced.
    """
    y = sentiment_labels(ratings)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    pos, neg = perm[y[perm] == 1], perm[y[perm] == 0]
    if n > 2 * min(len(pos), len(neg)):
        raise ValueError(f"n must be at most {2 * min(len(pos), len(neg))}, got {n}")
    idx = torch.stack([pos[:(n + 1) // 2], neg[:(n + 1) // 2]], 1).flatten()[:n]
    return [texts[int(i)] for i in idx], y[idx]


# --- the input: WordPiece, special tokens, segments -------------------------------------------------------------------

class SubVocab:
    """The ``size`` most frequent WordPiece tokens of a corpus under a BERT tokenizer, renumbered from 0: the
    small vocabulary of the tiny BERT.

    Texts are cut by the real BERT tokenizer (``tokenizer``, e.g. MiniLM's uncased 30,522-token WordPiece);
    [PAD], [UNK], [CLS], [SEP], [MASK] get the new ids 0–4, then tokens follow by decreasing count in
    ``texts`` (ties by their original id, so the result is deterministic); tokens outside the kept set
    become [UNK]. (A vocabulary *learned* on the snippets with the ``tokenizers`` WordPiece trainer would do
    as well, but that trainer breaks ties differently from run to run, and a cached model must always meet
    the same vocabulary.)
    """

    def __init__(self, tokenizer, texts, size: int):
        if size <= len(SPECIALS):
            raise ValueError(f"size must exceed the {len(SPECIALS)} special tokens, got {size}")
        self.tokenizer = tokenizer
        ids, mask = encode(texts, tokenizer, 512)
        counts = torch.bincount(ids[mask.bool()], minlength=tokenizer.get_vocab_size())
        specials = torch.tensor([tokenizer.token_to_id(t) for t in SPECIALS])
        counts[specials] = 0
        order = torch.argsort(-counts, stable=True)  # most frequent first, ties by original id
        order = order[counts[order] > 0][:size - len(SPECIALS)]
        self.old = torch.cat([specials, order])  # new id → original id
        self.new = torch.full((tokenizer.get_vocab_size(),), 1, dtype=torch.long)  # original id → new id ([UNK])
        self.new[self.old] = torch.arange(len(self.old))
        total = int(counts.sum())
        self.coverage = float(counts[order].sum()) / total  # share of the ordinary tokens kept

    def encode(self, texts, max_len: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids (N, T) in the small vocabulary and the attention mask (N, T), as :func:`encode` pads them."""
        ids, mask = encode(texts, self.tokenizer, max_len)
        return self.new[ids], mask

    def get_vocab_size(self) -> int:
        return len(self.old)

    def token_to_id(self, token: str) -> int:
        return int(self.new[self.tokenizer.token_to_id(token)])

    def id_to_token(self, i: int) -> str:
        return self.tokenizer.id_to_token(int(self.old[i]))

    def fingerprint(self) -> str:
        """A short hash of the kept tokens (part of the cache key of the models that use this vocabulary)."""
        import hashlib

        return hashlib.sha256(str(self.old.tolist()).encode()).hexdigest()[:16]


def special_ids(tokenizer) -> list[int]:
    """Ids of the special tokens [PAD], [UNK], [CLS], [SEP], [MASK] in ``tokenizer``."""
    return [tokenizer.token_to_id(s) for s in SPECIALS]


def show_tokens(tokenizer, first: str, second: str | None = None) -> list[tuple[str, int, int, int]]:
    """One input as BERT sees it: (token, id, segment, position) per token, for one sentence or a pair."""
    tokenizer.no_truncation()
    enc = tokenizer.encode(first, second) if second is not None else tokenizer.encode(first)
    return [(t, i, s, p) for p, (t, i, s) in enumerate(zip(enc.tokens, enc.ids, enc.type_ids))]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def nsp_pairs(texts, generator: torch.Generator | None = None) -> list[tuple[str, str, int]]:
    """Next-sentence-prediction pairs (Devlin et al., Sec. 3.1, Task #2) from snippets of several sentences.

    For each snippet with at least two sentences, A is its first sentence; with probability 1/2 B is the
    sentence that follows (label 1, IsNext), otherwise a sentence of another snippet (label 0, NotNext).
    Returns ``[(A, B, is_next), ...]``.
    """
    split = [_SENTENCE_END.split(t.strip()) for t in texts]
    multi = [s for s in split if len(s) >= 2]
    pool = [sent for s in split for sent in s]
    pairs = []
    for s in multi:
        if torch.rand(1, generator=generator).item() < 0.5:
            pairs.append((s[0], s[1], 1))
        else:
            other = pool[int(torch.randint(len(pool), (1,), generator=generator))]
            while other in s:
                other = pool[int(torch.randint(len(pool), (1,), generator=generator))]
            pairs.append((s[0], other, 0))
    return pairs


# --- masked language modelling ----------------------------------------------------------------------------------------

def tokenize(texts, vocab: SubVocab, max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, mask, special)``: ids and mask (N, T) in ``vocab``, and a bool (N, T) marking the special tokens
    ([UNK] included) and padding, which the corruption never selects."""
    ids, mask = vocab.encode(texts, max_len)
    special = torch.isin(ids, torch.tensor(special_ids(vocab))) | (mask == 0)
    return ids, mask, special


def corruption_rates(ids, special, vocab_size: int, mask_id: int, generator=None) -> dict:
    """Apply :func:`mlm_corrupt` once and measure its rates.

    ``selected``: fraction of the non-special tokens selected (paper: 15 %); ``mask``, ``random``, ``same``:
    fractions of the selected tokens replaced by [MASK], by a random token, or kept (paper: 80/10/10; a
    random draw that hits the original token counts as "same"); ``n_tokens``, ``n_selected``.
    """
    corrupted, labels = mlm_corrupt(ids, special, vocab_size, mask_id, generator=generator)
    sel = labels != -100
    n_tok, n_sel = int((~special).sum()), int(sel.sum())
    masked = sel & (corrupted == mask_id)
    same = sel & (corrupted == ids)
    return {"selected": n_sel / n_tok, "mask": int(masked.sum()) / n_sel, "same": int(same.sum()) / n_sel,
            "random": int((sel & ~masked & ~same).sum()) / n_sel, "n_tokens": n_tok, "n_selected": n_sel}


class MaskedLM(nn.Module):
    """A BERT encoder with its tied MLM head: ids (N, T) → vocabulary logits (N, T, V)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config)
        self.head = BertMLMHead(config, self.bert.embeddings.word_embeddings)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.bert(ids, attention_mask)[0])

    def masked_logits(self, ids, attention_mask, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (M, V) and targets (M,) at the M selected positions only (labels ≠ −100).

        The (T·V) output layer is the most expensive part of a tiny BERT; evaluating it only where there is a
        target cuts a training step several-fold and changes nothing in the loss.
        """
        hidden = self.bert(ids, attention_mask)[0]  # (N, T, d)
        sel = labels != -100
        return self.head(hidden[sel]), labels[sel]  # (M, d) → (M, V)


def _trim(ids, mask, *rest):
    """Drop the columns that are padding in every row of the batch."""
    t = int(mask.sum(1).max())
    return (ids[:, :t], mask[:, :t], *(r[:, :t] for r in rest))


def _warmup_linear(total: int):
    warm = max(total // 10, 1)
    return lambda opt: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(total - warm, 1))))


def pretrain_tiny_bert(texts, tokenizer, S: Settings = FAST, *, seed: int = 0, device="cpu", progress: bool = True):
    """Pretrain (or load) the tiny BERT by masked language modelling on ``texts``.

    MLM only (no next-sentence prediction: the snippets are mostly single sentences; RoBERTa later dropped
    NSP too). Returns ``(MaskedLM, meta)``; ``meta["metrics"]`` holds the loss per ``log_every`` steps
    (``curve``), the first and last losses and ``ms_per_step``.
    """
    ids, mask, special = tokenize(texts, tokenizer, S.max_len)
    config = {"kind": "tiny-bert-mlm", "n_texts": len(texts), "vocab": tokenizer.get_vocab_size(), "dim": S.dim,
              "layers": S.layers, "heads": S.heads, "max_len": S.max_len, "steps": S.pretrain_steps,
              "batch_size": S.batch_size, "lr": S.lr, "seed": seed,
              "vocab_sha": tokenizer.fingerprint()}
    mask_id = tokenizer.token_to_id("[MASK]")

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MaskedLM(S.tiny_config())

    def train(model, cfg):
        batches = LengthBuckets(ids, mask, special, batch_size=cfg["batch_size"], seed=cfg["seed"])
        epochs = math.ceil(cfg["steps"] / len(batches))
        g = torch.Generator().manual_seed(cfg["seed"] + 1)
        losses = []

        def step(model, batch):
            b_ids, b_mask, b_special = _trim(*batch)
            corrupted, labels = mlm_corrupt(b_ids, b_special, cfg["vocab"], mask_id, generator=g)
            logits, target = model.masked_logits(corrupted, b_mask, labels)
            loss = F.cross_entropy(logits, target)
            losses.append(loss.item())
            return loss

        steps = _Steps(batches, cfg["steps"])
        hist = fit(model, steps, step, epochs=1, optimizer="adamw", lr=cfg["lr"], weight_decay=0.01,
                   schedule=_warmup_linear(cfg["steps"]), progress=progress, desc="tiny BERT, MLM")
        k = max(cfg["steps"] // 40, 1)
        curve = [sum(losses[i:i + k]) / len(losses[i:i + k]) for i in range(0, len(losses), k)]
        return {"curve": curve, "every": k, "first": losses[0], "last": sum(losses[-k:]) / k, "epochs": epochs,
                "seconds": hist["seconds"], "ms_per_step": 1000 * hist["seconds"] / cfg["steps"]}

    return load_or_train(f"ch12-tiny-bert-{S.dim}x{S.layers}", config, build, train, device=device)


class LengthBuckets(Shuffled):
    """Like :class:`~advcourse.train.Shuffled`, but each batch holds snippets of similar length (the second
    tensor is the attention mask): a shuffled pass is cut into groups of 16 batches, each group is sorted by
    length and split, and the batches are shuffled. Trimmed to their longest row, batches carry little
    padding, which halves the cost of a step here."""

    def __iter__(self):
        order = torch.randperm(len(self.tensors[0]), generator=self.generator)
        lengths = self.tensors[1].sum(1)
        batches = []
        for group in order.split(16 * self.batch_size):
            group = group[lengths[group].argsort(stable=True)]
            batches += list(group.split(self.batch_size))
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield tuple(t[batches[b]] for t in self.tensors)


class _Steps:
    """Exactly ``steps`` batches, cycling through ``batches`` (reshuffled at each pass): a step budget for fit."""

    def __init__(self, batches, steps: int):
        self.batches, self.steps = batches, steps

    def __len__(self):
        return self.steps

    def __iter__(self):
        n = 0
        while True:
            for b in self.batches:
                if n == self.steps:
                    return
                n += 1
                yield b


@torch.no_grad()
def mlm_loss(model: MaskedLM, ids, mask, special, mask_id: int, seed: int = 0, batch_size: int = 256) -> float:
    """Mean cross-entropy (nats) of predicting the selected tokens of ``ids`` under one fixed corruption."""
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with eval_mode(model):
        for start in range(0, len(ids), batch_size):
            b = [t.to(device_of(model)) for t in _trim(ids[start:start + batch_size], mask[start:start + batch_size],
                                                       special[start:start + batch_size])]
            corrupted, labels = mlm_corrupt(b[0], b[2], model.bert.config.vocab_size, mask_id, generator=g)
            logits, target = model.masked_logits(corrupted, b[1], labels)
            total += F.cross_entropy(logits, target, reduction="sum").item()
            count += len(target)
    return total / count


def step_times(model: MaskedLM, ids, mask, special, mask_id: int, repeats: int = 2, seed: int = 0) -> dict:
    """One forward and backward MLM pass on a batch, timed two ways: ``full`` computes the (N, T, V) logits of
    every position and lets cross-entropy ignore the unselected ones; ``masked`` uses
    :meth:`MaskedLM.masked_logits`. Returns milliseconds (best of ``repeats`` after a warm-up) and
    ``loss_gap``, the difference of the two losses (the same quantity, so ~1e-7)."""
    g = torch.Generator().manual_seed(seed)
    b_ids, b_mask, b_special = (t.to(device_of(model)) for t in _trim(ids, mask, special))
    corrupted, labels = mlm_corrupt(b_ids, b_special, model.bert.config.vocab_size, mask_id, generator=g)

    def full():
        return F.cross_entropy(model(corrupted, b_mask).flatten(0, 1), labels.flatten())  # ignore_index=-100

    def masked():
        return F.cross_entropy(*model.masked_logits(corrupted, b_mask, labels))

    out = {}
    with eval_mode(model):  # no dropout in the tiny BERT; eval mode only to leave the model as we found it
        for name, fn in (("full", full), ("masked", masked)):
            times = []
            for _ in range(repeats + 1):
                start = time.perf_counter()
                loss = fn()
                loss.backward()
                times.append(time.perf_counter() - start)
            out[name], out[f"{name}_loss"] = 1000 * min(times[1:]), loss.item()
        model.zero_grad(set_to_none=True)
    out["loss_gap"] = abs(out["full_loss"] - out["masked_loss"])
    return out


def unigram_loss(train_ids, train_special, test_ids, test_special, vocab_size: int) -> float:
    """Cross-entropy (nats) of the test tokens under the training tokens' frequencies (add-one smoothed).

    The best a model can do without looking at the context: the baseline an MLM must beat.
    """
    counts = torch.bincount(train_ids[~train_special], minlength=vocab_size).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[test_ids[~test_special]].mean())


@torch.no_grad()
def fill_mask(model: MaskedLM, tokenizer, text: str, k: int = 3) -> list[list[str]]:
    """The ``k`` likeliest tokens at each ``[MASK]`` of ``text`` (write it as the literal ``[MASK]``)."""
    ids, mask = tokenizer.encode([text])
    with eval_mode(model):
        logits = model(ids.to(device_of(model)), mask.to(device_of(model)))[0].cpu()  # (T, V)
    where = (ids[0] == tokenizer.token_to_id("[MASK]")).nonzero().squeeze(1)
    logits[:, special_ids(tokenizer)] = -float("inf")
    return [[tokenizer.id_to_token(int(i)) for i in logits[t].topk(k).indices] for t in where]


def finetune_tiny(data, tokenizer, S: Settings = FAST, *, pretrained: MaskedLM | None, seed: int = 0, device="cpu",
                  progress: bool = True):
    """Fine-tune (or load) a tiny BERT sentiment classifier on the first ``S.n_train`` training snippets.

    ``pretrained``: start from this MLM-pretrained encoder (its [CLS] vector feeds a new linear layer), or
    None for the same architecture from a random initialisation. Returns ``(BertClassifier, meta)``.
    """
    texts, y = sentiment_split(data.text_train, data.rating_train, S.n_train, seed=0)
    x_ids, x_mask, _ = tokenize(texts, tokenizer, S.max_len)
    config = {"kind": "tiny-bert-sentiment", "pretrained": pretrained is not None, "n": S.n_train,
              "epochs": S.finetune_epochs, "lr": S.finetune_lr, "seed": seed, "vocab_sha": tokenizer.fingerprint(),
              "encoder_sha": _state_sha(pretrained.bert) if pretrained is not None else None}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return BertClassifier(S.tiny_config(), 2, pooling="mean")

    def train(model, cfg):
        if pretrained is not None:
            model.bert.load_state_dict(pretrained.bert.state_dict())

        def step(model, batch):
            b_ids, b_mask, yb = batch
            b_ids, b_mask = _trim(b_ids, b_mask)
            out = model(b_ids, b_mask)
            return F.cross_entropy(out, yb), {"train_acc": (out.argmax(1) == yb).sum().item()}

        hist = fit(model, Shuffled(x_ids, x_mask, y, batch_size=32, seed=cfg["seed"]), step,
                   epochs=cfg["epochs"], optimizer="adamw", lr=cfg["lr"], weight_decay=0.01, progress=progress,
                   desc=f"fine-tune ({'pretrained' if cfg['pretrained'] else 'from scratch'})")
        return {"loss": hist["loss"], "train_acc": hist["train_acc"], "seconds": hist["seconds"]}

    name = f"ch12-tiny-sentiment-{'pre' if pretrained is not None else 'scratch'}"
    return load_or_train(name, config, build, train, device=device)


def _state_sha(module: nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def classifier_accuracy(model: nn.Module, ids, mask, y, batch_size: int = 256) -> float:
    """Accuracy of a token classifier ``model(ids, mask)`` on a padded batch, in batches of trimmed length."""
    correct = 0
    with eval_mode(model):
        for s in range(0, len(ids), batch_size):
            b_ids, b_mask = (t.to(device_of(model)) for t in _trim(ids[s:s + batch_size], mask[s:s + batch_size]))
            correct += int((model(b_ids, b_mask).argmax(1).cpu() == y[s:s + batch_size]).sum())
    return correct / len(ids)


# --- MiniLM: the reference check and frozen features ------------------------------------------------------------------

def reference_file() -> Path:
    """``tests/models/data/minilm_reference.json`` of the checkout (or of ``$ADVCOURSE_DATA/..`` in Colab)."""
    here = Path(__file__).resolve().parents[3] / "tests" / "models" / "data" / "minilm_reference.json"
    if here.is_file():
        return here
    alt = Path(os.environ.get("ADVCOURSE_DATA", "data")).resolve().parent / "tests/models/data/minilm_reference.json"
    if alt.is_file():
        return alt
    raise FileNotFoundError(f"the stored MiniLM reference was not found at {here} or {alt}")


def reference_check(model: BertModel, tokenizer, path: Path | None = None) -> dict:
    """Compare our BERT's MiniLM sentence embeddings with the stored official ones (sentence-transformers).

    Returns ``max_abs_diff`` (embeddings), ``ids_equal`` (the tokenizer reproduces the reference ids),
    ``n`` sentences and ``norm_gap`` (largest |‖e‖ − 1|).
    """
    ref = json.loads((path or reference_file()).read_text())
    ids, mask = encode(ref["sentences"], tokenizer)
    ours = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    emb = embed_sentences(model, tokenizer, ref["sentences"])
    target = torch.tensor(ref["embeddings"])
    return {"max_abs_diff": float((emb - target).abs().max()), "ids_equal": ours == ref["input_ids"],
            "n": len(ref["sentences"]), "norm_gap": float((emb.norm(dim=1) - 1).abs().max()),
            "sentences": ref["sentences"]}


class SentenceClassifier(nn.Module):
    """MiniLM sentence embedding (mean over real tokens, unit L2 norm) → linear head: ids (N, T) → logits (N, 2).

    Exactly the model "frozen features + logistic regression" defines, written as one network so that an
    attack can differentiate through it; accepts ``input_ids`` or ``inputs_embeds`` like
    :class:`~advcourse.models.bert.BertClassifier`.
    """

    def __init__(self, bert: BertModel, head: nn.Linear):
        super().__init__()
        self.bert, self.head = bert, head

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        hidden, _ = self.bert(input_ids, attention_mask, None, inputs_embeds)
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        return self.head(F.normalize(mean_pool(hidden, attention_mask), dim=-1))


def train_sentiment_head(minilm: BertModel, tokenizer, data, S: Settings = FAST, *, seed: int = 0, device="cpu",
                         progress: bool = True):
    """Train (or load) the logistic-regression head on MiniLM's frozen embeddings of ``S.n_train`` balanced
    training snippets (:func:`sentiment_split`). Returns ``(nn.Linear(384, 2), meta)``; the embeddings are
    computed only when training."""
    config = {"kind": "minilm-head", "n": S.n_train, "epochs": S.head_epochs, "lr": S.head_lr, "wd": S.head_wd,
              "seed": seed, "encoder_sha": _state_sha(minilm)}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return nn.Linear(minilm.config.hidden_size, 2)

    def train(head, cfg):
        texts, y = sentiment_split(data.text_train, data.rating_train, cfg["n"], seed=0)
        feats = embed_sentences(minilm, tokenizer, texts)

        def step(model, batch):
            xb, yb = batch
            out = model(xb)
            return F.cross_entropy(out, yb), {"train_acc": (out.argmax(1) == yb).sum().item()}

        hist = fit(head, Shuffled(feats, y, batch_size=128, seed=cfg["seed"]), step, epochs=cfg["epochs"],
                   optimizer="adamw", lr=cfg["lr"], weight_decay=cfg["wd"], progress=progress, desc="MiniLM head")
        return {"loss": hist["loss"][-1], "train_acc": hist["train_acc"][-1]}

    return load_or_train("ch12-minilm-head", config, build, train, device=device)


# --- attacks on the sentiment classifier ---------------------------------------------------------------------------

_WORD = re.compile(r"^[a-z]{2,}$")


def whole_words(tokenizer) -> torch.Tensor:
    """Bool (V,): tokens that are whole lower-case words of at least two letters (no ``##`` pieces, no
    punctuation, numbers, [unused] or special tokens) — the words a substitution may remove or insert."""
    vocab = tokenizer.get_vocab()
    allowed = torch.zeros(len(vocab), dtype=torch.bool)
    for token, i in vocab.items():
        allowed[i] = bool(_WORD.match(token))
    return allowed


def word_positions(ids: torch.Tensor, mask: torch.Tensor, allowed: torch.Tensor, tokenizer) -> torch.Tensor:
    """Bool (N, T): positions holding a whole word (``allowed``) that is not split into pieces (the next
    token is not a ``##`` continuation). Changing such a token changes exactly one word."""
    vocab = tokenizer.get_vocab()
    piece = torch.zeros(len(vocab), dtype=torch.bool)
    for token, i in vocab.items():
        piece[i] = token.startswith("##")
    nxt = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], 1)
    return allowed[ids] & ~piece[nxt] & mask.bool()


def neighbour_distances(table: torch.Tensor, allowed: torch.Tensor, n: int = 2000, seed: int = 0) -> torch.Tensor:
    """L2 distance from the embeddings of ``n`` random allowed tokens to their nearest other allowed token (n,):
    the scale on which a per-token ε should be read."""
    w = table[allowed].float()
    pick = torch.randperm(len(w), generator=torch.Generator().manual_seed(seed))[:n]
    d = torch.cdist(w[pick], w)  # (n, A)
    d[torch.arange(len(pick)), pick] = float("inf")  # not itself
    return d.min(1).values


def _by_length(mask: torch.Tensor, size: int):
    """Index chunks of about ``size`` rows, sorted by length (little padding per chunk)."""
    order = mask.sum(1).argsort()
    return order.split(size)


def attack_set(tokenizer, texts, y: torch.Tensor, correct: torch.Tensor, n: int, max_len: int = 128,
               device="cpu"):
    """The first ``n`` snippets of ``texts`` that the classifier gets right (``correct``, bool (N,), e.g. from
    its predictions on the frozen embeddings): ``(idx, ids, mask, y)``, the tensors on ``device``."""
    idx = correct.cpu().nonzero().squeeze(1)[:n]
    ids, mask = encode([texts[int(i)] for i in idx], tokenizer, max_len)
    return idx, ids.to(device), mask.to(device), y[idx].to(device)


def snap(vectors: torch.Tensor, table: torch.Tensor, ids: torch.Tensor, movable: torch.Tensor) -> torch.Tensor:
    """Nearest-token ids (N, T) of word vectors (N, T, d) at the ``movable`` positions (``ids`` elsewhere)."""
    out = ids.clone()
    d = torch.cdist(vectors[movable].float(), table.float())  # (M, V)
    out[movable] = d.argmin(1)
    return out


def pgd_sweep(clf: nn.Module, ids, mask, y, S: Settings, *, embedding, specials, modifiable) -> dict:
    """Embedding-space PGD on ``clf`` at each ε of ``S.eps_values``.

    Returns, per ε: ``acc`` (accuracy under attack), ``snapped`` (accuracy once every perturbed vector is
    replaced by its nearest token — the attack made discrete after the fact), ``changed`` (mean fraction of
    modifiable tokens whose nearest token is no longer the original).
    """
    table = embedding.weight.detach()
    out = {}
    for eps in S.eps_values:
        wrong = wrong_snapped = 0
        moved_tokens = total_tokens = 0
        for chunk in _by_length(mask, S.batch):
            t = int(mask[chunk].sum(1).max())
            c_ids, c_mask, c_y, c_mod = ids[chunk, :t], mask[chunk, :t], y[chunk], modifiable[chunk, :t]
            adv = embedding_pgd(clf, c_ids, c_mask, c_y, eps, steps=S.pgd_steps, embedding=embedding,
                                special_ids=specials, modifiable=c_mod, early_stop=True)
            with torch.no_grad(), eval_mode(clf):
                wrong += int((clf(inputs_embeds=adv, attention_mask=c_mask).argmax(1) != c_y).sum())
                snapped = snap(adv, table, c_ids, c_mod)
                wrong_snapped += int((clf(input_ids=snapped, attention_mask=c_mask).argmax(1) != c_y).sum())
            moved_tokens += int((snapped != c_ids).sum())
            total_tokens += int(c_mod.sum())
        out[eps] = {"acc": 1 - wrong / len(ids), "snapped": 1 - wrong_snapped / len(ids),
                    "changed": moved_tokens / max(total_tokens, 1)}
    return out


def substitution_run(clf: nn.Module, ids, mask, y, S: Settings, *, embedding, candidates, specials, modifiable,
                     guide: str = "gradient") -> dict:
    """Greedy word substitution with budget ``S.max_changes`` on every example.

    Returns ``adv`` ids (N, T), ``changes`` (N,) words changed, ``fooled`` (N,) bool, and ``curve``: the success
    rate with a budget of k = 0 … max_changes words (one run gives all budgets, see
    :func:`~advcourse.attacks.text.word_substitution`).
    """
    adv = ids.clone()
    for chunk in _by_length(mask, S.batch):
        t = int(mask[chunk].sum(1).max())
        adv[chunk, :t] = word_substitution(clf, ids[chunk, :t], mask[chunk, :t], y[chunk], S.max_changes,
                                           embedding=embedding, candidates=candidates, special_ids=specials,
                                           modifiable=modifiable[chunk, :t], guide=guide, n_try=S.n_try)
    fooled = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
    with torch.no_grad(), eval_mode(clf):
        for chunk in _by_length(mask, 100):
            t = int(mask[chunk].sum(1).max())
            fooled[chunk] = clf(input_ids=adv[chunk, :t], attention_mask=mask[chunk, :t]).argmax(1) != y[chunk]
    changes = (adv != ids).sum(1)
    curve = [float((fooled & (changes <= k)).float().mean()) for k in range(S.max_changes + 1)]
    return {"adv": adv, "changes": changes, "fooled": fooled, "curve": curve}


def render(tokenizer, ids: torch.Tensor, mask: torch.Tensor, changed: torch.Tensor | None = None) -> str:
    """One tokenised sentence as text, with changed words in bold (``**word**``) for a Markdown table."""
    toks = [tokenizer.id_to_token(int(i)) for i, m in zip(ids, mask) if m]
    flags = [bool(c) for c, m in zip(changed, mask) if m] if changed is not None else [False] * len(toks)
    words = []
    for tok, flag in zip(toks[1:-1], flags[1:-1]):  # drop [CLS] and [SEP]
        word = f"**{tok}**" if flag else tok
        if tok.startswith("##") and words:
            words[-1] += word[2:] if not flag else word
        else:
            words.append(word)
    return " ".join(words)


def bert_parameter_count(hidden: int = 768, layers: int = 12, heads: int = 12, vocab: int = 30522) -> int:
    """Parameters of a BERT encoder with its pooler (no MLM/NSP heads), counted on the meta device."""
    with torch.device("meta"):
        model = BertModel(BertConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads,
                                     intermediate_size=4 * hidden))
    return sum(p.numel() for p in model.parameters())
