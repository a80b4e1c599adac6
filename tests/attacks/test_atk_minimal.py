"""Minimal-perturbation attacks (DeepFool, C&W) against closed-form answers."""

from __future__ import annotations

import pytest
import torch
from atk_models import Linear, images, make_mlp, predict

from advcourse import attacks as A


def linear_min_dist(model, x, y):
    """Closed form for an affine classifier: min_j |(w_y-w_j)^T x + b_y-b_j| / ||w_y-w_j||."""
    W, b = model.fc.weight.detach(), model.fc.bias.detach()
    xf = x.flatten(1)
    z = xf @ W.T + b
    dw = W[y][:, None, :] - W[None, :, :]  # (N, K, D)
    num = (z.gather(1, y[:, None]) - z).abs()
    den = dw.norm(dim=2)
    ratio = torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("inf")))
    return ratio.min(1).values


@pytest.fixture
def linear_case():
    model = Linear(64, 5, seed=0)
    x = images(24, seed=3, lo=0.35, hi=0.65)  # away from the box: the closed form applies
    y = predict(model, x)
    return model, x, y, linear_min_dist(model, x, y)


def dist(a, b):
    return (a - b).flatten(1).norm(dim=1)


def test_deepfool_linear_closed_form(linear_case):
    model, x, y, d = linear_case
    x_adv = A.deepfool(model, x, y, overshoot=0.0)
    assert (predict(model, x_adv) != y).all()
    ratio = dist(x_adv, x) / d
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.01).all()
    x_adv2 = A.deepfool(model, x, y)  # default overshoot 0.02 -> about 2% longer
    assert (dist(x_adv2, x) / d <= 1.03).all()


def test_deepfool_mlp_fools_and_skips_misclassified():
    model = make_mlp(1)
    x = images(32, seed=4)
    y = predict(model, x)
    y_wrong = y.clone()
    y_wrong[:4] = (y[:4] + 1) % 10  # already misclassified -> unchanged
    x_adv = A.deepfool(model, x, y_wrong)
    assert torch.equal(x_adv[:4], x[:4])
    assert (predict(model, x_adv[4:]) != y[4:]).float().mean() >= 0.9


def test_deepfool_num_candidates_validation(mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="num_candidates"):
        A.deepfool(mlp, x, y, num_candidates=1)
    with pytest.raises(ValueError, match="overshoot"):
        A.deepfool(mlp, x, y, overshoot=-1)


@pytest.mark.parametrize("box", ["tanh", "clipped", "projected"])
def test_cw_l2_linear_closed_form(linear_case, box):
    model, x, y, d = linear_case
    x_adv = A.cw_l2(model, x, y, c=1.0, steps=200, binary_search_steps=8, box=box)
    assert (predict(model, x_adv) != y).all()
    ratio = dist(x_adv, x) / d
    assert (ratio >= 1 - 1e-4).all() and ratio.median() <= 1.03 and ratio.max() <= 1.2


def test_cw_l2_beats_fgsm_where_both_succeed():
    model = make_mlp(2)
    x = images(24, seed=5)
    y = predict(model, x)
    x_fgsm = A.fgsm(model, x, y, eps=0.1)
    x_cw = A.cw_l2(model, x, y, c=0.1, steps=100, binary_search_steps=5)
    both = (predict(model, x_fgsm) != y) & (predict(model, x_cw) != y)
    assert both.sum() >= 5
    assert (dist(x_cw, x)[both] <= dist(x_fgsm, x)[both]).all()


@pytest.mark.parametrize("objective", ["f1", "f2", "f3", "f4", "f5", "f6", "f7"])
def test_cw_objectives_sign_convention_and_targeted(objective):
    model = make_mlp(3)
    x = images(12, seed=6)
    with torch.no_grad():
        logits = model(x)
    t = logits.topk(2, dim=1).indices[:, 1]
    # f <= 0 exactly when the attack goal holds (for f1/f4/f5: F_t >= 1/2, resp. F_y <= 1/2)
    z = torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) * 3
    c = torch.randint(0, 4, (200,), generator=torch.Generator().manual_seed(1))
    p_c = z.softmax(1).gather(1, c[:, None]).squeeze(1)
    for targeted in (True, False):
        f = A.cw_objective(z, c, objective, targeted=targeted)
        if objective in ("f1", "f4", "f5"):
            goal = p_c >= 0.5 if targeted else p_c <= 0.5
        else:
            goal = (z.argmax(1) == c) if targeted else (z.argmax(1) != c)
        assert torch.equal(f <= 0, goal)
    assert (A.cw_objective(logits, t, objective, targeted=True) > 0).all()
    x_adv = A.cw_l2(model, x, t, targeted=True, c=1.0, steps=100, binary_search_steps=4, objective=objective)
    assert (predict(model, x_adv) == t).float().mean() >= 0.75


