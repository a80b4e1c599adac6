"""The MNIST CNN of the attack benchmark: shapes, logits, and that it learns real digits."""

import pytest
import torch

from advcourse.data import mnist
from advcourse.models.cnn import MnistCNN
from advcourse.train import train


def test_shapes_and_parameters():
    torch.manual_seed(0)
    model = MnistCNN()
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert MnistCNN(channels=(4, 8), hidden=16, num_classes=3)(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    # conv 1·16·4·4+16, conv 16·32·4·4+32, FC 32·7·7·100+100, FC 100·10+10
    assert sum(p.numel() for p in model.parameters()) == 272 + 8224 + 156900 + 1010


def test_returns_logits_not_probabilities():
    torch.manual_seed(0)
    z = MnistCNN()(torch.rand(8, 1, 28, 28))
    assert (z < 0).any()  # a softmax output would be non-negative
    assert not torch.allclose(z.sum(1), torch.ones(8))


def test_gradient_reaches_the_input():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    MnistCNN()(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [(2, 784), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_rejects_wrong_shapes(bad):
    with pytest.raises(ValueError, match="shape"):
        MnistCNN()(torch.rand(*bad))


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        MnistCNN(channels=(0, 8))


def test_learns_real_mnist_in_one_epoch():
    torch.manual_seed(0)
    data = mnist()
    model = MnistCNN()
    with torch.no_grad():
        before = (model(data.x_test[:500]).argmax(1) == data.y_test[:500]).float().mean().item()
    train(model, data.x_train[:2000], data.y_train[:2000], epochs=1, batch_size=50, lr=3e-3, seed=0, progress=False)
    with torch.no_grad():
        after = (model(data.x_test[:500]).argmax(1) == data.y_test[:500]).float().mean().item()
    assert after > before + 0.3
    assert after > 0.85, after  # ten classes from 2,000 digits in one epoch
