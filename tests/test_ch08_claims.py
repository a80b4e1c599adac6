"""Chapter 8's claims, on the fast profile's settings (shared model cache with the chapter)."""

import math

import pytest
import torch

from advcourse.exercises.ch08 import check_attention
from advcourse.experiments import ch08_transformer as tf

S = tf.FAST  # the chapter's fast-profile settings: every model is trained with them
N = 400  # test sequences scored here (the chapter scores S.n_test)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def models():
    """The chapter's two sorters (seed 0): with the paper's label smoothing 0.1, and without."""
    kw = dict(seed=0, device="cpu", progress=False)
    return {"ls": tf.train_sorter(S, **kw)[0], "plain": tf.train_sorter(S, label_smoothing=0.0, **kw)[0]}


@pytest.fixture(scope="module")
def test_set():
    return tf.sorting_data(N, S, g(10_000))  # the chapter's test stream (seed 10,000 + run seed)


# --- the checker and the small functions -----------------------------------------------------

def test_attention_checker_accepts_the_solution_and_rejects_mistakes():
    def right(q, k, v, mask=None):
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        return (s if mask is None else s.masked_fill(mask, -math.inf)).softmax(-1) @ v

    assert "passed" in check_attention(right)
    wrong = {
        "inverted": lambda q, k, v, m=None: right(q, k, v, None if m is None else ~m),
        "ignored": lambda q, k, v, m=None: right(q, k, v, None),
        "not divided by √d_k": lambda q, k, v, m=None: right(q * math.sqrt(q.shape[-1]), k, v, m),
        "divided by d_k": lambda q, k, v, m=None: right(q / math.sqrt(q.shape[-1]), k, v, m),
        "shape": lambda q, k, v, m=None: right(q, k, v, m)[..., :1],
    }
    for why, fn in wrong.items():
        with pytest.raises(AssertionError, match=why):
            check_attention(fn)


def test_sorting_data_and_targets():
    src, tgt = tf.sorting_data(50, S, g())
    assert src.shape == (50, S.max_len) and tgt.shape == (50, S.max_len + 2)
    lengths = (src != tf.PAD).sum(1)
    assert lengths.min() >= S.min_len and lengths.max() <= S.max_len
    assert (tgt[:, 0] == tf.BOS).all()
    for s, t, n in zip(src, tgt, lengths):
        assert t[1:n + 1].tolist() == sorted(s[:n].tolist()) and t[n + 1] == tf.EOS
        assert (t[n + 2:] == tf.PAD).all() and (s[n:] == tf.PAD).all()


def test_softmax_jacobian_norm_analytic_cases():
    n = 8
    uniform = torch.full((n,), 1 / n)
    expected = math.sqrt(n * (1 / n - 1 / n**2) ** 2 + (n * n - n) / n**4)
    assert tf.softmax_jacobian_norm(uniform).item() == pytest.approx(expected, rel=1e-5)
    assert tf.softmax_jacobian_norm(torch.eye(n)[0]).item() == 0.0  # one-hot: nothing passes


def test_cost_table_crossings():
    d = 512
    c = tf.cost_table(d, [2 * d - 1, 2 * d + 1])
    assert c[2 * d - 1]["self-attention (n²·d part)"] < c[2 * d - 1]["attention projections"]
    assert c[2 * d + 1]["self-attention (n²·d part)"] > c[2 * d + 1]["attention projections"]


# --- Experiment 1 and the multi-head equality -------------------------------------------------

def test_scores_variance_grows_like_dk_and_the_unscaled_softmax_saturates():
    st = tf.score_statistics(S.d_ks, S.n_keys, 1000, generator=g())
    for d, v, vs in zip(st["d_k"], st["var_raw"], st["var_scaled"]):
        assert abs(v / d - 1) < 0.15 and abs(vs - 1) < 0.15           # footnote 4: Var(q·k) = d_k
    log_n = math.log(S.n_keys)
    assert all(e > 0.85 * log_n for e in st["scaled_entropy"])        # scaled: never collapses
    assert all(a > b for a, b in zip(st["raw_entropy"], st["raw_entropy"][1:]))  # raw: falls with d_k
    assert st["raw_entropy"][-1] < 0.1 * log_n and st["raw_saturated"][-1] > 0.5
    assert st["raw_jac"][-1] < st["scaled_jac"][-1] / 100             # the gradient vanishes
    assert st["raw_saturated"][st["d_k"].index(64)] > 0.05            # already at the base model's d_k


def test_multi_head_attention_equals_torch():
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        for out_diff, w_diff in tf.compare_with_torch(S.d_model, S.n_heads, dtype=dtype).values():
            assert out_diff <= tol and w_diff <= tol


