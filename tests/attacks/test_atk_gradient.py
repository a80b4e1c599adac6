"""FGSM / FGM / BIM / PGD: analytic cases, strength ordering, validation."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
from atk_models import BinaryLogistic, Linear, Softmaxed, images, make_mlp, predict

from advcourse import attacks as A


def test_fgsm_binary_logistic_is_exact_linf_optimum():
    d = 64
    model = BinaryLogistic(d, seed=3)
    x = images(20, seed=2, lo=0.3, hi=0.7)  # away from the box
    y = torch.randint(0, 2, (20,), generator=torch.Generator().manual_seed(0))
    eps = 0.1
    x_adv = A.fgsm(model, x, y, eps=eps)
    # maximise the loss = push the score s = w^T x + b towards the wrong side
    sign_margin = (2 * y - 1).float().view(-1, 1, 1, 1)
    expected = x - eps * model.w.detach().sign().view(1, 1, 8, 8) * sign_margin
    torch.testing.assert_close(x_adv, expected, atol=1e-6, rtol=0)
    # and it is the optimum of the linearised (here: exact) problem: |w|_1 * eps change of score
    with torch.no_grad():
        s0, s1 = model(x)[:, 1], model(x_adv)[:, 1]
    torch.testing.assert_close((s1 - s0).abs(), eps * model.w.detach().abs().sum().expand(20), rtol=1e-4, atol=1e-4)


def test_fgm_step_is_normalised_gradient():
    model = BinaryLogistic(64, seed=1)
    x = images(5, seed=3, lo=0.3, hi=0.7)
    y = torch.ones(5, dtype=torch.long)
    x_adv = A.fgm(model, x, y, eps=0.5)
    w = model.w.detach().view(1, 1, 8, 8)
    torch.testing.assert_close(x_adv, x - 0.5 * w / w.norm(), atol=1e-6, rtol=0)


def test_fgsm_targeted_descends_the_target_loss():
    # An easy model (linear, images away from the box, a small step): the target's cross-entropy falls by
    # about the first-order amount eps * ||grad||_1 (measured 0.88-1.0 of it), never by more (it is convex
    # in x).  A no-op gives 0 and a step of the wrong sign a rise, so both fail.
    model = Linear(64, 5, seed=0)
    x = images(32, seed=4, lo=0.2, hi=0.8)
    t = (predict(model, x) + 1) % 5
    eps = 0.01
    xr = x.clone().requires_grad_(True)
    before = torch.nn.functional.cross_entropy(model(xr), t, reduction="none")
    (g,) = torch.autograd.grad(before.sum(), xr)
    first_order = eps * g.flatten(1).abs().sum(1)
    x_adv = A.fgsm(model, x, t, eps=eps, targeted=True)
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(model(x_adv), t, reduction="none")
    fall = before.detach() - after
    assert (fall >= 0.5 * first_order).all() and (fall <= first_order + 1e-5).all()
    # a larger step reaches the target on part of the batch (none is predicted as its target when clean)
    assert (predict(model, A.fgsm(model, x, t, eps=0.05, targeted=True)) == t).any()


def _robust_acc(model, x_adv, y):
    return (predict(model, x_adv) == y).float().mean().item()


def test_pgd_never_weaker_than_fgsm_and_bim():
    model = make_mlp(2)
    x = images(64, seed=5)
    y = predict(model, x)
    for eps in (0.05, 0.1):
        acc_fgsm = _robust_acc(model, A.fgsm(model, x, y, eps=eps), y)
        x_bim = A.bim(model, x, y, eps=eps, alpha=eps / 4, steps=10)
        acc_bim = _robust_acc(model, x_bim, y)
        acc_pgd = _robust_acc(model, A.pgd(model, x, y, eps=eps, alpha=eps / 4, steps=20, restarts=2,
                                           generator=torch.Generator().manual_seed(0)), y)
        assert acc_pgd <= acc_bim <= acc_fgsm
        # Exact: PGD from x (no random start) with the same step makes BIM's 10 steps and 10 more and keeps
        # the best iterate, so per example its loss is at least BIM's and it fools every example BIM fools.
        x_pgd0 = A.pgd(model, x, y, eps=eps, alpha=eps / 4, steps=20, random_start=False)
        with torch.no_grad():
            ce_bim = torch.nn.functional.cross_entropy(model(x_bim), y, reduction="none")
            ce_pgd0 = torch.nn.functional.cross_entropy(model(x_pgd0), y, reduction="none")
        fooled_bim, fooled_pgd0 = predict(model, x_bim) != y, predict(model, x_pgd0) != y
        assert (fooled_pgd0 | ~fooled_bim).all()
        same_kind = fooled_bim | ~fooled_pgd0  # both fooled or both not: the higher loss wins in both
        assert (ce_pgd0[same_kind] >= ce_bim[same_kind] - 1e-6).all()
    assert acc_bim < acc_fgsm  # at eps = 0.1 the iterations matter here, so the comparisons are informative
    assert acc_pgd < 1.0


@pytest.mark.parametrize("loss", ["ce", "margin"])
@pytest.mark.parametrize("norm", ["inf", "2"])
def test_pgd_targeted_hits_targets(loss, norm):
    model = make_mlp(3)
    x = images(16, seed=6)
    with torch.no_grad():
        t = model(x).topk(2, dim=1).indices[:, 1]  # runner-up class
    eps = 0.2 if norm == "inf" else 2.0
    x_adv = A.pgd(model, x, t, eps=eps, steps=30, norm=norm, targeted=True, loss=loss,
                  generator=torch.Generator().manual_seed(1))
    assert (predict(model, x_adv) == t).float().mean() >= 0.9


def test_margin_loss_works_with_all_negative_logits():
    base = make_mlp(4)

    class Neg(torch.nn.Module):
        def forward(self, x):
            return base(x) - 1000.0

    model = Neg()
    x = images(16, seed=7)
    y = predict(model, x)
    x_adv = A.pgd(model, x, y, eps=0.1, steps=20, loss="margin", generator=torch.Generator().manual_seed(0))
    assert _robust_acc(model, x_adv, y) < 0.5


def test_early_stop_keeps_robust_accuracy_and_restarts_help():
    model = make_mlp(5)
    x = images(48, seed=8)
    y = predict(model, x)
    kw = dict(eps=0.03, steps=10, restarts=1)
    a = A.pgd(model, x, y, **kw, generator=torch.Generator().manual_seed(0))
    b = A.pgd(model, x, y, **kw, early_stop=True, generator=torch.Generator().manual_seed(0))
    assert _robust_acc(model, a, y) == _robust_acc(model, b, y)
    c = A.pgd(model, x, y, eps=0.03, steps=10, restarts=4, generator=torch.Generator().manual_seed(0))
    assert _robust_acc(model, c, y) <= _robust_acc(model, a, y)


@pytest.mark.parametrize("norm,eps", [("inf", 0.03), ("2", 0.3)])
def test_early_stop_with_sparse_checks_gives_the_same_points(monkeypatch, norm, eps):
    """On an accelerator early stopping checks every few steps (fooled examples are frozen in
    place until then); the CPU checks every step.  Both must return the same points."""
    pgd_module = importlib.import_module("advcourse.attacks.pgd")  # the module (the package exports the function)

    model = make_mlp(5)
    x = images(48, seed=8)
    y = predict(model, x)
    kw = dict(eps=eps, steps=12, restarts=2, norm=norm, early_stop=True)
    every = A.pgd(model, x, y, **kw, generator=torch.Generator().manual_seed(0))
    monkeypatch.setitem(pgd_module._CHECK_EVERY, "cpu", 5)
    sparse = A.pgd(model, x, y, **kw, generator=torch.Generator().manual_seed(0))
    assert torch.equal(predict(model, every) != y, predict(model, sparse) != y)
    assert 0 < int((predict(model, every) != y).sum()) < len(x)  # some fooled, some not: both paths used
    assert torch.allclose(every, sparse, atol=1e-6)


def test_generator_makes_pgd_reproducible():
    model = make_mlp(6)
    x = images(8, seed=9)
    y = predict(model, x)
    a = A.pgd(model, x, y, eps=0.05, steps=3, generator=torch.Generator().manual_seed(42))
    b = A.pgd(model, x, y, eps=0.05, steps=3, generator=torch.Generator().manual_seed(42))
    assert torch.equal(a, b)


def test_bim_default_schedule_and_exact_linf_ball_with_awkward_values():
    model = make_mlp(7)
    x = torch.tensor([0.7, 0.1, 0.3, 0.9999999, 1e-8, 0.5]).repeat(11)[:64].view(1, 1, 8, 8)
    x = x.repeat(3, 1, 1, 1)
    y = predict(model, x)
    for eps in (0.3, 0.1, 1 / 255, 8 / 255, 0.2):
        x_adv = A.bim(model, x, y, eps=eps)
        assert (x_adv - x).abs().max() <= eps
        assert (x_adv.double() - x.double()).abs().max() <= eps


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("attack", [A.fgsm, A.fgm, A.bim, A.pgd])
def test_bad_arguments_name_the_argument(attack, mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="eps"):
        attack(mlp, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="x"):
        attack(mlp, x + 1.0, y, eps=0.1)
    with pytest.raises(ValueError, match="x"):
        attack(mlp, torch.where(x > 0.5, float("nan"), x), y, eps=0.1)
    with pytest.raises(TypeError, match="x"):
        attack(mlp, (x * 255).to(torch.uint8), y, eps=0.1)
    with pytest.raises(ValueError, match="y"):
        attack(mlp, x, y[:-1], eps=0.1)
    with pytest.raises(ValueError, match="y"):
        attack(mlp, x, y[:, None], eps=0.1)
    with pytest.raises(TypeError, match="y"):
        attack(mlp, x, y.float(), eps=0.1)
    with pytest.raises(ValueError, match="y"):
        attack(mlp, x, torch.full_like(y, 10), eps=0.1)
    with pytest.raises(TypeError, match="eps"):
        attack(mlp, x, y, eps="0.1")


def test_bad_step_size_and_norm(mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="alpha"):
        A.pgd(mlp, x, y, eps=0.1, alpha=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        A.bim(mlp, x, y, eps=0.1, alpha=-1.0)
    with pytest.raises(ValueError, match="norm"):
        A.pgd(mlp, x, y, eps=0.1, norm="1")
    with pytest.raises(ValueError, match="loss"):
        A.pgd(mlp, x, y, eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="steps"):
        A.pgd(mlp, x, y, eps=0.1, steps=-1)


def test_probability_outputs_warn(mlp, data):
    x, y = data
    with pytest.warns(UserWarning, match="logits"):
        A.fgsm(Softmaxed(mlp), x, y, eps=0.1)
    with pytest.warns(UserWarning, match="logits"):
        A.pgd(Softmaxed(mlp), x, y, eps=0.1, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.fgsm(mlp, x, y, eps=0.1)


def test_model_mode_restored_on_exception(bn_model, data):
    x, _ = data
    bn_model.train()
    with pytest.raises(ValueError):
        A.pgd(bn_model, x, torch.full((x.shape[0],), 99), eps=0.1)
    assert bn_model.training


def test_eval_mode_context_manager(bn_model):
    bn_model.train()
    with pytest.raises(RuntimeError):
        with A.eval_mode(bn_model):
            assert not bn_model.training and not bn_model.net[2].training
            raise RuntimeError("boom")
    assert bn_model.training and bn_model.net[2].training
