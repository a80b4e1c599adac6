"""Multilayer perceptrons with ReLU or maxout hidden units (Goodfellow et al. 2013, 2015).

A maxout unit takes the largest of ``k`` affine pieces of its input,
h_j(x) = max_i (W_{j,i} x + b_{j,i}); ReLU is the special case max(wᵀx + b, 0).
Both are piecewise linear, which is exactly why a small step along the sign of
the gradient moves their outputs so much (chapter 2).
"""

from __future__ import annotations

import torch
from torch import nn

UNITS = ("maxout", "relu")


class Maxout(nn.Module):
    """A layer of ``out_features`` maxout units with ``k`` pieces each.

    Input (N, in_features), output (N, out_features). The affine map has
    ``out_features * k`` rows; rows ``j*k, …, j*k + k − 1`` are the pieces of unit j.
    """

    def __init__(self, in_features: int, out_features: int, k: int = 2):
        super().__init__()
        if k < 1 or out_features < 1:
            raise ValueError(f"k and out_features must be positive, got {k} and {out_features}")
        self.out_features, self.k = out_features, k
        self.linear = nn.Linear(in_features, out_features * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return z.view(*z.shape[:-1], self.out_features, self.k).max(dim=-1).values

    @property
    def pieces(self) -> torch.Tensor:
        """The weights as (out_features, k, in_features): unit j's k filters."""
        return self.linear.weight.view(self.out_features, self.k, -1)


class MLP(nn.Module):
    """A fully connected classifier for images (N, C, H, W) in [0, 1]; returns logits (N, classes).

    Args:
        in_features: number of input values per example (784 for MNIST).
        hidden: widths of the hidden layers, e.g. ``(240, 240)``.
        num_classes: number of logits.
        unit: ``"maxout"`` (``k`` pieces per unit) or ``"relu"``.
        k: pieces per maxout unit (ignored for ReLU).
        dropout: dropout probability after each hidden layer (0 disables it).
    """

    def __init__(self, in_features: int = 784, hidden=(240, 240), num_classes: int = 10,
                 unit: str = "maxout", k: int = 2, dropout: float = 0.0):
        super().__init__()
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty sequence of positive widths, got {hidden}")
        self.unit = unit
        layers, width = [], in_features
        for h in hidden:
            layers += [Maxout(width, h, k)] if unit == "maxout" else [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.hidden = nn.Sequential(*layers)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x.flatten(1)))

    def first_layer_filters(self) -> torch.Tensor:
        """The first layer's filters as (units, pieces, in_features); ReLU units have 1 piece."""
        first = self.hidden[0]
        w = first.pieces if isinstance(first, Maxout) else first.weight.unsqueeze(1)
        return w.detach()
