"""The gradient-masking audit: each check on a constructed case whose answer is known.

The base model is chapter 1's softmax regression (cached), a model whose gradient is honest;
each test breaks exactly one thing — the model or the attack under audit — and expects the
matching check, and only a relevant one, to fail.
"""

import functools
import re

import pytest
import torch
from torch import nn

from advcourse import defenses as mm
from advcourse.attacks import audit, fgsm, pgd, zero_gradient_fraction
from advcourse.experiments import ch01_linear_explanation as lx

EPS = 0.1
KW = dict(steps=10, square_queries=100, generator=None)


@pytest.fixture(scope="module")
def base(mnist):
    """Chapter 1's softmax regression (same configuration, so the cache is shared)."""
    return lx.train_linear("softmax", mnist.x_train, mnist.y_train, data_tag="embedded", epochs=10, lr=1e-2,
                           seed=0, progress=False)[0]


@pytest.fixture(scope="module")
def xy(mnist):
    return mnist.x_test[:60], mnist.y_test[:60]


def run(model, xy, eps=EPS, **kw):
    torch.manual_seed(0)
    return audit(model, *xy, eps, **{**KW, **kw})


def test_honest_linear_model_passes_everything(base, xy):
    report = run(base, xy, substitute=base)
    assert report.passed, report
    assert report.flags == [] and len(report.checks) == 12
    assert 0 <= report.robust_accuracy <= report.clean_accuracy <= 1
    table = [line for line in report._repr_markdown_().splitlines() if line.startswith("|")]
    assert table[0] == "| check | result | evidence | passes when |"
    # every row has its four cells, also when the evidence quotes "max |Δ logit|"
    assert all(len(re.split(r"(?<!\\)\|", line)) == 6 for line in table), table


def test_report_lookup_and_repr(base, xy):
    report = run(base, xy)
    assert report["few zero gradients"].values["zero_fraction"] == 0.0
    with pytest.raises(KeyError):
        report["no such check"]
    assert "Audit of model" in repr(report)


def test_probability_outputs_are_flagged(base, xy):
    probs = nn.Sequential(base, nn.Softmax(dim=1)).eval()
    with pytest.warns(UserWarning):
        report = run(probs, xy)
    assert "outputs are logits" in report.flags


def test_training_mode_with_dropout_is_flagged(base, xy):
    model = nn.Sequential(nn.Dropout(0.5), base)
    model.train()
    report = run(model, xy)
    assert "evaluated in eval mode" in report.flags
    assert model.training, "the audit restores the mode it was handed"
    assert "evaluated in eval mode" not in run(model.eval(), xy).flags


def test_training_mode_with_batch_norm_is_flagged_and_its_statistics_untouched(base, xy):
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(1), base)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = run(model, xy)
    assert "evaluated in eval mode" in report.flags and model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the audit changed the running statistics"


def test_randomness_is_flagged(base, xy):
    report = run(mm.Preprocessed(mm.Randomised(1, 0.2), base).eval(), xy)
    assert "same input, same logits" in report.flags


def test_broken_attack_fails_eps_zero_and_bounds(base, xy):
    def noisy(model, x, y, eps):  # ignores ε altogether
        return (x + 0.5 * torch.rand_like(x)).clamp(0, 1)

    report = run(base, xy, attack=noisy)
    assert "ε = 0 gives the clean accuracy" in report.flags
    assert "examples within bounds" in report.flags


def test_saturated_softmax_has_zero_gradients_and_fails_unbounded_and_black_box(base, xy):
    report = run(mm.ScaledLogits(base, 1e4).eval(), xy)
    for name in ("few zero gradients", "unbounded attack succeeds", "white-box beats black-box"):
        assert name in report.flags, report


def test_single_step_as_the_iterative_attack_is_flagged(base, xy):
    one_step = lambda m, x, y, eps: fgsm(m, x, y, eps)  # noqa: E731
    # at EPS itself FGSM already takes the linear model to 0%, which the check rightly accepts;
    # at half of it FGSM leaves about a quarter of the digits, and an "iterative" attack that
    # does no better must be flagged
    report = run(base, xy, eps=EPS / 2, attack=one_step)
    assert report["iterative beats single-step"].values["iterative"] > 0.02
    assert "iterative beats single-step" in report.flags


def test_accuracy_rising_with_eps_is_flagged(base, xy):
    def gives_up(model, x, y, eps):  # strong at small ε, nothing at large ε
        return pgd(model, x, y, eps, steps=10) if eps <= EPS / 2 else x.clone()

    report = run(base, xy, attack=gives_up)
    assert "accuracy falls with ε" in report.flags


def test_transfer_beating_white_box_is_flagged(base, xy):
    quantised = mm.Preprocessed(mm.Quantise(8), base).eval()
    report = run(quantised, xy, substitute=base)
    assert "white-box beats transfer" in report.flags
    assert report["few zero gradients"].values["zero_fraction"] == 1.0


def test_weak_attack_that_more_steps_improve_is_flagged(base, xy):
    weak = functools.partial(pgd, steps=1, alpha=0.01, random_start=False)
    report = run(base, xy, attack=weak)
    assert "more steps change little" in report.flags


def test_zero_gradient_fraction_on_known_cases(base, xy):
    x, y = xy
    assert zero_gradient_fraction(base, x, y) == 0.0
    assert zero_gradient_fraction(mm.Preprocessed(mm.Quantise(4), base), x, y) == 1.0


def test_bpda_and_eot_wrappers(base, xy):
    x, _ = xy
    q = mm.Quantise(8)
    xr = x[:4].clone().requires_grad_(True)
    out = mm.BPDA(q)(xr)
    assert torch.equal(out.detach(), q(x[:4]))
    (g,) = torch.autograd.grad(out.sum(), xr)
    assert torch.equal(g, torch.ones_like(g))
    # EOT of a deterministic model is its log-softmax
    assert torch.allclose(mm.EOT(base, samples=3)(x[:4]), torch.log_softmax(base(x[:4]), 1), atol=1e-5)


def test_audit_rejects_negative_eps(base, xy):
    with pytest.raises(ValueError, match="eps"):
        audit(base, *xy, -0.1)
