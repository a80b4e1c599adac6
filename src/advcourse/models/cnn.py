"""Small convolutional networks: the MNIST CNN of the attack benchmark (``benchmarks/``) and of
chapters 4–6, and a VGG-style CIFAR-10 network (chapter 2, full profile).

The architecture of the MNIST model of Wong & Kolter (2018) and of Wong, Rice & Kolter's
"Fast is better than free" (2020): two strided 4×4 convolutions and a two-layer classifier,
small enough for a CPU to run thousands of attack steps on it in seconds:

    (N, 1, 28, 28) → conv 4×4 /2 (c1) → ReLU        (N, c1, 14, 14)
                   → conv 4×4 /2 (c2) → ReLU        (N, c2, 7, 7)
                   → flatten → linear (hidden) → ReLU → linear (classes)   (N, classes) logits

It takes images in [0, 1] (any normalisation belongs inside the model) and returns logits,
never probabilities, as every attack in :mod:`advcourse.attacks` expects.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import Normalise

__all__ = ["MnistCNN", "cifar_convnet"]


class MnistCNN(nn.Module):
    """conv(1→c1) → conv(c1→c2) → FC(c2·7·7→hidden) → FC(hidden→classes), ReLU in between.

    Each convolution has a 4×4 kernel, stride 2 and padding 1, so it halves the image side
    (28 → 14 → 7) without a pooling layer.

    Args:
        channels: output channels of the two convolutions (c1, c2).
        hidden: width of the hidden fully connected layer.
        num_classes: number of logits.
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 100, num_classes: int = 10):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        if min(c1, c2, hidden, num_classes) < 1:
            raise ValueError(f"channels, hidden and num_classes must be positive, got {channels}, {hidden}, "
                             f"{num_classes}")
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=4, stride=2, padding=1), nn.ReLU(),  # 28 → 14
            nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1), nn.ReLU(),  # 14 → 7
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, 28, 28) in [0, 1] → logits (N, num_classes)."""
        if x.ndim != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"x must have shape (N, 1, 28, 28), got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def cifar_convnet(width: int = 64) -> nn.Module:
    """A small VGG-style convolutional ReLU network for 32×32 RGB images in [0, 1] (chapter 2's
    full profile): three blocks of two 3×3 convolutions with batch norm, each halving the side.

        (N, 3, 32, 32) → normalise → block(w) (N, w, 16, 16) → block(2w) (N, 2w, 8, 8)
                       → block(4w) (N, 4w, 4, 4) → flatten → dropout 0.3 → linear  (N, 10) logits
    """
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(Normalise((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                         *block(3, width), *block(width, 2 * width), *block(2 * width, 4 * width),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(4 * width * 16, 10))
