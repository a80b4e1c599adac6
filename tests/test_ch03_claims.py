"""Chapter 3's claims, with the chapter's fast-profile models (``ch03_lbfgs_blind_spots.FAST``, shared cache).

The models are the chapter's own (same configurations, so a warm cache means no training).
To stay fast, the attacks run on fewer images than the chapter's.
"""

import pytest
import torch

from advcourse.attacks import distortion
from advcourse.exercises.ch03 import check_operator_norm
from advcourse.experiments import ch03_lbfgs_blind_spots as bsp
from advcourse.models.fc import FCNet, build

FAST, SEED, N = bsp.FAST, 0, 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(mnist):
    return bsp.train_table1(mnist, epochs=FAST.epochs, seed=SEED, progress=False)


@pytest.fixture(scope="module")
def subsets(mnist):
    return bsp.train_table3(mnist, epochs=FAST.subset_epochs, seed=SEED, progress=False)


@pytest.fixture(scope="module")
def images(mnist):
    return bsp.attack_images(mnist.x_test, mnist.y_test, N, seed=SEED)


@pytest.fixture(scope="module")
def attacks(models, subsets, images):
    names = ["FC10(1e-4)", "FC10(1)", "FC100-100-10", "FC200-200-10"]
    nets = {**{n: models[n] for n in names}, **subsets}
    return {n: bsp.minimal_adversarial(m, *images, **FAST.lbfgs) for n, m in nets.items()}


def test_models_build_and_halves_are_disjoint(mnist):
    assert isinstance(build("FC10"), FCNet) and build("FC10").hidden_sizes == ()
    assert build("FC123-456-10").hidden_sizes == (123, 456)
    with pytest.raises(ValueError, match="arch"):
        build("CNN")
    parts = bsp.halves(mnist.x_train, mnist.y_train)
    (x1, y1), (x2, y2) = parts["P1"], parts["P2"]
    assert len(x1) + len(x2) == len(mnist.x_train)
    assert set(y1.tolist()) == set(range(10)) == set(y2.tolist())  # both halves hold every digit
    images = lambda x: {row.numpy().tobytes() for row in x.flatten(1)}  # noqa: E731
    assert len(images(x1) & images(x2)) <= 2  # no shared images (up to exact duplicates in MNIST)


def test_the_paper_models_fit_and_weight_decay_costs_accuracy(mnist, models):
    err = {n: bsp.error_rate(m, mnist.x_test, mnist.y_test) for n, m in models.items()}
    for n in ("FC100-100-10", "FC200-200-10", "AE400-10"):
        assert bsp.error_rate(models[n], mnist.x_train, mnist.y_train) < 0.02
        assert err[n] < 0.08                                  # paper: 1.5-1.9% on 60,000 images
    assert err["FC10(1e-4)"] < err["FC10(1e-2)"] < err["FC10(1)"]  # paper: 7.4% < 9.4% < 20%


def test_lbfgs_finds_a_close_adversarial_example_for_nearly_every_image(attacks, images):
    x, _ = images
    for name, a in attacks.items():
        assert a.correct.float().mean() >= 0.5
        assert a.success >= 0.95, name                        # paper: every image
        assert a.x_adv.min() >= 0 and a.x_adv.max() <= 1
        assert torch.equal(a.x_adv[~a.correct], x[~a.correct])
    assert attacks["FC100-100-10"].mean_distortion < 0.1      # paper: 0.058
    assert attacks["FC10(1e-4)"].mean_distortion < attacks["FC10(1)"].mean_distortion  # paper: 0.062 < 0.14


def test_adversarial_examples_transfer_far_more_than_gaussian_noise(models, attacks, images):
    x, y = images
    g = torch.Generator().manual_seed(SEED)
    for src, dst in [("FC10(1)", "FC100-100-10"), ("FC10(1)", "FC200-200-10"), ("FC200-200-10", "FC10(1e-4)")]:
        a = attacks[src]
        noise = bsp.gaussian_at_distortion(x, a.distortion, g)  # Gaussian noise of the same size, image by image
        adv_err = bsp.error_rate(models[dst], a.x_adv, y)
        assert adv_err >= bsp.error_rate(models[dst], noise, y) + 0.1, (src, dst)


def test_the_largest_distortions_transfer_best(models, attacks, images):
    # the chapter (and the paper's Table 2): FC10(1), strongest weight decay, has the largest minimal
    # distortions and its examples fool the other models most
    _, y = images
    dist = {n: a.mean_distortion for n, a in attacks.items() if n in models}
    assert max(dist, key=dist.get) == "FC10(1)"
    assert dist["FC10(1)"] > 1.5 * dist["FC100-100-10"]

    def cross(src):
        others = [n for n in models if n != src]
        return sum(bsp.error_rate(models[n], attacks[src].x_adv, y) for n in others) / len(others)

    # An ordering, as the chapter states it: on N images × 5 other models a cross error has a sampling
    # error near 0.05, and the margin over the runner-up was 0.07 on one CPU and above 0.1 on another.
    assert cross("FC10(1)") > max(cross(n) for n in dist if n != "FC10(1)")


