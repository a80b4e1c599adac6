"""Chapter 1's claims, on the fast profile's data and settings (the embedded MNIST)."""

import math

import pytest
import torch

from advcourse.attacks import fgsm
from advcourse.evaluate import error_report
from advcourse.experiments import ch01_linear_explanation as lx

S = lx.FAST  # the chapter's fast-profile settings


@pytest.fixture(scope="module")
def three_seven(mnist):
    return lx.three_vs_seven(mnist)


@pytest.fixture(scope="module")
def logreg(three_seven):
    x, y, _, _ = three_seven
    return lx.train_linear("logistic", x, y, data_tag="embedded-3v7", epochs=S.epochs, lr=S.lr,
                           seed=0, progress=False)[0]


@pytest.fixture(scope="module")
def ten_class(mnist):
    kw = dict(data_tag="embedded", epochs=S.epochs // 2, lr=S.lr, seed=0, progress=False)
    return (lx.train_linear("softmax", mnist.x_train, mnist.y_train, **kw)[0],
            lx.train_linear("rbf", mnist.x_train, mnist.y_train, **kw)[0])


def test_aligned_perturbation_grows_linearly_random_like_sqrt():
    dims = [100, 1000, 10000]
    g = lx.activation_growth(dims, eps=0.01, trials=50, generator=torch.Generator().manual_seed(0))
    slope = lambda ys: math.log(ys[-1] / ys[0]) / math.log(dims[-1] / dims[0])  # noqa: E731
    assert slope(g["aligned"]) == pytest.approx(1.0, abs=0.05)
    assert slope(g["random"]) == pytest.approx(0.5, abs=0.1)
    # ε‖w‖₁ = ε·m·n exactly, for each draw
    assert g["aligned"] == pytest.approx(g["emn"], rel=1e-5)


def test_fgsm_is_the_exact_worst_case_of_logistic_regression(three_seven, logreg):
    _, _, x, y = three_seven
    x_adv = fgsm(logreg, x, y, 0.25)
    exact = lx.fgsm_logistic_exact(logreg, x, y, 0.25)
    assert torch.allclose(x_adv, exact, atol=1e-6)


def test_logistic_regression_fits_well_and_is_fooled(three_seven, logreg):
    _, _, x, y = three_seven
    assert error_report(logreg, x, y).error < 0.03          # paper: 1.6%
    assert lx.fgsm_report(logreg, x, y, 0.25)[1].error > 0.95  # paper: 99%


def test_fgsm_drop_is_bounded_by_eps_l1(three_seven, logreg):
    _, _, x, y = three_seven
    drop = lx.margins(logreg, x, y) - lx.margins(logreg, fgsm(logreg, x, y, 0.25), y)
    budget = 0.25 * logreg.w.abs().sum().item()
    assert (drop <= budget + 1e-3).all() and (drop > 0).all()
    assert drop.median() > lx.margins(logreg, x, y).median()


def test_adversarial_training_beats_l1_decay(three_seven):
    x, y, xt, yt = three_seven
    kw = dict(data_tag="embedded-3v7", epochs=S.epochs, lr=S.lr, seed=0, progress=False)
    adv = lx.train_linear("logistic", x, y, adv_eps=0.25, clean_weight=0.5, **kw)[0]
    l1_big = lx.train_linear("logistic", x, y, l1=0.25, **kw)[0]
    l1_small = lx.train_linear("logistic", x, y, l1=0.0025, **kw)[0]
    adv_err = lx.fgsm_report(adv, xt, yt, 0.25)[1].error
    adv_clean = error_report(adv, xt, yt).error
    assert adv_err < 0.5 and adv_clean < 0.06
    # λ = ε cannot fit (paper: "stuck at over 5% error on the training set")
    assert error_report(l1_big, x, y).error > 0.05
    assert error_report(l1_big, xt, yt).error > max(0.05, 2 * adv_clean)
    assert lx.fgsm_report(l1_small, xt, yt, 0.25)[1].error > adv_err + 0.2  # small λ: still exposed


def test_softmax_regression_is_fooled_confidently(mnist, ten_class):
    softmax, _ = ten_class
    rep = lx.fgsm_report(softmax, mnist.x_test, mnist.y_test, 0.25)[1]
    assert rep.error > 0.95 and rep.wrong_confidence > 0.7     # paper: 99.9% at 79.3%


def test_rbf_network_is_fooled_only_unconfidently(mnist, ten_class):
    _, rbf = ten_class
    clean = error_report(rbf, mnist.x_test, mnist.y_test)
    rep = lx.fgsm_report(rbf, mnist.x_test, mnist.y_test, 0.25)[1]
    assert clean.error < 0.25 and clean.confidence > 0.4
    assert rep.wrong_confidence < 0.05                          # paper: 1.2%
    assert rep.wrong_confidence < clean.confidence / 10


def test_rbf_network_pays_in_fit_for_its_low_confidence(mnist, ten_class):
    softmax, rbf = ten_class
    x, y = mnist.x_test, mnist.y_test
    assert error_report(rbf, x, y).error > error_report(softmax, x, y).error  # "fits the clean digits less well"


def test_weight_decay_moves_the_confidences_as_the_weight_size_explanation_predicts(mnist, ten_class):
    """Experiment 5: smaller weights make softmax regression less confident far from the data and
    the RBF network (smaller β) *more* confident on what fools it."""
    softmax, rbf = ten_class
    kw = dict(data_tag="embedded", epochs=S.epochs // 2, lr=S.lr, seed=0, progress=False,
              weight_decay=S.weight_decay)
    softmax_wd = lx.train_linear("softmax", mnist.x_train, mnist.y_train, **kw)[0]
    rbf_wd = lx.train_linear("rbf", mnist.x_train, mnist.y_train, **kw)[0]
    x, y = mnist.x_test, mnist.y_test
    noise = torch.randn(2000, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    conf = lambda m: lx.fgsm_report(m, x, y, 0.25)[1].wrong_confidence  # noqa: E731
    assert lx.weight_scale(softmax_wd) < lx.weight_scale(softmax) / 2
    assert lx.weight_scale(rbf_wd) < lx.weight_scale(rbf) / 2
    assert conf(softmax_wd) < conf(softmax) - 0.1
    assert lx.rubbish_report(softmax_wd, noise).error < lx.rubbish_report(softmax, noise).error - 0.1
    assert conf(rbf_wd) > conf(rbf) + 0.1
    # decay shrinks the weights without wrecking the fit
    assert error_report(softmax_wd, x, y).error < error_report(softmax, x, y).error + 0.03


def test_weight_scale_rejects_other_models():
    with pytest.raises(TypeError, match="SoftmaxRegression or an RBFNetwork"):
        lx.weight_scale(torch.nn.Linear(2, 2))


def test_rubbish_fools_softmax_but_not_rbf(ten_class):
    softmax, rbf = ten_class
    noise = torch.randn(2000, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert lx.rubbish_report(softmax, noise).error > 0.5       # paper: 59.8%
    assert lx.rubbish_report(rbf, noise).error == 0.0          # paper: 0%
