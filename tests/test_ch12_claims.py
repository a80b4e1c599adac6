"""Chapter 12's claims, on the fast profile's settings (the models come from the shared cache)."""

import pytest
import torch

from advcourse import data
from advcourse.attacks.text import nearest_neighbours
from advcourse.exercises.ch12 import check_flip_scores, check_mlm_corrupt
from advcourse.experiments import ch12_bert as bt
from advcourse.models.bert import embed_sentences, load_minilm

S = bt.FAST  # the chapter's settings: every model is trained with this recipe
FIT = dict(seed=0, device="cpu", progress=False)
N = 40  # snippets attacked here (the chapter attacks S.n_attack)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def reviews():
    return data.movie_reviews()


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def wp(reviews, minilm):
    return bt.SubVocab(minilm[1], reviews.text_train, S.vocab_size)


@pytest.fixture(scope="module")
def mlm(reviews, wp):
    return bt.pretrain_tiny_bert(reviews.text_train, wp, S, **FIT)[0]


@pytest.fixture(scope="module")
def test_split(reviews):
    return bt.sentiment_split(reviews.text_test, reviews.rating_test, S.n_test, seed=1)


@pytest.fixture(scope="module")
def classifier(minilm, reviews):
    model, tokenizer = minilm
    head = bt.train_sentiment_head(model, tokenizer, reviews, S, **FIT)[0]
    return bt.SentenceClassifier(model, head).eval()


# --- unit tests of the experiment functions ----------------------------------------------------------------------

def test_sentiment_split_is_balanced_in_every_prefix(reviews):
    texts, y = bt.sentiment_split(reviews.text_train, reviews.rating_train, 100)
    assert len(texts) == 100 and y.tolist() == [1, 0] * 50
    assert len(set(texts)) == 100
    lookup = dict(zip(reviews.text_train, reviews.rating_train.tolist()))
    assert all((lookup[t] > 0) == bool(label) for t, label in zip(texts, y))
    with pytest.raises(ValueError, match="n must"):
        bt.sentiment_split(reviews.text_train, reviews.rating_train, 10**6)


def test_wordpiece_input_format(minilm):
    rows = bt.show_tokens(minilm[1], "A tiny test.", "Another one!")
    tokens, segments = [r[0] for r in rows], [r[2] for r in rows]
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    first_sep = tokens.index("[SEP]")
    assert set(segments[:first_sep + 1]) == {0} and set(segments[first_sep + 1:]) == {1}
    assert [r[3] for r in rows] == list(range(len(rows)))


def test_sub_vocabulary_keeps_the_frequent_tokens_deterministically(minilm, wp, reviews):
    assert wp.get_vocab_size() == S.vocab_size and bt.special_ids(wp) == [0, 1, 2, 3, 4]
    assert wp.fingerprint() == bt.SubVocab(minilm[1], reviews.text_train, S.vocab_size).fingerprint()
    assert wp.coverage > 0.9
    ids, mask = wp.encode(["the film is good"])
    assert [wp.id_to_token(int(i)) for i in ids[0]] == ["[CLS]", "the", "film", "is", "good", "[SEP]"]
    assert ids.max() < S.vocab_size


def test_length_buckets_cover_every_example_once():
    ids = torch.arange(100)[:, None].repeat(1, 3)
    mask = (torch.rand(100, 3, generator=torch.Generator().manual_seed(0)) > 0.5).long()
    batches = list(bt.LengthBuckets(ids, mask, batch_size=8, seed=0))
    seen = torch.cat([b[0][:, 0] for b in batches])
    assert sorted(seen.tolist()) == list(range(100))


def test_bert_base_and_large_parameter_counts():
    assert bt.bert_parameter_count() == 109_482_240  # the paper's "110M"
    assert round(bt.bert_parameter_count(hidden=1024, layers=24, heads=16) / 1e6) == 335  # "340M"