def test_cw_kappa_gives_confidence():
    model = make_mlp(4)
    x = images(8, seed=7)
    y = predict(model, x)
    x_adv = A.cw_l2(model, x, y, kappa=0.2, c=1.0, steps=100, binary_search_steps=4)
    with torch.no_grad():
        z = model(x_adv)
    ok = predict(model, x_adv) != y
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    assert ok.any()
    assert (other - z.gather(1, y[:, None]).squeeze(1))[ok].min() >= 0.2 - 1e-5


def test_cw_validation(mlp, data):
    x, y = data
    with pytest.raises(ValueError, match="objective"):
        A.cw_l2(mlp, x, y, objective="f8")
    with pytest.raises(ValueError, match="box"):
        A.cw_l2(mlp, x, y, box="sigmoid")
    with pytest.raises(ValueError, match="c"):
        A.cw_l2(mlp, x, y, c=-1.0)
    with pytest.raises(ValueError, match="lr"):
        A.cw_l2(mlp, x, y, lr=0.0)


def test_cw_linf_linear_closed_form():
    model = Linear(64, 5, seed=0)
    x = images(6, seed=3, lo=0.35, hi=0.65)
    y = predict(model, x)
    W, b = model.fc.weight.detach(), model.fc.bias.detach()
    z = x.flatten(1) @ W.T + b
    # min_j |z_y - z_j| / ||w_y - w_j||_1 : the minimal L-inf distance to an affine boundary
    dw1 = (W[y][:, None, :] - W[None]).abs().sum(2)
    num = z.gather(1, y[:, None]) - z
    d = torch.where(dw1 > 0, num / dw1.clamp_min(1e-12), torch.full_like(num, float("inf"))).min(1).values
    x_adv = A.cw_linf(model, x, y, steps=50, tau_decay=0.8, min_tau=0.004)
    assert (predict(model, x_adv) != y).all()
    ratio = (x_adv - x).abs().flatten(1).amax(1) / d
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1 / 0.8 + 0.1).all()


def test_cw_l0_changes_few_pixels_and_groups_channels():
    model = make_mlp(1, d=48)
    x = images(6, seed=2, shape=(3, 4, 4))
    y = predict(model, x)
    x_adv = A.cw_l0(model, x, y, steps=60)
    assert (predict(model, x_adv) != y).all()
    changed_pix = ((x_adv - x).abs() > 1e-4).any(1).flatten(1).sum(1)
    x_l2 = A.cw_l2(model, x, y, steps=60, binary_search_steps=3, c=1.0)
    changed_l2 = ((x_l2 - x).abs() > 1e-4).any(1).flatten(1).sum(1)
    assert (changed_pix <= changed_l2).all() and changed_pix.float().mean() < 8


def test_cw_linf_l0_targeted():
    model = make_mlp(3)
    x = images(4, seed=6)
    with torch.no_grad():
        t = model(x).topk(2, dim=1).indices[:, 1]
    xa = A.cw_linf(model, x, t, targeted=True, steps=40, tau_decay=0.7, min_tau=0.02)
    assert (predict(model, xa) == t).all()
    xb = A.cw_l0(model, x, t, targeted=True, steps=40)
    assert (predict(model, xb) == t).all()


def test_lbfgs_linear_closed_form_to_nearest_class():
    model = Linear(64, 5, seed=0)
    x = images(8, seed=3, lo=0.35, hi=0.65)
    y = predict(model, x)
    W, b = model.fc.weight.detach(), model.fc.bias.detach()
    z = x.flatten(1) @ W.T + b
    num = (z.gather(1, y[:, None]) - z).abs()
    den = (W[y][:, None, :] - W[None]).norm(dim=2)
    per_class = torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("inf")))
    d, t = per_class.min(1)
    x_adv = A.lbfgs(model, x, t, search_steps=10, max_iter=50)
    assert (predict(model, x_adv) == t).all()
    ratio = dist(x_adv, x) / d
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.1).all()
    assert ((x_adv >= 0) & (x_adv <= 1)).all()


