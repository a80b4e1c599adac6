import matplotlib
import pytest

matplotlib.use("Agg")  # tests draw figures without a screen


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module on one torch thread, as the chapters with tiny networks do; restore after."""
    yield from _torch_threads(1)


@pytest.fixture(scope="module")
def two_torch_threads():
    """Run a module on two torch threads, as chapter 7 does (thread count changes the trained weights)."""
    yield from _torch_threads(2)


@pytest.fixture(scope="module")
def mnist():
    """The embedded MNIST (8,000 / 2,000 real digits), loaded once per test module."""
    from advcourse import data

    return data.mnist()


@pytest.fixture(scope="session")
def book(tmp_path_factory):
    """The whole book built once per session by the script behind ``make book`` (both editions).

    ``ADVCOURSE_BOOK=_build`` checks an existing build instead (e.g. the browser tests after ``make book``).
    """
    import os
    import pathlib
    import subprocess
    import sys

    if os.environ.get("ADVCOURSE_BOOK"):
        return pathlib.Path(os.environ["ADVCOURSE_BOOK"]).resolve()
    out = tmp_path_factory.mktemp("book")
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "build_book.py"
    subprocess.run([sys.executable, str(script), "--out", str(out), "--editions", "full", "student"], check=True)
    return out
