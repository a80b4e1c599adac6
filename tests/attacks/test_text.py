"""Property tests of the text attacks (advcourse.attacks.text): the attack contract in text's own terms.

Embedding PGD: every perturbed token stays in its L2 ball (checked in float64), special tokens and padding
keep their vectors, ε = 0 changes nothing, batched equals one by one. Word substitution: at most k changes,
only allowed substitutes, special tokens and padding untouched, a larger budget extends a smaller one, the
exact-loss guide makes the best single substitution. Both: inputs untouched, the model's mode restored, no
parameter gradients, errors that name the bad argument.
"""

from __future__ import annotations

import pytest
import torch

from advcourse.attacks.text import embedding_pgd, nearest_neighbours, word_substitution
from advcourse.models.bert import BertClassifier, BertConfig

V, PAD, CLS, SEP = 40, 0, 1, 2
SPECIAL = (PAD, CLS, SEP)
CFG = BertConfig(vocab_size=V, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=16,
                 dropout=0.2)


def make_model(seed=0):
    torch.manual_seed(seed)
    return BertClassifier(CFG, num_classes=3, pooling="mean").eval()


def batch(n=6, t=9, seed=0):
    """Random sentences [CLS] w … w [SEP] [PAD]… of lengths 4 … t; words are ids 3 … V−1."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (n, t), generator=g)
    lengths = torch.randint(4, t + 1, (n,), generator=g)
    lengths[0] = t
    pos = torch.arange(t)
    ids[:, 0] = CLS
    ids[pos >= lengths[:, None]] = PAD
    ids[torch.arange(n), lengths - 1] = SEP
    return ids, (ids != PAD).long()


@pytest.fixture
def model():
    return make_model()


@pytest.fixture
def inputs(model):
    ids, mask = batch()
    with torch.no_grad():
        y = model(ids, mask).argmax(1)  # the model's own predictions: every example starts correct
    return ids, mask, y


def emb(model):
    return model.bert.embeddings.word_embeddings


def special_or_pad(ids, mask):
    return torch.isin(ids, torch.tensor(SPECIAL)) | (mask == 0)


# --- embedding PGD ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.01, 0.3, 2.0])
def test_pgd_stays_in_each_tokens_ball_and_keeps_specials(model, inputs, eps):
    ids, mask, y = inputs
    adv = embedding_pgd(model, ids, mask, y, eps, steps=6, embedding=emb(model), special_ids=SPECIAL)
    clean = emb(model)(ids).detach()
    assert adv.shape == clean.shape and adv.dtype == clean.dtype
    dist = (adv.double() - clean.double()).norm(dim=-1)
    assert (dist <= eps * (1 + 1e-6)).all()  # up to float32 rounding of the projected vectors
    fixed = special_or_pad(ids, mask)
    assert torch.equal(adv[fixed], clean[fixed])
    assert dist[~fixed].max() > 0  # it did move


def test_pgd_reduces_accuracy_and_zero_eps_is_identity(model, inputs):
    ids, mask, y = inputs
    clean = emb(model)(ids).detach()
    assert torch.equal(embedding_pgd(model, ids, mask, y, 0.0, embedding=emb(model)), clean)
    adv = embedding_pgd(model, ids, mask, y, 5.0, steps=20, embedding=emb(model), special_ids=SPECIAL)
    with torch.no_grad():
        acc = (model(inputs_embeds=adv, attention_mask=mask).argmax(1) == y).float().mean()
    assert acc < 1.0


def test_pgd_batched_equals_one_by_one(model, inputs):
    ids, mask, y = inputs
    kw = dict(steps=4, embedding=emb(model), special_ids=SPECIAL)
    whole = embedding_pgd(model, ids, mask, y, 0.5, **kw)
    for i in range(len(ids)):
        one = embedding_pgd(model, ids[i:i + 1], mask[i:i + 1], y[i:i + 1], 0.5, **kw)
        torch.testing.assert_close(one[0], whole[i], atol=1e-5, rtol=0)


def test_pgd_respects_modifiable(model, inputs):
    ids, mask, y = inputs
    modifiable = torch.zeros_like(ids, dtype=torch.bool)
    modifiable[:, 1] = True
    adv = embedding_pgd(model, ids, mask, y, 1.0, steps=3, embedding=emb(model), special_ids=SPECIAL,
                        modifiable=modifiable)
    moved = (adv - emb(model)(ids)).norm(dim=-1) > 0
    assert not (moved & ~modifiable).any() and moved[:, 1].any()


# --- nearest neighbours and word substitution -------------------------------------------------------------------

def allowed_words():
    return torch.arange(V) >= 3


def test_nearest_neighbours_exclude_self_and_disallowed(model):
    cand = nearest_neighbours(emb(model), k=4, allowed=allowed_words())
    assert cand.shape == (V, 4)
    assert (cand[:3] == -1).all()  # special tokens get no candidates ...
    assert not torch.isin(cand[3:], torch.tensor(SPECIAL)).any()  # ... and are no candidates
    assert not (cand[3:] == torch.arange(3, V)[:, None]).any()  # never itself
    only = nearest_neighbours(emb(model), k=4, allowed=allowed_words(), tokens=torch.tensor([5, 7]))
    assert torch.equal(only[[5, 7]], cand[[5, 7]]) and (only[[4, 6, 8]] == -1).all()
    with pytest.raises(ValueError, match="k must"):
        nearest_neighbours(emb(model), k=V, allowed=allowed_words())


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_substitution_changes_at_most_k_allowed_words(model, inputs, k):
    ids, mask, y = inputs
    cand = nearest_neighbours(emb(model), k=5, allowed=allowed_words())
    adv = word_substitution(model, ids, mask, y, k, embedding=emb(model), candidates=cand, special_ids=SPECIAL)
    assert adv.shape == ids.shape and adv.dtype == ids.dtype
    changed = adv != ids
    assert (changed.sum(1) <= k).all()
    fixed = special_or_pad(ids, mask)
    assert not (changed & fixed).any()
    for n, t in changed.nonzero().tolist():  # each new token is one of the old token's candidates
        assert int(adv[n, t]) in cand[int(ids[n, t])].tolist()
    if k == 0:
        assert torch.equal(adv, ids)


def test_substitution_budget_k_is_a_prefix_of_a_larger_budget(model, inputs):
    ids, mask, y = inputs
    cand = nearest_neighbours(emb(model), k=5, allowed=allowed_words())
    kw = dict(embedding=emb(model), candidates=cand, special_ids=SPECIAL)
    small, large = word_substitution(model, ids, mask, y, 1, **kw), word_substitution(model, ids, mask, y, 3, **kw)
    ch = small != ids
    assert torch.equal(large[ch], small[ch])  # the first change is the same ...
    assert ((large != ids).sum(1) >= ch.sum(1)).all()  # ... and more may follow


def test_substitution_finds_flips_and_loss_guide_is_exact_greedy():
    model = make_model(1)
    ids, mask = batch(n=4, t=7, seed=3)
    y = torch.tensor([0, 1, 2, 0])  # labels that are often wrong already or easy to flip
    with torch.no_grad():
        keep = model(ids, mask).argmax(1) == y
    cand = nearest_neighbours(emb(model), k=4, allowed=allowed_words())
    kw = dict(embedding=emb(model), candidates=cand, special_ids=SPECIAL)
    adv = word_substitution(model, ids, mask, y, 1, guide="loss", **kw)
    for n in keep.nonzero().squeeze(1).tolist():  # brute force: the best single substitution
        best = -float("inf")
        for t in range(1, int(mask[n].sum()) - 1):
            for c in cand[int(ids[n, t])].tolist():
                trial = ids[n:n + 1].clone()
                trial[0, t] = c
                with torch.no_grad():
                    best = max(best, torch.nn.functional.cross_entropy(model(trial, mask[n:n + 1]), y[n:n + 1]).item())
        with torch.no_grad():
            got = torch.nn.functional.cross_entropy(model(adv[n:n + 1], mask[n:n + 1]), y[n:n + 1]).item()
        assert got == pytest.approx(best, abs=1e-5)


def test_substitution_respects_modifiable(model, inputs):
    ids, mask, y = inputs
    cand = nearest_neighbours(emb(model), k=5, allowed=allowed_words())
    modifiable = torch.zeros_like(ids, dtype=torch.bool)
    modifiable[:, 2] = True
    adv = word_substitution(model, ids, mask, y, 3, embedding=emb(model), candidates=cand, special_ids=SPECIAL,
                            modifiable=modifiable)
    assert not ((adv != ids) & ~modifiable).any()


# --- the contract shared by both ------------------------------------------------------------------------------------

def _both(model, ids, mask, y):
    cand = nearest_neighbours(emb(model), k=5, allowed=allowed_words())
    embedding_pgd(model, ids, mask, y, 0.5, steps=3, embedding=emb(model), special_ids=SPECIAL)
    word_substitution(model, ids, mask, y, 2, embedding=emb(model), candidates=cand, special_ids=SPECIAL)


def test_inputs_untouched_mode_restored_no_parameter_gradients(model, inputs):
    ids, mask, y = inputs
    copies = ids.clone(), mask.clone(), y.clone(), emb(model).weight.detach().clone()
    model.train()
    _both(model, ids, mask, y)
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(ids, copies[0]) and torch.equal(mask, copies[1]) and torch.equal(y, copies[2])
    assert torch.equal(emb(model).weight, copies[3])
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    _both(model, ids, mask, y)
    assert not model.training


def test_attacks_run_in_eval_mode(model, inputs):
    """With dropout active the same input gives different logits; the attacks must not see that."""
    ids, mask, y = inputs
    model.train()
    a = embedding_pgd(model, ids, mask, y, 0.5, steps=3, embedding=emb(model), special_ids=SPECIAL)
    b = embedding_pgd(model, ids, mask, y, 0.5, steps=3, embedding=emb(model), special_ids=SPECIAL)
    assert torch.equal(a, b)


def _call(which, model, ids, mask, y, net=None, **over):
    """Run one attack on ``model`` (or on ``net``, a stand-in for a bad model) with ``over`` overriding kwargs."""
    if which == "pgd":
        kw = dict(eps=0.5, steps=2, embedding=emb(model), special_ids=SPECIAL) | over
        return embedding_pgd(net or model, ids, mask, y, **kw)
    cand = nearest_neighbours(emb(model), k=3, allowed=allowed_words())
    kw = dict(max_changes=1, embedding=emb(model), candidates=cand, special_ids=SPECIAL) | over
    return word_substitution(net or model, ids, mask, y, **kw)


@pytest.mark.parametrize("which", ["pgd", "sub"])
def test_bad_arguments_raise_errors_naming_them(model, inputs, which):
    ids, mask, y = inputs
    with pytest.raises(TypeError, match="ids"):
        _call(which, model, ids.float(), mask, y)
    with pytest.raises(ValueError, match="ids"):
        _call(which, model, ids + V, mask, y)
    with pytest.raises(ValueError, match="attention_mask"):
        _call(which, model, ids, mask[:, :3], y)
    with pytest.raises(ValueError, match="attention_mask"):
        _call(which, model, ids, mask * 2, y)
    with pytest.raises(ValueError, match="y"):
        _call(which, model, ids, mask, y[:2])
    with pytest.raises(TypeError, match="y"):
        _call(which, model, ids, mask, y.float())
    with pytest.raises(ValueError, match="labels"):
        _call(which, model, ids, mask, torch.full_like(y, 7))
    with pytest.raises(TypeError, match="model"):
        _call(which, model, ids, mask, y, net=lambda **kw: None)
    with pytest.raises(TypeError, match="embedding"):
        _call(which, model, ids, mask, y, embedding="table")
    with pytest.raises(TypeError, match="special_ids"):
        _call(which, model, ids, mask, y, special_ids=3)
    with pytest.raises(ValueError, match="modifiable"):
        _call(which, model, ids, mask, y, modifiable=torch.ones(2, 2, dtype=torch.bool))
    if which == "pgd":
        with pytest.raises(ValueError, match="eps"):
            _call(which, model, ids, mask, y, eps=-0.1)
        with pytest.raises(ValueError, match="alpha"):
            _call(which, model, ids, mask, y, alpha=float("nan"))
        with pytest.raises(ValueError, match="steps"):
            _call(which, model, ids, mask, y, steps=-1)
    else:
        with pytest.raises(ValueError, match="max_changes"):
            _call(which, model, ids, mask, y, max_changes=-1)
        with pytest.raises(TypeError, match="max_changes"):
            _call(which, model, ids, mask, y, max_changes=1.5)
        with pytest.raises(ValueError, match="guide"):
            _call(which, model, ids, mask, y, guide="random")
        with pytest.raises(ValueError, match="candidates"):
            _call(which, model, ids, mask, y, candidates=torch.zeros(3, 2, dtype=torch.long))
        with pytest.raises(ValueError, match="candidates"):
            _call(which, model, ids, mask, y, candidates=torch.full((V, 2), V))
        with pytest.raises(ValueError, match="n_try"):
            _call(which, model, ids, mask, y, n_try=0)
