"""Chapter 4's CIFAR-10 branch (the full profile's PGD-trained ResNet), exercised on a few embedded images."""

import dataclasses

import pytest
import torch

from advcourse import data
from advcourse.attacks import pgd
from advcourse.experiments import ch04_pgd_saddle_point as sp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cifar():
    """32 training and 1,000 test images of the embedded CIFAR-10 (the training prefix is stratified)."""
    images = data.cifar10()
    return images._replace(x_train=images.x_train[:32], y_train=images.y_train[:32])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVCOURSE_CACHE", str(tmp_path))
    return tmp_path


def test_augment_is_a_flip_and_a_shift_within_the_padding():
    x = torch.rand(6, 3, 8, 8)  # distinct values: every crop and flip is recognisable
    out = sp.augment(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    for image, moved in zip(x, out):
        padded = {f: torch.nn.functional.pad(image.flip(2) if f else image, (2, 2, 2, 2)) for f in (0, 1)}
        crops = [padded[f][:, dy:dy + 8, dx:dx + 8] for f in (0, 1) for dy in range(5) for dx in range(5)]
        assert any(torch.equal(moved, crop) for crop in crops)
    again = sp.augment(x, torch.Generator().manual_seed(0), pad=2)
    assert torch.equal(out, again)  # reproducible from its generator
    flipped = sp.augment(x, torch.Generator().manual_seed(1), pad=0)  # no padding: flips only
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(2)) for f, i in zip(flipped, x))


def test_training_runs_and_the_accuracies_are_ordered(cifar, cache):
    kw = dict(epochs=1, depth=8, batch_size=16, seed=0, progress=False)
    model, meta = sp.train_cifar_resnet(cifar, **kw)
    m = meta["metrics"]
    assert m["sgd_steps"] == 2 and len(m["adv_loss"]) == 2 and len(m["loss"]) == 1
    assert m["sgd_steps"] == sp.cifar_sgd_steps(meta["config"]["n"], 1, 16)  # the count the chapter quotes
    assert sp.cifar_sgd_steps(257, 2) == 6 and sp.cifar_sgd_steps(256, 1) == 2  # a partial batch is a step
    assert all(loss > 0 for loss in m["adv_loss"]) and 0 <= m["train_acc"][0] <= 1
    assert meta["config"]["eps"] == 8 / 255 and meta["config"]["alpha"] == 2 / 255 and meta["config"]["steps"] == 7
    assert not model.training
    _, again = sp.train_cifar_resnet(cifar, **kw)
    assert again["from_cache"] and not meta["from_cache"]

    x, y = cifar.x_test[:16], cifar.y_test[:16]
    acc = sp.cifar_accuracies(model, x, y)
    assert set(acc) == {"natural", "pgd7", "pgd20"}
    assert all(0 <= v <= 1 for v in acc.values())
    # guaranteed by construction: the same random start, the best iterate kept, clean-correct examples only
    assert acc["pgd20"] <= acc["pgd7"] <= acc["natural"]
    x_adv = pgd(model, x, y, sp.CIFAR_EPS, sp.CIFAR_ALPHA, steps=7, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= sp.CIFAR_EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_the_chapter_experiment_reports_its_setting(cifar, cache):
    settings = dataclasses.replace(sp.FULL.smoke(), cifar_n_train=16, cifar_n_eval=10)
    res = sp.cifar_experiment(cifar, settings, seed=0)
    assert {"natural", "pgd7", "pgd20"} <= set(res)
    assert res["pgd20"] <= res["pgd7"] <= res["natural"] <= 1
    assert (res["n_train"], res["n_eval"], res["sgd_steps"], res["epochs"]) == (16, 10, 1, 1)
    assert res["depth"] == settings.cifar_depth and res["parameters"] > 0 and res["data"] == "embedded"


def test_the_smoke_profile_caps_the_cifar_run():
    smoke, full = sp.FULL.smoke(), sp.FULL
    assert smoke.cifar_epochs <= 1 and smoke.cifar_n_train <= 256 and smoke.cifar_n_eval <= 50
    assert full.cifar_epochs >= 10 and full.cifar_n_train >= 50_000 and full.cifar_n_eval >= 10_000
