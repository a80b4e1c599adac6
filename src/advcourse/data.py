"""Data sets, real and offline by default.

``mnist()``, ``fashion_mnist()``, ``cifar10()`` and ``movie_reviews()`` return the
small real sets embedded in the repository's ``data/`` folder, after checking their
SHA-256. With ``full=True`` the complete MNIST / Fashion-MNIST / CIFAR-10 come
through torchvision; if that download fails, the embedded set is returned with one
line saying so. ``ADVCOURSE_OFFLINE=1`` skips the download attempt (straight to the
embedded set, with the same line).

The smoke profile (``advcourse.start("smoke")``, see :func:`set_smoke`) works offline and
keeps only the first ``SMOKE_TRAIN`` training examples of every image set (the test sets stay whole).

Images come as float32 tensors in [0, 1] of shape (N, C, H, W); labels as int64 (N,).
The embedded image sets come in *class-interleaved* order (the first example of each
class, then the second of each, ...), so any prefix such as ``x_test[:100]`` is a
stratified sample rather than the first class or two of a file stored by class.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys
from typing import NamedTuple

import numpy as np
import torch

# The SHA-256 of each embedded file (see data/README.md for provenance).
CHECKSUMS = {
    "mnist.npz": "e0dd2e41513b2ff0b1372a848af20ec64a3b398cca24aac567c1d8c575766e84",
    "fashion_mnist.npz": "43c5d0706fde89b13011e88dfd1909be28ff60699ac127bb0e871b03c6cdd0f9",
    "movie_reviews.npz": "d7e2862c5115ab0227d8b3659502398b63ecd87641827fd1ce3b2228ca78c335",
    "cifar10.npz": "678846ae2f06159f67b6f424a855d37f9a85358d375247e8a4d8109f7b2bb579",
}

# How the embedded image sets are ordered (part of the model-cache key: a model trained on
# a prefix of the data must not be reused after the order changes).
DATA_ORDER = "class-interleaved"

#: The training examples every image set keeps in the smoke profile (the test sets stay whole: chapters
#: index into them, and evaluating is cheap next to training).
SMOKE_TRAIN = 512
_smoke = False  # set by set_smoke(), i.e. by advcourse.start()

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


class ImageData(NamedTuple):
    """A train/test split of images (N, C, H, W) in [0, 1] and int64 labels (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple
    source: str  # "embedded" or "torchvision"


class TextData(NamedTuple):
    """Movie-review snippets with mean human sentiment ratings in [-4, 4]."""

    text_train: list
    rating_train: torch.Tensor
    text_test: list
    rating_test: torch.Tensor
    source: str


class ChecksumError(RuntimeError):
    """An embedded data file does not match its recorded SHA-256."""


def data_dir() -> pathlib.Path:
    """The folder holding the embedded data: ``$ADVCOURSE_DATA`` or the repository's ``data/``."""
    env = os.environ.get("ADVCOURSE_DATA")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[2] / "data"


def download_root() -> pathlib.Path:
    """Where torchvision downloads go: ``$ADVCOURSE_DOWNLOADS`` or ``~/.cache/advcourse/downloads``."""
    env = os.environ.get("ADVCOURSE_DOWNLOADS")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "advcourse" / "downloads"


def set_smoke(on: bool) -> None:
    """Turn the smoke profile's data mode on or off (``advcourse.start`` does this).

    On: no download is attempted (``full=True`` takes the embedded fallback, with its message) and
    every image set keeps only its first ``SMOKE_TRAIN`` training examples — class-interleaved, so
    stratified.
    """
    global _smoke
    _smoke = bool(on)


def offline() -> bool:
    """True when downloads are off: in the smoke profile or with ``ADVCOURSE_OFFLINE=1``."""
    return _smoke or os.environ.get("ADVCOURSE_OFFLINE", "").lower() in ("1", "true", "yes")


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_embedded(name: str) -> dict:
    """Load ``data/<name>`` after verifying its checksum; returns its arrays."""
    if name not in CHECKSUMS:
        raise ValueError(f"name must be one of {sorted(CHECKSUMS)}, got {name!r}")
    path = data_dir() / name
    if not path.exists():
        raise FileNotFoundError(
            f"embedded data file {path} is missing; set ADVCOURSE_DATA to the repository's data/ folder")
    digest = sha256(path)
    if digest != CHECKSUMS[name]:
        raise ChecksumError(f"{path} has SHA-256 {digest}, expected {CHECKSUMS[name]}; "
                            "rebuild it with the script in data/scripts/")
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def interleave_classes(y: torch.Tensor) -> torch.Tensor:
    """The permutation that puts labels ``y`` (N,) in round-robin class order.

    The first example of every class (ascending labels), then the second of every
    class, and so on; within a class the original order is kept.  Every prefix of
    length m * K is then exactly stratified (while all K classes last).
    """
    by_class = torch.argsort(y, stable=True)
    counts = torch.bincount(y)
    first = torch.cumsum(counts, 0) - counts  # position of each class's first example in by_class
    rank = torch.empty_like(y)
    rank[by_class] = torch.arange(len(y)) - first[y[by_class]]  # index of each example within its class
    return torch.argsort(rank * (int(y.max()) + 1) + y, stable=True)


def _images(arrays: dict, classes: tuple) -> ImageData:
    def split(x, y):  # uint8 (N, H, W) or (N, H, W, 3) -> float32 (N, C, H, W) in [0, 1],
        # labels int64, both class-interleaved
        y = torch.from_numpy(y).long()
        order = interleave_classes(y)
        x = torch.from_numpy(x).float().div_(255)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # grey or colour (RGB last)
        return x[order].contiguous(), y[order]

    return _smoke_cut(ImageData(*split(arrays["x_train"], arrays["y_train"]),
                                *split(arrays["x_test"], arrays["y_test"]), classes, "embedded"))


def _smoke_cut(images: ImageData) -> ImageData:
    """``images`` itself, or in the smoke profile with its first ``SMOKE_TRAIN`` training examples only."""
    if not _smoke:
        return images
    return images._replace(x_train=images.x_train[:SMOKE_TRAIN].clone(),
                           y_train=images.y_train[:SMOKE_TRAIN].clone())


def _torchvision(dataset_cls, classes: tuple) -> ImageData:
    """Download a torchvision data set and return it as tensors."""
    if offline():
        raise ConnectionError("downloads are off (the smoke profile or ADVCOURSE_OFFLINE=1)")
    root = download_root()
    parts = []
    for train in (True, False):
        ds = dataset_cls(root=str(root), train=train, download=True)
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.float().div_(255)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # to (N, C, H, W)
        parts += [x.contiguous(), torch.as_tensor(np.asarray(ds.targets)).long()]
    return ImageData(*parts, classes, "torchvision")


def _full_or_embedded(dataset_name: str, embedded_file: str, classes: tuple) -> ImageData:
    import torchvision.datasets as tvd

    try:
        return _torchvision(getattr(tvd, dataset_name), classes)
    except Exception as err:  # no network, a server error, a corrupt download ...
        print(f"advcourse: could not download full {dataset_name} ({type(err).__name__}: {err}); "
              f"using the embedded subset in data/{embedded_file} instead.", file=sys.stderr)
        return _images(load_embedded(embedded_file), classes)


def mnist(full: bool = False) -> ImageData:
    """MNIST digits, (N, 1, 28, 28) in [0, 1].

    ``full=False``: the 10,000 embedded digits (8,000 train / 2,000 test, stratified).
    ``full=True``: the 70,000 digits via torchvision, or the embedded set if that fails.
    """
    if full:
        return _full_or_embedded("MNIST", "mnist.npz", MNIST_CLASSES)
    return _images(load_embedded("mnist.npz"), MNIST_CLASSES)


def fashion_mnist(full: bool = False) -> ImageData:
    """Fashion-MNIST, (N, 1, 28, 28) in [0, 1].

    ``full=False``: the embedded class-balanced subset (12,000 train / 2,000 test).
    ``full=True``: all 70,000 images via torchvision, or the embedded subset if that fails.
    """
    if full:
        return _full_or_embedded("FashionMNIST", "fashion_mnist.npz", FASHION_CLASSES)
    return _images(load_embedded("fashion_mnist.npz"), FASHION_CLASSES)


def cifar10(full: bool = False) -> ImageData:
    """CIFAR-10, (N, 3, 32, 32) in [0, 1].

    ``full=False``: the embedded class-balanced subset (5,000 train / 1,000 test).
    ``full=True``: all 60,000 images via torchvision, or the embedded subset if that fails.
    """
    if full:
        return _full_or_embedded("CIFAR10", "cifar10.npz", CIFAR10_CLASSES)
    return _images(load_embedded("cifar10.npz"), CIFAR10_CLASSES)


def movie_reviews() -> TextData:
    """The 10,605 rated movie-review snippets of Hutto & Gilbert (2014), split 8,484 / 2,121.

    Ratings are the mean of 20 human raters on a -4 (very negative) … +4 scale.
    """
    a = load_embedded("movie_reviews.npz")
    return TextData([str(t) for t in a["text_train"]], torch.from_numpy(a["rating_train"]),
                    [str(t) for t in a["text_test"]], torch.from_numpy(a["rating_test"]), "embedded")


def subset(x: torch.Tensor, y: torch.Tensor, classes, relabel: bool = True):
    """Keep the examples whose label is in ``classes``.

    With ``relabel`` the labels become positions in ``classes`` (e.g. 3 vs 7 → 0 vs 1).
    """
    classes = list(classes)
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and non-empty, got {classes}")
    wanted = torch.tensor(classes, dtype=y.dtype, device=y.device)
    mask = torch.isin(y, wanted)
    x, y = x[mask], y[mask]
    if relabel:
        # y == wanted[k] for exactly one k: that k is the new label.
        y = (y.unsqueeze(1) == wanted).long().argmax(dim=1)
    return x, y
