"""Chapter 11's claims, on the fast profile's data and training settings (shared model cache)."""

import pytest
import torch

from advcourse.evaluate import accuracy
from advcourse.exercises.ch11 import check_masked_loss, check_random_masking
from advcourse.experiments import ch11_mae as ma
from advcourse.models.mae import MAE, MAEConfig, masked_mse, random_masking

S = ma.FAST  # the chapter's fast-profile settings: every model is trained with this recipe
FIT = dict(seed=0, device="cpu", progress=False)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def g(seed=0):
    return torch.Generator().manual_seed(seed)


TINY = MAEConfig(image_size=28, patch_size=4, in_channels=1, dim=32, depth=1, heads=2, mlp_dim=64, decoder_dim=16,
                 decoder_depth=1, decoder_heads=2, decoder_mlp_dim=32)


@pytest.fixture(scope="module")
def mae(mnist):
    return ma.train_mae(mnist, S, **FIT)[0]


@pytest.fixture(scope="module")
def classifiers(mnist):
    return {"finetuned": ma.fine_tune(mnist, S, pretrained=True, **FIT)[0],
            "scratch": ma.fine_tune(mnist, S, pretrained=False, **FIT)[0]}


# --- unit tests of the experiment functions --------------------------------------------

def test_harmonic_fill_keeps_visible_pixels_and_is_exact_on_linear_ramps():
    ramp = torch.linspace(0, 1, 12).expand(2, 1, 12, 12).clone()     # a linear ramp along the columns
    hidden = torch.zeros_like(ramp)
    hidden[:, :, 3:9, 3:9] = 1                                        # a hole inside the image
    out = ma.harmonic_fill(ramp, hidden, iters=2000)
    assert torch.equal(out * (1 - hidden), ramp * (1 - hidden))       # visible pixels untouched
    assert (out - ramp).abs().max() < 1e-3                            # harmonic functions are filled exactly
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(ma.harmonic_fill(flat, torch.ones_like(flat).tril(), 10), flat)


def test_pixel_mask_matches_patches():
    mask = torch.zeros(1, 49)
    mask[0, 8] = 1                                                    # patch (1, 1) of the 7×7 grid
    pm = ma.pixel_mask(mask, 4, 1)
    assert pm.shape == (1, 1, 28, 28) and pm.sum() == 16 and pm[0, 0, 4:8, 4:8].all()


def test_linear_probe_separates_separable_features():
    f = torch.randn(300, 5, generator=g())
    y = (f[:, 0] > 0).long() + 2 * (f[:, 1] > 0).long()
    assert ma.linear_probe(f[:200], y[:200], f[200:], y[200:]) > 0.9
    noise = torch.randn(300, 5, generator=g(1))
    assert ma.linear_probe(noise[:200], y[:200], noise[200:], y[200:]) < 0.5


def test_compute_costs_count_the_visible_tokens():
    torch.manual_seed(0)
    model = MAE(TINY)
    c = ma.compute_costs(model, torch.rand(8, 1, 28, 28), [0.0, 0.75], repeats=1)
    assert c["tokens"] == [50, 13]
    assert c["enc_macs"][0] > 3.5 * c["enc_macs"][1]                  # linear parts 50/13, attention (50/13)²
    assert abs(c["dec_macs"][0] - c["dec_macs"][1]) < 0.15 * c["dec_macs"][0]  # the decoder sees every position


def test_encoder_equals_torchvision_blocks_on_visible_tokens():
    cfg = MAEConfig(image_size=32, patch_size=8, in_channels=3, dim=32, depth=2, heads=4, mlp_dim=64, decoder_dim=16,
                    decoder_depth=1, decoder_heads=2, decoder_mlp_dim=32)
    res = ma.torchvision_encoder_check(cfg, torch.rand(3, 3, 32, 32, generator=g()))
    assert res["max_abs_diff"] < 1e-5 and res["scale"] > 0.1
    assert res["visible"] == 1 + 16 - 12 and res["masked"] == 12


