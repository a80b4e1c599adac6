"""Load-or-train: trained models cached by a hash of their configuration.

A model is stored as two files in the cache folder:

* ``<name>-<key>.pt``   its ``state_dict``, loaded with ``weights_only=True``;
* ``<name>-<key>.json`` metadata: configuration, metrics, seed, versions,
  training time and the SHA-256 of the weights file.

``key`` hashes the name, the configuration and the package version, so a new
configuration or release never picks up an old model. Both files are written
atomically (temporary file + rename). A file that is missing, corrupt, or whose
metadata does not match is retrained, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Callable

import torch
from torch import nn

from . import __version__
from .data import DATA_ORDER


def cache_dir() -> pathlib.Path:
    """``$ADVCOURSE_CACHE`` or ``~/.cache/advcourse/models``."""
    env = os.environ.get("ADVCOURSE_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "advcourse" / "models"


def config_key(name: str, config: dict) -> str:
    """A 16-hex-digit hash of the name, the configuration, the package version and the data order."""
    blob = json.dumps({"name": name, "config": config, "advcourse": __version__, "data": DATA_ORDER},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_write(path: pathlib.Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _file_sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _try_load(model: nn.Module, weights: pathlib.Path, meta_path: pathlib.Path, key: str) -> dict:
    """Load weights into ``model`` and return the metadata, or raise ValueError saying why not."""
    if not meta_path.exists() or not weights.exists():
        raise FileNotFoundError("not cached")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"unreadable metadata ({err})") from err
    if meta.get("key") != key or meta.get("advcourse") != __version__:
        raise ValueError("metadata belongs to another configuration or version")
    if meta.get("weights_sha256") != _file_sha256(weights):
        raise ValueError("weights file does not match its recorded checksum")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as err:  # truncated zip, wrong keys or shapes ...
        raise ValueError(f"weights do not load ({type(err).__name__}: {err})") from err
    return meta


def load_or_train(name: str, config: dict, build: Callable[[dict], nn.Module],
                  fit: Callable[[nn.Module, dict], dict], device: torch.device | str = "cpu",
                  directory: str | os.PathLike | None = None, verbose: bool = True):
    """Return ``(model, meta)``: from the cache if a valid entry exists, else trained now.

    Args:
        name: a short name for the file, e.g. ``"ch01-logreg-3v7"``.
        config: JSON-serialisable settings that determine the trained model (include the seed).
        build: ``build(config) -> nn.Module``, an untrained model.
        fit: ``fit(model, config) -> metrics`` trains the model (already on ``device``) in
            place and returns a JSON-serialisable dict of metrics.
    Returns:
        The model on ``device`` in eval mode, and its metadata dict (with ``"from_cache"``).
    """
    if not name or any(c in name for c in "/\\"):
        raise ValueError(f"name must be a non-empty file name, got {name!r}")
    folder = pathlib.Path(directory) if directory is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = config_key(name, config)
    weights, meta_path = folder / f"{name}-{key}.pt", folder / f"{name}-{key}.json"

    model = build(config)
    try:
        meta = _try_load(model, weights, meta_path, key)
        return model.to(device).eval(), {**meta, "from_cache": True}
    except FileNotFoundError:
        pass
    except ValueError as why:
        if verbose:
            print(f"advcourse: cached model {weights.name} is unusable ({why}); retraining.", file=sys.stderr)
        model = build(config)  # a failed load may have left some tensors overwritten

    model = model.to(device)
    start = time.perf_counter()
    metrics = fit(model, config)
    seconds = time.perf_counter() - start
    model.eval()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_write(weights, lambda f: torch.save(state, f))
    meta = {
        "name": name, "key": key, "config": config, "metrics": metrics,
        "seed": config.get("seed"), "train_seconds": round(seconds, 3),
        "advcourse": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "weights_sha256": _file_sha256(weights),
    }
    # The metadata goes last: an interrupted write leaves no metadata, hence a retrain.
    _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    return model, {**meta, "from_cache": False}
