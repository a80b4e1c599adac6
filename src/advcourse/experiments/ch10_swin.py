"""Chapter 10 — Swin Transformer (Liu et al. 2021).

The chapter's experiments as small functions:

* the cost of global and windowed self-attention, counted (multiply-adds, exactly eqs. 1 and 2)
  and timed at several resolutions (:func:`attention_costs`);
* the shifted-window toy of the paper's Fig. 2: the rolled map, its regions and masks
  (:func:`plot_shift_toy`), and a slow reference that attends inside each of the nine shifted
  windows separately (:func:`attention_in_shifted_windows`), to compare with roll + mask;
* how far information travels through a stack of window blocks (:func:`token_reach`);
* the shapes stage by stage (:func:`stage_shapes`) and the equivalence of the from-scratch
  Swin-T with torchvision's (:func:`swin_t_check`);
* a tiny Swin trained on MNIST digits zero-padded to 32×32 inside the model (:func:`train_swin`),
  a CNN of similar accuracy (:func:`train_cnn`), and both under PGD and transfer
  (:func:`robustness_curves`, :func:`transfer_table`).

MNIST images are (N, 1, 28, 28) in [0, 1]; both classifiers take them as they are and return logits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..attacks import pgd, robust_accuracy, transfer_matrix
from ..cache import load_or_train
from ..evaluate import accuracy, predict
from ..models import MnistCNN
from ..models.attention import MultiHeadAttention
from ..models.swin import (
    SwinBlock,
    SwinConfig,
    SwinTransformer,
    WindowAttention,
    msa_flops,
    shifted_window_mask,
    small_swin_config,
    swin_t_config,
    window_partition,
    wmsa_flops,
)
from ..train import Shuffled, fit, train


@dataclass(frozen=True)
class Settings:
    """Chapter 10's settings, shared by the chapter and its claim tests.

    Tiny Swin: width ``embed_dim`` (stage 2: twice that), ``num_heads`` and ``depths`` per stage,
    ``window`` (the shift is half of it), ``patch`` size on the 32×32 padded digits; trained
    ``epochs`` epochs of ``batch_size`` with AdamW (peak ``lr``, ``weight_decay``, linear warm-up
    over ``warmup`` of the steps, then cosine decay, gradients clipped to norm 1, as in the paper).
    CNN: :class:`MnistCNN` with ``cnn_channels`` / ``cnn_hidden``, ``cnn_epochs`` epochs of Adam,
    chosen to reach about the Swin's accuracy. Attacks: ``n_eval`` test digits, L∞ PGD with
    ``pgd_steps`` steps at ``eps`` (and the curve over ``eps_values``). Costs: token-map sides
    ``sides`` (C = 96, M = 7), each timed ``repeats`` times.
    """

    embed_dim: int = 32
    num_heads: tuple = (2, 4)
    depths: tuple = (2, 2)
    window: int = 4
    patch: int = 4
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    cnn_channels: tuple = (16, 32)
    cnn_hidden: int = 100
    cnn_epochs: int = 4
    n_eval: int = 500
    eps: float = 0.1
    eps_values: tuple = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)
    pgd_steps: int = 20
    sides: tuple = (7, 14, 28, 42, 56)
    repeats: int = 3

    def swin_config(self) -> SwinConfig:
        """The tiny Swin's configuration: 1 channel, 32×32 input (the padded digits), 10 classes."""
        return small_swin_config(in_channels=1, embed_dim=self.embed_dim, num_heads=tuple(self.num_heads),
                                 depths=tuple(self.depths), window_size=self.window, patch_size=self.patch,
                                 drop_path=0.0)

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # The cost table quotes the 14×14 and 56×56 maps, so they stay.
        return replace(self, epochs=1, cnn_epochs=1, n_eval=100, pgd_steps=3, sides=(7, 14, 28, 56), repeats=1)


