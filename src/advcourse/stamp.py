"""The reproducibility stamp shown under every chapter's results."""

from __future__ import annotations

import datetime
import platform
from dataclasses import asdict, dataclass, field

import torch

from . import __version__


@dataclass(frozen=True)
class Stamp:
    """Everything needed to say how a result was produced."""

    profile: str
    seed: int
    device: str
    advcourse: str = __version__
    torch: str = torch.__version__
    python: str = platform.python_version()
    date: str = field(default_factory=lambda: datetime.date.today().isoformat())

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"advcourse {self.advcourse} · torch {self.torch} · Python {self.python} · "
                f"device {self.device} · profile {self.profile} · seed {self.seed} · {self.date}")

    def _repr_markdown_(self) -> str:
        return f"**Reproducibility stamp** — {self}"


def stamp(profile: str, seed: int, device: torch.device | str) -> Stamp:
    """Make the stamp for a run with this profile, seed and device."""
    return Stamp(profile=profile, seed=seed, device=str(device))
