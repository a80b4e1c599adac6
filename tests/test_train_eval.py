"""The training loop, evaluation helpers and the models of chapter 1."""

import pytest
import torch
import torch.nn.functional as F

from advcourse import data
from advcourse.attacks import robust_accuracy
from advcourse.evaluate import accuracy, predict
from advcourse.models import LogisticRegression, RBFNetwork, SoftmaxRegression, rbf_loss
from advcourse.train import train


@pytest.fixture(scope="module")
def digits():
    d = data.mnist()
    return d.x_train[:2000], d.y_train[:2000], d.x_test[:500], d.y_test[:500]


def test_training_learns_real_digits(digits):
    x, y, xt, yt = digits
    model = SoftmaxRegression()
    before = accuracy(model, xt, yt)
    hist = train(model, x, y, epochs=3, lr=1e-2, progress=False, x_val=xt, y_val=yt)
    assert hist["loss"][-1] < hist["loss"][0]
    assert accuracy(model, xt, yt) > 0.8 > before
    assert len(hist["val_acc"]) == 3 and hist["seconds"] > 0


def test_training_is_deterministic(digits):
    x, y, *_ = digits
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SoftmaxRegression()
        train(model, x[:500], y[:500], epochs=1, seed=5, progress=False)
        weights.append(model.linear.weight.detach().clone())
    assert torch.equal(*weights)


def test_adversary_hook_and_keep_best(digits):
    x, y, xt, yt = digits
    calls = []

    def adversary(model, xb, yb):
        calls.append(len(xb))
        return (xb + 0.1).clamp(0, 1)

    model = SoftmaxRegression()
    hist = train(model, x[:512], y[:512], epochs=2, batch_size=128, adversary=adversary,
                 x_val=xt, y_val=yt, keep_best=True, progress=False)
    assert sum(calls) == 2 * 512
    assert hist["best_epoch"] == max(range(2), key=lambda e: hist["val_acc"][e])
    assert accuracy(model, xt, yt) == pytest.approx(max(hist["val_acc"]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs"), (dict(lr=-1.0), "lr"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(clean_weight=1.5), "clean_weight"), (dict(keep_best=True), "x_val")])
def test_training_rejects_bad_arguments(digits, kwargs, match):
    x, y, *_ = digits
    with pytest.raises(ValueError, match=match):
        train(SoftmaxRegression(), x[:10], y[:10], progress=False, **kwargs)


def test_training_rejects_bad_images(digits):
    x, y, *_ = digits
    with pytest.raises(ValueError, match="x must lie in"):
        train(SoftmaxRegression(), x[:10] * 2, y[:10], progress=False)
    with pytest.raises(TypeError, match="x must be a float"):
        train(SoftmaxRegression(), (x[:10] * 255).byte(), y[:10], progress=False)
    with pytest.raises(ValueError, match="same length"):
        train(SoftmaxRegression(), x[:10], y[:9], progress=False)


def test_predict_and_robust_accuracy(digits):
    x, y, xt, yt = digits
    model = SoftmaxRegression()
    train(model, x, y, epochs=2, lr=1e-2, progress=False)
    model.train()
    pred, conf = predict(model, xt)
    assert model.training, "predict must restore the model's mode"
    assert pred.shape == yt.shape and ((conf > 0) & (conf <= 1)).all()
    identity = lambda m, xb, yb: xb  # noqa: E731
    assert robust_accuracy(model, xt, yt, identity) == accuracy(model, xt, yt)
    noise = lambda m, xb, yb: torch.rand_like(xb)  # noqa: E731
    assert robust_accuracy(model, xt, yt, noise) < 0.5


def test_logistic_regression_is_a_two_logit_softmax():
    torch.manual_seed(0)
    model = LogisticRegression(12)
    x = torch.rand(7, 1, 3, 4)
    y = torch.randint(0, 2, (7,))
    s = model.score(x)
    assert torch.allclose(model(x).softmax(1)[:, 1], torch.sigmoid(s), atol=1e-6)
    # cross-entropy on the two logits is the logistic loss ζ(−ỹ s) of Goodfellow et al. §5
    ytilde = 2 * y - 1
    assert torch.allclose(F.cross_entropy(model(x), y), F.softplus(-ytilde * s).mean(), atol=1e-6)


def test_rbf_outputs_and_loss():
    torch.manual_seed(0)
    model = RBFNetwork(6, 3, beta0=0.5)
    x = torch.rand(5, 1, 2, 3)
    p = model.probabilities(x)
    assert ((p > 0) & (p <= 1)).all()
    y = torch.tensor([0, 1, 2, 1, 0])
    naive = -(torch.log(p[torch.arange(5), y]).sum()
              + sum(torch.log(1 - p[i, c]) for i in range(5) for c in range(3) if c != y[i])) / 5
    assert torch.allclose(rbf_loss(model(x), y), naive, atol=1e-5)
    # at its centre a detector is certain; far away it is silent
    centre = model.mu[1].detach().view(1, 1, 2, 3)
    assert model.probabilities(centre)[0, 1].item() == pytest.approx(1.0)
    assert model.probabilities(centre + 100)[0].max() < 1e-6
