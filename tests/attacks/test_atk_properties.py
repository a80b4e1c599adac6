"""Property tests shared by all attacks (hypothesis).

How many examples each property tries comes from the hypothesis profile loaded in conftest.py:
6 derandomised examples by default (CI), hundreds of random ones with ``ADVCOURSE_DEEP=1``
(``make test-deep``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from atk_models import BNConv, BNDrop, images, make_mlp, predict
from hypothesis import given
from hypothesis import strategies as st

from advcourse import attacks as A


def _next(y):
    """A target class for the targeted paths: the next label (9 -> 0), per example; labels out of range stay
    out of range, so the validation test still sees them."""
    return torch.where(y == 9, 0, y + 1)


def _gen():
    return torch.Generator().manual_seed(0)


# name -> (callable(model, x, y, eps), norm or None for unbounded, per_example).
# per_example: deterministic, and each example's result depends on that example only, so the batched
# result must equal the one-by-one result.  Not per example: PGD/APGD with random starts and Square draw
# their random numbers for the whole (compacted) batch at once, so an example's draws depend on its
# position in the batch; L-BFGS solves the batch as one L-BFGS-B problem whose line searches, curvature
# pairs and stopping test are shared.
ATTACKS = {
    "fgsm": (lambda m, x, y, e: A.fgsm(m, x, y, eps=e), "inf", True),
    "fgsm_targeted": (lambda m, x, y, e: A.fgsm(m, x, _next(y), eps=e, targeted=True), "inf", True),
    "fgm": (lambda m, x, y, e: A.fgm(m, x, y, eps=e), "2", True),
    "bim": (lambda m, x, y, e: A.bim(m, x, y, eps=e, alpha=e / 4, steps=6), "inf", True),
    "bim_l2": (lambda m, x, y, e: A.bim(m, x, y, eps=e, alpha=e / 4, steps=6, norm="2"), "2", True),
    "pgd": (lambda m, x, y, e: A.pgd(m, x, y, eps=e, steps=5, restarts=2, generator=_gen()), "inf", False),
    "pgd_l2": (lambda m, x, y, e: A.pgd(m, x, y, eps=e, steps=5, norm="2", loss="margin", early_stop=True,
                                        generator=_gen()), "2", False),
    "pgd_targeted": (lambda m, x, y, e: A.pgd(m, x, _next(y), eps=e, steps=5, targeted=True, loss="margin",
                                              early_stop=True, generator=_gen()), "inf", False),
    "pgd_no_random_start": (lambda m, x, y, e: A.pgd(m, x, y, eps=e, steps=5, random_start=False,
                                                     early_stop=True), "inf", True),
    "deepfool": (lambda m, x, y, e: A.deepfool(m, x, y, max_iter=10), None, True),
    "cw_l2": (lambda m, x, y, e: A.cw_l2(m, x, y, steps=20, binary_search_steps=3, c=0.1), None, True),
    "cw_l2_targeted": (lambda m, x, y, e: A.cw_l2(m, x, _next(y), targeted=True, steps=10, binary_search_steps=2,
                                                  c=0.1), None, True),
    "cw_l2_f2_projected": (lambda m, x, y, e: A.cw_l2(m, x, y, steps=10, binary_search_steps=2, objective="f2",
                                                      box="projected"), None, True),
    "cw_linf": (lambda m, x, y, e: A.cw_linf(m, x, y, steps=10, tau_decay=0.5, min_tau=0.05), None, True),
    "cw_l0": (lambda m, x, y, e: A.cw_l0(m, x, y, steps=10, max_rounds=8), None, True),
    "lbfgs": (lambda m, x, y, e: A.lbfgs_untargeted(m, x, y, search_steps=3, max_iter=10), None, False),
    "lbfgs_targeted": (lambda m, x, y, e: A.lbfgs(m, x, _next(y), search_steps=2, max_iter=10), None, False),
    "jsma_z": (lambda m, x, y, e: A.jsma(m, x, torch.where(y == 9, 0, y + 1), gamma=0.3), None, True),
    "jsma_f_decrease": (lambda m, x, y, e: A.jsma(m, x, torch.where(y >= 8, y - 8, y + 2), gamma=0.3, theta=-0.5,
                                                  variant="f"), None, True),
    "square": (lambda m, x, y, e: A.square(m, x, y, eps=e, n_queries=30, p_init=0.3, generator=_gen()),
               "inf", False),
    "square_targeted": (lambda m, x, y, e: A.square(m, x, _next(y), eps=e, n_queries=30, p_init=0.3,
                                                    targeted=True, generator=_gen()), "inf", False),
    # the model is both surrogate and target, so the property covers both roles
    "transfer": (lambda m, x, y, e: A.transfer(m, m, x, y, A.bim, eps=e, alpha=e / 4, steps=3).x_adv, "inf", True),
}


def register(name, fn, norm, deterministic):
    ATTACKS[name] = (fn, norm, deterministic)


register("apgd_dlr", lambda m, x, y, e: A.apgd(m, x, y, eps=e, steps=5, loss="dlr", restarts=2,
                                               generator=torch.Generator().manual_seed(0)), "inf", False)


def _check_ball(x_adv, x, eps, norm):
    """Box and ball, measured in float64 (a float32 difference can round an excess away)."""
    assert ((x_adv >= 0) & (x_adv <= 1)).all()
    d = x_adv.double() - x.double()
    if norm == "inf":
        assert d.abs().max() <= eps
    elif norm == "2":
        assert (d.flatten(1).norm(dim=1) <= eps * (1 + 1e-6)).all()


@pytest.mark.parametrize("name", list(ATTACKS))
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5), eps=st.floats(0.0, 1.5), lo=st.sampled_from([0.0, 0.3]),
       faces=st.sampled_from([0.0, 0.5]))
def test_contract_on_a_train_mode_model(name, seed, n, eps, lo, faces):
    """Box and ball exact; inputs, gradients, modes, BatchNorm statistics and the global RNG untouched; and the
    attack evaluates the model in eval mode: the result equals the result on an eval-mode copy."""
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
    state_before = copy.deepcopy(model.state_dict())  # with BatchNorm's running statistics and batch count
    eval_copy = copy.deepcopy(model).eval()
    x = images(n, seed=seed, lo=lo, hi=1.0 - lo / 2, faces=faces)
    y = predict(eval_copy, x)
    x0, y0 = x.clone(), y.clone()
    rng = torch.get_rng_state()
    x_adv = fn(model, x, y, eps)
    assert torch.equal(torch.get_rng_state(), rng)  # randomised attacks draw from their own generator
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert model.training and model.net[1].training and not model.net[4].training
    for p, gb in zip(model.parameters(), grads_before):
        assert (p.grad is None and gb is None) or torch.equal(p.grad, gb)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in state_before.items())
    _check_ball(x_adv, x, eps, norm)
    torch.testing.assert_close(fn(eval_copy, x, y, eps), x_adv, atol=0, rtol=0)


@pytest.mark.parametrize("name", [k for k, v in ATTACKS.items() if v[1] is not None])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4), faces=st.sampled_from([0.0, 0.5]))
def test_eps_zero_is_identity(name, seed, n, faces):
    fn, _, _ = ATTACKS[name]
    model = make_mlp(seed % 5)
    x = images(n, seed=seed, faces=faces)
    assert torch.equal(fn(model, x, predict(model, x), 0.0), x)


@pytest.mark.parametrize("name", [k for k, v in ATTACKS.items() if v[2]])
@given(seed=st.integers(0, 10_000), n=st.integers(2, 6), arch=st.sampled_from(["mlp", "cnn"]),
       faces=st.sampled_from([0.0, 0.5]))
def test_batched_equals_one_by_one(name, seed, n, arch, faces):
    """Batched == one example at a time, in float64 to 1e-6.

    Each example's computation depends on that example only, so the two runs differ only by rounding: the
    model's kernels may sum in another order for another batch size (~1e-16 relative in float64).  A
    trajectory can amplify that where it crosses a kink (ReLU, max-pool near-tie, a sign), but in float64 a
    kink is only flipped by a near-tie within ~1e-15, which random inputs essentially never produce, while a
    batching bug (a step, mask, early stop or mode shared across examples) moves a pixel by a step size,
    1e-3 or more.  In float32 the kink flips are real (the DeepFool docstring quantifies them), so no
    tolerance would separate them from a bug: hence float64.  The CNN has BatchNorm and max-pooling.
    """
    fn, norm, _ = ATTACKS[name]
    model = (make_mlp(seed % 5) if arch == "mlp" else BNConv(seed % 3)).double()
    x = images(n, seed=seed, dtype=torch.float64, faces=faces)
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
