"""Figures and tables the chapters use."""

import pytest
import torch

from advcourse import plot
from advcourse.report import MarkdownTable, paper_vs_book, pct, show_source


def test_image_grid_layout_and_titles():
    images = torch.rand(10, 1, 28, 28)
    titles = plot.labelled([3, 7] * 5, [0.5, 0.987] * 5)
    assert titles[:2] == ["3 (50%)", "7 (99%)"]
    fig = plot.image_grid(images, titles, ncols=4)
    axes = fig.get_axes()
    assert len(axes) == 12  # 3 rows of 4, the last two empty
    assert [ax.get_title() for ax in axes[:2]] == titles[:2]
    assert axes[0].images[0].get_clim() == (0.0, 1.0)  # a fixed scale, comparable across images
    rgb = plot.image_grid(torch.rand(2, 3, 8, 8))
    assert rgb.get_axes()[0].images[0].get_array().shape == (8, 8, 3)


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="images"):
        plot.image_grid(torch.rand(0, 1, 4, 4))
    with pytest.raises(ValueError, match="titles"):
        plot.image_grid(torch.rand(3, 1, 4, 4), ["a"])


def test_curves_and_signed_image():
    ax = plot.curves([0, 1, 2], {"a": [1, 2, 3], "b": [3, 2, 1]}, "x", "y", logy=True)
    assert len(ax.get_lines()) == 2 and ax.get_yscale() == "log"
    import matplotlib.pyplot as plt

    im = plot.signed_image(plt.subplots()[1], torch.tensor([-2.0, 1.0, 0.5, 0.0]), shape=(2, 2))
    assert im.get_clim() == (-2.0, 2.0)  # symmetric around zero


def test_tables():
    t = paper_vs_book([["error", "1.6%", pct(0.0123), "subset"]])
    md = t._repr_markdown_()
    assert md.splitlines()[0] == "| quantity | paper | this book | what differs |"
    assert "| error | 1.6% | 1.2% | subset |" in md
    assert "a \\| b" in MarkdownTable(["h"], [["a | b"]]).to_markdown()
    with pytest.raises(ValueError, match="rows"):
        MarkdownTable(["a", "b"], [["only one"]])


def test_show_source():
    md = show_source(pct)._repr_markdown_()
    assert md.startswith("```python\ndef pct(") and md.endswith("```")
