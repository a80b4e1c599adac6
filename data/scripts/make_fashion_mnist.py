"""Rebuild ``data/fashion_mnist.npz`` from Debian's ``dataset-fashion-mnist`` (MIT).

The Debian package holds all 70,000 Fashion-MNIST images as the original IDX
files. We keep a class-balanced subset with the official train/test split:
1,200 training images per class (12,000) and 200 test images per class (2,000),
chosen with a fixed seed.

Usage (needs apt and dpkg-deb)::

    cd "$(mktemp -d)" && apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb pkg
    python data/scripts/make_fashion_mnist.py <that-dir>/pkg/usr/share/datasets/fashion-mnist
"""

import gzip
import pathlib
import sys

import numpy as np
from _common import save_npz, stratified_split


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format: magic, dims, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def balanced_subset(x, y, per_class: int, seed: int):
    # stratified_split's "test" part is exactly per_class images of each class.
    _, keep = stratified_split(y, n_test_per_class=per_class, seed=seed)
    return x[keep], y[keep]


def main(folder: str) -> None:
    root = pathlib.Path(folder)
    x_tr, y_tr = read_idx(root / "train-images-idx3-ubyte.gz"), read_idx(root / "train-labels-idx1-ubyte.gz")
    x_te, y_te = read_idx(root / "t10k-images-idx3-ubyte.gz"), read_idx(root / "t10k-labels-idx1-ubyte.gz")
    x_tr, y_tr = balanced_subset(x_tr, y_tr, 1200, seed=0)
    x_te, y_te = balanced_subset(x_te, y_te, 200, seed=1)
    digest = save_npz("fashion_mnist.npz", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    print(f"fashion_mnist.npz: {len(y_tr)} train, {len(y_te)} test, sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1])
