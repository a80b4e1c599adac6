"""JSMA, Square, transfer, rubbish noise and the evaluation helpers."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from atk_models import Softmaxed, images, make_mlp, predict

from advcourse import attacks as A


# ------------------------------------------------------------------- JSMA
@pytest.mark.parametrize("variant", ["z", "f"])
def test_jsma_hits_targets_with_few_increased_features(variant):
    model = make_mlp(2)
    x = images(32, seed=3)
    y = predict(model, x)
    t = (y + 1) % 10
    gamma = 0.5
    x_adv = A.jsma(model, x, t, gamma=gamma, variant=variant)
    hit = predict(model, x_adv) == t
    assert hit.float().mean() >= (0.4 if variant == "z" else 0.7)
    changed = (x_adv != x).flatten(1).sum(1)
    assert (changed <= 2 * math.floor(gamma * 64 / 2)).all()
    assert (x_adv >= x).all()  # theta = +1 only increases features
    assert ((x_adv == x) | (x_adv == 1)).all()  # ... and saturates them


def test_jsma_leaves_examples_already_at_target_and_decreases_with_negative_theta():
    model = make_mlp(2)
    x = images(8, seed=4)
    y = predict(model, x)
    assert torch.equal(A.jsma(model, x, y), x)
    x_adv = A.jsma(model, x, (y + 1) % 10, theta=-1.0, gamma=0.3)
    assert (x_adv <= x).all() and ((x_adv == x) | (x_adv == 0)).all()


def test_jsma_validation(mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="theta"):
        A.jsma(mlp, x, y, theta=0.0)
    with pytest.raises(ValueError, match="gamma"):
        A.jsma(mlp, x, y, gamma=1.5)
    with pytest.raises(ValueError, match="variant"):
        A.jsma(mlp, x, y, variant="g")
    with pytest.raises(ValueError, match="target"):
        A.jsma(mlp, x, y + 10)


# ----------------------------------------------------------------- Square
def test_p_schedule():
    assert A.square_p_schedule(0.8, 0, 10000) == 0.8
    assert A.square_p_schedule(0.8, 11, 10000) == 0.4
    assert A.square_p_schedule(0.8, 9000, 10000) == 0.8 / 512
    assert A.square_p_schedule(0.8, 5, 100) == A.square_p_schedule(0.8, 500, 10000)


def test_square_fools_and_is_reproducible():
    model = make_mlp(2)
    x = images(32, seed=5)
    y = predict(model, x)
    eps = 0.05
    a = A.square(model, x, y, eps, n_queries=200, p_init=0.3, generator=torch.Generator().manual_seed(0))
    b = A.square(model, x, y, eps, n_queries=200, p_init=0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert (a - x).abs().max() <= eps
    assert (predict(model, a) == y).float().mean() <= 0.8
    # targeted: runner-up class
    with torch.no_grad():
        t = model(x).topk(2, dim=1).indices[:, 1]
    c = A.square(model, x, t, 0.1, n_queries=200, p_init=0.3, targeted=True, generator=torch.Generator().manual_seed(1))
    assert (predict(model, c) == t).float().mean() >= 0.5


def test_square_validation(mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="x"):
        A.square(mlp, x.flatten(1), y, 0.1)
    with pytest.raises(ValueError, match="eps"):
        A.square(mlp, x, y, -0.1)
    with pytest.raises(ValueError, match="p_init"):
        A.square(mlp, x, y, 0.1, p_init=2.0)


def test_square_query_budget_edges():
    # n_queries counts the initialisation, so 0 queries has no schedule and no attack: a clear error
    # (not a ZeroDivisionError from the schedule); 1 query is the initialisation alone.
    model = make_mlp(2)
    x = images(8, seed=5, shape=(1, 8, 8))
    y = predict(model, x)
    with pytest.raises(ValueError, match="n_queries"):
        A.square(model, x, y, 0.1, n_queries=0)
    with pytest.raises(ValueError, match="n_queries"):
        A.square_p_schedule(0.05, 0, 0)
    with pytest.raises(ValueError, match="it"):
        A.square_p_schedule(0.05, -1, 100)
    x1 = A.square(model, x, y, 0.1, n_queries=1, generator=torch.Generator().manual_seed(0))
    d = x1 - x
    kept = (d == 0).flatten(1).all(1)
    inner = (x > 0.1 + 1e-6) & (x < 0.9 - 1e-6)  # where the clip to [0, 1] does not act
    assert torch.allclose(d.abs()[inner & ~kept.view(-1, 1, 1, 1)], torch.tensor(0.1), atol=1e-6)
    sgn = torch.where(inner, d.sign(), 0.0)
    assert not ((sgn > 0).any(2) & (sgn < 0).any(2)).any()  # one sign per column: vertical stripes
    with torch.no_grad():
        m0 = model(x).gather(1, y[:, None]).squeeze(1) - model(x).scatter(1, y[:, None], -1e9).amax(1)
        m1 = model(x1).gather(1, y[:, None]).squeeze(1) - model(x1).scatter(1, y[:, None], -1e9).amax(1)
    assert (m1 <= m0).all()  # the better of the two points is kept


# ---------------------------------------------------------- transfer, rubbish
def test_transfer_between_models():
    sur, tgt = make_mlp(1), make_mlp(1)  # identical weights -> transfer is perfect
    x = images(16, seed=6)
    y = predict(sur, x)
    res = A.transfer(sur, tgt, x, y, A.fgsm, eps=0.3)
    assert res.surrogate_fooled.any()
    assert torch.equal(res.surrogate_fooled, res.target_fooled)
    assert res.transfer_rate == 1.0
    other = make_mlp(9)
    res2 = A.transfer(sur, other, x, y, A.pgd, eps=0.1, steps=5, generator=torch.Generator().manual_seed(0))
    assert res2.x_adv.shape == x.shape and 0.0 <= res2.target_accuracy <= 1.0
    with pytest.raises(TypeError, match="attack"):
        A.transfer(sur, tgt, x, y, "fgsm")


def test_gaussian_rubbish_is_clipped_standard_normal():
    g = torch.Generator().manual_seed(0)
    r = A.gaussian_rubbish((1, 8, 8), 500, g)
    assert r.shape == (500, 1, 8, 8) and r.min() == 0 and r.max() == 1
    frac0, frac1 = (r == 0).float().mean(), (r == 1).float().mean()
    assert abs(frac0 - 0.5) < 0.02 and abs(frac1 - 0.1587) < 0.02
    assert torch.equal(r, A.gaussian_rubbish((1, 8, 8), 500, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="n"):
        A.gaussian_rubbish((3,), -1)


# ------------------------------------------------------------- evaluation
def test_robust_accuracy_and_curve():
    model = make_mlp(2)
    x = images(40, seed=7)
    y = predict(model, x)
    y[:4] = (y[:4] + 1) % 10  # 4 clean errors
    assert A.robust_accuracy(model, x, y) == pytest.approx(0.9)
    accs = A.accuracy_vs_eps(model, x, y, A.fgsm, [0.0, 0.02, 0.1], batch_size=16)
    assert accs[0] == pytest.approx(0.9) and accs[0] >= accs[1] >= accs[2]
    kw = dict(eps=0.03, steps=10, early_stop=True)
    full = A.robust_accuracy(model, x, y, A.pgd, batch_size=40, generator=torch.Generator().manual_seed(0), **kw)
    assert full <= A.robust_accuracy(model, x, y, A.fgsm, eps=0.03)


def test_worst_case_is_per_example_minimum():
    model = make_mlp(2)
    x = images(40, seed=8)
    y = predict(model, x)
    atks = {"fgsm": functools.partial(A.fgsm, eps=0.03), "fgm": functools.partial(A.fgm, eps=0.3)}
    wc = A.worst_case_over(model, x, y, atks, batch_size=16)
    m1 = A.robust_mask(model, x, y, A.fgsm, eps=0.03)
    m2 = A.robust_mask(model, x, y, A.fgm, eps=0.3)
    assert torch.equal(wc.robust, m1 & m2)
    assert wc.accuracy == pytest.approx(float((m1 & m2).float().mean()))
    assert list(wc.accuracy_after) == ["fgsm", "fgm"]
    assert (wc.fooled_by[~m1] == 0).all()
    assert (predict(model, wc.x_adv)[~wc.robust] != y[~wc.robust]).all()


def test_transfer_matrix_and_strong_evaluation():
    models = {"a": make_mlp(1), "b": make_mlp(2)}
    x = images(24, seed=9)
    y = predict(models["a"], x)
    M = A.transfer_matrix(models, x, y, A.fgsm, eps=0.05)
    assert M.shape == (2, 2) and ((M >= 0) & (M <= 1)).all()
    model = models["b"]
    y = predict(model, x)
    res = A.strong_evaluation(model, x, y, eps=0.03, steps=10, restarts=2, square_queries=50,
                              generator=torch.Generator().manual_seed(0))
    assert list(res.accuracy_after) == ["apgd_ce", "apgd_t", "square"]
    # each component runs on the survivors of the previous ones: the first is APGD-CE alone
    ce_only = A.robust_mask(model, x, y, A.apgd, eps=0.03, steps=10, restarts=2,
                            generator=torch.Generator().manual_seed(0))
    assert res.accuracy_after["apgd_ce"] == pytest.approx(float(ce_only.float().mean()))
    assert torch.equal(res.robust, res.robust & ce_only)
    accs = list(res.accuracy_after.values())
    assert all(a >= b for a, b in zip(accs, accs[1:])) and res.accuracy == accs[-1]
    # who caught what: every fooled example is attributed to exactly one component
    assert sum(res.caught.values()) == int((res.fooled_by >= 0).sum()) == int((~res.robust).sum() - (y != predict(
        model, x)).sum())
    assert ce_only.sum() - res.robust.sum() == res.caught["apgd_t"] + res.caught["square"]
    old = A.strong_evaluation(model, x, y, eps=0.03, components=("pgd_ce", "pgd_margin", "square"), steps=10,
                              restarts=2, square_queries=50, generator=torch.Generator().manual_seed(0))
    assert list(old.accuracy_after) == ["pgd_ce", "pgd_margin", "square"]
    pgd_only = A.robust_accuracy(model, x, y, A.pgd, eps=0.03, steps=10, generator=torch.Generator().manual_seed(0))
    assert old.accuracy <= pgd_only + 1e-9
    res2 = A.strong_evaluation(model, x, y, eps=0.5, norm="2", steps=10, restarts=1)
    assert list(res2.accuracy_after) == ["apgd_ce", "apgd_t"]  # Square is L-inf only
    with pytest.raises(ValueError, match="components"):
        A.strong_evaluation(model, x, y, eps=0.03, components=["fab"])
    with pytest.raises(ValueError, match="components"):
        A.strong_evaluation(model, x, y, eps=0.03, components="apgd_ce")


def _perturbed_copy(model, seed, scale=0.2):
    """A copy of ``model`` with every weight moved by ``scale`` of its layer's mean size: a related model."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return other