#: The CPU profile (the embedded MNIST: 8,000 training and 2,000 test digits).
FAST = Settings()
#: The GPU profile (all of MNIST, a wider Swin trained longer, more digits attacked, larger maps timed).
FULL = Settings(embed_dim=64, epochs=30, batch_size=128, lr=1e-3, cnn_epochs=3, n_eval=10_000, pgd_steps=100,
                sides=(7, 14, 28, 42, 56, 70, 84), repeats=5)


# --- the cost of attention: eqs. (1) and (2), counted and timed ----------------------

def count_macs(fn, *args) -> int:
    """Multiply-adds of the matrix products and convolutions in ``fn(*args)`` (FLOPs / 2, as the paper
    counts them); element-wise work (softmax, LayerNorm, bias, mask) is not counted."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() // 2


def _best_time(fn, *args, repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``fn(*args)``, in seconds (the least disturbed by other work)."""
    best = math.inf
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            fn(*args)
            best = min(best, time.perf_counter() - start)
    return best


def attention_costs(sides, C: int = 96, window: int = 7, heads: int = 3, repeats: int = 3, seed: int = 0) -> dict:
    """Global multi-head self-attention (MSA) against window attention (W-MSA) on side×side token maps.

    For each side (a multiple of ``window``) a map (1, side, side, C) goes through a global
    :class:`MultiHeadAttention` over all side² tokens and through a :class:`WindowAttention` over its
    (side/M)² windows. Returns lists, one entry per side: ``tokens`` (hw), the counted multiply-adds
    ``macs_msa`` / ``macs_wmsa``, the formulas ``formula_msa`` / ``formula_wmsa`` (eqs. 1, 2) and the
    best wall-clock seconds ``sec_msa`` / ``sec_wmsa`` of ``repeats`` forward passes.
    """
    torch.manual_seed(seed)
    msa, wmsa = MultiHeadAttention(C, heads).eval(), WindowAttention(C, window, heads).eval()

    def global_attention(x):  # (1, hw, C) → (1, hw, C)
        return msa(x, x, x, need_weights=False)[0]

    out = {k: [] for k in ("tokens", "macs_msa", "macs_wmsa", "formula_msa", "formula_wmsa", "sec_msa",
                           "sec_wmsa")}
    for side in sides:
        x = torch.randn(1, side, side, C)
        tokens = x.view(1, side * side, C)  # (1, hw, C): every token attends to every token
        windows = window_partition(x, window)  # (hw / M², M², C): attention inside each window only
        out["tokens"].append(side * side)
        out["macs_msa"].append(count_macs(global_attention, tokens))
        out["macs_wmsa"].append(count_macs(wmsa, windows))
        out["formula_msa"].append(msa_flops(side, side, C))
        out["formula_wmsa"].append(wmsa_flops(side, side, C, window))
        out["sec_msa"].append(_best_time(global_attention, tokens, repeats=repeats))
        out["sec_wmsa"].append(_best_time(wmsa, windows, repeats=repeats))
    return out


def growth_exponent(tokens, values) -> float:
    """Slope of log(values) against log(tokens) between the two largest maps: about 1 for a cost linear
    in the number of tokens, about 2 for a quadratic one."""
    (t0, t1), (v0, v1) = tokens[-2:], values[-2:]
    return math.log(v1 / v0) / math.log(t1 / t0)


