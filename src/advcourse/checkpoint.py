"""Shipped checkpoints: trained weights that come with the package, verified before use.

Where a fast-profile model cannot converge within a chapter's time budget, the package's own
code trains it once with a recorded recipe (``make checkpoints``) and the weights ship in
``data/checkpoints``:

* ``<name>.pt``   the model's ``state_dict``, loaded with ``weights_only=True``;
* ``<name>.json`` its metadata: recipe, seed, metrics, training curves, training time, the
  package, torch and Python versions, and the SHA-256 of the weights file.

:func:`load` checks the weights against a SHA-256 pinned in the code that uses them (as
:mod:`advcourse.data` does for the embedded data sets), so a changed or corrupt file is an error,
never silently used.
"""

from __future__ import annotations

import json
import pathlib
import platform
import time

import torch
from torch import nn

from . import __version__
from .cache import _atomic_write
from .data import ChecksumError, data_dir, sha256

__all__ = ["checkpoint_dir", "save", "load", "provenance"]


def checkpoint_dir() -> pathlib.Path:
    """``data/checkpoints`` of the repository (or of ``$ADVCOURSE_DATA``)."""
    return data_dir() / "checkpoints"


def save(model: nn.Module, name: str, meta: dict, folder: pathlib.Path | None = None) -> dict:
    """Write ``model``'s weights and ``meta`` (plus versions, date and the weights' SHA-256) as
    ``<name>.pt`` and ``<name>.json`` in ``folder`` (default :func:`checkpoint_dir`); returns the
    metadata written."""
    folder = pathlib.Path(folder) if folder is not None else checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    weights, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(weights, lambda f: torch.save(state, f))
    full = {"name": name, **meta, "advcourse": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "weights_sha256": sha256(weights)}
    _atomic_write(meta_path, lambda f: f.write(json.dumps(full, indent=1).encode()))
    return full


def load(model: nn.Module, name: str, sha: str, folder: pathlib.Path | None = None) -> dict:
    """Load ``<name>.pt`` into ``model`` (in place, eval mode) after checking its SHA-256 against
    ``sha``; returns the checkpoint's metadata. Raises ``FileNotFoundError`` if a file is missing
    and :class:`advcourse.data.ChecksumError` if the weights or the metadata do not match."""
    folder = pathlib.Path(folder) if folder is not None else checkpoint_dir()
    weights, meta_path = folder / f"{name}.pt", folder / f"{name}.json"
    for path in (weights, meta_path):
        if not path.exists():
            raise FileNotFoundError(f"checkpoint file {path} is missing; run `make checkpoints` to train it")
    digest = sha256(weights)
    if digest != sha:
        raise ChecksumError(f"{weights} has SHA-256 {digest}, expected {sha}; run `make checkpoints` and "
                            "update the pinned checksum")
    meta = json.loads(meta_path.read_text())
    if meta.get("weights_sha256") != digest:
        raise ChecksumError(f"{meta_path} describes other weights (SHA-256 {meta.get('weights_sha256')})")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    return meta


def provenance(meta: dict) -> str:
    """One paragraph saying where a checkpoint comes from: recipe, seed, versions, time, metrics."""
    recipe = ", ".join(f"{k}={v}" for k, v in meta["recipe"].items())
    metrics = ", ".join(f"{k} {100 * v:.1f}%" for k, v in meta.get("metrics", {}).items())
    return (f"checkpoint {meta['name']} (SHA-256 {meta['weights_sha256'][:12]}…): trained by "
            f"{meta['trained_by']} with {recipe}; advcourse {meta['advcourse']}, torch {meta['torch']}, "
            f"{meta['threads']} CPU thread(s), {meta['train_seconds'] / 60:.0f} min on {meta['hardware']}, "
            f"{meta['created']}. Held-out metrics at the end of training: {metrics}.")
