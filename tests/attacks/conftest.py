"""Fixtures for the attack tests (the models live in atk_models.py) and the hypothesis profiles.

Two profiles for the property tests: ``fast`` (the default, CI) tries the same 6 derandomised examples per
property; ``deep`` tries hundreds of random ones and is chosen with ``ADVCOURSE_DEEP=1`` (200 examples) or
``ADVCOURSE_DEEP=<n>`` (n examples), e.g. through ``make test-deep``.  A failure in the deep profile prints
the falsifying example and a ``@reproduce_failure`` blob to rerun it.
"""

from __future__ import annotations

import os

import pytest
import torch
from atk_models import BNDrop, images, make_mlp, predict
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("fast", max_examples=6, derandomize=True, **_COMMON)
settings.register_profile("deep", max_examples=200, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                          deadline=None, database=None)


def _profile() -> str:
    deep = os.environ.get("ADVCOURSE_DEEP", "").strip()
    if deep in ("", "0"):
        return "fast"
    if not deep.isdigit():
        raise ValueError(f"ADVCOURSE_DEEP must be 0, 1 or a number of examples, got {deep!r}")
    if int(deep) > 1:
        settings.register_profile("deep", settings.get_profile("deep"), max_examples=int(deep))
    return "deep"


settings.load_profile(_profile())


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is faster and keeps the shared machine free (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def mlp():
    return make_mlp(0)


@pytest.fixture
def data(mlp):
    x = images(16, seed=1)
    return x, predict(mlp, x)


@pytest.fixture
def bn_model():
    return BNDrop(0)