def test_transfer_matrix_values_equal_a_direct_computation():
    # float64 models, so FGSM in chunks of 10 equals FGSM on the whole batch; three related models, so the
    # entries are neither 0 nor 1 and differ between rows and columns
    a = make_mlp(1).double()
    models = {"a": a, "b": _perturbed_copy(a, 1), "c": _perturbed_copy(a, 2)}
    x = images(24, seed=9, dtype=torch.float64)
    y = predict(a, x)
    M = A.transfer_matrix(models, x, y, A.fgsm, eps=0.3, batch_size=10)
    direct = torch.tensor([[(predict(dst, A.fgsm(src, x, y, eps=0.3)) == y).double().mean().item()
                            for dst in models.values()] for src in models.values()], dtype=torch.float64)
    torch.testing.assert_close(M, direct, atol=1e-6, rtol=0)  # entries are multiples of 1/24
    assert len(set(M.flatten().tolist())) >= 4 and 0 < M.min() and M.max() < 1
    assert torch.equal(A.transfer_matrix(list(models.values()), x, y, A.fgsm, eps=0.3), M)  # list == dict


def test_transfer_matrix_validation():
    a, b = make_mlp(1), make_mlp(2)
    x = images(6, seed=1)
    y = predict(a, x)
    with pytest.raises(ValueError, match="models"):
        A.transfer_matrix([], x, y, A.fgsm, eps=0.1)
    with pytest.raises(ValueError, match="models"):
        A.transfer_matrix({}, x, y, A.fgsm, eps=0.1)
    with pytest.raises(TypeError, match=r"models\['b'\]"):
        A.transfer_matrix({"a": a, "b": "not a model"}, x, y, A.fgsm, eps=0.1)
    with pytest.raises(ValueError, match="y"):
        A.transfer_matrix([a, b], x, y[:4], A.fgsm, eps=0.1)  # one label per example
    with pytest.raises(ValueError, match="x"):
        A.transfer_matrix([a, b], x * 3, y, A.fgsm, eps=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        A.transfer_matrix([a, b], x, y, A.fgsm, eps=0.1, batch_size=0)
    with pytest.raises(TypeError, match="attack"):
        A.transfer_matrix([a, b], x, y, "fgsm")
    with pytest.raises(ValueError, match=r"attack .* shape.*models\[0\]"):
        A.transfer_matrix([a, b], x, y, lambda m, xx, yy: xx.flatten(1))
    three = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(ValueError, match=r"models\[1\] returns only 3 logits"):
        A.transfer_matrix([a, three], x, torch.full_like(y, 7), A.fgsm, eps=0.1)
    empty = A.transfer_matrix([a, b], x[:0], y[:0], A.fgsm, eps=0.1)
    assert empty.shape == (2, 2) and empty.isnan().all()


def test_evaluation_warns_on_probabilities():
    model = Softmaxed(make_mlp(2))
    x = images(8, seed=10)
    with pytest.warns(UserWarning, match="logits"):
        A.robust_accuracy(model, x, predict(model, x))