def test_lbfgs_untargeted_and_validation(mlp, data):
    x, y = data
    x_adv = A.lbfgs_untargeted(mlp, x[:6], y[:6], search_steps=5, max_iter=30)
    assert (predict(mlp, x_adv) != y[:6]).all()
    with pytest.raises(ValueError, match="target"):
        A.lbfgs(mlp, x, torch.full_like(y, 12))
    with pytest.raises(ValueError, match="c"):
        A.lbfgs(mlp, x, y, c=0.0)


def test_deepfool_binary_logistic_closed_form():
    from atk_models import BinaryLogistic

    model = BinaryLogistic(64, seed=5)
    x = images(16, seed=8, lo=0.4, hi=0.6)
    y = predict(model, x)
    w = model.w.detach()
    d = (x.flatten(1) @ w + model.b.detach()).abs() / w.norm()
    x_adv = A.deepfool(model, x, y, overshoot=0.0)
    assert (predict(model, x_adv) != y).all()
    ratio = dist(x_adv, x) / d
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.01).all()
    x_lb = A.lbfgs_untargeted(model, x, y, search_steps=10, max_iter=50)
    assert (predict(model, x_lb) != y).all() and (dist(x_lb, x) / d <= 1.1).all()


def box_min_dist(model, x, y):
    """Exact minimal L2 distance *inside the box* [0, 1]^D from x to the region where some
    class beats y, for an affine model: per class j, min ||r|| s.t. <w_j - w_y, r> >= z_y - z_j
    and -x <= r <= 1 - x is solved by r = clip(mu (w_j - w_y), -x, 1 - x) with mu found by
    bisection (KKT); the answer is the minimum over j (infinite where the box forbids it)."""
    W, b = model.fc.weight.detach().double(), model.fc.bias.detach().double()
    xf = x.flatten(1).double()
    z = xf @ W.T + b
    lo, hi = -xf, 1 - xf
    best = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for j in range(W.shape[0]):
        w = W[j][None] - W[y]
        need = z.gather(1, y[:, None]).squeeze(1) - z[:, j]
        a, c = torch.zeros(len(x), dtype=torch.float64), torch.full((len(x),), 1e6, dtype=torch.float64)
        for _ in range(200):
            mu = (a + c) / 2
            short = (torch.minimum(torch.maximum(mu[:, None] * w, lo), hi) * w).sum(1) < need
            a, c = torch.where(short, mu, a), torch.where(short, c, mu)
        r = torch.minimum(torch.maximum(c[:, None] * w, lo), hi)
        reachable = ((r * w).sum(1) >= need - 1e-9) & (y != j)
        best = torch.where(reachable, torch.minimum(best, r.norm(dim=1)), best)
    return best


def test_deepfool_reaches_the_box_constrained_minimum():
    # Binary images sit on the faces of the box, where most of DeepFool's unconstrained step
    # is clipped away; iterating from the point actually reached still ends on the nearest
    # decision boundary *inside* the box.
    model = Linear(64, 5, seed=0)
    x = (images(64, seed=3) > 0.5).float()
    y = predict(model, x)
    d = box_min_dist(model, x, y)
    assert torch.isfinite(d).all()
    x_adv = A.deepfool(model, x, y, overshoot=0.0, max_iter=50)
    assert (predict(model, x_adv) != y).all()
    ratio = dist(x_adv, x).double() / d
    assert (ratio >= 1 - 1e-4).all() and ratio.median() <= 1.001 and ratio.max() <= 1.06


