"""Generative adversarial nets (Goodfellow et al., 2014) with a DCGAN-style pair for MNIST (Radford et al., 2016).

A generator G maps noise z ~ N(0, I) to a sample; a discriminator D maps a sample to one logit ℓ, with
D(x) = σ(ℓ) the probability that x is real. They play the minimax game of Goodfellow et al., Eq. 1:

    min_G max_D  V(D, G) = E_x~p_data[log D(x)] + E_z~p_z[log(1 − D(G(z)))]

For MNIST (images (N, 1, 28, 28) in [0, 1], the package convention):

    Generator      z (N, z_dim) → linear → BN → ReLU → (N, 2w, 7, 7)
                   → deconv 4×4 /2 → BN → ReLU → (N, w, 14, 14) → deconv 4×4 /2 → sigmoid → (N, 1, 28, 28)
    Discriminator  (N, 1, 28, 28) → conv 4×4 /2 → LeakyReLU → (N, w, 14, 14)
                   → conv 4×4 /2 → BN → LeakyReLU → (N, 2w, 7, 7) → linear → (N,) logits

DCGAN's recipe: strided (de)convolutions instead of pooling, batch norm except at G's output and D's input,
ReLU in G, LeakyReLU(0.2) in D, Adam with learning rate 2e-4 and β1 = 0.5. With the defaults below
(z_dim 64, width 32) about a minute of CPU training on MNIST gives digits that a classifier recognises about
half as often as real ones (Chapter 13 measures it).

:class:`ToyGenerator` and :class:`ToyDiscriminator` are small MLPs for a 1-D toy whose densities are known, so a
trained D can be compared with the optimal one, :func:`optimal_discriminator` (Eq. 2). The losses are written
with ``logsigmoid`` of the logits: log σ(ℓ) and log(1 − σ(ℓ)) = log σ(−ℓ) never see a probability that
rounded to 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import device_of

__all__ = ["Discriminator", "GANConfig", "Generator", "ToyDiscriminator", "ToyGenerator", "d_loss",
           "g_loss_nonsaturating", "g_loss_saturating", "noise", "optimal_discriminator", "value_function"]


def noise(n: int, z_dim: int, device: torch.device | str = "cpu",
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise z ~ N(0, I) of shape (n, z_dim) on ``device`` (the model's).

    With a ``generator``, z is drawn on the generator's own device and then moved, so a CPU generator
    seeds the same z for a model on a GPU (``torch.randn`` refuses a generator on another device).
    """
    if n < 0 or z_dim < 1:
        raise ValueError(f"n must be ≥ 0 and z_dim positive, got n={n}, z_dim={z_dim}")
    if generator is None:
        return torch.randn(n, z_dim, device=device)
    return torch.randn(n, z_dim, generator=generator, device=generator.device).to(device)


@dataclass(frozen=True)
class GANConfig:
    """Sizes of the MNIST generator and discriminator.

    Attributes:
        z_dim: dimension of the noise z ~ N(0, I).
        g_width: channels of G's 14×14 layer (its 7×7 layer has twice as many).
        d_width: channels of D's 14×14 layer (its 7×7 layer has twice as many).
        leak: negative slope of D's LeakyReLU.
    """

    z_dim: int = 64
    g_width: int = 32
    d_width: int = 32
    leak: float = 0.2

    def __post_init__(self):
        for name in ("z_dim", "g_width", "d_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.leak < 1.0:
            raise ValueError(f"leak must be in [0, 1), got {self.leak}")


class Generator(nn.Module):
    """DCGAN generator: noise (N, z_dim) → images (N, 1, 28, 28) in (0, 1)."""

    def __init__(self, config: GANConfig = GANConfig()):
        super().__init__()
        self.config = config
        w = config.g_width
        self.project = nn.Sequential(
            nn.Linear(config.z_dim, 2 * w * 7 * 7, bias=False), nn.BatchNorm1d(2 * w * 7 * 7), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, kernel_size=4, stride=2, padding=1, bias=False),  # 7 → 14
            nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, 1, kernel_size=4, stride=2, padding=1),  # 14 → 28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, z_dim) → images (N, 1, 28, 28) in (0, 1)."""
        if z.ndim != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must have shape (N, {self.config.z_dim}), got {tuple(z.shape)}")
        h = self.project(z).view(-1, 2 * self.config.g_width, 7, 7)  # (N, 2w·49) → (N, 2w, 7, 7)
        return torch.sigmoid(self.deconv(h))  # (N, 1, 28, 28); sigmoid, not tanh: images live in [0, 1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) from fresh noise z ~ N(0, I) (see :func:`noise` for ``generator``)."""
        return self(noise(n, self.config.z_dim, device_of(self), generator))


