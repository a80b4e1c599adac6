import matplotlib
import pytest

matplotlib.use("Agg")  # tests draw figures without a screen


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