def test_purifier_keeps_visible_pixels_and_is_random():
    torch.manual_seed(0)
    model = MAE(TINY).eval()
    pur = ma.MaskAndReconstruct(model, 0.75)
    x = torch.rand(2, 1, 28, 28)
    a, b = pur(x), pur(x)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert (a == x).float().mean() > 0.2                              # a quarter of the pixels stays as it was
    assert not torch.equal(a, b)                                      # a fresh mask at every call
    xg = x.clone().requires_grad_()
    pur(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0            # differentiable: an attacker can go through


# --- the chapter's claims -------------------------------------------------------------------

def test_pretraining_learns_more_than_the_mean(mae, mnist):
    fill = mnist.x_train.mean().item()
    err = ma.masked_errors(mae, mnist.x_test[:300], [S.mask_ratio], fill=fill, iters=S.interp_iters)
    assert err["MAE"][0] < 0.8 * err["constant"][0]                    # well below guessing the mean pixel


def test_encoder_compute_falls_about_fourfold(mae, mnist):
    c = ma.compute_costs(mae, mnist.x_test[:64], [0.0, S.mask_ratio], repeats=2)
    assert c["enc_macs"][0] / c["enc_macs"][1] > 3.5                   # "3× or more", counted
    assert c["enc_seconds"][0] / c["enc_seconds"][1] > 1.5             # and timed, with room for a busy machine


def test_interpolation_suffices_at_low_ratios_but_not_at_high(mae, mnist):
    err = ma.masked_errors(mae, mnist.x_test[:S.n_eval], S.test_ratios, fill=mnist.x_train.mean().item(),
                           iters=S.interp_iters)
    lo, hi = 0, err["ratio"].index(S.mask_ratio)
    assert err["interpolation"][lo] < 0.6 * err["constant"][lo]        # neighbours determine a lone hidden patch
    assert err["interpolation"][hi] > err["interpolation"][lo] + 0.02   # much less so when most is hidden
    assert err["MAE"][hi] < err["interpolation"][hi]                    # where the MAE wins


def test_pretraining_helps_with_few_labels(mae, mnist, classifiers):
    assert accuracy(classifiers["finetuned"], mnist.x_test, mnist.y_test) > \
        accuracy(classifiers["scratch"], mnist.x_test, mnist.y_test) + 0.02
    p_mae = ma.probe_accuracy(mae, mnist, S.n_labels, S.pool)
    p_rand = ma.probe_accuracy(ma.random_mae(mnist, S), mnist, S.n_labels, S.pool)
    assert p_mae > p_rand                                             # the chapter's weaker, guarded claim


def test_neither_classifier_is_robust(classifiers, mnist):
    x, y = mnist.x_test[:S.n_attack], mnist.y_test[:S.n_attack]
    rob = ma.robustness_table(classifiers, x, y, [S.eps_values[-1]], steps=S.pgd_steps, generator=g())
    assert all(accs[-1] < 0.2 for accs in rob.values())                # pre-training is no defence


def test_purifier_costs_clean_accuracy_and_does_not_stop_an_adaptive_attack(classifiers, mae, mnist):
    x, y = mnist.x_test[:S.n_purify], mnist.y_test[:S.n_purify]
    pur = ma.purification_table(classifiers["finetuned"], mae, x, y, S.eps_values[1], ratio=S.mask_ratio,
                                steps=S.purify_steps, eot_samples=S.eot_samples)
    assert pur["clean, purified"] < pur["clean"] - 0.05                # redrawing 3/4 of a digit costs accuracy
    assert pur["adaptive PGD, purified"] < pur["clean, purified"] - 0.05  # and an attack through it still works


# --- the exercise checkers --------------------------------------------------------------------

def test_masked_loss_checker():
    assert "passed" in check_masked_loss(masked_mse)

    def everywhere(pred, target, mask):
        return ((pred - target) ** 2).mean()

    def visible(pred, target, mask):
        return masked_mse(pred, target, 1 - mask)

    def summed(pred, target, mask):
        return (((pred - target) ** 2).sum(-1) * mask).sum() / mask.sum()

    def wrong_denominator(pred, target, mask):
        return (((pred - target) ** 2).mean(-1) * mask).mean()

    for fn, message in ((everywhere, "every patch"), (visible, "visible"), (summed, "summed"),
                        (wrong_denominator, "divided by all")):
        with pytest.raises(AssertionError, match=message):
            check_masked_loss(fn)


def test_random_masking_checker():
    def right(n, L, ratio, generator):
        return random_masking(torch.zeros(n, L, 1), ratio, generator)[1]

    def coins(n, L, ratio, generator):
        return (torch.rand(n, L, generator=generator) < ratio).float()

    def first_patches(n, L, ratio, generator):
        mask = torch.zeros(n, L)
        mask[:, : round(ratio * L)] = 1
        return mask

    def same_for_all(n, L, ratio, generator):
        return right(1, L, ratio, generator).expand(n, L).clone()

    assert "passed" in check_random_masking(right)
    with pytest.raises(AssertionError, match="exactly"):
        check_random_masking(coins)
    with pytest.raises(AssertionError, match="own random mask"):
        check_random_masking(first_patches)
    with pytest.raises(AssertionError, match="own random mask"):
        check_random_masking(same_for_all)
