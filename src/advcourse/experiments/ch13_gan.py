"""Chapter 13 — generative adversarial nets (Goodfellow et al. 2014; DCGAN: Radford et al. 2016).

The chapter's experiments as small functions:

* Algorithm 1 as a :func:`advcourse.train.fit` step with its own two optimisers
  (:func:`algorithm1_step`): k discriminator updates per generator update;
* a 1-D toy whose data density is known (:func:`toy_density`): the GAN's histograms of p_g move onto
  p_data and D → ½ (:func:`train_toy_gan`, the paper's Figure 1); a fresh D trained against a frozen G
  approaches D* = p_data / (p_data + p_g) (:func:`fit_discriminator`, Proposition 1); the value of the
  game and the Jensen–Shannon divergence (:func:`jsd`, Theorem 1);
* the saturating and the non-saturating generator loss: their gradient norms as D improves against a
  frozen G (:func:`saturation_table`);
* a DCGAN on MNIST with sample grids over training (:func:`train_dcgan`), judged by a small CNN
  (:func:`train_judge`, :func:`judge_samples`);
* mode collapse on a ring of Gaussians (:func:`ring_data`, :func:`train_ring_gan`, :func:`modes_covered`);
* the discriminator is a classifier too: PGD against it (:func:`attack_discriminator`).

Images are (N, 1, 28, 28) in [0, 1]; discriminators return one logit per sample, D(x) = σ(logit).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import torch
from torch import nn

from ..attacks import pgd
from ..cache import load_or_train
from ..evaluate import probabilities
from ..models import MnistCNN
from ..models.gan import (
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
from ..train import Shuffled, fit, train

G_LOSSES = {"saturating": g_loss_saturating, "nonsaturating": g_loss_nonsaturating}
LOG4 = math.log(4.0)
PARZEN_SIGMAS = tuple(round(0.05 * 1.25 ** i, 4) for i in range(12))  # 0.05 … 0.58: the windows tried


@dataclass(frozen=True)
class Settings:
    """Chapter 13's settings, shared by the chapter and its claim tests.

    1-D toy: p_data = N(``toy_mean``, ``toy_std``²); a :class:`ToyGenerator` and :class:`ToyDiscriminator`
    of ``toy_hidden`` units play ``toy_steps`` rounds of Algorithm 1 (k = 1, batches of ``toy_batch``, Adam
    ``toy_lr``, β1 = 0.5), recorded at the steps in ``toy_snapshots`` (``toy_panels``: those drawn);
    Proposition 1 is checked with a fresh D trained ``dstar_steps`` steps against a frozen G of known density.
    Saturation: a fresh DCGAN discriminator trained against the frozen untrained generator, the two generator
    losses' gradient norms measured after each number of D steps in ``sat_steps``.
    DCGAN: ``GANConfig(z_dim, g_width, d_width)``, ``gan_epochs`` epochs of batches of ``gan_batch``,
    Adam ``gan_lr`` with β1 = 0.5, k = 1; samples from fixed noise kept after the epochs in
    ``gan_snapshots``; ``n_samples`` samples judged by a :class:`MnistCNN` trained ``judge_epochs`` epochs.
    Ring: ``ring_modes`` Gaussians of std ``ring_std`` on a circle of radius ``ring_radius``; MLPs of
    ``ring_hidden`` units, ``ring_steps`` rounds in batches of ``ring_batch``, Adam ``ring_lr``; modes counted
    at ``ring_checks`` evenly spaced steps; ``ring_g_repeat``: the generator steps per round of the
    "Helvetica" run, which plays ``ring_helvetica_steps`` rounds. Parzen-window log-likelihood: ``n_parzen``
    test digits (and as many validation digits to choose the window), the estimate built on ``n_samples``.
    Attack: ``n_attack`` real test digits and as many samples, L∞ PGD of ``pgd_steps`` steps at ``eps_values``.
    """

    toy_mean: float = 2.0
    toy_std: float = 0.5
    toy_hidden: int = 32
    toy_steps: int = 1500
    toy_batch: int = 256
    toy_lr: float = 2e-3
    toy_snapshots: tuple = (0, 25, 50, 100, 200, 300, 500, 800, 1100, 1500)
    toy_panels: tuple = (0, 100, 300, 1500)
    dstar_steps: int = 800
    sat_steps: tuple = (0, 5, 25, 100, 200)
    z_dim: int = 64
    g_width: int = 32
    d_width: int = 32
    gan_epochs: int = 15
    gan_batch: int = 64
    gan_lr: float = 5e-4
    gan_snapshots: tuple = (1, 3, 6, 15)
    n_grid: int = 24
    n_samples: int = 2000
    judge_epochs: int = 6
    n_parzen: int = 1000
    ring_modes: int = 8
    ring_radius: float = 2.0
    ring_std: float = 0.05
    ring_hidden: int = 64
    ring_steps: int = 2000
    ring_batch: int = 256
    ring_lr: float = 1e-3
    ring_checks: int = 10
    ring_g_repeat: int = 4
    ring_helvetica_steps: int = 400
    n_attack: int = 300
    pgd_steps: int = 10
    eps_values: tuple = (0.005, 0.01, 0.03)

    def gan_config(self) -> GANConfig:
        return GANConfig(z_dim=self.z_dim, g_width=self.g_width, d_width=self.d_width)

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # The judge keeps the full profile's 8 epochs: after 5 on the 512 digits it is sure of no real digit.
        return replace(self, toy_steps=50, toy_snapshots=(0, 25, 50), toy_panels=(0, 50), dstar_steps=20,
                       sat_steps=(0, 5), gan_epochs=2, gan_snapshots=(1, 2), n_samples=200, judge_epochs=8,
                       n_parzen=100, ring_steps=50, ring_checks=2, ring_helvetica_steps=20, n_attack=50,
                       pgd_steps=3)


#: The CPU profile (embedded MNIST: 8,000 training digits); the DCGAN trains about a minute.
FAST = Settings()
#: The GPU profile (all 60,000 MNIST digits): wider networks, longer runs everywhere.
FULL = Settings(toy_steps=5000, toy_snapshots=(0, 25, 50, 100, 200, 300, 500, 1000, 2000, 3500, 5000),
                toy_panels=(0, 100, 500, 5000), dstar_steps=3000, g_width=64, d_width=64, gan_epochs=25, gan_lr=2e-4,
                gan_snapshots=(1, 3, 8, 25), n_samples=10_000, judge_epochs=8, n_parzen=10_000, ring_steps=10_000,
                ring_hidden=128, ring_checks=20, ring_helvetica_steps=2000, n_attack=2000, pgd_steps=40)


# --- Algorithm 1 as a fit step -------------------------------------------------------------------------------

class GAN(nn.Module):
    """A generator and a discriminator trained together (``.G``, ``.D``), and ``snapshots``: a buffer
    (n_snapshots, n_images, ...) of samples from fixed noise kept during training (saved with the weights)."""

    def __init__(self, G: nn.Module, D: nn.Module, snapshot_shape: tuple = (0,)):
        super().__init__()
        self.G, self.D = G, D
        self.register_buffer("snapshots", torch.zeros(snapshot_shape))


def algorithm1_step(opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer,
                    sample_noise: Callable, *, k: int = 1, g_repeat: int = 1,
                    g_loss: str = "nonsaturating",
                    after: Callable | None = None) -> Callable:
    """``step(gan, batch)`` for :func:`~advcourse.train.fit` with ``optimizer=None``:
    Goodfellow et al.'s Algorithm 1.

    Each call is one discriminator update on the real minibatch ``batch[0]`` (m samples)
    and m fakes G(z), z = ``sample_noise(m)``; after every ``k``-th call the generator
    takes ``g_repeat`` updates with the ``g_loss`` of :data:`G_LOSSES` (``g_repeat`` > 1
    is the "Helvetica" schedule the paper warns against). ``after(gan, i)`` runs after
    call i (0-based), e.g. to record snapshots. Returns D's loss −V and per-batch totals
    of ``g_loss``, ``d_real`` = D(x) and ``d_fake`` = D(G(z)).
    """
    if k < 1 or g_repeat < 1:
        raise ValueError(f"k and g_repeat must be positive, got {k} and {g_repeat}")
    loss_g_fn = G_LOSSES[g_loss]
    counter = itertools.count()

    def step(gan, batch):
        real = batch[0]
        m = len(real)
        fake = gan.G(sample_noise(m))
        real_logits, fake_logits = gan.D(real), gan.D(fake.detach())
        loss_d = d_loss(real_logits, fake_logits)      # −V(D, G): D ascends V
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        i = next(counter)
        loss_g = torch.zeros(())
        if (i + 1) % k == 0:                           # k D steps per G step
            for r in range(g_repeat):
                if r:
                    fake = gan.G(sample_noise(m))
                loss_g = loss_g_fn(gan.D(fake))          # G descends its loss through D
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
        if after is not None:
            after(gan, i)
        return loss_d.detach(), {"g_loss": loss_g.item() * m,
                                 "d_real": torch.sigmoid(real_logits).sum().item(),
                                 "d_fake": torch.sigmoid(fake_logits).sum().item()}

    return step


def _adam(params, lr):
    return torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))  # DCGAN's β1 = 0.5, used for every GAN here


def _noise_fn(z_dim: int, seed: int, device) -> Callable:
    g = torch.Generator().manual_seed(seed)
    return lambda n: noise(n, z_dim, device, g)


# --- the 1-D toy: known densities ----------------------------------------------------------------------------

def toy_density(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """The normal density N(mean, std²) at x (any shape)."""
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def toy_grid(settings: Settings, n: int = 241) -> torch.Tensor:
    """The x values (n,) where the toy's densities and discriminators are compared: [−3, mean + 5·std + 1]."""
    return torch.linspace(-3.0, settings.toy_mean + 5 * settings.toy_std + 1.0, n)


