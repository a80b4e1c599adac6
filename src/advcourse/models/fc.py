"""The fully connected MNIST models of Szegedy et al. 2014 ("Intriguing properties"), §2 and Table 1.

* ``FC10``: a softmax classifier on the pixels (no hidden layer), trained with weight decay λ;
* ``FC100-100-10``, ``FC200-200-10`` (and ``FC123-456-10`` of Table 3): sigmoid networks with
  two hidden layers and a softmax output;
* ``AE400-10``: a 400-unit sigmoid autoencoder, trained without labels, with a softmax
  classifier on its code.

All take images (N, 1, 28, 28) in [0, 1] and return logits (N, 10). Every model is a chain of
affine maps, each followed by a fixed elementwise non-linearity, and exposes that chain through
``layers()`` so that Chapter 3 can bound each layer's Lipschitz constant (§4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

# The Lipschitz constant of each non-linearity: max |σ'| = σ(0)(1 − σ(0)) = 1/4; ReLU and the
# identity never stretch a difference.
ACTIVATIONS = {"sigmoid": (torch.sigmoid, 0.25), "relu": (torch.relu, 1.0), "identity": (lambda z: z, 1.0)}


class Layer(NamedTuple):
    """One step φ_k(h) = act(W h + b) of a network: its affine map and its non-linearity."""

    name: str
    linear: nn.Linear
    activation: str  # a key of ACTIVATIONS


def _act(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name][0]


class FCNet(nn.Module):
    """A fully connected classifier 784 → hidden[0] → … → 10 with one activation throughout.

    ``hidden=()`` gives FC10, the paper's softmax classifier on raw pixels. The paper's
    networks use the sigmoid; ``activation="relu"`` is there for the exercises.
    """

    def __init__(self, hidden: Sequence[int] = (), in_features: int = 784, num_classes: int = 10,
                 activation: str = "sigmoid"):
        super().__init__()
        _act(activation)
        if any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be positive, got {tuple(hidden)}")
        sizes = [in_features, *map(int, hidden), num_classes]
        self.hidden_sizes, self.activation = tuple(map(int, hidden)), activation
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def layers(self) -> list[Layer]:
        """The chain of layers; the last one (the logits) has no non-linearity."""
        n = len(self.linears)
        return [Layer(f"FC{k + 1}" if k < n - 1 else "output", lin,
                      self.activation if k < n - 1 else "identity") for k, lin in enumerate(self.linears)]

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[φ_1(x), …, φ_K(x)]: the output of every layer, each (N, width); the last are the logits."""
        return chain_activations(self.layers(), x)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x) of §3: the last hidden layer's activations (N, width) (the pixels for FC10)."""
        acts = self.activations(x)
        return acts[-2] if len(acts) > 1 else x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)[-1]


class AutoencoderClassifier(nn.Module):
    """AE400-10: a sigmoid autoencoder 784 → 400 → 784 and a softmax classifier on its code.

    ``encode`` gives the code h = σ(W_e x + b_e) (N, 400); ``reconstruct`` the decoded image
    σ(W_d h + b_d) (N, 784) in (0, 1); ``forward`` the class logits W_c h + b_c (N, 10).
    """

    def __init__(self, code: int = 400, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.encoder = nn.Linear(in_features, code)
        self.decoder = nn.Linear(code, in_features)
        self.classifier = nn.Linear(code, num_classes)
        self.hidden_sizes, self.activation = (code,), "sigmoid"

    def layers(self) -> list[Layer]:
        """The classifying chain (the decoder plays no part in the class decision)."""
        return [Layer("encoder", self.encoder, "sigmoid"), Layer("output", self.classifier, "identity")]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(x.flatten(1)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encode(x)))

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        return chain_activations(self.layers(), x)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encode(x))


def chain_activations(layers: Sequence[Layer], x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``x`` (N, …) through a chain of layers; returns every layer's output (N, width)."""
    h, out = x.flatten(1), []
    for layer in layers:
        h = _act(layer.activation)(layer.linear(h))
        out.append(h)
    return out


def build(arch: str) -> nn.Module:
    """A model by the paper's name: "FC10", "FC100-100-10", "FC200-200-10", "FC123-456-10",
    "AE400-10", or any "FCa-b-…-10" (sigmoid hidden layers of sizes a, b, …)."""
    if arch == "AE400-10":
        return AutoencoderClassifier(400)
    parts = arch.removeprefix("FC").split("-")
    if not arch.startswith("FC") or parts[-1] != "10" or not all(p.isdigit() for p in parts):
        raise ValueError(f"arch must be 'AE400-10' or 'FC<sizes>-10' such as 'FC100-100-10', got {arch!r}")
    return FCNet(tuple(int(p) for p in parts[:-1]))