class _RowCounter(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.model(x)


def test_cw_l2_abort_early_drops_converged_examples(linear_case):
    # With abort_early each example leaves the batch once its loss stalls (the paper's
    # 0.01%-over-steps/10 rule, per example): the model sees fewer rows, the answer moves little.
    model, x, y, d = linear_case
    full, early = _RowCounter(model), _RowCounter(model)
    x_full = A.cw_l2(full, x, y, c=1.0, steps=300, binary_search_steps=4, abort_early=False)
    x_early = A.cw_l2(early, x, y, c=1.0, steps=300, binary_search_steps=4, abort_early=True)
    assert full.rows == len(x) * (300 * 4 + 1)
    assert early.rows < 0.7 * full.rows
    assert (predict(model, x_early) != y).all()
    ratio = dist(x_early, x) / dist(x_full, x)
    assert ratio.median() <= 1.01 and ratio.max() <= 1.06
    # batch independence survives the compaction
    one = torch.cat([A.cw_l2(model, x[i:i + 1], y[i:i + 1], c=1.0, steps=300, binary_search_steps=4) for i in range(4)])
    assert torch.allclose(one, x_early[:4], atol=1e-6)


def test_cw_l2_returns_x_where_x_already_succeeds(linear_case):
    # Labels the model already gets wrong: distortion 0 is optimal, so x comes back exactly and
    # the model is never evaluated on it again; the other examples are unaffected.
    model, x, y, _ = linear_case
    wrong = (y + 1) % 5
    y_mixed = torch.where(torch.arange(len(y)) % 3 == 0, wrong, y)
    counter = _RowCounter(model)
    x_adv = A.cw_l2(counter, x, y_mixed, c=1.0, steps=50, binary_search_steps=2, abort_early=False)
    skip = y_mixed != y
    assert torch.equal(x_adv[skip], x[skip])
    assert counter.rows == len(x) + int((~skip).sum()) * 50 * 2  # one clean check, then only the rest
    rest = A.cw_l2(model, x[~skip], y[~skip], c=1.0, steps=50, binary_search_steps=2, abort_early=False)
    assert torch.allclose(x_adv[~skip], rest, atol=1e-6)
    # targeted: an example already classified as its target is returned as it is
    x_t = A.cw_l2(model, x[:4], y[:4], targeted=True, c=1.0, steps=20, binary_search_steps=2)
    assert torch.equal(x_t, x[:4])


class _Threshold(torch.nn.Module):
    """Two logits [0, 4 (x_0 - b)] on (N, 3) inputs: class 1 iff feature 0 exceeds b; features 1, 2 are ignored."""

    def __init__(self, b):
        super().__init__()
        self.b = b

    def forward(self, x):
        s = 4 * (x[:, 0] - self.b)
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_cw_l0_returns_x_where_x_already_succeeds_without_any_round(linear_case):
    # Before: such an example ran one round per pixel (each finding x again and freezing one pixel),
    # 64 rounds x 10 steps here, 784 x 10 on MNIST, and came back moved by the tanh round trip (3e-5).
    model, x, y, _ = linear_case
    x, y = x[:6], y[:6]
    y_mixed = torch.where(torch.arange(6) % 2 == 0, (y + 1) % 5, y)
    skip = y_mixed != y
    counter = _RowCounter(model)
    x_adv = A.cw_l0(counter, x[skip], y_mixed[skip], steps=10)
    assert torch.equal(x_adv, x[skip]) and counter.rows == int(skip.sum())  # the clean forward pass only
    mixed = A.cw_l0(model, x, y_mixed, steps=10, max_rounds=6)
    assert torch.equal(mixed[skip], x[skip])
    assert torch.allclose(mixed[~skip], A.cw_l0(model, x[~skip], y[~skip], steps=10, max_rounds=6), atol=1e-6)


def test_cw_l0_stops_when_no_pixel_can_be_removed():
    # Only feature 0 matters.  The rounds free features 1 and 2 (unchanged, so frozen first), then
    # feature 0 itself; with no allowed feature left the attack stops and returns the last solution,
    # which changes feature 0 alone.
    x = torch.tensor([[0.3, 0.5, 0.5]], dtype=torch.float64)
    y = torch.tensor([0])
    counter = _RowCounter(_Threshold(0.4))
    x_adv = A.cw_l0(counter, x, y, c=1.0, steps=100)  # c large enough: every round with feature 0 succeeds
    assert (x_adv[:, 0] > 0.4).all() and torch.equal(x_adv[:, 1:], x[:, 1:])
    assert counter.rows <= 1 + 3 * 100  # three rounds: one feature frozen per round, then none left
    # A point the warm start already carries across the boundary (the tanh round trip moves 0.3 by 2e-7
    # towards 0.5) changes no feature by 1e-4: nothing to remove, so it stops after one round
    # (before: a round per feature, 31 forward passes instead of 11).
    counter = _RowCounter(_Threshold(0.3 + 1e-7))
    x_adv = A.cw_l0(counter, x, y, c=1.0, steps=100)
    assert predict(counter.model, x_adv).item() == 1 and (x_adv - x).abs().max() < 1e-4
    assert counter.rows == 1 + 10  # the clean pass, then one round that succeeds at once (checked every 10 steps)


def test_cw_l2_with_zero_steps_returns_x_after_one_forward_pass(linear_case):
    # steps=0 is allowed (documented): no Adam step is taken, so no round can succeed and x comes back
    # exactly; the model is evaluated once (the clean check), not once per binary-search round.
    model, x, y, _ = linear_case
    counter = _RowCounter(model)
    x_adv = A.cw_l2(counter, x, y, steps=0, binary_search_steps=5)
    assert torch.equal(x_adv, x) and counter.rows == len(x)
    with pytest.raises(ValueError, match="steps"):
        A.cw_l2(model, x, y, steps=-1)
