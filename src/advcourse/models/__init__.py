"""Models of the course, each a small readable ``nn.Module`` returning logits."""

from .cnn import MnistCNN
from .fc import AutoencoderClassifier, FCNet
from .linear import LogisticRegression, SoftmaxRegression
from .mlp import MLP, Maxout
from .rbf import RBFNetwork, rbf_loss

__all__ = ["LogisticRegression", "SoftmaxRegression", "RBFNetwork", "rbf_loss", "MLP", "Maxout",
           "MnistCNN", "FCNet", "AutoencoderClassifier"]
