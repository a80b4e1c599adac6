"""APGD and the DLR loss (Croce & Hein 2020): contract, analytic cases, schedule, strength."""

from __future__ import annotations

import pytest
import torch
from atk_models import BinaryLogistic, BNDrop, images, make_mlp, predict
from torch import nn

from advcourse import attacks as A


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# name -> callable(model, x, y, eps) and its norm
VARIANTS = {
    "ce_inf": (lambda m, x, y, e: A.apgd(m, x, y, eps=e, steps=8, restarts=2, generator=_gen()), "inf"),
    "dlr_inf": (lambda m, x, y, e: A.apgd(m, x, y, eps=e, steps=8, loss="dlr", early_stop=False,
                                          generator=_gen()), "inf"),
    "ce_l2": (lambda m, x, y, e: A.apgd(m, x, y, eps=3 * e, norm="2", steps=8, generator=_gen()), "2"),
    "dlr_l2": (lambda m, x, y, e: A.apgd(m, x, y, eps=3 * e, norm="2", steps=8, loss="dlr", restarts=2,
                                         generator=_gen()), "2"),
    "targeted_dlr": (lambda m, x, y, e: A.apgd(m, x, (y + 1) % 10, eps=e, steps=8, loss="dlr", targeted=True,
                                               generator=_gen()), "inf"),
    "apgd_t": (lambda m, x, y, e: A.apgd_targeted(m, x, y, eps=e, steps=6, n_target_classes=3,
                                                  generator=_gen()), "inf"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_contract_box_ball_inputs_mode_grads_rng(name, eps):
    fn, norm = VARIANTS[name]
    model = BNDrop(1)
    model.train()
    model.net[4].eval()  # a submodule in another mode comes back as it was
    bn_stats = [t.clone() for t in (model.net[2].running_mean, model.net[2].running_var)]
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    x = images(12, seed=3)
    x[:3] = (x[:3] > 0.5).float()  # exact 0/1 pixels: MNIST lives on the faces of the box
    y = predict(model.eval(), x)
    model.train()
    model.net[4].eval()
    x0, y0 = x.clone(), y.clone()
    rng = torch.get_rng_state()
    x_adv = fn(model, x, y, eps)
    assert torch.equal(torch.get_rng_state(), rng)  # randomness only from the generator
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert model.training and model.net[1].training and not model.net[4].training
    assert all(torch.equal(a, b) for a, b in zip(bn_stats, (model.net[2].running_mean, model.net[2].running_var)))
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert ((x_adv >= 0) & (x_adv <= 1)).all()
    d = (x_adv.double() - x.double()).flatten(1)
    radius = eps if norm == "inf" else 3 * eps
    size = d.abs().amax(1) if norm == "inf" else d.norm(dim=1)
    assert (size <= radius).all()
    if eps == 0:
        assert torch.equal(x_adv, x)


def test_errors_name_the_argument():
    model, x = make_mlp(0), images(4, seed=0)
    y = predict(model, x)
    with pytest.raises(ValueError, match="eps"):
        A.apgd(model, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="loss"):
        A.apgd(model, x, y, eps=0.1, loss="margin")
    with pytest.raises(ValueError, match="norm"):
        A.apgd(model, x, y, eps=0.1, norm="1")
    with pytest.raises(TypeError, match="steps"):
        A.apgd(model, x, y, eps=0.1, steps=2.5)
    with pytest.raises(ValueError, match="restarts"):
        A.apgd(model, x, y, eps=0.1, restarts=0)
    with pytest.raises(ValueError, match="n_target_classes"):
        A.apgd_targeted(model, x, y, eps=0.1, n_target_classes=10)
    with pytest.raises(ValueError, match="x must lie in"):
        A.apgd(model, x + 1, y, eps=0.1)
    binary = BinaryLogistic(64)
    with pytest.raises(ValueError, match="DLR"):
        A.apgd(binary, x, torch.zeros(4, dtype=torch.long), eps=0.1, loss="dlr")
    with pytest.raises(ValueError, match="4 classes"):
        A.apgd_targeted(binary, x, torch.zeros(4, dtype=torch.long), eps=0.1)


# ------------------------------------------------------------- analytic cases
def test_linf_apgd_ce_on_a_linear_model_finds_the_fgsm_corner():
    """CE of a two-logit linear model is monotone in w.x: its maximum over box and L-inf ball is the
    corner clip(x + eps sign(grad)), which FGSM finds exactly; so must APGD (run to the end), up to
    the last float32 ulp of the corner's coordinates."""
    model = BinaryLogistic(64, seed=2)
    x = images(10, seed=4)
    y = predict(model, x)
    for eps in (0.02, 0.1, 0.4):
        out = A.apgd(model, x, y, eps=eps, steps=10, early_stop=False, generator=_gen(1))
        assert torch.allclose(out, A.fgsm(model, x, y, eps=eps), rtol=0, atol=1e-6)


def test_l2_apgd_ce_on_a_linear_model_reaches_the_fgm_optimum():
    """Away from the box faces, the L2 maximiser of a monotone function of w.x is x + eps w/||w||."""
    model = BinaryLogistic(64, seed=5)
    x = images(6, seed=6, lo=0.4, hi=0.6)
    y = predict(model, x)
    out = A.apgd(model, x, y, eps=0.5, norm="2", steps=50, early_stop=False, generator=_gen(2))
    assert torch.allclose(out, A.fgm(model, x, y, eps=0.5), atol=2e-3)


def test_dlr_loss_is_invariant_to_shift_and_scale_and_positive_iff_misclassified():
    z = torch.randn(200, 10, generator=_gen(3)) * 3
    y = torch.randint(0, 10, (200,), generator=_gen(4))
    t = (y + 1 + torch.randint(0, 9, (200,), generator=_gen(5))) % 10
    for target in (None, t):
        base = A.dlr_loss(z, y, target)
        assert torch.allclose(A.dlr_loss(7.5 * z - 3.0, y, target), base, atol=1e-5)
    wrong = z.argmax(1) != y
    assert torch.equal(A.dlr_loss(z, y) > 0, wrong)
    # the targeted DLR is positive iff the target's logit exceeds the true class's
    zt, zy = z.gather(1, t[:, None]).squeeze(1), z.gather(1, y[:, None]).squeeze(1)
    assert torch.equal(A.dlr_loss(z, y, t) > 0, zt > zy)
    # a worked example: -(3 - 1) / (3 - 0) untargeted; -(3 - (-1)) / (3 - (0 + (-1)) / 2) targeted at class 3
    z1 = torch.tensor([[3.0, 1.0, 0.0, -1.0, -2.0]])
    assert A.dlr_loss(z1, torch.tensor([0])).item() == pytest.approx(-2 / 3)
    assert A.dlr_loss(z1, torch.tensor([0]), torch.tensor([3])).item() == pytest.approx(-8 / 7)


# ------------------------------------------------------------- the schedule
def test_checkpoints_follow_the_paper_sequence():
    # p_j = 0, .22, .41, .57, .70, .80, .87, .93, .99 (intervals .22, .19, .16, .13, .10, .07, .06, .06)
    assert A.apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert A.apgd_checkpoints(1000) == [0, 220, 410, 570, 700, 800, 870, 930, 990]
    assert A.apgd_checkpoints(0) == [0]
    for steps in range(1, 60):
        w = A.apgd_checkpoints(steps)
        assert w[0] == 0 and all(a < b <= steps for a, b in zip(w, w[1:]))
        assert w[1] == -(-22 * steps // 100)  # ceil(0.22 * steps)


class Counting(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.rows, self.grad_rows = model, 0, 0

    def forward(self, x):
        self.rows += x.shape[0]
        self.grad_rows += x.shape[0] if x.requires_grad else 0
        return self.model(x)


def test_budget_is_one_clean_pass_plus_steps_plus_one_per_restart():
    """Without early stopping each run makes steps + 1 forward passes (all but the last with a gradient)."""
    model = Counting(make_mlp(0))
    x = images(8, seed=2)
    y = predict(model.model, x)
    A.apgd(model, x, y, eps=0.05, steps=12, early_stop=False, generator=_gen())
    assert (model.rows, model.grad_rows) == (8 * (1 + 13), 8 * 12)


def test_early_stop_saves_evaluations_and_keeps_the_result():
    model = Counting(make_mlp(0))
    x = images(32, seed=2)
    y = predict(model.model, x)
    stopped = A.apgd(model, x, y, eps=0.1, steps=30, generator=_gen())
    cheap, model.rows = model.rows, 0
    full = A.apgd(model, x, y, eps=0.1, steps=30, early_stop=False, generator=_gen())
    assert cheap < model.rows
    assert torch.equal(predict(model.model, stopped) != y, predict(model.model, full) != y)


# ------------------------------------------------------------- targeted
def test_targeted_reaches_every_target_on_an_easy_model():
    """Logits 10 x on 10 pixels in [0.3, 0.7]: with eps = 0.5 any class can be made the largest."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(10 * torch.eye(10))
    x = images(40, seed=8, shape=(10,), lo=0.3, hi=0.7)
    y = predict(model, x)
    t = (y + 1 + torch.randint(0, 9, (40,), generator=_gen(9))) % 10
    for loss in ("ce", "dlr"):
        out = A.apgd(model, x, t, eps=0.5, steps=20, loss=loss, targeted=True, generator=_gen())
        assert torch.equal(predict(model, out), t)
    out = A.apgd_targeted(model, x, y, eps=0.5, steps=20, n_target_classes=1, generator=_gen())
    assert (predict(model, out) != y).all()


# ------------------------------------------------------------- strength
@pytest.fixture(scope="module")
def trained(mnist):
    """A small MLP trained for one epoch on 4,000 real digits (a few seconds)."""
    from advcourse.train import train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    train(model, mnist.x_train[:4000], mnist.y_train[:4000], epochs=1, batch_size=64, lr=2e-3, progress=False)
    return model.eval(), mnist.x_test[:300], mnist.y_test[:300]


def test_apgd_ce_at_least_as_strong_as_pgd_with_the_same_budget(trained):
    """Same steps and restarts: APGD-CE may not leave more than 2 points more images robust than PGD
    with Madry et al.'s step 2.5 eps / steps (its claim is that it is at least as strong)."""
    model, x, y = trained
    for steps in (10, 40):
        kw = dict(eps=0.05, steps=steps, restarts=1)
        p = A.robust_accuracy(model, x, y, A.pgd, early_stop=True, generator=_gen(), **kw)
        a = A.robust_accuracy(model, x, y, A.apgd, generator=_gen(), **kw)
        assert 0.05 < p  # the comparison means something: PGD does not fool everything
        assert a <= p + 0.02, (steps, a, p)


def test_apgd_t_catches_what_apgd_ce_leaves(trained):
    """APGD-T (targeted DLR over 3 classes) alone is about as strong as APGD-CE (within 5 points)."""
    model, x, y = trained
    ce = A.robust_mask(model, x, y, A.apgd, eps=0.05, steps=20, generator=_gen())
    t = A.robust_mask(model, x, y, A.apgd_targeted, eps=0.05, steps=20, n_target_classes=3, generator=_gen())
    assert t.float().mean() <= ce.float().mean() + 0.05
