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


class Softmaxed(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).softmax(1)


def images(n: int, seed: int = 0, shape=(1, 8, 8), lo: float = 0.0, hi: float = 1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(n, *shape, generator=g)).to(dtype)


def predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)