# --- Experiment 2: the sorter and label smoothing ----------------------------------------------

def test_the_sorter_learns_to_sort_and_label_smoothing_hurts_nll_not_accuracy(models, test_set):
    src, tgt = test_set
    ls, plain = (tf.evaluate_sorter(models[k], src, tgt) for k in ("ls", "plain"))
    assert ls["token_acc"] > 0.97 and ls["seq_acc"] > 0.8
    assert tf.greedy_sequence_accuracy(models["ls"], src, tgt) == pytest.approx(ls["seq_acc"], abs=1e-6)
    assert ls["nll"] > plain["nll"] + 0.01                      # paper: "hurts perplexity"
    # paper: "improves accuracy". Not a result one run can settle at this scale: with the same code and
    # seed the smoothed sorter's token accuracy was 2 points above the plain one's on one CPU and 0.5
    # below on another. The chapter says so and its verdict follows its run; both sorters learn the task.
    assert plain["token_acc"] > 0.95
    assert abs(ls["p_true"] - (0.9 + 0.1 / S.model_config().tgt_vocab)) < 0.05  # the true class ≈ 0.9
    assert plain["p_true"] > ls["p_true"] + 0.03


def test_cross_attention_points_at_the_number_being_predicted(models, test_set):
    src, tgt = test_set
    w = tf.weight_on_value(models["ls"], src[:200], tgt[:200])
    assert w["layers"][-1] > 0.5 > 3 * w["uniform"]
    assert w["layers"][0] < w["layers"][-1]                     # the first layer is broader


# --- Experiments 3–5: masks, order, normalisation ----------------------------------------------

def test_masks(models):
    src = tf.sorting_data(50, S, g(1), lengths=(S.min_len, S.min_len))[0][:, :S.min_len]
    c = tf.mask_checks(models["ls"], src, tf.sort_targets(src), generator=g(2))
    assert c["future"] <= 1e-6 and c["present"] > 0.1           # causal: future hidden, t itself seen
    assert c["pad_masked"] < 1e-4 and c["pad_unmasked"] > 0.1


def test_order_comes_only_from_the_positions(models):
    src = tf.sorting_data(200, S, g(3), lengths=(S.max_len, S.max_len))[0]
    r = tf.shuffle_test(models["ls"], src, tf.sort_targets(src), generator=g(4))
    assert r["without positions"]["equivariance"] < 1e-5 and r["without positions"]["logit_change"] < 1e-3
    assert r["with positions"]["equivariance"] > 0.01 and r["with positions"]["logit_change"] > 0.1
    assert r["seq_acc_shuffled"] > r["seq_acc"] - 0.1            # invariance learned, approximately


def test_layer_norm_ignores_the_batch_and_batch_norm_does_not(models, test_set):
    src = test_set[0]
    r = tf.norm_dependence(models["ls"], src[:32], src[32:63], extra_pad=12)
    assert r["LayerNorm (per token)"] == (0.0, 0.0)
    assert min(r["BatchNorm, padding included"]) > 0.05
    assert r["BatchNorm, real tokens only"][0] < 1e-5 < 0.05 < r["BatchNorm, real tokens only"][1]
    check = tf.batchnorm_formula_check(torch.randn(256, 16, generator=g()) * 3 + 1)
    assert check["divide by std"] < 1e-5 and check["divide by variance"] > 0.5


# --- the adversarial section ------------------------------------------------------------------

def test_pgd_on_token_vectors_breaks_the_sorter_where_noise_does_not(models, test_set):
    src, tgt = test_set
    x, y = src[:100], tgt[:100]
    model = models["ls"]
    r0 = tf.token_radius(model, S.n_values)
    clean = tf.evaluate_sorter(model, x, y)["seq_acc"]
    for f in S.radii:
        noise = tf.embedding_pgd(model, x, y, f * r0, random=True, generator=g())["accuracy"]
        assert noise > clean - 0.08                                # random directions hardly matter
    assert tf.embedding_pgd(model, x, y, S.radii[-1] * r0, steps=S.pgd_steps)["accuracy"] < clean - 0.5
    with torch.no_grad():
        before = [p.clone() for p in model.parameters()]
    out = tf.embedding_pgd(model, x, y, 0.1 * r0, steps=5)
    assert out["broken"].shape == (100,)
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))


def test_one_substitution_breaks_most_sequences(models, test_set):
    r = tf.substitution_attack(models["ls"], test_set[0][:50], S.n_values)
    assert r["any_broken"] > 0.3 and r["any_broken"] > 5 * r["random_broken"]
