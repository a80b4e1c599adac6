"""GANs: shapes and ranges of the DCGAN pair and the toy MLPs; the losses' analytic values (−log 4 at D = ½);
the saturating loss's vanishing gradient; a discriminator trained on known densities approaches D* (Eq. 2).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from advcourse.models.gan import (
    Discriminator,
    GANConfig,
    Generator,
    ToyDiscriminator,
    ToyGenerator,
    d_loss,
    g_loss_nonsaturating,
    g_loss_saturating,
    noise,
    optimal_discriminator,
    value_function,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _normal_pdf(x, mean, std):
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


# --- models --------------------------------------------------------------------------------------------------------

def test_generator_makes_images_in_the_unit_interval():
    torch.manual_seed(0)
    g = Generator()
    x = g(torch.randn(6, 64) * 10)  # large noise saturates the sigmoid, never leaves [0, 1]
    assert x.shape == (6, 1, 28, 28)
    assert x.min() >= 0 and x.max() <= 1
    s = g.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 28, 28)
    assert torch.equal(s, g.sample(3, generator=torch.Generator().manual_seed(0)))
    small = Generator(GANConfig(z_dim=8, g_width=4))
    assert small(torch.randn(2, 8)).shape == (2, 1, 28, 28)


def test_noise_is_drawn_on_the_generators_device_and_moved_to_the_models(monkeypatch):
    """A CPU torch.Generator used to be passed to randn together with the model's device, which fails for a
    model on a GPU ("Expected a 'cuda' device type for generator"). z must be drawn where the generator lives
    and land where the model lives; without a generator it is drawn directly on the model's device."""
    calls = []
    randn = torch.randn

    def spy(*args, generator=None, device=None, **kwargs):
        calls.append((generator, torch.device(device) if device is not None else None))
        return randn(*args, generator=generator, device=device, **kwargs)

    monkeypatch.setattr(torch, "randn", spy)
    cpu_gen = torch.Generator().manual_seed(0)
    z = noise(4, 3, "meta", cpu_gen)  # "meta" stands in for a GPU on this CPU-only machine
    assert z.device.type == "meta" and z.shape == (4, 3)
    assert calls[-1] == (cpu_gen, torch.device("cpu"))  # drawn with the generator, on its device
    assert noise(2, 3, "meta").device.type == "meta" and calls[-1] == (None, torch.device("meta"))
    monkeypatch.undo()
    for model in (Generator(GANConfig(z_dim=8, g_width=4)), ToyGenerator()):
        model.to("meta")
        assert model.sample(2, generator=torch.Generator().manual_seed(0)).device.type == "meta"
    # the same seed gives the same z whatever the model's device
    torch.testing.assert_close(noise(3, 5, "cpu", torch.Generator().manual_seed(1)),
                               torch.randn(3, 5, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="z_dim"):
        noise(3, 0)


def test_discriminator_returns_one_logit_per_image_and_gradients_flow_to_g():
    torch.manual_seed(0)
    cfg = GANConfig()
    g, d = Generator(cfg), Discriminator(cfg)
    logits = d(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5,)
    assert (logits < 0).any() or (logits > 1).any()  # logits, not probabilities
    g_loss_nonsaturating(d(g.sample(4))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize("bad", [(2, 784), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_discriminator_rejects_wrong_shapes(bad):
    with pytest.raises(ValueError, match="shape"):
        Discriminator()(torch.rand(*bad))


def test_generator_rejects_wrong_noise_and_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="z must"):
        Generator()(torch.randn(2, 10))
    for kwargs, name in [({"z_dim": 0}, "z_dim"), ({"g_width": 0}, "g_width"), ({"d_width": -1}, "d_width"),
                         ({"leak": 1.0}, "leak")]:
        with pytest.raises(ValueError, match=name):
            GANConfig(**kwargs)


def test_toy_models_shapes():
    torch.manual_seed(0)
    g, d = ToyGenerator(), ToyDiscriminator()
    assert g(torch.randn(7, 1)).shape == (7, 1)
    assert g.sample(5).shape == (5, 1)
    assert d(torch.randn(7, 1)).shape == (7,)
    assert ToyGenerator(z_dim=2, x_dim=2)(torch.randn(3, 2)).shape == (3, 2)
    assert ToyDiscriminator(x_dim=2, depth=1)(torch.randn(3, 2)).shape == (3,)
    with pytest.raises(ValueError, match="hidden"):
        ToyGenerator(hidden=0)


# --- losses --------------------------------------------------------------------------------------------------------

def test_confused_discriminator_gives_minus_log_4():
    zeros = torch.zeros(10)  # logit 0 ⇔ D(x) = ½ everywhere
    torch.testing.assert_close(value_function(zeros, zeros), torch.tensor(-math.log(4)))
    torch.testing.assert_close(d_loss(zeros, zeros), torch.tensor(math.log(4)))
    torch.testing.assert_close(g_loss_saturating(zeros), torch.tensor(-math.log(2)))
    torch.testing.assert_close(g_loss_nonsaturating(zeros), torch.tensor(math.log(2)))


def test_losses_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(50, generator=g) * 3, torch.randn(50, generator=g) * 3
    d_real, d_fake = torch.sigmoid(real.double()), torch.sigmoid(fake.double())
    v = d_real.log().mean() + (1 - d_fake).log().mean()  # Eq. 1 with probabilities, in float64
    torch.testing.assert_close(value_function(real, fake).double(), v, atol=1e-6, rtol=1e-6)
    bce = (F.binary_cross_entropy_with_logits(real, torch.ones(50))
           + F.binary_cross_entropy_with_logits(fake, torch.zeros(50)))
    torch.testing.assert_close(d_loss(real, fake), bce)
    torch.testing.assert_close(g_loss_saturating(fake).double(), (1 - d_fake).log().mean(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g_loss_nonsaturating(fake).double(), -d_fake.log().mean(), atol=1e-6, rtol=1e-6)


def test_losses_are_finite_for_extreme_logits():
    big = torch.tensor([-200.0, -50.0, 50.0, 200.0], requires_grad=True)  # σ rounds to exactly 0 or 1
    for loss in (d_loss(big, big), g_loss_saturating(big), g_loss_nonsaturating(big)):
        (grad,) = torch.autograd.grad(loss, big)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_saturating_gradient_vanishes_while_nonsaturating_does_not():
    """As D(G(z)) → 0 (logit → −∞), d/dℓ log(1 − σ(ℓ)) = −σ(ℓ) → 0 but d/dℓ [−log σ(ℓ)] = −(1 − σ(ℓ)) → −1."""
    logits = torch.tensor([0.0, -2.0, -5.0, -10.0, -20.0], requires_grad=True)
    (g_sat,) = torch.autograd.grad(g_loss_saturating(logits), logits)
    (g_ns,) = torch.autograd.grad(g_loss_nonsaturating(logits), logits)
    n = len(logits)
    torch.testing.assert_close(g_sat, -torch.sigmoid(logits.detach()) / n)
    torch.testing.assert_close(g_ns, -(1 - torch.sigmoid(logits.detach())) / n)
    assert (g_sat.abs().diff() < 0).all() and g_sat[-1].abs() * n < 1e-8  # vanishes
    assert (g_ns.abs() * n >= 0.5).all() and abs(g_ns[-1].item() * n + 1) < 1e-6  # tends to −1/N, not 0


# --- the optimal discriminator -------------------------------------------------------------------------------------

def test_optimal_discriminator_formula():
    p = torch.tensor([0.0, 1.0, 0.2, 0.0, 3.0])
    q = torch.tensor([0.0, 1.0, 0.6, 0.5, 0.0])
    torch.testing.assert_close(optimal_discriminator(p, q), torch.tensor([0.5, 0.5, 0.25, 0.0, 1.0]))


def test_optimal_discriminator_maximises_v_and_gives_jsd():
    """On a grid: D* beats perturbed discriminators, and C(G) = V(D*, G) = −log 4 + 2·JSD ≥ −log 4 (Theorem 1)."""
    x = torch.linspace(-8, 10, 20001, dtype=torch.float64)
    dx = x[1] - x[0]
    p_data, p_g = _normal_pdf(x, 2.0, 1.0), _normal_pdf(x, 0.0, 1.5)

    def v(dd):
        return ((p_data * dd.clamp_min(1e-300).log() + p_g * (1 - dd).clamp_min(1e-300).log()) * dx).sum()

    d_star = optimal_discriminator(p_data, p_g)
    for eps in (-0.05, 0.05):
        assert v(d_star) > v((d_star + eps * torch.sin(x)).clamp(1e-9, 1 - 1e-9))
    m = (p_data + p_g) / 2
    jsd = 0.5 * ((p_data * (p_data / m).log() + p_g * (p_g / m).log()) * dx).sum()
    torch.testing.assert_close(v(d_star), -math.log(4) + 2 * jsd)
    assert v(d_star) > -math.log(4) + 0.1
    same = optimal_discriminator(p_data, p_data)
    assert (same == 0.5).all()
    torch.testing.assert_close(v(same) - ((p_g - p_data) * same.log() * dx).sum(), torch.tensor(
        -math.log(4), dtype=torch.float64), atol=1e-6, rtol=0)  # V(½, p_g = p_data) = −log 4


def test_trained_toy_discriminator_approaches_the_optimal_one():
    """Proposition 1 in practice: G fixed (p_g = N(0, 1)), D trained on samples → σ(D(x)) ≈ D*(x)."""
    torch.manual_seed(0)
    d = ToyDiscriminator()
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        real = torch.randn(256, 1, generator=g) + 1.5  # p_data = N(1.5, 1)
        fake = torch.randn(256, 1, generator=g)  # p_g = N(0, 1)
        loss = d_loss(d(real), d(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.linspace(-1.5, 3.0, 19).unsqueeze(1)  # where both densities have mass
    d_star = optimal_discriminator(_normal_pdf(x, 1.5, 1.0), _normal_pdf(x, 0.0, 1.0)).squeeze(1)
    with torch.no_grad():
        assert (torch.sigmoid(d(x)) - d_star).abs().max() < 0.05


def test_toy_gan_moves_its_samples_onto_the_data():
    torch.manual_seed(0)
    g, d = ToyGenerator(), ToyDiscriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    assert abs(g.sample(2000).mean().item() - 3.0) > 2.0
    for _ in range(800):
        real = torch.randn(128, 1) * 0.5 + 3.0  # p_data = N(3, 0.5²)
        fake = g.sample(128)
        loss_d = d_loss(d(real), d(fake.detach()))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = g_loss_nonsaturating(d(fake))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    with torch.no_grad():
        s = g.sample(5000)
    assert abs(s.mean().item() - 3.0) < 0.5  # from ≈ 0 to the data's mean
    assert 0.05 < s.std().item() < 1.5  # spread, not one point (the spread itself keeps oscillating)
