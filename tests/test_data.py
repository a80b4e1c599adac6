"""The embedded real data sets: shapes, ranges, balance, checksums, download fallback."""

import shutil

import pytest
import torch

from advcourse import data


@pytest.mark.parametrize("loader, n_train, n_test, per_test_class", [
    (data.mnist, 8000, 2000, 200), (data.fashion_mnist, 12000, 2000, 200)])
def test_image_sets_shapes_ranges_balance(loader, n_train, n_test, per_test_class):
    d = loader()
    assert d.source == "embedded"
    assert d.x_train.shape == (n_train, 1, 28, 28) and d.x_test.shape == (n_test, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.min() == 0 and d.x_train.max() == 1
    # 256 grey levels: every value is k/255 for an integer k
    levels = d.x_test * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert len(torch.unique(levels.round())) > 200
    assert torch.equal(d.y_test.bincount(), torch.full((10,), per_test_class))
    assert d.y_train.bincount().min() > 0.6 * n_train / 10  # MNIST classes differ in size
    assert len(d.classes) == 10


def test_fashion_train_is_balanced():
    assert torch.equal(data.fashion_mnist().y_train.bincount(), torch.full((10,), 1200))


def test_mnist_train_and_test_are_disjoint():
    d = data.mnist()
    train = {bytes((x * 255).round().byte().numpy()) for x in d.x_train}
    assert not any(bytes((x * 255).round().byte().numpy()) in train for x in d.x_test[:500])


def test_movie_reviews():
    r = data.movie_reviews()
    assert len(r.text_train) == 8484 and len(r.text_test) == 2121
    assert r.rating_train.min() >= -4 and r.rating_train.max() <= 4
    assert all(isinstance(t, str) and t for t in r.text_train[:100])
    # both sentiments are well represented
    assert 0.3 < (r.rating_train > 0).float().mean() < 0.7


def test_corrupt_file_is_refused(tmp_path, monkeypatch):
    shutil.copy(data.data_dir() / "mnist.npz", tmp_path / "mnist.npz")
    with open(tmp_path / "mnist.npz", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    monkeypatch.setenv("ADVCOURSE_DATA", str(tmp_path))
    with pytest.raises(data.ChecksumError, match="SHA-256"):
        data.mnist()


def test_missing_file_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVCOURSE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ADVCOURSE_DATA"):
        data.fashion_mnist()


def _failing_dataset(*args, **kwargs):
    raise OSError("network is unreachable")


def test_failed_download_falls_back_with_one_line(monkeypatch, capsys):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "MNIST", _failing_dataset)
    d = data.mnist(full=True)
    assert d.source == "embedded" and len(d.x_train) == 8000
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "embedded" in err[0] and "MNIST" in err[0]


def test_subset_relabels():
    d = data.mnist()
    x, y = data.subset(d.x_test, d.y_test, [7, 3])
    assert len(x) == 400 and set(y.tolist()) == {0, 1}
    assert torch.equal(x[y == 0], d.x_test[d.y_test == 7])
    with pytest.raises(ValueError, match="classes"):
        data.subset(d.x_test, d.y_test, [3, 3])


@pytest.mark.parametrize("loader", [data.mnist, data.fashion_mnist])
def test_embedded_sets_come_class_interleaved(loader):
    # The files are stored class by class; a prefix must still be a stratified sample.
    d = loader()
    for y in (d.y_train, d.y_test):
        assert y[:10].tolist() == list(range(10))
        assert torch.bincount(y[:500], minlength=10).tolist() == [50] * 10


def test_interleave_classes_is_a_stable_round_robin_permutation():
    y = torch.tensor([2, 0, 0, 1, 2, 2, 0, 1])
    order = data.interleave_classes(y)
    assert sorted(order.tolist()) == list(range(len(y)))
    assert y[order].tolist() == [0, 1, 2, 0, 1, 2, 0, 2]
    assert order.tolist() == [1, 3, 0, 2, 7, 4, 6, 5]  # within a class the original order is kept


# CIFAR-10: the embedded class-balanced subset (data/cifar10.npz)

def test_cifar10_shapes_ranges_balance():
    d = data.cifar10()
    assert d.source == "embedded" and d.classes == data.CIFAR10_CLASSES
    assert d.x_train.shape == (5000, 3, 32, 32) and d.x_test.shape == (1000, 3, 32, 32)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.min() == 0 and d.x_train.max() == 1
    levels = d.x_test * 255  # 8-bit colour: every value is k/255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert torch.equal(d.y_train.bincount(), torch.full((10,), 500))
    assert torch.equal(d.y_test.bincount(), torch.full((10,), 100))


def test_cifar10_comes_class_interleaved():
    d = data.cifar10()
    for y in (d.y_train, d.y_test):
        assert y[:10].tolist() == list(range(10))
        for m in (1, 7, 50, 100):
            assert torch.bincount(y[:10 * m], minlength=10).tolist() == [m] * 10


def test_cifar10_channels_are_rgb_planes_of_the_stored_images():
    # The file stores (N, 32, 32, 3); the loader gives (N, 3, 32, 32) with the same pixels.
    import numpy as np

    raw = data.load_embedded("cifar10.npz")
    d = data.cifar10()
    first_of_class = {c: int(np.flatnonzero(raw["y_train"] == c)[0]) for c in range(10)}
    for c in range(10):
        stored = torch.from_numpy(raw["x_train"][first_of_class[c]]).permute(2, 0, 1).float() / 255
        assert torch.equal(d.x_train[c], stored)


def test_cifar10_channel_means_match_the_full_training_set():
    # Means of all 50,000 CIFAR-10 training images: 0.4914, 0.4822, 0.4465.
    means = data.cifar10().x_train.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.01)


def test_cifar10_corrupt_file_is_refused(tmp_path, monkeypatch):
    shutil.copy(data.data_dir() / "cifar10.npz", tmp_path / "cifar10.npz")
    with open(tmp_path / "cifar10.npz", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    monkeypatch.setenv("ADVCOURSE_DATA", str(tmp_path))
    with pytest.raises(data.ChecksumError, match="SHA-256"):
        data.cifar10()


def test_cifar10_failed_download_falls_back_with_one_line(monkeypatch, capsys):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "CIFAR10", _failing_dataset)
    d = data.cifar10(full=True)
    assert d.source == "embedded" and len(d.x_train) == 5000 and d.x_train.shape[1:] == (3, 32, 32)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "embedded" in err[0] and "CIFAR10" in err[0] and "cifar10.npz" in err[0]