def test_render_marks_changed_words(minilm):
    _, tok = minilm
    ids, mask = bt.encode(["a good film"], tok)
    changed = torch.zeros_like(ids, dtype=torch.bool)
    changed[0, 2] = True
    assert bt.render(tok, ids[0], mask[0], changed[0]) == "a **good** film"


# --- the chapter's claims ------------------------------------------------------------------------------------------

def test_corruption_rates_are_the_papers(reviews, wp):
    ids, mask, special = bt.tokenize(reviews.text_train, wp, S.max_len)
    r = bt.corruption_rates(ids, special, S.vocab_size, wp.token_to_id("[MASK]"), torch.Generator().manual_seed(0))
    # >200,000 tokens: standard errors ≈ 0.0008 (selection) and ≈ 0.002 (split); tolerances are ≥ 4 of them
    assert abs(r["selected"] - 0.15) < 0.004
    assert abs(r["mask"] - 0.8) < 0.01 and abs(r["random"] - 0.1) < 0.008 and abs(r["same"] - 0.1) < 0.008


def test_nsp_pairs_are_half_is_next(reviews):
    pairs = bt.nsp_pairs(reviews.text_train, torch.Generator().manual_seed(0))
    assert len(pairs) > 500
    assert abs(sum(p[2] for p in pairs) / len(pairs) - 0.5) < 0.06  # ±3.5 standard errors
    assert all(a != b for a, b, is_next in pairs if not is_next)  # NotNext: B from another snippet


def test_minilm_in_our_bert_equals_the_reference(minilm):
    check = bt.reference_check(*minilm)
    assert check["ids_equal"] and check["max_abs_diff"] <= 1e-5 and check["n"] == 5


def test_tiny_bert_learns_from_context_but_little(reviews, wp, mlm):
    ids, _, special = bt.tokenize(reviews.text_train, wp, S.max_len)
    t_ids, t_mask, t_special = bt.tokenize(reviews.text_test, wp, S.max_len)
    held_out = bt.mlm_loss(mlm, t_ids, t_mask, t_special, wp.token_to_id("[MASK]"))
    unigram = bt.unigram_loss(ids, special, t_ids, t_special, S.vocab_size)
    assert held_out < unigram - 0.05  # beats the best context-free model ...
    assert held_out > unigram - 2.0   # ... by far less than a well-trained BERT would


def test_pretraining_the_tiny_bert_buys_little_and_minilm_more(reviews, wp, mlm, minilm, classifier, test_split):
    texts, y = test_split
    x_ids, x_mask, _ = bt.tokenize(texts, wp, S.max_len)
    runs = {name: bt.finetune_tiny(reviews, wp, S, pretrained=p, **FIT) for name, p in (("scratch", None),
                                                                                         ("tuned", mlm))}
    acc = {name: bt.classifier_accuracy(model, x_ids, x_mask, y) for name, (model, _) in runs.items()}
    assert 0.6 < acc["scratch"] < 0.8 and acc["tuned"] < acc["scratch"] + 0.05  # "no gain" at this scale
    fit = {name: meta["metrics"]["train_acc"][-1] for name, (_, meta) in runs.items()}
    assert fit["tuned"] < fit["scratch"] - 0.03  # "it adapts more slowly", not faster
    model, tok = minilm
    feats = embed_sentences(model, tok, texts)
    with torch.no_grad():
        acc_minilm = (classifier.head(feats).argmax(1) == y).float().mean().item()
    assert acc_minilm > max(acc.values()) + 0.02  # the real pre-trained model is better, frozen


