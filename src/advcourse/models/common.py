"""Pieces shared by the course's models: input normalisation inside the model, and ensembles."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Normalise", "Ensemble"]


class Normalise(nn.Module):
    """Per-channel standardisation (x − mean) / std inside the model, so attacks work on [0, 1] pixels.

    ``mean`` and ``std`` are sequences with one entry per channel; input and output (N, C, H, W).
    """

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Ensemble(nn.Module):
    """Averages its members' softmax probabilities; returns log(mean p) as logits (N, K).

    Softmax of these logits is exactly the mean probability, so every attack and
    metric treats the ensemble as one model.
    """

    def __init__(self, members):
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([m(x).log_softmax(dim=1) for m in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))
