"""Chapter 6's claims, on the fast profile's data and settings (the embedded MNIST).

The models are trained with the chapter's exact configurations, so the cache is shared with
the book build and nothing trains twice.
"""

import pytest
import torch

from advcourse import defenses as mm
from advcourse.attacks import audit, zero_gradient_fraction
from advcourse.experiments import ch06_gradient_masking as mk

S = mk.FAST  # the chapter's fast-profile settings
EPS, EPOCHS, AT_EPOCHS, N_AUDIT, STEPS = S.eps, S.epochs, S.at_epochs, S.n_audit, S.steps


@pytest.fixture(scope="module")
def models(mnist):
    fit = dict(data_tag="embedded", seed=0, device=torch.device("cpu"), progress=False)
    x, y = mnist.x_train, mnist.y_train
    return {"standard": mk.train_model("standard", x, y, epochs=EPOCHS, **fit)[0],
            "leaky": mk.train_model("leaky", x, y, epochs=EPOCHS, **fit)[0],
            "distilled": mk.train_model("distilled", x, y, epochs=EPOCHS, lr=S.distill_lr,
                                        temperature=S.temperature, **fit)[0],
            "adversarial": mk.train_model("adversarial", x, y, epochs=AT_EPOCHS, eps=EPS, **fit)[0]}


@pytest.fixture(scope="module")
def reports(mnist, models):
    zoo = {"standard": models["standard"], **mk.masked_zoo(models["standard"], models["distilled"]),
           "adversarially trained": models["adversarial"]}
    x, y = mnist.x_test[:N_AUDIT], mnist.y_test[:N_AUDIT]
    torch.manual_seed(0)
    return {name: audit(m, x, y, EPS, name=name, substitute=models["leaky"], steps=STEPS,
                           generator=torch.Generator().manual_seed(0)) for name, m in zoo.items()}


def test_audit_flags_every_masked_model_and_passes_the_standard_and_robust_ones(reports):
    """An audit that flags everything, or nothing, fails here: the unmasked models must pass."""
    for name, report in reports.items():
        if name in ("standard", "adversarially trained"):
            assert report.passed, report
        else:
            assert report.flags, f"{name} was not flagged:\n{report}"


def test_the_fgsm_trained_control_has_not_overfitted_catastrophically(reports):
    """Wong et al.'s catastrophic overfitting shows as high FGSM and near-zero PGD accuracy; the chapter says
    its control shows no such sign."""
    v = reports["adversarially trained"]["iterative beats single-step"].values
    assert v["iterative"] > 0.2 and v["fgsm"] - v["iterative"] < 0.3


def test_dead_relus_are_rarer_than_inactive_ones_and_hide_nothing(mnist, models, reports):
    """Per input many ReLUs are inactive; few are dead on every input; PGD still breaks the standard CNN,
    and the Leaky-ReLU substitute (no inactive units) is no more robust."""
    from advcourse.attacks import pgd, robust_accuracy

    activity = mk.relu_activity(models["standard"], mnist.x_test[:1000])
    assert len(activity) == 3
    for inactive, dead in activity:
        assert 0 <= dead < inactive < 1
    assert max(inactive for inactive, _ in activity) > 0.2                 # ReLU's ordinary sparsity
    assert reports["standard"]["iterative beats single-step"].values["iterative"] < 0.1
    x, y = mnist.x_test[:N_AUDIT], mnist.y_test[:N_AUDIT]
    g = torch.Generator().manual_seed(0)
    assert robust_accuracy(models["leaky"], x, y, pgd, eps=EPS, steps=STEPS, generator=g) < 0.1


def test_relu_activity_on_a_known_network():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, -1.0]]))
        net[0].bias.zero_()
    x = torch.tensor([[1.0, 1.0], [-1.0, 2.0]])  # unit 0: active then inactive; unit 1: inactive on both
    ((inactive, dead),) = mk.relu_activity(net, x)
    assert inactive == pytest.approx(0.75) and dead == pytest.approx(0.5)


def test_each_masked_model_is_flagged_for_its_mechanism(reports):
    assert "few zero gradients" in reports["distilled (T = 100)"].flags
    assert "few zero gradients" in reports["logits × 100"].flags
    assert "white-box beats transfer" in reports["quantised (8 levels)"].flags
    assert "same input, same logits" in reports["randomised"].flags


