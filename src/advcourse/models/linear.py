"""Linear models: the setting of Goodfellow et al.'s linear explanation.

Both take images (N, C, H, W) in [0, 1] and return logits.
"""

import torch
from torch import nn


class LogisticRegression(nn.Module):
    """Binary logistic regression P(y=1 | x) = σ(wᵀx + b), written as two logits.

    The logits are ``(0, wᵀx + b)``, so softmax gives exactly σ(wᵀx + b) for class 1
    and cross-entropy equals the logistic loss ζ(−ỹ(wᵀx + b)) with ỹ = ±1. This lets
    the binary model share every loss, attack and metric with the multi-class ones.
    """

    def __init__(self, in_features: int = 784):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    @property
    def w(self) -> torch.Tensor:
        """The weight vector w, shape (in_features,)."""
        return self.linear.weight[0]

    @property
    def b(self) -> torch.Tensor:
        return self.linear.bias[0]

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """wᵀx + b for each example, shape (N,)."""
        return self.linear(x.flatten(1)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.score(x)
        return torch.stack([torch.zeros_like(s), s], dim=1)


class SoftmaxRegression(nn.Module):
    """Multinomial logistic (softmax) regression: logits z = Wx + b."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