def histogram_density(samples: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """A histogram density estimate at the points ``grid`` (n,), evenly spaced: bins of the grid's spacing
    centred on its points; samples (N,) or (N, 1) outside the grid are counted in no bin (mass is lost)."""
    s = samples.reshape(-1)
    h = (grid[1] - grid[0]).item()
    idx = torch.round((s - grid[0]) / h).long()
    inside = (idx >= 0) & (idx < len(grid))
    counts = torch.bincount(idx[inside], minlength=len(grid)).float()
    return counts / (len(s) * h)


def jsd(p: torch.Tensor, q: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """Jensen–Shannon divergence (nats) of two densities (or probabilities, dx = 1) on the same grid,
    in [0, log 2]: ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q)/2, with 0·log 0 = 0."""
    m = (p + q) / 2

    def kl(a):
        return torch.where(a > 0, a * (a / m.where(m > 0, torch.ones_like(m))).log(), torch.zeros_like(a)).sum()

    return 0.5 * (kl(p) + kl(q)) * dx


def toy_state(gan: GAN, settings: Settings, n: int = 200_000, generator: torch.Generator | None = None) -> dict:
    """What the toy GAN looks like now, on :func:`toy_grid`: ``p_g`` (histogram of n samples), ``p_data``,
    ``d`` = σ(D(x)), ``d_star`` (eq. 2 with the histogram p_g), ``jsd`` and ``c_g`` = −log 4 + 2·JSD (the
    value of the game against the best D, Theorem 1), and ``v``: V(D, G) of the current D, estimated on n
    fresh samples of each (≤ c_g up to estimation error)."""
    grid = toy_grid(settings)
    with torch.no_grad():
        fake = gan.G.sample(n, generator=generator)
        real = settings.toy_mean + settings.toy_std * torch.randn(n, 1, generator=generator)
        p_g = histogram_density(fake, grid)
        p_data = toy_density(grid, settings.toy_mean, settings.toy_std)
        dx = (grid[1] - grid[0]).item()
        div = jsd(p_data * dx, p_g * dx)                   # as probabilities per bin
        return {"grid": grid, "p_g": p_g, "p_data": p_data, "d": torch.sigmoid(gan.D(grid[:, None])),
                "d_star": optimal_discriminator(p_data, p_g), "jsd": div.item(), "c_g": -LOG4 + 2 * div.item(),
                "v": value_function(gan.D(real), gan.D(fake)).item(), "mean": fake.mean().item(),
                "std": fake.std().item()}


def train_toy_gan(settings: Settings, seed: int = 0, g_loss: str = "nonsaturating", k: int = 1,
                  progress: bool = False) -> tuple[GAN, list[dict]]:
    """Algorithm 1 on the 1-D toy: (gan, states) with a :func:`toy_state` (plus ``step``) at every step in
    ``settings.toy_snapshots`` (step 0: before training). A few seconds on one CPU thread."""
    torch.manual_seed(seed)
    S = settings
    gan = GAN(ToyGenerator(hidden=S.toy_hidden), ToyDiscriminator(hidden=S.toy_hidden))
    g = torch.Generator().manual_seed(seed + 1)
    per_epoch = 50
    data = S.toy_mean + S.toy_std * torch.randn(per_epoch * S.toy_batch, 1, generator=g)
    states = []

    def record(gan_, i):
        if i + 1 in S.toy_snapshots:
            states.append({"step": i + 1, **toy_state(gan_.eval(), S, generator=g)})
            gan_.train()

    if 0 in S.toy_snapshots:
        record(gan, -1)  # step 0: before training
    step = algorithm1_step(_adam(gan.D.parameters(), S.toy_lr), _adam(gan.G.parameters(), S.toy_lr),
                           _noise_fn(1, seed + 2, "cpu"), k=k, g_loss=g_loss, after=record)
    fit(gan, Shuffled(data, batch_size=S.toy_batch, seed=seed), step, epochs=math.ceil(S.toy_steps / per_epoch),
        optimizer=None, progress=progress, desc="toy GAN")
    return gan, states


def fit_discriminator(sample_fake: Callable, settings: Settings, steps: int, seed: int = 0) -> nn.Module:
    """Proposition 1 in practice: a fresh :class:`ToyDiscriminator` trained ``steps`` steps (Adam 1e-2, batches
    of 512) to maximise V(D, G) for a frozen generator, given as ``sample_fake(n, generator) -> (n, 1)``.
    Returns D (logits), eval mode."""
    torch.manual_seed(seed)
    D = ToyDiscriminator(hidden=settings.toy_hidden)
    g = torch.Generator().manual_seed(seed + 1)
    data = settings.toy_mean + settings.toy_std * torch.randn(steps * 512, 1, generator=g)

    def step(D_, batch):
        with torch.no_grad():
            fake = sample_fake(len(batch[0]), g)
        return d_loss(D_(batch[0]), D_(fake))

    fit(D, Shuffled(data, batch_size=512, seed=seed), step, epochs=1, optimizer=torch.optim.Adam(D.parameters(),
        lr=1e-2), progress=False)
    return D


def proposition1(settings: Settings, g_mean: float = 0.0, g_std: float = 1.0, steps: int | None = None,
                 seed: int = 0) -> dict:
    """A D trained against a fixed generator of known density, p_g = N(``g_mean``, ``g_std``²) (the affine G
    z ↦ g_mean + g_std·z), compared with D* of eq. 2 on :func:`toy_grid`. Returns ``grid``, ``d`` = σ(D(x)),
    ``d_star``, ``p_data``, ``p_g``, ``mask`` (where p_data + p_g ≥ 0.05: both have samples to learn from),
    ``max_gap`` and ``mean_gap`` (|d − d_star| over the mask)."""
    def sample_fake(n, g):
        return g_mean + g_std * torch.randn(n, 1, generator=g)

    D = fit_discriminator(sample_fake, settings, steps or settings.dstar_steps, seed)
    grid = toy_grid(settings)
    p_data = toy_density(grid, settings.toy_mean, settings.toy_std)
    p_g = toy_density(grid, g_mean, g_std)
    with torch.no_grad():
        d = torch.sigmoid(D(grid[:, None]))
    d_star = optimal_discriminator(p_data, p_g)
    mask = p_data + p_g >= 0.05
    gap = (d - d_star)[mask].abs()
    return {"grid": grid, "d": d, "d_star": d_star, "p_data": p_data, "p_g": p_g, "mask": mask,
            "max_gap": gap.max().item(), "mean_gap": gap.mean().item()}


# --- saturating vs non-saturating ----------------------------------------------------------------------------

def _grad_norm(loss: torch.Tensor, params) -> float:
    grads = torch.autograd.grad(loss, params)
    return torch.sqrt(sum((g ** 2).sum() for g in grads)).item()


def saturation_table(x_real: torch.Tensor, settings: Settings, seed: int = 0, lr: float = 2e-4) -> list[dict]:
    """G frozen (an untrained DCGAN generator), a fresh D trained with Adam(``lr``) on real digits vs G's
    samples; after each number of D steps in ``settings.sat_steps``, the generator losses' gradient norms
    ‖∇_θG L‖ on a fixed batch of noise. Rows: ``d_steps``, ``d_fake`` (mean D(G(z))), ``saturating``,
    ``nonsaturating`` (gradient norms), ``loss_sat``, ``loss_ns``. x_real (N, 1, 28, 28), N ≥ batch·steps."""
    torch.manual_seed(seed)
    S = settings
    G, D = Generator(S.gan_config()), Discriminator(S.gan_config())
    opt = _adam(D.parameters(), lr)
    g = torch.Generator().manual_seed(seed + 1)
    z_fixed = noise(S.gan_batch, S.z_dim, generator=g)
    params = list(G.parameters())
    rows, done = [], 0
    for target in sorted(S.sat_steps):
        for _ in range(target - done):
            real = x_real[torch.randint(len(x_real), (S.gan_batch,), generator=g)]
            with torch.no_grad():
                fake = G(noise(S.gan_batch, S.z_dim, generator=g))
            loss = d_loss(D(real), D(fake))
            opt.zero_grad()
            loss.backward()
            opt.step()
        done = target
        fake_logits = D(G(z_fixed))
        row = {"d_steps": target, "d_fake": torch.sigmoid(fake_logits).mean().item()}
        for name, fn in G_LOSSES.items():
            row[name] = _grad_norm(fn(D(G(z_fixed))), params)
        row["loss_sat"], row["loss_ns"] = g_loss_saturating(fake_logits).item(), g_loss_nonsaturating(
            fake_logits).item()
        rows.append(row)
    return rows


# --- the DCGAN on MNIST ---------------------------------------------------------------------------------------

def train_dcgan(data, settings: Settings, *, g_loss: str = "nonsaturating", seed: int = 0, device="cpu",
                progress: bool = True):
    """Train (or load from the cache) the chapter's DCGAN on all training digits: Algorithm 1 with k = 1.

    Returns ``(gan, meta)``: ``gan.G``, ``gan.D`` and ``gan.snapshots`` (len(gan_snapshots), n_grid, 1, 28,
    28), samples of fixed noise after those epochs; ``meta["metrics"]`` has per-epoch ``d_loss`` (= −V),
    ``g_loss``, ``d_real`` and ``d_fake`` (mean D on real digits and on samples), ``seconds`` (wall clock)
    and ``cpu_seconds`` (this process's CPU time).
    """
    S = settings
    config = {"data": data.source, "n": len(data.x_train), "seed": seed, "z_dim": S.z_dim, "g_width": S.g_width,
              "d_width": S.d_width, "epochs": S.gan_epochs, "batch_size": S.gan_batch, "lr": S.gan_lr,
              "snapshots": list(S.gan_snapshots), "n_grid": S.n_grid, "g_loss": g_loss}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        gc = GANConfig(z_dim=cfg["z_dim"], g_width=cfg["g_width"], d_width=cfg["d_width"])
        return GAN(Generator(gc), Discriminator(gc), (len(cfg["snapshots"]), cfg["n_grid"], 1, 28, 28))

    def fit_model(gan, cfg):
        dev = next(gan.parameters()).device
        z_fixed = noise(cfg["n_grid"], cfg["z_dim"], dev, torch.Generator().manual_seed(cfg["seed"] + 7))
        batches = Shuffled(data.x_train[:cfg["n"]], batch_size=cfg["batch_size"], seed=cfg["seed"])
        per_epoch = len(batches)

        def keep(gan_, i):
            epoch, last = divmod(i + 1, per_epoch)
            if last == 0 and epoch in cfg["snapshots"]:
                with torch.no_grad():
                    gan_.G.eval()
                    gan_.snapshots[cfg["snapshots"].index(epoch)] = gan_.G(z_fixed)
                    gan_.G.train()

        step = algorithm1_step(_adam(gan.D.parameters(), cfg["lr"]), _adam(gan.G.parameters(), cfg["lr"]),
                               _noise_fn(cfg["z_dim"], cfg["seed"] + 1, dev), g_loss=cfg["g_loss"], after=keep)
        cpu = time.process_time()
        hist = fit(gan, batches, step, epochs=cfg["epochs"], optimizer=None, progress=progress, desc="DCGAN")
        return {k: hist[k] for k in ("g_loss", "d_real", "d_fake", "seconds")} | {
            "d_loss": hist["loss"], "cpu_seconds": time.process_time() - cpu}

    return load_or_train(f"ch13-dcgan-{g_loss}", config, build, fit_model, device=device)


def train_judge(data, settings: Settings, *, seed: int = 0, device="cpu", progress: bool = False):
    """Train (or load) the judge: a small :class:`MnistCNN` classifier (16 and 32 filters) on the training
    digits, ``judge_epochs`` epochs of Adam. Returns ``(model, meta)``."""
    config = {"data": data.source, "seed": seed, "epochs": settings.judge_epochs, "channels": [16, 32], "hidden": 100}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MnistCNN(tuple(cfg["channels"]), cfg["hidden"])

    def fit_model(model, cfg):
        h = train(model, data.x_train, data.y_train, epochs=cfg["epochs"], seed=cfg["seed"], progress=progress,
                  desc="judge")
        return {"loss": h["loss"], "seconds": h["seconds"]}

    return load_or_train("ch13-judge", config, build, fit_model, device=device)


def judge_samples(judge: nn.Module, images: torch.Tensor, threshold: float = 0.9) -> dict:
    """How digit-like images (N, 1, 28, 28) are to a fixed classifier: ``confident`` = fraction whose top
    softmax probability exceeds ``threshold``; ``mean_conf``; ``counts`` (10,) = how many are predicted as
    each digit among the confident ones; ``classes`` = digits with at least 2% of the confident ones."""
    p = probabilities(judge, images)
    conf, pred = p.max(1)
    sure = conf > threshold
    counts = torch.bincount(pred[sure], minlength=10)
    n_sure = int(sure.sum())
    return {"confident": sure.float().mean().item(), "mean_conf": conf.mean().item(), "counts": counts.tolist(),
            "classes": int((counts >= max(1, 0.02 * n_sure)).sum()), "pred": pred, "conf": conf}


# --- mode collapse on a ring ---------------------------------------------------------------------------------

def ring_centres(settings: Settings) -> torch.Tensor:
    """The ring's mode centres (modes, 2)."""
    a = torch.arange(settings.ring_modes) * 2 * math.pi / settings.ring_modes
    return settings.ring_radius * torch.stack([a.cos(), a.sin()], 1)


def ring_data(n: int, settings: Settings, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points (n, 2) from the mixture of ``ring_modes`` equal Gaussians of std ``ring_std`` on the ring."""
    k = torch.randint(settings.ring_modes, (n,), generator=generator)
    return ring_centres(settings)[k] + settings.ring_std * torch.randn(n, 2, generator=generator)


def modes_covered(samples: torch.Tensor, settings: Settings, min_share: float = 0.02) -> dict:
    """Mode coverage of samples (N, 2): a sample is "good" if within 3 std of its nearest centre; a mode is
    covered if it holds at least ``min_share`` of all samples as good ones. Returns ``modes`` (int),
    ``good`` (fraction of good samples) and ``share`` (modes,)."""
    d = torch.cdist(samples, ring_centres(settings))            # (N, modes)
    dist, nearest = d.min(1)
    good = dist < 3 * settings.ring_std
    share = torch.bincount(nearest[good], minlength=settings.ring_modes).float() / len(samples)
    return {"modes": int((share >= min_share).sum()), "good": good.float().mean().item(), "share": share}


def train_ring_gan(settings: Settings, seed: int = 0, g_repeat: int = 1, k: int = 1, steps: int | None = None,
                   progress: bool = False) -> tuple[GAN, list[dict]]:
    """Algorithm 1 on the ring (z in R², MLPs with ``ring_hidden`` units), ``g_repeat`` generator steps per
    round (1: the paper's; > 1: G trained "too much without updating D") for ``steps`` rounds (default
    ``ring_steps``). Returns (gan, checks): at ``ring_checks`` evenly spaced rounds, :func:`modes_covered` of
    2,000 samples plus ``step`` and ``samples`` (2000, 2)."""
    torch.manual_seed(seed)
    S = settings
    steps = steps or S.ring_steps
    gan = GAN(ToyGenerator(z_dim=2, x_dim=2, hidden=S.ring_hidden), ToyDiscriminator(x_dim=2, hidden=S.ring_hidden))
    g = torch.Generator().manual_seed(seed + 1)
    per_epoch = 50
    data = ring_data(per_epoch * S.ring_batch, S, g)
    every = max(steps // S.ring_checks, 1)
    z_check = torch.randn(2000, 2, generator=torch.Generator().manual_seed(seed + 3))
    checks = []

    def check(gan_, i):
        if (i + 1) % every == 0:
            with torch.no_grad():
                s = gan_.G(z_check)
            checks.append({"step": i + 1, "samples": s, **modes_covered(s, S)})

    step = algorithm1_step(_adam(gan.D.parameters(), S.ring_lr), _adam(gan.G.parameters(), S.ring_lr),
                           _noise_fn(2, seed + 2, "cpu"), k=k, g_repeat=g_repeat, after=check)
    fit(gan, Shuffled(data, batch_size=S.ring_batch, seed=seed), step, epochs=math.ceil(steps / per_epoch),
        optimizer=None, progress=progress, desc=f"ring GAN ×{g_repeat}")
    return gan, checks


# --- the discriminator is a classifier too ------------------------------------------------------------------

class RealFake(nn.Module):
    """A discriminator as a two-class classifier for the attack library: logits (N, 2) = [0, ℓ], so
    softmax gives [1 − D(x), D(x)]; class 1 = "real"."""

    def __init__(self, D: nn.Module):
        super().__init__()
        self.D = D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ell = self.D(x)
        return torch.stack([torch.zeros_like(ell), ell], 1)


def attack_discriminator(D: nn.Module, x: torch.Tensor, want_real: bool, eps: float, steps: int,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """L∞ PGD (targeted) on the discriminator: push images x (N, 1, 28, 28) towards D's verdict "real"
    (``want_real``) or "fake", within ``eps`` of x and inside [0, 1]. Returns the perturbed images."""
    target = torch.full((len(x),), int(want_real), dtype=torch.long, device=x.device)
    return pgd(RealFake(D), x, target, eps=eps, steps=steps, targeted=True, generator=generator)


def d_of(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """D(x) = σ(logit) (N,) in eval mode."""
    was = D.training
    D.eval()
    with torch.no_grad():
        out = torch.sigmoid(D(x))
    D.train(was)
    return out


# --- the paper's quantitative measure: a Parzen-window log-likelihood ----------------------------------------

def parzen_log_likelihood(samples: torch.Tensor, x: torch.Tensor, sigma: float, batch: int = 200) -> torch.Tensor:
    """log p̂(x) (N,), in nats, under a Gaussian Parzen window of width ``sigma`` on ``samples`` (M, ...):
    p̂(x) = (1/M) Σ_i N(x; s_i, σ² I), computed in float64 with logsumexp (Goodfellow et al., Sec. 5)."""
    s = samples.flatten(1).double()
    d = s.shape[1]
    const = -math.log(len(s)) - 0.5 * d * math.log(2 * math.pi * sigma ** 2)
    out = [torch.logsumexp(-torch.cdist(c, s).pow(2) / (2 * sigma ** 2), 1) + const
           for c in x.flatten(1).double().split(batch)]
    return torch.cat(out)


def parzen_score(samples: torch.Tensor, x_val: torch.Tensor, x_test: torch.Tensor,
                 sigmas: tuple = PARZEN_SIGMAS) -> dict:
    """The paper's protocol: choose σ on validation images, then report the mean test log-likelihood and its
    standard error. Returns ``sigma``, ``mean``, ``sem`` (nats)."""
    best = max(sigmas, key=lambda sg: parzen_log_likelihood(samples, x_val, sg).mean().item())
    ll = parzen_log_likelihood(samples, x_test, best)
    return {"sigma": best, "mean": ll.mean().item(), "sem": (ll.std() / math.sqrt(len(ll))).item()}


# --- figures --------------------------------------------------------------------------------------------------

def plot_toy(states: list[dict], steps: tuple):
    """The paper's Figure 1 from the run: for each recorded step in ``steps``, p_data (black), a histogram of
    p_g (green), the GAN's D (blue, dashed) and D* from the two densities (red, dotted; drawn only where
    p_data + p_g ≥ 0.02, since elsewhere the histogram is too sparse to define it). A 2×2 figure."""
    fig, axes = plt.subplots(2, 2, figsize=(6.8, 4.6), sharex=True)
    for ax, st in zip(axes.flat, [s for s in states if s["step"] in steps]):
        x = st["grid"]
        ax.plot(x, st["p_data"], "k", lw=1.2, label="p_data")
        ax.fill_between(x, st["p_g"].clamp(max=1.6), step="mid", color="tab:green", alpha=0.4, label="p_g")
        ax.plot(x, st["d"], "--", color="tab:blue", label="D (trained with G)")
        d_star = st["d_star"].where(st["p_data"] + st["p_g"] >= 0.02, torch.tensor(float("nan")))
        ax.plot(x, d_star, ":", color="tab:red", label="D* (eq. 2)")
        ax.set_ylim(0, 1.6)
        ax.set_title(f"step {st['step']}: JSD = {st['jsd']:.3f}", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    for ax in axes[1]:
        ax.set_xlabel("x", fontsize=9)
    fig.tight_layout()
    return fig


def plot_saturation(rows: list[dict], ax=None):
    """Gradient norms of the two generator losses against D's training steps (log scale)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 2.8))
    steps = [r["d_steps"] for r in rows]
    ax.plot(steps, [r["saturating"] for r in rows], "o-", label="saturating: log(1 − D(G(z)))")
    ax.plot(steps, [r["nonsaturating"] for r in rows], "s-", label="non-saturating: −log D(G(z))")
    ax.set_yscale("log")
    ax.set_xlabel("discriminator steps (G frozen)", fontsize=9)
    ax.set_ylabel("‖∇θ_G loss‖", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=8)
    return ax


def plot_snapshots(snapshots: torch.Tensor, epochs: tuple, n: int = 10):
    """One row of ``n`` samples (same noise) per snapshot, labelled by epoch."""
    fig, axes = plt.subplots(len(epochs), n, figsize=(0.62 * n + 0.7, 0.66 * len(epochs)), squeeze=False)
    for r, (row, ep) in enumerate(zip(snapshots, epochs)):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(row[c, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"epoch {ep}", fontsize=8, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.12, right=0.99, top=0.99, bottom=0.01)
    return fig


def plot_ring(runs: dict, settings: Settings, per_run: int = 3):
    """Samples of each run (name → checks) at ``per_run`` of its checks (evenly spaced, ending with the last)
    over the ring's centres: one row per run."""
    fig, axes = plt.subplots(len(runs), per_run, figsize=(6.8, 2.3 * len(runs)), squeeze=False)
    centres = ring_centres(settings)
    lim = settings.ring_radius * 1.6
    for row, (name, checks) in zip(axes, runs.items()):
        picks = [checks[round((i + 1) * len(checks) / per_run) - 1] for i in range(per_run)]
        for ax, c in zip(row, picks):
            ax.scatter(*c["samples"][:500].T, s=2, alpha=0.5, color="tab:blue")
            ax.scatter(*centres.T, s=30, marker="x", color="k")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(f"{name}\nstep {c['step']}: {c['modes']} mode{'' if c['modes'] == 1 else 's'}",
                         fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
