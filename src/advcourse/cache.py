"""Load-or-train: trained models cached by a hash of their configuration.

A model is stored as two files in the cache folder:

* ``<name>-<key>.pt``   its ``state_dict``, loaded with ``weights_only=True``;
* ``<name>-<key>.json`` metadata: configuration, metrics, seed, versions,
  training time and the SHA-256 of the weights file.

``key`` hashes the name, the configuration, the package version, the data order and the
*code*: the model's structure (its ``repr``: layer types, sizes, activations) and the source of
the ``build`` and ``fit`` functions and of every ``advcourse`` module they or the model's classes
depend on, followed through their imports (:func:`code_fingerprint`). A new configuration, a
changed architecture (ReLU → GELU at the same shapes) or an edited training step or attack
therefore never picks up an old model, even under an unchanged version number. Both files are written
atomically (temporary file + rename). A file that is missing, corrupt, or whose
metadata does not match is retrained, never used.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
import types
from collections.abc import Callable

import torch
from torch import nn

from . import __version__
from .data import DATA_ORDER


def cache_dir() -> pathlib.Path:
    """``$ADVCOURSE_CACHE`` or ``~/.cache/advcourse/models``."""
    env = os.environ.get("ADVCOURSE_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "advcourse" / "models"


def config_key(name: str, config: dict, code: str = "") -> str:
    """A 16-hex-digit hash of the name, the configuration, the package version, the data order
    and ``code`` (a :func:`code_fingerprint`)."""
    blob = json.dumps({"name": name, "config": config, "advcourse": __version__, "data": DATA_ORDER,
                       "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _own_module(obj) -> types.ModuleType | None:
    """The advcourse module that defines ``obj`` (a module, function or class), else None."""
    if isinstance(obj, types.ModuleType):
        module = obj
    else:
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
    name = getattr(module, "__name__", "")
    return module if name == "advcourse" or name.startswith("advcourse.") else None


@functools.cache
def _module_closure(name: str) -> tuple:
    """The advcourse modules ``name`` depends on (itself included), followed through the
    modules, functions and classes it holds as globals: a sorted tuple of module names."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for value in vars(sys.modules[current]).values():
            dep = _own_module(value)
            if dep is not None and dep.__name__ not in seen:
                todo.append(dep.__name__)
    return tuple(sorted(seen))


@functools.cache
def _module_source(name: str) -> str:
    try:
        return inspect.getsource(sys.modules[name])
    except (OSError, TypeError):  # e.g. a namespace package
        return ""


def _function_source(fn: Callable) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):  # defined without a source file (exec)
        code = getattr(fn, "__code__", None)
        return repr((code.co_code, code.co_consts)) if code is not None else repr(fn)


def _referenced(fn: Callable):
    """The globals and closure variables ``fn`` refers to, also from its nested functions and lambdas."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    glob = getattr(fn, "__globals__", {})
    cells = [cell.cell_contents for cell in (fn.__closure__ or ()) if cell.cell_contents is not None]
    return [glob[n] for n in names if n in glob] + cells


def code_fingerprint(model: nn.Module, *functions: Callable) -> str:
    """A 16-hex-digit hash of the code behind a trained model.

    It covers ``repr(model)`` (the layer types, sizes and activations: constructor arguments
    show there), the source of each of ``functions`` (e.g. the ``build`` and ``fit`` of
    :func:`load_or_train`) and the source of every ``advcourse`` module that they, the objects
    they refer to and the model's classes depend on, followed through the modules' imports
    (so an edited attack used in adversarial training changes the fingerprint too).
    """
    modules, parts = set(), [repr(model)]
    for m in model.modules():
        own = _own_module(type(m))
        if own is not None:
            modules.add(own.__name__)
    for fn in functions:
        parts.append(_function_source(fn))
        for obj in [fn, *_referenced(fn)]:
            own = _own_module(obj)
            if own is not None:
                modules.add(own.__name__)
    closure = sorted({dep for name in modules for dep in _module_closure(name)})
    parts += [f"{name}\n{_module_source(name)}" for name in closure]
    return hashlib.sha256("\n\0".join(parts).encode()).hexdigest()[:16]


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
        The cache key also covers the code of ``build``, ``fit`` and the model (:func:`code_fingerprint`).
    Returns:
        The model on ``device`` in eval mode, and its metadata dict (with ``"from_cache"``).
    """
    if not name or any(c in name for c in "/\\"):
        raise ValueError(f"name must be a non-empty file name, got {name!r}")
    folder = pathlib.Path(directory) if directory is not None else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    model = build(config)
    code = code_fingerprint(model, build, fit)
    key = config_key(name, config, code)
    weights, meta_path = folder / f"{name}-{key}.pt", folder / f"{name}-{key}.json"
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
        "name": name, "key": key, "code": code, "config": config, "metrics": metrics,
        "seed": config.get("seed"), "train_seconds": round(seconds, 3),
        "advcourse": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "weights_sha256": _file_sha256(weights),
    }
    # The metadata goes last: an interrupted write leaves no metadata, hence a retrain.
    _atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    return model, {**meta, "from_cache": False}
