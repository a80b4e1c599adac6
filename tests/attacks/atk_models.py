"""Tiny seeded models and data shared by the attack tests (imported by name; no package)."""

from __future__ import annotations

import torch
from torch import nn


class Linear(nn.Module):
    """Multiclass linear classifier z = W x + b on flattened inputs."""

    def __init__(self, d: int, k: int, seed: int = 0, scale: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(d, k)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, d, generator=g) * scale)
            self.fc.bias.copy_(torch.randn(k, generator=g) * 0.1)

    def forward(self, x):
        return self.fc(x.flatten(1))


class BinaryLogistic(nn.Module):
    """Logistic regression written as two logits [0, w^T x + b]."""

    def __init__(self, d: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(d, generator=g))
        self.b = nn.Parameter(torch.randn((), generator=g) * 0.1)

    def forward(self, x):
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)


def make_mlp(seed: int = 0, d: int = 64, h: int = 32, k: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU(), nn.Linear(h, k))


class BNDrop(nn.Module):
    """Has BatchNorm + Dropout: outputs differ between train and eval mode."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10)
        )
        with torch.no_grad():  # non-trivial running statistics
            self.net[2].running_mean.uniform_(-0.5, 0.5)
            self.net[2].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.net(x)


class BNConv(nn.Module):
    """A small CNN on (1, 8, 8) inputs with BatchNorm and max-pooling: kinks where float noise can grow."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 2 * 2, 10),
        )
        with torch.no_grad():  # non-trivial running statistics
            for bn in (self.net[1], self.net[5]):
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.5, 2.0)
        self.eval()

    def forward(self, x):
        return self.net(x)


class Softmaxed(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


def images(n: int, seed: int = 0, shape=(1, 8, 8), lo: float = 0.0, hi: float = 1.0, dtype=torch.float32,
           faces: float = 0.0):
    """n images uniform in [lo, hi]; a fraction ``faces`` of the pixels is then set to exactly 0 or 1
    (MNIST lives on the faces of the box, where clipping and projection have corner cases)."""
    g = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, *shape, generator=g)
    if faces > 0:
        u = torch.rand(n, *shape, generator=g)
        x = torch.where(u < faces / 2, 0.0, torch.where(u < faces, 1.0, x))
    return x.to(dtype)


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)