class Discriminator(nn.Module):
    """DCGAN discriminator: images (N, 1, 28, 28) in [0, 1] → logits (N,), D(x) = sigmoid(logit)."""

    def __init__(self, config: GANConfig = GANConfig()):
        super().__init__()
        w = config.d_width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(config.leak),  # 28 → 14
            nn.Conv2d(w, 2 * w, kernel_size=4, stride=2, padding=1, bias=False),  # 14 → 7
            nn.BatchNorm2d(2 * w), nn.LeakyReLU(config.leak),
        )
        self.logit = nn.Linear(2 * w * 7 * 7, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, 28, 28) → logits (N,)."""
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.logit(self.features(x).flatten(1)).squeeze(1)  # (N, 2w, 7, 7) → (N, 2w·49) → (N,)


def _mlp(d_in: int, hidden: int, d_out: int, depth: int, act: nn.Module) -> nn.Sequential:
    if min(d_in, hidden, d_out, depth) < 1:
        raise ValueError(f"sizes and depth must be positive, got d_in={d_in}, hidden={hidden}, d_out={d_out}, "
                         f"depth={depth}")
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), act]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class ToyGenerator(nn.Module):
    """MLP generator for low-dimensional toys: noise (N, z_dim) → samples (N, x_dim), unbounded.

    Args:
        z_dim: noise dimension.
        x_dim: sample dimension (1 for the 1-D toy).
        hidden: width of the hidden layers.
        depth: number of hidden layers.
    """

    def __init__(self, z_dim: int = 1, x_dim: int = 1, hidden: int = 32, depth: int = 2):
        super().__init__()
        self.z_dim = z_dim
        self.net = _mlp(z_dim, hidden, x_dim, depth, nn.ReLU())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, z_dim) → x (N, x_dim)."""
        return self.net(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (n, x_dim) from fresh noise z ~ N(0, I) (see :func:`noise` for ``generator``)."""
        return self(noise(n, self.z_dim, device_of(self), generator))


class ToyDiscriminator(nn.Module):
    """MLP discriminator for low-dimensional toys: samples (N, x_dim) → logits (N,).

    Args:
        x_dim: sample dimension.
        hidden: width of the hidden layers.
        depth: number of hidden layers.
    """

    def __init__(self, x_dim: int = 1, hidden: int = 32, depth: int = 2):
        super().__init__()
        self.net = _mlp(x_dim, hidden, 1, depth, nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, x_dim) → logits (N,)."""
        return self.net(x).squeeze(-1)  # (N, 1) → (N,)


def value_function(real_logits: torch.Tensor,
                   fake_logits: torch.Tensor) -> torch.Tensor:
    """V(D, G) of Goodfellow et al., Eq. 1, estimated on a batch:
    mean log D(x) + mean log(1 − D(G(z))), from D's logits on real and fake samples.

    A scalar ≤ 0; D maximises it. With D(x) = ½ everywhere it equals −log 4, the value
    of the game at its optimum (Theorem 1).
    """
    # log D = log σ(ℓ), log(1 − σ(ℓ)) = log σ(−ℓ): no probability is rounded to 0 or 1
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean()


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss −V(D, G) (Eq. 1): binary cross-entropy with label 1 on real and 0 on fake.

    A scalar ≥ 0, log 4 when D(x) = ½ everywhere; minimising it is D's ascent on V in Algorithm 1.
    """
    return -value_function(real_logits, fake_logits)


def g_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss in the minimax game (Eq. 1): mean log(1 − D(G(z))), to be minimised.

    A scalar ≤ 0. Its gradient w.r.t. a fake logit ℓ is −σ(ℓ)/N, which vanishes as D(G(z)) → 0: early in
    training, when D rejects G's samples confidently, G learns almost nothing (Goodfellow et al., Sec. 3).
    """
    return F.logsigmoid(-fake_logits).mean()


def g_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss (Goodfellow et al., Sec. 3): maximise
    log D(G(z)), i.e. minimise −mean log D(G(z)).

    A scalar ≥ 0 with the same fixed point as the minimax loss, but its gradient w.r.t.
    a fake logit ℓ is −(1 − σ(ℓ))/N, which tends to −1/N, not 0, as D(G(z)) → 0: "much
    stronger gradients early in learning".
    """
    return -F.logsigmoid(fake_logits).mean()


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*_G(x) = p_data(x) / (p_data(x) + p_g(x)) for a fixed G (Goodfellow et al., Proposition 1, Eq. 2).

    Densities (any shape, ≥ 0) evaluated at the same points → values in [0, 1]; ½ where both densities are 0
    (and wherever p_g = p_data).
    """
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.where(total > 0, torch.ones_like(total)), torch.full_like(total, 0.5))
