"""Models of the course, each a small readable ``nn.Module`` returning logits."""

from .linear import LogisticRegression, SoftmaxRegression
from .rbf import RBFNetwork, rbf_loss

__all__ = ["LogisticRegression", "SoftmaxRegression", "RBFNetwork", "rbf_loss"]