def test_sentence_classifier_equals_head_on_embeddings(minilm, classifier, test_split):
    model, tok = minilm
    texts = test_split[0][:8]
    ids, mask = bt.encode(texts, tok)
    with torch.no_grad():
        torch.testing.assert_close(classifier(ids, mask), classifier.head(embed_sentences(model, tok, texts)),
                                   atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def attacked(minilm, classifier, test_split):
    model, tok = minilm
    texts, y = test_split[0][:2 * N], test_split[1][:2 * N]
    with torch.no_grad():
        correct = classifier.head(embed_sentences(model, tok, texts)).argmax(1) == y
    _, ids, mask, ya = bt.attack_set(tok, texts, y, correct, N)
    assert len(ids) == N
    words = bt.whole_words(tok)
    return dict(ids=ids, mask=mask, y=ya, words=words, movable=bt.word_positions(ids, mask, words, tok),
                specials=bt.special_ids(tok), emb=model.embeddings.word_embeddings)


def test_embedding_pgd_fools_but_its_points_are_not_words(classifier, attacked):
    from dataclasses import replace

    a = attacked
    nn_med = bt.neighbour_distances(a["emb"].weight.detach(), a["words"]).median().item()
    eps = (S.eps_values[0], S.eps_values[1])
    sweep = bt.pgd_sweep(classifier, a["ids"], a["mask"], a["y"], replace(S, eps_values=eps), embedding=a["emb"],
                         specials=a["specials"], modifiable=a["movable"])
    assert sweep[eps[1]]["acc"] <= sweep[eps[0]]["acc"]
    assert sweep[eps[1]]["acc"] < 0.5  # ε a tenth of the word spacing at least halves the accuracy
    assert eps[1] < 0.5 * nn_med  # ... though it cannot reach another word
    assert all(r["snapped"] >= 0.9 for r in sweep.values())  # rounded to words, the attack is gone


def test_word_substitution_success_grows_with_the_budget(classifier, attacked):
    a = attacked
    cand = nearest_neighbours(a["emb"], S.n_neighbours, allowed=a["words"], tokens=a["ids"])
    sub = bt.substitution_run(classifier, a["ids"], a["mask"], a["y"], S, embedding=a["emb"], candidates=cand,
                              specials=a["specials"], modifiable=a["movable"])
    curve = sub["curve"]
    assert curve[0] == 0 and all(b >= c for b, c in zip(curve[1:], curve))
    assert curve[-1] > 0.1 and curve[-1] > curve[1]
    assert (sub["changes"] <= S.max_changes).all()
    assert torch.equal(sub["adv"][~a["movable"]], a["ids"][~a["movable"]])  # only whole words changed


# --- the exercise checkers ----------------------------------------------------------------------------------------

def _good_corrupt(ids, special, vocab_size, mask_id, generator):
    from advcourse.models.bert import mlm_corrupt

    return mlm_corrupt(ids, special, vocab_size, mask_id, generator=generator)


def _all_mask(ids, special, vocab_size, mask_id, generator):
    sel = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special
    return torch.where(sel, mask_id, ids), torch.where(sel, ids, -100)


def _mask_only_labelled(ids, special, vocab_size, mask_id, generator):
    out, labels = _good_corrupt(ids, special, vocab_size, mask_id, generator)
    return out, torch.where(out == mask_id, labels, -100)


def test_corrupt_checker_accepts_a_correct_answer_and_explains_wrong_ones():
    assert "correct" in check_mlm_corrupt(_good_corrupt)
    with pytest.raises(AssertionError, match="random token"):
        check_mlm_corrupt(_all_mask)
    with pytest.raises(AssertionError, match="label every selected token"):
        check_mlm_corrupt(_mask_only_labelled)


def test_flip_checker_accepts_a_correct_answer_and_explains_wrong_ones():
    def good(grad, table, ids):
        return grad @ table.T - (grad * table[ids]).sum(-1, keepdim=True)

    assert "correct" in check_flip_scores(good)
    with pytest.raises(AssertionError, match="current token"):
        check_flip_scores(lambda g, t, i: g @ t.T)
    with pytest.raises(AssertionError, match="sign"):
        check_flip_scores(lambda g, t, i: -good(g, t, i))