def test_noise_at_a_given_distortion_has_exactly_that_distortion(images):
    x, _ = images
    g = torch.Generator().manual_seed(SEED)
    targets = torch.linspace(0, 0.4, len(x))
    got = distortion(x, bsp.gaussian_at_distortion(x, targets, g), "rms")
    assert torch.allclose(got, targets, atol=1e-4)
    # clipping shrinks plain noise: σ = 0.3 gives far less than distortion 0.3 on MNIST
    assert distortion(x, bsp.gaussian_noise(x, 0.3, g), "rms").mean() < 0.25
    with pytest.raises(ValueError, match="target"):
        bsp.gaussian_at_distortion(x, 0.6)


def test_magnified_examples_transfer_across_training_sets(subsets, attacks, images):
    x, y = images
    noise = bsp.gaussian_at_distortion(x, 0.1, torch.Generator().manual_seed(SEED))
    names = list(subsets)
    for src in names:
        amplified = bsp.amplify(x, attacks[src].x_adv, 0.1)
        for dst in names:
            if dst != src:                                    # paper: 22-98% against 2.6-2.8% for noise
                assert bsp.error_rate(subsets[dst], amplified, y) >= bsp.error_rate(subsets[dst], noise, y) + 0.15


def test_lipschitz_bound_holds_and_adversarial_directions_stretch_most(models, attacks):
    for name in ("FC10(1e-4)", "FC100-100-10", "FC200-200-10"):
        m, a = models[name], attacks[name]
        rows = bsp.lipschitz_bounds(m)
        per_layer = bsp.layer_ratios(m, a.x, a.x_adv)[a.correct]
        assert (per_layer <= torch.tensor([r["bound"] for r in rows]) * (1 + 1e-4)).all(), name
        bound = bsp.network_bound(m)
        assert per_layer.prod(1).max() <= bound * (1 + 1e-4)
        assert bsp.jacobian_norms(m, a.x).max() <= bound * (1 + 1e-4)
        if name != "FC10(1e-4)":                              # the chapter: loose for the sigmoid networks
            assert bsp.jacobian_norms(m, a.x).max() < bound / 2, name
        noise = bsp.random_like(a.x_adv - a.x, torch.Generator().manual_seed(SEED))
        noise_ratio = bsp.layer_ratios(m, a.x, a.x + noise).prod(1)[a.correct]
        assert per_layer.prod(1).median() > 3 * noise_ratio.median(), name


def test_units_and_random_directions_are_alike(mnist, models):
    uvd = bsp.units_vs_directions(models["FC100-100-10"], mnist.x_test, mnist.y_test, k=8,
                                  generator=torch.Generator().manual_seed(SEED))
    unit, rand = uvd.unit_purity.mean().item(), uvd.random_purity.mean().item()
    assert min(unit, rand) > uvd.chance_purity + 0.3          # both pick out coherent groups
    assert abs(unit - rand) < 0.15                            # and the natural basis is not special


def test_misclassified_region_along_the_adversarial_direction_is_wide(models, attacks):
    a = attacks["FC100-100-10"]
    keep = a.correct & a.fooled
    ts = torch.linspace(0, 6, 61)
    r = (a.x_adv - a.x)[keep]
    width = bsp.wrong_interval(bsp.ray_predictions(models["FC100-100-10"], a.x[keep], r, ts), a.y[keep], ts)
    assert width.median() >= 2.0                              # wide slabs, not thin pockets
    r_rand = bsp.random_like(r, torch.Generator().manual_seed(1))
    rand = bsp.ray_predictions(models["FC100-100-10"], a.x[keep], r_rand, ts)
    assert (rand[:, 10] != a.y[keep]).float().mean() < 0.2    # random directions of the same length rarely fool


def test_operator_norm_checker_accepts_power_iteration_and_rejects_frobenius():
    def power(w, iters=200):
        v = torch.ones(w.shape[1], dtype=w.dtype)
        for _ in range(iters):
            v = w.T @ (w @ v)
            v = v / v.norm()
        return (w @ v).norm().item()

    assert "passed" in check_operator_norm(power)
    with pytest.raises(AssertionError, match="Frobenius"):
        check_operator_norm(lambda w: torch.linalg.matrix_norm(w).item())
