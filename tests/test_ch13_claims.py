"""Chapter 13's claims, on the fast profile's settings (the DCGAN and the judge share the chapter's cache)."""

import math

import pytest
import torch

from advcourse.evaluate import accuracy
from advcourse.exercises.ch13 import check_nonsaturating_loss, check_optimal_value
from advcourse.experiments import ch13_gan as gn
from advcourse.models.gan import ToyDiscriminator, ToyGenerator

S = gn.FAST  # the chapter's fast-profile settings
FIT = dict(seed=0, device="cpu")
LOG4 = math.log(4)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return gn.train_toy_gan(S, seed=0)[1]


@pytest.fixture(scope="module")
def dcgan(mnist):
    gan, meta = gn.train_dcgan(mnist, S, progress=False, **FIT)
    judge, _ = gn.train_judge(mnist, S, **FIT)
    with torch.no_grad():
        samples = gan.G.sample(S.n_samples, generator=torch.Generator().manual_seed(0))
    return {"gan": gan, "meta": meta, "judge": judge, "samples": samples}


# --- unit tests of the experiment functions ------------------------------------------------------------------

def test_histogram_density_and_jsd_on_known_cases():
    grid = torch.linspace(-6, 6, 601)
    h = gn.histogram_density(torch.randn(200_000, generator=torch.Generator().manual_seed(0)), grid)
    dx = (grid[1] - grid[0]).item()
    assert abs(h.sum().item() * dx - 1) < 1e-3                       # a density
    assert (h - gn.toy_density(grid, 0.0, 1.0)).abs().max() < 0.03   # of N(0, 1)
    p, q = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.5, 0.5])
    assert abs(gn.jsd(p, q).item() - math.log(2)) < 1e-6 and gn.jsd(p, p).item() == 0
    assert abs(check_value(p, q)) < 1e-6 and abs(check_value(p, p) + LOG4) < 1e-6  # float32


def check_value(p, q):  # C(G) = −log 4 + 2·JSD (eq. 6)
    return -LOG4 + 2 * gn.jsd(p, q).item()


def test_algorithm1_step_updates_g_every_kth_call_and_g_repeat_times():
    torch.manual_seed(0)
    gan = gn.GAN(ToyGenerator(), ToyDiscriminator())
    calls = {"d": 0, "g": 0}

    class Counting(torch.optim.SGD):
        def __init__(self, params, who):
            super().__init__(params, lr=1e-3)
            self.who = who

        def step(self, closure=None):
            calls[self.who] += 1
            return super().step(closure)

    step = gn.algorithm1_step(Counting(gan.D.parameters(), "d"), Counting(gan.G.parameters(), "g"),
                              lambda n: torch.randn(n, 1), k=3, g_repeat=2)
    for _ in range(9):
        loss, logs = step(gan, (torch.randn(16, 1),))
    assert calls == {"d": 9, "g": 6} and set(logs) == {"g_loss", "d_real", "d_fake"}
    assert 0 <= logs["d_real"] <= 16 and loss.ndim == 0
    with pytest.raises(ValueError, match="k"):
        gn.algorithm1_step(None, None, None, k=0)


def test_real_fake_wrapper_and_modes_and_parzen():
    torch.manual_seed(0)
    D = ToyDiscriminator(x_dim=2)
    x = torch.randn(5, 2)
    torch.testing.assert_close(torch.softmax(gn.RealFake(D)(x), 1)[:, 1], torch.sigmoid(D(x)))
    g = torch.Generator().manual_seed(0)
    assert gn.modes_covered(gn.ring_data(2000, S, g), S)["modes"] == S.ring_modes
    one = gn.ring_centres(S)[:1] + S.ring_std * torch.randn(2000, 2, generator=g)
    assert gn.modes_covered(one, S)["modes"] == 1
    # one kernel: the Parzen estimate is the Gaussian density itself
    s, pt, sigma = torch.zeros(1, 4), torch.full((1, 4), 0.1), 0.3
    exact = -0.5 * 4 * math.log(2 * math.pi * sigma ** 2) - 0.04 / (2 * sigma ** 2)
    assert abs(gn.parzen_log_likelihood(s, pt, sigma).item() - exact) < 1e-6  # float32 inputs


def test_exercise_checkers_accept_right_and_reject_wrong_answers():
    def optimal_value(p, q):
        s = p + q
        d = torch.where(s > 0, p / s.where(s > 0, torch.ones_like(s)), torch.zeros_like(s))
        return (torch.where(p > 0, p * d.clamp_min(1e-300).log(), torch.zeros_like(p))
                + torch.where(q > 0, q * (1 - d).clamp_min(1e-300).log(), torch.zeros_like(q))).sum()

    assert "passed" in check_optimal_value(optimal_value)
    with pytest.raises(AssertionError, match="0·log 0"):
        check_optimal_value(lambda p, q: (p * (p / (p + q)).log() + q * (q / (p + q)).log()).sum())
    with pytest.raises(AssertionError, match="Jensen"):
        check_optimal_value(lambda p, q: (optimal_value(p, q) + LOG4) / 2)
    assert "passed" in check_nonsaturating_loss(lambda ell: -torch.nn.functional.logsigmoid(ell).mean())
    with pytest.raises(AssertionError, match="logsigmoid"):
        check_nonsaturating_loss(lambda ell: -torch.log(torch.sigmoid(ell)).mean())
    with pytest.raises(AssertionError, match="saturating loss"):
        check_nonsaturating_loss(lambda ell: torch.nn.functional.logsigmoid(-ell).mean())


