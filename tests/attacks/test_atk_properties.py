"""Property tests shared by all attacks (hypothesis, few examples each)."""

from __future__ import annotations

import pytest
import torch
from atk_models import BNDrop, images, make_mlp, predict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advcourse import attacks as A

SETTINGS = dict(max_examples=6, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# name -> (callable(model, x, y, eps), norm or None for unbounded, deterministic)
ATTACKS = {
    "fgsm": (lambda m, x, y, e: A.fgsm(m, x, y, eps=e), "inf", True),
    "fgm": (lambda m, x, y, e: A.fgm(m, x, y, eps=e), "2", True),
    "bim": (lambda m, x, y, e: A.bim(m, x, y, eps=e, alpha=e / 4, steps=6), "inf", True),
    "bim_l2": (lambda m, x, y, e: A.bim(m, x, y, eps=e, alpha=e / 4, steps=6, norm="2"), "2", True),
    "pgd": (lambda m, x, y, e: A.pgd(m, x, y, eps=e, steps=5, restarts=2,
                                     generator=torch.Generator().manual_seed(0)), "inf", False),
    "pgd_l2": (lambda m, x, y, e: A.pgd(m, x, y, eps=e, steps=5, norm="2", loss="margin", early_stop=True,
                                        generator=torch.Generator().manual_seed(0)), "2", False),
    "deepfool": (lambda m, x, y, e: A.deepfool(m, x, y, max_iter=10), None, True),
    "cw_l2": (lambda m, x, y, e: A.cw_l2(m, x, y, steps=20, binary_search_steps=3, c=0.1), None, True),
    "cw_l2_f2_projected": (lambda m, x, y, e: A.cw_l2(m, x, y, steps=10, binary_search_steps=2, objective="f2",
                                                      box="projected"), None, True),
    "cw_linf": (lambda m, x, y, e: A.cw_linf(m, x, y, steps=10, tau_decay=0.5, min_tau=0.05), None, True),
    "cw_l0": (lambda m, x, y, e: A.cw_l0(m, x, y, steps=10, max_rounds=8), None, True),
    "lbfgs": (lambda m, x, y, e: A.lbfgs_untargeted(m, x, y, search_steps=3, max_iter=10), None, False),
    "jsma_z": (lambda m, x, y, e: A.jsma(m, x, torch.where(y == 9, 0, y + 1), gamma=0.3), None, True),
    "jsma_f_decrease": (lambda m, x, y, e: A.jsma(m, x, torch.where(y >= 8, y - 8, y + 2), gamma=0.3, theta=-0.5,
                                                  variant="f"), None, True),
    "square": (lambda m, x, y, e: A.square(m, x, y, eps=e, n_queries=30, p_init=0.3,
                                           generator=torch.Generator().manual_seed(0)), "inf", False),
}


def register(name, fn, norm, deterministic):
    ATTACKS[name] = (fn, norm, deterministic)


register("apgd_dlr", lambda m, x, y, e: A.apgd(m, x, y, eps=e, steps=5, loss="dlr", restarts=2,
                                               generator=torch.Generator().manual_seed(0)), "inf", False)


def _check_ball(x_adv, x, eps, norm):
    assert ((x_adv >= 0) & (x_adv <= 1)).all()
    if norm == "inf":
        assert (x_adv - x).abs().max() <= eps
    elif norm == "2":
        assert ((x_adv - x).flatten(1).norm(dim=1) <= eps * (1 + 1e-6)).all()


@pytest.mark.parametrize("name", list(ATTACKS))
@settings(**SETTINGS)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5), eps=st.floats(0.0, 1.5), lo=st.sampled_from([0.0, 0.3]))
def test_box_ball_inputs_mode_grads(name, seed, n, eps, lo):
    fn, norm, _ = ATTACKS[name]
    if norm == "inf":
        eps = min(eps, 1.0) / 3
    model = BNDrop(seed % 3)
    model.train()
    model.net[4].eval()  # a submodule in a different mode must come back as it was
    for i, p in enumerate(model.parameters()):
        if i % 2 == 0:
            p.grad = torch.full_like(p, 0.5)
    grads_before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    x = images(n, seed=seed, lo=lo, hi=1.0 - lo / 2)
    with torch.no_grad():
        model.eval()
        y = model(x).argmax(1)
        model.train()
        model.net[4].eval()
    x0, y0 = x.clone(), y.clone()
    x_adv = fn(model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert model.training and model.net[1].training and not model.net[4].training
    for p, gb in zip(model.parameters(), grads_before):
        assert (p.grad is None and gb is None) or torch.equal(p.grad, gb)
    _check_ball(x_adv, x, eps, norm)


@pytest.mark.parametrize("name", [k for k, v in ATTACKS.items() if v[1] is not None])
@settings(**SETTINGS)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4))
def test_eps_zero_is_identity(name, seed, n):
    fn, _, _ = ATTACKS[name]
    model = make_mlp(seed % 5)
    x = images(n, seed=seed)
    assert torch.equal(fn(model, x, predict(model, x), 0.0), x)


@pytest.mark.parametrize("name", [k for k, v in ATTACKS.items() if v[2]])
@settings(**SETTINGS)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 6))
def test_batched_equals_one_by_one(name, seed, n):
    fn, norm, _ = ATTACKS[name]
    model = make_mlp(seed % 5).double()
    x = images(n, seed=seed, dtype=torch.float64)
    y = predict(model, x)
    eps = 0.1 if norm == "inf" else 1.0
    batched = fn(model, x, y, eps)
    single = torch.cat([fn(model, x[i : i + 1], y[i : i + 1], eps) for i in range(n)])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)


# ------------------------------------------------- validation for every attack
@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_validates_inputs_and_warns_on_probabilities(name):
    import warnings

    from atk_models import Softmaxed

    fn, _, _ = ATTACKS[name]
    model = make_mlp(1)
    x = images(4, seed=0)
    y = predict(model, x)
    label = "y|target"
    with pytest.raises(ValueError, match="x"):
        fn(model, x * 2, y, 0.1)
    with pytest.raises(ValueError, match="x"):
        fn(model, torch.full_like(x, float("inf")), y, 0.1)
    with pytest.raises(TypeError, match="x"):
        fn(model, x.to(torch.int64), y, 0.1)
    with pytest.raises(ValueError, match=label):
        fn(model, x, y[:2], 0.1)
    with pytest.raises(TypeError, match=label):
        fn(model, x, y.double(), 0.1)
    with pytest.raises(ValueError, match=label):
        fn(model, x, y - 20, 0.1)
    with pytest.raises(TypeError, match="model"):
        fn(lambda t: t, x, y, 0.1)
    with pytest.warns(UserWarning, match="logits"):
        fn(Softmaxed(model), x, y, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(model, x, y, 0.1)