def plot_costs(costs: dict):
    """Two panels against the number of tokens (log–log): multiply-adds (counted, with the formulas as
    lines) and measured time. ``costs``: :func:`attention_costs`'s result."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.9))
    t = costs["tokens"]
    for k, (name, key) in enumerate((("MSA (global)", "msa"), ("W-MSA (M = 7)", "wmsa"))):
        axes[0].plot(t, costs[f"formula_{key}"], color=f"C{k}", lw=1, label=f"{name}, formula")
        axes[0].plot(t, costs[f"macs_{key}"], "o", color=f"C{k}", ms=4, label=f"{name}, counted")
        axes[1].plot(t, [1e3 * s for s in costs[f"sec_{key}"]], "o-", color=f"C{k}", ms=4, label=name)
    axes[0].set_ylabel("multiply-adds")
    axes[1].set_ylabel("time per forward (ms)")
    for ax, title in zip(axes, ("counted vs eqs. (1), (2)", "measured on this CPU")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens hw")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=8)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


# --- shifted windows: the toy of Fig. 2 ---------------------------------------------

def shifted_partition(side: int, window: int, shift: int) -> list[tuple[int, int]]:
    """The cuts of one axis by the shifted window partition of the *unrolled* map: windows start at
    shift, shift + M, … (e.g. side 8, window 4, shift 2 → [(0, 2), (2, 6), (6, 8)]: 3 per axis, 9 windows)."""
    cuts = [0, *range(shift if shift else window, side, window), side]
    return list(pairwise(cuts))


def attention_in_shifted_windows(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """The slow reference for ``block.shifted_window_attention``: self-attention computed separately
    inside each window of the shifted partition of the unrolled map (windows of unequal sizes, e.g.
    2×2, 2×4, 4×4), with the block's weights and relative position bias. (1, H, H, C) → (1, H, H, C)."""
    attn = block.attn
    M, s, heads = block.window_size, block.shift, attn.num_heads
    H, C = x.shape[1], x.shape[-1]
    out = torch.zeros_like(x)
    for r0, r1 in shifted_partition(H, M, s):
        for c0, c1 in shifted_partition(H, M, s):
            rr, cc = torch.meshgrid(torch.arange(r0, r1), torch.arange(c0, c1), indexing="ij")
            rr, cc = rr.flatten(), cc.flatten()
            n = len(rr)
            q, k, v = attn.qkv(x[0, rr, cc]).view(n, 3, heads, C // heads).permute(1, 2, 0, 3)  # (heads, n, d)
            offset = (rr[:, None] - rr[None] + M - 1) * (2 * M - 1) + (cc[:, None] - cc[None] + M - 1)  # (n, n)
            bias = attn.relative_position_bias_table[offset].permute(2, 0, 1)  # (heads, n, n)
            weights = (q @ k.transpose(1, 2) * attn.scale + bias).softmax(-1)  # (heads, n, n)
            out[0, rr, cc] = attn.proj((weights @ v).transpose(0, 1).reshape(n, C))
    return out


def plot_shift_toy(side: int = 8, window: int = 4, shift: int = 2):
    """The paper's Fig. 2 and 4 on a side×side token map, 2×2 panels: the regular partition (4 windows),
    the shifted partition of the map itself (9 windows), the map rolled up-left by ``shift`` (4 windows
    again, holding pieces of the 9) and the attention mask of the bottom-right rolled window. Each token
    keeps the colour of its shifted window throughout; numbers are the tokens' places in the map."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    ids = torch.arange(side * side).view(side, side)  # token number = its place in the unrolled map
    rolled = torch.roll(ids, shifts=(-shift, -shift), dims=(0, 1))  # what the implementation attends over
    shifted = shifted_partition(side, window, shift)
    band = torch.bucketize(torch.arange(side), torch.tensor([b for _, b in shifted[:-1]]), right=True)
    colour = (band[:, None] * len(shifted) + band[None, :]).flatten()  # shifted window of each token
    palette = [*plt.get_cmap("Pastel1").colors[:8], (0.72, 0.72, 0.72)]  # 9 colours, none near white
    cmap = ListedColormap(palette)
    regular = [(a, a + window) for a in range(0, side, window)]

    fig, axes = plt.subplots(2, 2, figsize=(6.4, 6.4))

    def grid(ax, numbers, colours, cuts, title):
        ax.imshow(colours.numpy(), cmap=cmap if colours.max() > 0 else "Greys", vmin=-0.5, vmax=8.5)
        for r in range(side):
            for c in range(side):
                ax.text(c, r, str(int(numbers[r, c])), ha="center", va="center", fontsize=7)
        for a, b in cuts:
            for edge in (a, b):
                ax.axhline(edge - 0.5, color="k", lw=1.5)
                ax.axvline(edge - 0.5, color="k", lw=1.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)

    grid(axes[0, 0], ids, torch.zeros(side, side, dtype=torch.long), regular,
         f"block l: regular partition, {len(regular) ** 2} windows")
    grid(axes[0, 1], ids, colour.view(side, side), shifted,
         f"block l + 1: shifted by {shift}, {len(shifted) ** 2} windows")
    grid(axes[1, 0], rolled, colour[rolled], regular,
         f"torch.roll by −{shift}: {len(regular) ** 2} windows again")
    tokens = window_partition(rolled[None, :, :, None], window)[-1, :, 0]  # (M²,) tokens of the last window
    allowed = shifted_window_mask(side, side, window, shift)[-1] == 0  # (M², M²): query i may see key j
    image = torch.ones(len(tokens), len(tokens), 3)
    for i in range(len(tokens)):
        image[i, allowed[i]] = torch.tensor(palette[int(colour[tokens[i]])])
    axes[1, 1].imshow(image.numpy())
    axes[1, 1].set_title("mask of the bottom-right rolled window\n(white: blocked, −100)", fontsize=9)
    ticks = list(range(len(tokens)))
    axes[1, 1].set_xticks(ticks, [str(int(t)) for t in tokens], fontsize=6, rotation=90)
    axes[1, 1].set_yticks(ticks, [str(int(t)) for t in tokens], fontsize=6)
    axes[1, 1].set_xlabel("key (token number)", fontsize=8)
    axes[1, 1].set_ylabel("query (token number)", fontsize=8)
    fig.tight_layout()
    return fig


# --- how far information travels ----------------------------------------------------

def token_reach(side: int = 56, window: int = 7, blocks: int = 4, dim: int = 12, heads: int = 3,
                token: tuple[int, int] = (24, 24), seed: int = 0) -> torch.Tensor:
    """Which input tokens can influence one output token after each of ``blocks`` Swin blocks.

    A stack of randomly initialised :class:`SwinBlock` (alternately plain and shifted by M/2, as in a
    stage) on a (1, side, side, dim) map; the gradient of output ``token`` after block k with respect to
    the input map is nonzero exactly on the tokens it depends on. Pairs blocked by the shift mask get a
    weight of about e^−100 ≈ 4·10⁻⁴⁴, while real paths through four blocks weigh more than 10⁻⁹ of the
    largest, so a relative threshold of 10⁻³⁰ separates them. Returns a bool tensor (blocks, side, side).
    """
    torch.manual_seed(seed)
    stack = [SwinBlock(dim, heads, window, shift=0 if k % 2 == 0 else window // 2).eval() for k in range(blocks)]
    x = torch.randn(1, side, side, dim, requires_grad=True)
    reach, h = [], x
    for block in stack:
        h = block(h)
        (grad,) = torch.autograd.grad(h[0, token[0], token[1]].sum(), x, retain_graph=True)
        size = grad[0].abs().sum(-1)  # (side, side)
        reach.append(size > 1e-30 * size.max())
    return torch.stack(reach)


def plot_reach(reach: torch.Tensor, token: tuple[int, int] = (24, 24)):
    """One panel per block of :func:`token_reach`'s result: the tokens the chosen output depends on."""
    import matplotlib.pyplot as plt

    n = len(reach)
    fig, axes = plt.subplots(1, n, figsize=(1.7 * n, 2.0), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.imshow(reach[k].numpy(), cmap="Blues", vmin=0, vmax=1.2)
        ax.plot(token[1], token[0], "r+", ms=6)
        kind = "SW-MSA" if k % 2 else "W-MSA"
        ax.set_title(f"after block {k + 1} ({kind})\n{int(reach[k].sum())} tokens", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# --- shapes and the reference --------------------------------------------------------

def stage_shapes(model: SwinTransformer, x: torch.Tensor) -> list[dict]:
    """The output shape of every part of ``model.features`` for images ``x`` (N, C, S, S).

    One dict per part: ``name`` ("patch embedding", "stage 1", "patch merging", …), ``shape`` (the
    channels-last (N, h, w, C) map) and ``pixels``: the side, in input pixels, of the square a token
    stands for (S / h).
    """
    names = ["patch embedding"]
    for i in range(len(model.config.depths)):
        names += [f"stage {i + 1}"] + (["patch merging"] if i < len(model.config.depths) - 1 else [])
    rows = []
    hooks = [part.register_forward_hook(lambda _m, _i, out, name=name: rows.append(
        {"name": name, "shape": tuple(out.shape), "pixels": x.shape[-1] // out.shape[1]}))
        for name, part in zip(names, model.features)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return rows


def swin_t_check(n_images: int = 2, seed: int = 0) -> dict:
    """Swin-T built from scratch against torchvision's ``swin_t(weights=None)`` (random weights).

    torchvision's state dict is loaded with ``strict=True`` into ``SwinTransformer(swin_t_config())``;
    both classify the same random 224×224 images. Returns ``max_diff`` (largest |logit difference|),
    ``params`` (parameter count), ``macs`` (multiply-adds of one image, counted), ``shapes``
    (:func:`stage_shapes` of one image) and ``n_images``.
    """
    import torchvision

    torch.manual_seed(seed)
    theirs = torchvision.models.swin_t(weights=None).eval()
    ours = SwinTransformer(swin_t_config()).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(n_images, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    return {"max_diff": diff, "params": sum(p.numel() for p in ours.parameters()),
            "macs": count_macs(ours, x[:1]), "shapes": stage_shapes(ours, x[:1]), "n_images": n_images}


# --- the tiny Swin and a CNN, trained ------------------------------------------------

def mnist_swin(config: SwinConfig) -> nn.Sequential:
    """A Swin for MNIST: digits (N, 1, 28, 28) in [0, 1] → zero-padded to 32×32 → Swin → logits (N, 10).

    The padding sits inside the model, so attacks perturb the same 28×28 pixels as for the CNN and the
    border stays 0 (inside [0, 1])."""
    pad = (config.image_size - 28) // 2
    return nn.Sequential(nn.ZeroPad2d(pad), SwinTransformer(config))


def warmup_cosine(total: int, warmup: int):
    """``schedule`` for :func:`advcourse.train.fit`: the learning rate rises linearly over ``warmup``
    steps, then follows a cosine from its peak to 0 at step ``total`` (the paper's schedule)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(total - warmup, 1), 1.0)))

    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_swin(data, settings: Settings, *, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) :func:`mnist_swin` on ``data``'s training digits.

    AdamW with ``settings``' recipe (warm-up then cosine, weight decay, gradient norm clipped to 1).
    Returns ``(model, meta)``; ``meta["metrics"]`` holds per-epoch ``loss``, ``train_acc`` and
    ``test_acc`` (on all of ``data``'s test digits) and ``seconds``.
    """
    S = settings
    config = {"arch": "SwinTransformer", "swin": S.swin_config().__dict__, "data": data.source,
              "n": len(data.x_train), "epochs": S.epochs, "batch_size": S.batch_size, "lr": S.lr,
              "weight_decay": S.weight_decay, "warmup": S.warmup, "clip_grad": 1.0, "seed": seed}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return mnist_swin(SwinConfig(**cfg["swin"]))

    def step(model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits, y), {"train_acc": (logits.argmax(1) == y).sum().item()}

    def fit_swin(model, cfg):
        batches = Shuffled(data.x_train, data.y_train, batch_size=cfg["batch_size"], seed=cfg["seed"])
        total = len(batches) * cfg["epochs"]
        history = fit(model, batches, step, epochs=cfg["epochs"], optimizer="adamw", lr=cfg["lr"],
                      weight_decay=cfg["weight_decay"], schedule=warmup_cosine(total, int(cfg["warmup"] * total)),
                      clip_grad=cfg["clip_grad"], progress=progress, desc="tiny Swin",
                      validate=lambda m: {"test_acc": accuracy(m, data.x_test, data.y_test)})
        return {k: history[k] for k in ("loss", "train_acc", "test_acc", "seconds")}

    return load_or_train("ch10-swin-mnist", config, build, fit_swin, device=device)


def train_cnn(data, settings: Settings, *, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) the chapter's :class:`MnistCNN` (Adam, ``settings.cnn_epochs``
    epochs, batch 64): the convolutional network the Swin is compared with. Returns ``(model, meta)``."""
    S = settings
    config = {"arch": "MnistCNN", "channels": list(S.cnn_channels), "hidden": S.cnn_hidden, "data": data.source,
              "n": len(data.x_train), "epochs": S.cnn_epochs, "batch_size": 64, "lr": 1e-3, "seed": seed}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MnistCNN(tuple(cfg["channels"]), cfg["hidden"])

    def fit_cnn(model, cfg):
        history = train(model, data.x_train, data.y_train, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                        lr=cfg["lr"], seed=cfg["seed"], progress=progress, desc="CNN")
        return {k: history[k] for k in ("loss", "train_acc", "seconds")}

    return load_or_train("ch10-cnn", config, build, fit_cnn, device=device)


def learnt_bias_tables(model: nn.Module, block: int = 0) -> torch.Tensor:
    """The relative position bias tables of stage 1's block ``block`` of a trained :func:`mnist_swin`,
    as images: (heads, 2M − 1, 2M − 1), entry [h, Δrow + M − 1, Δcol + M − 1]."""
    attn = model[1].stages[0][block].attn
    M = attn.window_size
    return attn.relative_position_bias_table.detach().cpu().T.reshape(-1, 2 * M - 1, 2 * M - 1)


# --- the adversarial link ----------------------------------------------------------

def test_subset(data, n: int, seed: int = 0):
    """``n`` test digits (n, 1, 28, 28) and labels (n,), a fixed random sample."""
    idx = torch.randperm(len(data.x_test), generator=torch.Generator().manual_seed(seed))[:n]
    return data.x_test[idx], data.y_test[idx]


def pgd_kwargs(eps: float, steps: int) -> dict:
    """L∞ PGD with ``steps`` steps of 2.5ε/steps from a random start, stopped per example once it fools."""
    return {"eps": eps, "alpha": 2.5 * eps / steps, "steps": steps, "early_stop": True}


def robustness_curves(models: dict, x: torch.Tensor, y: torch.Tensor, eps_values, *, steps: int = 20,
                      generator: torch.Generator | None = None) -> dict:
    """Accuracy under white-box L∞ PGD (:func:`pgd_kwargs`) at each ε, per model:
    ``{name: [accuracy in [0, 1] per ε]}``; ε = 0 gives the clean accuracy."""
    return {name: [robust_accuracy(m, x, y, pgd, **pgd_kwargs(e, steps), generator=generator) if e > 0
                   else robust_accuracy(m, x, y) for e in eps_values]
            for name, m in models.items()}


def common_correct(models: dict, x: torch.Tensor, y: torch.Tensor):
    """The digits every model classifies correctly: (x[k], y[k]), so attacks start from 100% everywhere."""
    ok = torch.ones(len(y), dtype=torch.bool)
    for m in models.values():
        ok &= predict(m, x)[0].cpu() == y.cpu()
    return x[ok], y[ok]


def transfer_table(models: dict, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 20,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """M[i, j] = accuracy of model j on PGD examples crafted on model i (white-box on the diagonal,
    transfer off it), on digits every model classifies correctly (pass :func:`common_correct`'s).
    PGD runs to the end here (no early stop), so the examples are as strong as the budget allows."""
    kw = {**pgd_kwargs(eps, steps), "early_stop": False}
    return transfer_matrix(models, x, y, pgd, generator=generator, **kw)
