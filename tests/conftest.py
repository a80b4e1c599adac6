import matplotlib
import pytest

matplotlib.use("Agg")  # tests draw figures without a screen


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module on one torch thread, as the chapters with tiny networks do; restore after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def mnist():
    """The embedded MNIST (8,000 / 2,000 real digits), loaded once per test module."""
    from advcourse import data

    return data.mnist()
