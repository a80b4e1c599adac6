"""Models of the course, each a small readable ``nn.Module`` returning logits."""

from .cnn import MnistCNN, cifar_convnet
from .common import Ensemble, Normalise
from .fc import AutoencoderClassifier, FCNet
from .linear import LogisticRegression, SoftmaxRegression
from .mlp import MLP, Maxout
from .rbf import RBFNetwork, rbf_loss

__all__ = ["LogisticRegression", "SoftmaxRegression", "RBFNetwork", "rbf_loss", "MLP", "Maxout",
           "MnistCNN", "cifar_convnet", "FCNet", "AutoencoderClassifier", "Normalise", "Ensemble"]