def test_transfer_from_a_leaky_substitute_exposes_distillation(reports):
    v = reports["distilled (T = 100)"]["white-box beats transfer"].values
    assert v["transfer"] < v["white_box"] - 0.2


def test_distillation_keeps_accuracy_and_zeroes_gradients(mnist, models):
    from advcourse.evaluate import accuracy

    assert accuracy(models["distilled"], mnist.x_test, mnist.y_test) > 0.85
    zero = zero_gradient_fraction(models["distilled"], mnist.x_test[:200], mnist.y_test[:200])
    assert zero > 0.5


def test_adaptive_attacks_unmask(mnist, models):
    x, y = mnist.x_test[:N_AUDIT], mnist.y_test[:N_AUDIT]
    zoo = mk.masked_zoo(models["standard"], models["distilled"])
    q8, rnd = zoo["quantised (8 levels)"], zoo["randomised"]
    g = torch.Generator().manual_seed(0)
    pairs = {"d": (models["distilled"], {}, {"loss": "margin"}),
             "q": (q8, {}, {"attack_model": mm.Preprocessed(mm.BPDA(q8.transform), models["standard"])}),
             "r": (rnd, {}, {"attack_model": mm.EOT(rnd, samples=8)})}
    torch.manual_seed(0)
    curves = mk.unmasking_curves(pairs, x, y, [EPS], steps=STEPS, generator=g)
    for key in "dq":  # margin loss and BPDA: large gains
        assert curves[key]["adaptive"][0] < curves[key]["naive"][0] - 0.3, (key, curves[key])
    # EOT: at this mild randomness one draw is already informative; EOT must not do worse
    assert curves["r"]["adaptive"][0] <= curves["r"]["naive"][0] + 0.03, curves["r"]


def test_activation_zero_fractions():
    g = torch.Generator().manual_seed(0)
    table = mk.zero_derivative_table(sigma=3.0, generator=g)
    assert table["ReLU6"][0] == pytest.approx(0.5228, abs=0.01)
    assert table["ReLU"][0] == pytest.approx(0.5, abs=0.01)
    assert table["Leaky ReLU (0.01)"][0] == 0.0
    assert table["tanh"][1] > 0.1 > table["tanh"][0]
    assert mk.zero_derivative_table(sigma=20.0, generator=g)["clip to [0, 1]"][0] == pytest.approx(0.98, abs=0.005)


def test_shattered_gradient_misleads_and_averaging_helps():
    g = torch.Generator().manual_seed(0)
    assert mk.ripple_gradient_agreement(generator=g) > 0.2
    start = torch.tensor([0.3, -0.2])
    _, raw = mk.ripple_ascent(start, steps=50, lr=0.05)
    _, smooth = mk.ripple_ascent(start, steps=50, lr=0.05, smooth=0.05, generator=g)
    assert smooth[-1] - smooth[0] > 1.5 * (raw[-1] - raw[0])


def test_second_order_probe_finds_the_ascent_the_gradient_misses():
    g0 = torch.Generator().manual_seed(0)
    f, u, g = mk.curvature_toy(lam=4.0, mu=1.0, generator=g0)
    lam, v = mk.top_curvature(f, torch.zeros(784), iters=30, generator=g0)
    assert lam == pytest.approx(3.0, rel=1e-3) and abs(float(v @ u)) > 0.999
    assert float(f(g / g.norm())) < 0 < float(f(v))


def test_attention_masks_zero_the_gradient():
    att = mk.attention_mask_demo(length=6, padding=2)
    assert float(att["influence"][~att["allowed"]].abs().max()) == 0.0
    assert float(att["influence"][att["allowed"]].min()) > 0
    assert float(att["weights"][~att["allowed"] & ~torch.eye(6, dtype=torch.bool)].abs().max()) == 0.0


def test_gradient_mask_preserves_task_a(mnist):
    cl = mk.continual_demo(mnist, protect=0.5, epochs=S.continual_epochs, seed=0)
    assert cl["gradient mask"]["A"] >= cl["after A"]["A"] - 0.01
    assert cl["fine-tuning"]["A"] < cl["after A"]["A"] - 0.05
