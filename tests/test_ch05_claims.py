"""Chapter 5's claims, on the fast profile's data and training settings (the embedded MNIST).

The networks are the chapter's (same configurations, hence the same cache entries); the
attacks run on fewer examples than in the chapter so that a warm run takes seconds.
"""

import functools

import pytest
import torch

from advcourse.attacks import cw_l2, fgsm, jsma, zero_gradient_fraction
from advcourse.evaluate import accuracy
from advcourse.exercises.ch05 import check_f6
from advcourse.experiments import ch05_cw_distillation as cx

# the chapter's fast-profile settings
SPEC = cx.FAST.spec(seed=0, data="embedded")
CW = cx.FAST.cw
T_MAX = cx.FAST.temperatures[-1]


@pytest.fixture(scope="module")
def standard(mnist):
    return cx.train_standard(mnist.x_train, mnist.y_train, SPEC, progress=False)[0]


@pytest.fixture(scope="module")
def distilled(mnist):
    return {T: cx.distill(mnist.x_train, mnist.y_train, SPEC, T, progress=False)[0] for T in (1, T_MAX)}


def test_distillation_keeps_accuracy(mnist, standard, distilled):
    assert accuracy(standard, mnist.x_test, mnist.y_test) > 0.93
    assert accuracy(distilled[T_MAX], mnist.x_test, mnist.y_test) > 0.85


def test_logits_grow_about_T_fold(mnist, distilled):
    x = mnist.x_test[:500]
    ratio = cx.logit_scale(distilled[T_MAX], x) / cx.logit_scale(distilled[1], x)
    assert T_MAX / 4 < ratio < 4 * T_MAX


def test_float32_gradients_underflow_only_after_distillation(mnist, standard, distilled):
    x, y = mnist.x_test[:500], mnist.y_test[:500]
    assert zero_gradient_fraction(standard, x, y) < 0.01
    assert zero_gradient_fraction(distilled[T_MAX], x, y) > 0.5


def test_distillation_defeats_fgsm_and_jsma_but_not_cw(mnist, standard, distilled):
    attacks = {"fgsm": (functools.partial(fgsm, eps=0.3), False),
               "jsma": (functools.partial(jsma, variant="f"), True),
               "cw": (functools.partial(cw_l2, targeted=True, **CW), True)}
    std = cx.defence_report(standard, mnist.x_test, mnist.y_test, {k: attacks[k] for k in ("fgsm", "cw")}, 10)
    dist = cx.defence_report(distilled[T_MAX], mnist.x_test, mnist.y_test, attacks, 10)
    assert dist["fgsm"].rate <= std["fgsm"].rate / 2
    assert dist["jsma"].rate <= 0.1            # paper: 95% -> 0.5% for the prior attacks
    assert std["cw"].rate == 1.0 and dist["cw"].rate == 1.0   # paper: 100%


def test_f6_beats_probability_objectives(mnist, standard):
    x, y = cx.correct_subset(standard, mnist.x_test, mnist.y_test, 8)
    t = cx.random_targets(y, generator=torch.Generator().manual_seed(0))
    grid = cx.objective_box_grid(standard, x, t, ["f2", "f6"], ["tanh"], **CW)
    assert grid["f6", "tanh"].rate == 1.0
    assert grid["f6", "tanh"].rate >= grid["f2", "tanh"].rate


def test_larger_c_succeeds_more_but_distorts_more(mnist, standard):
    x, y = cx.correct_subset(standard, mnist.x_test, mnist.y_test, 10)
    t = cx.random_targets(y, generator=torch.Generator().manual_seed(1))
    kw = {k: v for k, v in CW.items() if k not in ("c", "binary_search_steps")}
    small, mid, big = cx.c_sweep(standard, x, t, [1e-3, 1.0, 100.0], **kw)
    assert small.rate < big.rate == 1.0
    assert big.mean_dist > mid.mean_dist


def test_best_case_is_easier_than_worst_case(mnist, standard):
    x, y = cx.correct_subset(standard, mnist.x_test, mnist.y_test, 2)
    res = cx.target_cases(standard, x, y, functools.partial(cw_l2, targeted=True, **CW), "l2")
    assert res.cases["best"][0] == 1.0
    assert res.cases["best"][1] <= res.cases["average"][1] <= res.cases["worst"][1]


def test_rounding_to_8_bits_and_greedy_repair(mnist, standard):
    x, y = cx.correct_subset(standard, mnist.x_test, mnist.y_test, 10)
    t = (y + 1) % 10
    x_adv = cw_l2(standard, x, t, targeted=True, **CW)
    fix = cx.repair_report(standard, x, x_adv, t, targeted=True)
    assert fix["n"] == 10 and fix["repaired_ok"] == 1.0 and fix["on_lattice"]
    assert fix["l2_repaired"] < fix["l2_continuous"] + 0.1


def test_transfer_grows_with_confidence(mnist, standard, distilled):
    half = len(mnist.x_train) // 2
    source = cx.train_standard(mnist.x_train[:half], mnist.y_train[:half],
                               {**SPEC, "seed": 1, "data": "embedded-first-half"}, progress=False)[0]
    x, y = cx.correct_subset(source, mnist.x_test, mnist.y_test, 10)
    # κ = 20 is what the small fast-profile source reaches on every digit within this budget
    tr = cx.transfer_vs_kappa(source, {"standard": standard, "distilled": distilled[T_MAX]}, x, y, [0, 20],
                              **{**CW, "c": 1.0})
    assert tr["source"] == [1.0, 1.0]
    assert tr["standard"][1] > tr["standard"][0]
    assert tr["distilled"][1] > tr["distilled"][0]


def test_f6_checker_accepts_the_solution_and_rejects_a_mistake():
    def f6(logits, target, kappa):
        z_t = logits.gather(1, target[:, None]).squeeze(1)
        return torch.clamp(logits.scatter(1, target[:, None], float("-inf")).amax(1) - z_t, min=-kappa)

    assert "passed" in check_f6(f6)
    with pytest.raises(AssertionError):
        check_f6(lambda logits, target, kappa: logits.amax(1) - logits.gather(1, target[:, None]).squeeze(1))
