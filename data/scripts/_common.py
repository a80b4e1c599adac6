"""Helpers shared by the scripts that rebuild the embedded data sets."""

import hashlib
import pathlib

import numpy as np

DATA_DIR = pathlib.Path(__file__).resolve().parents[1]


def stratified_split(labels: np.ndarray, n_test_per_class: int, seed: int):
    """Return (train_idx, test_idx): ``n_test_per_class`` test indices per class.

    The split is fixed by ``seed`` so that rebuilding gives the same files.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:n_test_per_class])
        train.append(idx[n_test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def save_npz(name: str, **arrays) -> str:
    """Write ``data/<name>`` as a compressed npz and return its SHA-256."""
    path = DATA_DIR / name
    # np.savez_compressed stores zip timestamps; write via a fixed-date zip so
    # rebuilding yields byte-identical files (and the same checksum).
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    return sha256(path)


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