# --- the chapter's claims ------------------------------------------------------------------------------------

def test_toy_gan_moves_p_g_onto_the_data_and_d_to_one_half(toy):
    first, last = toy[0], toy[-1]
    assert abs(first["mean"]) < 1 and first["std"] < 0.3            # "a narrow bump near 0"
    assert first["jsd"] > 0.6                                        # supports barely overlap
    assert last["jsd"] < 0.25 * first["jsd"] and last["c_g"] < first["c_g"] - 0.5
    assert abs(last["mean"] - S.toy_mean) < 0.3
    on_data = last["p_data"] >= 0.05
    assert (last["d"][on_data] - 0.5).abs().max() < 0.05             # D → ½ where the data are
    assert all(abs(s["v"] + LOG4) < 0.15 for s in toy) and abs(last["v"] + LOG4) < 0.02  # V near −log 4
    assert first["c_g"] - first["v"] > 0.5                           # a lagging D: V far below C(G)
    mid = [s for s in toy if s["step"] == S.toy_panels[1]][0]
    mask = (mid["p_data"] + mid["p_g"]) >= 0.05
    assert (mid["d"] - mid["d_star"])[mask].abs().max() > 0.2        # the GAN's D lags behind D*


def test_a_trained_discriminator_is_the_optimal_one():
    r = gn.proposition1(S, g_mean=0.0, g_std=1.0, seed=0)
    assert r["max_gap"] < 0.1 and r["mean_gap"] < 0.03
    assert r["d_star"].max() > 0.9 and r["d_star"][0] < 0.1 and r["d_star"][-1] < 0.1  # falls on both sides


def test_saturating_gradient_vanishes_and_nonsaturating_grows(mnist):
    rows = gn.saturation_table(mnist.x_train, S, seed=0)
    first, last = rows[0], rows[-1]
    assert 1 / 3 < first["saturating"] / first["nonsaturating"] < 3    # same size before D learns
    assert last["d_fake"] < 0.05                                       # D rejects the samples
    assert last["saturating"] < 0.1 * first["saturating"]
    assert last["nonsaturating"] > first["nonsaturating"]
    assert last["nonsaturating"] > 100 * last["saturating"]


def test_dcgan_samples_are_digit_like_and_cover_most_classes(mnist, dcgan):
    judge, samples = dcgan["judge"], dcgan["samples"]
    assert accuracy(judge, mnist.x_test, mnist.y_test) > 0.93
    real = gn.judge_samples(judge, mnist.x_test[:S.n_samples])
    fake = gn.judge_samples(judge, samples)
    assert fake["confident"] > 0.3 * real["confident"] and fake["classes"] >= 8
    counts = torch.tensor(fake["counts"], dtype=torch.float)
    assert counts.max() > 2 * counts.min()                            # "the class histogram is not uniform"
    first_snapshot = gn.judge_samples(judge, dcgan["gan"].snapshots[0])["confident"]
    assert fake["confident"] > first_snapshot
    m = dcgan["meta"]["metrics"]
    assert m["d_real"][-1] - m["d_fake"][-1] > 0.3 and -m["d_loss"][-1] > -LOG4  # far from equilibrium


def test_generator_trained_too_often_collapses_on_the_ring():
    _, ring = gn.train_ring_gan(S, seed=0)
    _, helv = gn.train_ring_gan(S, seed=0, g_repeat=S.ring_g_repeat, steps=S.ring_helvetica_steps)

    def spread(c):
        return (c["samples"] - c["samples"].mean(0)).norm(dim=1).mean().item()

    assert ring[-1]["modes"] >= S.ring_modes - 2
    assert max(c["modes"] for c in helv) <= 2
    assert max(spread(c) for c in helv[1:]) < 0.5 * spread(ring[-1])  # one small cloud after its first check


def test_pgd_flips_the_discriminator_without_changing_the_digit(mnist, dcgan):
    gan, judge = dcgan["gan"], dcgan["judge"]
    n = 200
    xr, yr, xf = mnist.x_test[:n], mnist.y_test[:n], dcgan["samples"][:n]
    eps = S.eps_values[-1]
    ar = gn.attack_discriminator(gan.D, xr, False, eps, S.pgd_steps)
    af = gn.attack_discriminator(gan.D, xf, True, eps, S.pgd_steps)
    assert (ar - xr).abs().max() <= eps + 1e-6 and ar.min() >= 0 and ar.max() <= 1
    accepted_before = (gn.d_of(gan.D, xr) > 0.5).float().mean()
    accepted_after = (gn.d_of(gan.D, ar) > 0.5).float().mean()
    assert accepted_before > 0.3 and accepted_after < min(0.1, 0.25 * accepted_before)
    assert accuracy(judge, ar, yr) > accuracy(judge, xr, yr) - 0.05      # still the same digits
    assert (gn.d_of(gan.D, af) > 0.5).float().mean() > 0.5
    assert gn.judge_samples(judge, af)["confident"] < gn.judge_samples(judge, xf)["confident"] + 0.05
