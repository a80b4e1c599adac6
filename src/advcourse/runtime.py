"""Where and how the code runs: device, seeds and the hardware profile.

A chapter asks for ``profile="auto"``: ``"fast"`` on a CPU (the embedded data,
small models, few epochs — what CI and the CPU-built book run) and ``"full"``
on a GPU (full data sets, paper-scale settings). Both run the same code.

``"smoke"`` runs the full profile's code on a CPU in seconds, for CI: ``run.full`` is
True (the full recipes and branches, the data path of the full sets), but ``run.pick``
caps epochs, steps and sample counts (``full.smoke()``; the models keep their full
size where a CPU trains them in seconds, their depth and heads always), the data come
from the embedded fallback without a download attempt (the training sets cut to
``data.SMOKE_TRAIN`` examples), and trained models go to a throw-away cache folder,
so that no smoke model is ever picked up by a real run.
"""

from __future__ import annotations

import atexit
import itertools
import os
import random
import shutil
import tempfile

import numpy as np
import torch

PROFILES = ("fast", "full", "smoke")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then CPU.

    ``prefer`` forces a device ("cpu", "cuda", "mps"); the environment
    variable ``ADVCOURSE_DEVICE`` does the same for a whole run.
    """
    prefer = prefer or os.environ.get("ADVCOURSE_DEVICE")
    if prefer:
        if prefer not in ("cpu", "cuda", "mps") and not prefer.startswith("cuda:"):
            raise ValueError(f"prefer must be 'cpu', 'cuda' or 'mps', got {prefer!r}")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a model with neither."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def resolve_profile(profile: str = "auto", device: torch.device | None = None) -> str:
    """Turn ``"auto"`` into ``"fast"`` (CPU) or ``"full"`` (GPU).

    ``ADVCOURSE_PROFILE`` overrides ``"auto"`` (e.g. to run the fast profile on a GPU).
    """
    if profile == "auto":
        profile = os.environ.get("ADVCOURSE_PROFILE", "auto")
    if profile == "auto":
        device = device or get_device()
        return "full" if device.type == "cuda" else "fast"
    if profile not in PROFILES:
        raise ValueError(f"profile must be 'auto', 'fast', 'full' or 'smoke', got {profile!r}")
    return profile


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and PyTorch; on request make CPU kernels deterministic.

    Returns a ``torch.Generator`` seeded with ``seed`` for code that wants its
    own stream (data shuffling, random starts).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # warn_only: a few CUDA kernels have no deterministic version; CPU ones all do.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


class Run:
    """The settings of one chapter run: profile, seed, device and the stamp.

    ``run = start(profile, seed)`` in a chapter's setup cell; ``run.full`` picks
    paper-scale settings (also in the smoke profile), ``run.pick(fast=..., full=...)`` a
    per-profile value.
    """

    def __init__(self, profile: str, seed: int, device: torch.device):
        self.profile, self.seed, self.device = profile, seed, device
        self.generator = seed_everything(seed)

    @property
    def full(self) -> bool:
        """True in the full profile and in the smoke profile (which runs the full code paths)."""
        return self.profile in ("full", "smoke")

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    def pick(self, fast, full, smoke=None):
        """The value for this run's profile.

        In the smoke profile: ``smoke`` if given, else ``full.smoke()`` (a chapter's settings
        capped to seconds of work), else the smaller of two numbers, else ``full``.
        """
        if not self.smoke:
            return full if self.full else fast
        if smoke is not None:
            return smoke
        if callable(getattr(full, "smoke", None)):
            return full.smoke()
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (fast, full))
        return min(fast, full) if numbers else full

    @property
    def stamp(self):
        from .stamp import stamp

        return stamp(self.profile, self.seed, self.device)

    def __repr__(self) -> str:
        return f"Run(profile={self.profile!r}, seed={self.seed}, device={str(self.device)!r})"


def start(profile: str = "auto", seed: int = 0, device: str | None = None,
          cpu_threads: int | None = None) -> Run:
    """Resolve the profile and device, seed everything, and return the ``Run``.

    ``cpu_threads``: on a CPU, the number of intra-op threads torch may use, and the BLAS
    that numpy and scipy call (scipy's L-BFGS-B, say). Tiny networks gain nothing from more
    than one, and on a busy machine several threads can make them many times slower (idle
    BLAS threads spin on a core another program needs); ``None`` keeps the libraries' defaults.
    ``ADVCOURSE_CPU_THREADS`` in the environment overrides it, for running several
    kernels side by side (the smoke tests run two on CI's two cores: one thread each).
    """
    dev = get_device(device)
    if os.environ.get("ADVCOURSE_CPU_THREADS"):
        try:
            cpu_threads = int(os.environ["ADVCOURSE_CPU_THREADS"])
        except ValueError:
            raise ValueError("ADVCOURSE_CPU_THREADS must be a positive int, got "
                             f"{os.environ['ADVCOURSE_CPU_THREADS']!r}") from None
    if cpu_threads is not None:
        if not isinstance(cpu_threads, int) or cpu_threads < 1:
            raise ValueError(f"cpu_threads must be a positive int, got {cpu_threads!r}")
        if dev.type == "cpu":
            torch.set_num_threads(cpu_threads)
            _limit_blas_threads(cpu_threads)
    resolved = resolve_profile(profile, dev)
    _smoke_mode(resolved == "smoke")
    return Run(resolved, seed, dev)


def _limit_blas_threads(n: int) -> None:
    """Give the BLAS libraries of numpy and scipy at most ``n`` threads, from now on in this process.

    Only libraries already loaded can be limited, so scipy's own BLAS is loaded first."""
    import scipy.linalg  # noqa: F401  (loads scipy's bundled BLAS)
    import threadpoolctl

    threadpoolctl.threadpool_limits(n, user_api="blas")


_SMOKE_SAVED: dict = {}  # ADVCOURSE_CACHE before the smoke profile replaced it ("" if unset)


def _smoke_mode(on: bool) -> None:
    """Enter or leave the smoke profile's process-wide state (the latest ``start`` decides).

    On: the data sets skip their download and shrink (:func:`advcourse.data.set_smoke`), and
    ``ADVCOURSE_CACHE`` points at ``$ADVCOURSE_SMOKE_CACHE`` or else a new temporary folder
    (removed at a normal exit; a kernel killed at shutdown leaves it) — smoke models are
    trained on a few hundred examples under the full profile's settings, so they must never
    land where a full run looks. Off: both are restored.
    """
    from . import data

    data.set_smoke(on)
    if on and not _SMOKE_SAVED:
        _SMOKE_SAVED["cache"] = os.environ.get("ADVCOURSE_CACHE", "")
        folder = os.environ.get("ADVCOURSE_SMOKE_CACHE")
        if not folder:
            folder = tempfile.mkdtemp(prefix="advcourse-smoke-models-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["ADVCOURSE_CACHE"] = folder
    elif not on and _SMOKE_SAVED:
        before = _SMOKE_SAVED.pop("cache")
        if before:
            os.environ["ADVCOURSE_CACHE"] = before
        else:
            os.environ.pop("ADVCOURSE_CACHE", None)
