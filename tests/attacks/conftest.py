"""Fixtures for the attack tests; the models live in atk_models.py."""

from __future__ import annotations

import pytest
import torch
from atk_models import BNDrop, images, make_mlp, predict


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
