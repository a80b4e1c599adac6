"""Figures the chapters share: image grids with labels and confidences, curves."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def _as_image(x: torch.Tensor):
    """(C, H, W) or (H, W) tensor -> array for imshow (grey or RGB)."""
    x = x.detach().cpu().float()
    if x.ndim == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    return x.numpy()


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.3, cmap: str = "gray", vmin: float | None = 0.0,
               vmax: float | None = 1.0, suptitle: str | None = None):
    """Show images (N, C, H, W) in a grid, each with an optional title; returns the figure.

    Images are shown on a fixed [vmin, vmax] scale (default [0, 1]) so that grids
    of originals and adversarial examples are comparable; pass ``vmin=vmax=None``
    to rescale each image (e.g. for perturbations).
    """
    n = len(images)
    if n == 0:
        raise ValueError("images must not be empty")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image, got {len(titles)} for {n}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_as_image(images[i]), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def labelled(labels: Sequence[int], confidences: Sequence[float] | None = None,
             classes: Sequence[str] | None = None) -> list[str]:
    """Titles such as ``"7 (98%)"`` for an image grid."""
    names = [classes[int(k)] if classes is not None else str(int(k)) for k in labels]
    if confidences is None:
        return names
    return [f"{name} ({100 * float(c):.0f}%)" for name, c in zip(names, confidences)]


def curves(x, ys: dict, xlabel: str, ylabel: str, title: str | None = None, ax=None,
           logy: bool = False, markers: bool = True):
    """Plot several named curves sharing one x axis; returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for label, y in ys.items():
        ax.plot(x, y, marker="o" if markers else None, markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(ys) > 1:
        ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def signed_image(ax, x: torch.Tensor, title: str | None = None, shape=(28, 28)):
    """Show a signed map (a weight vector, a perturbation) in a diverging colour map centred at 0."""
    v = x.detach().cpu().float().reshape(shape)
    m = float(v.abs().max()) or 1.0
    im = ax.imshow(v.numpy(), cmap="RdBu_r", vmin=-m, vmax=m)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return im
