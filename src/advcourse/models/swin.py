"""Swin Transformer (Liu, Lin, Cao, Hu, Wei, Zhang, Lin & Guo, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV 2021).

A ViT attends from every patch to every other patch, at a cost quadratic in the number of patches. Swin
restricts self-attention to non-overlapping M×M windows (linear cost, :func:`wmsa_flops` vs
:func:`msa_flops`) and lets information cross window borders by alternating two kinds of blocks: the
windows of every second block are shifted by ⌊M/2⌋ patches. Rather than pad the extra windows this creates
at the borders, the map is rolled cyclically (``torch.roll``) so that the shifted windows tile it again,
and a mask (:func:`shifted_window_mask`) stops the tokens that only met through the wrap-around from
attending to each other. Between stages, patch merging halves the resolution and doubles the width, giving
a CNN-like pyramid (Swin-T, patch 4, window 7, C = 96, 224×224 input):

    (N, 3, 224, 224) → patch embedding: conv 4×4 /4 → LayerNorm      (N, 56, 56, C)     features[0]
                     → stage 1: 2 Swin blocks                        (N, 56, 56, C)     features[1]
                     → patch merging                                 (N, 28, 28, 2C)    features[2]
                     → stage 2: 2 blocks                             (N, 28, 28, 2C)    features[3]
                     → patch merging → stage 3: 6 blocks             (N, 14, 14, 4C)    features[4, 5]
                     → patch merging → stage 4: 2 blocks             (N, 7, 7, 8C)      features[6, 7]
                     → LayerNorm → mean over positions → head        (N, classes) logits

Inside the network feature maps are channels-last, (N, H, W, C), as in torchvision. Module and parameter
names follow torchvision's ``swin_t``, so ``torchvision.models.swin_t(weights=None).state_dict()`` loads
into ``SwinTransformer(swin_t_config())`` with ``strict=True`` and gives the same logits.

Images are in [0, 1] of shape (N, C, H, W); any input normalisation happens inside the model (``mean`` /
``std`` of the config, off by default). The model returns logits, never probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DropPath",
    "PatchMerging",
    "Permute",
    "SwinBlock",
    "SwinConfig",
    "SwinTransformer",
    "WindowAttention",
    "msa_flops",
    "relative_position_index",
    "shifted_window_mask",
    "small_swin_config",
    "swin_t_config",
    "window_partition",
    "window_region_labels",
    "window_reverse",
    "wmsa_flops",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics torchvision's pretrained models were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_VALUE = -100.0  # added to blocked attention logits: e^-100 ≈ 0 after softmax, yet no inf − inf = NaN


@dataclass(frozen=True)
class SwinConfig:
    """Hyper-parameters of a :class:`SwinTransformer` (defaults: Swin-T for 224×224 ImageNet images).

    Attributes:
        image_size: side of the (square) input images; must be a multiple of ``patch_size``.
        patch_size: side of the patches the first layer embeds (4: a 224 image becomes 56×56 tokens).
        in_channels: channels of the input images.
        num_classes: number of logits.
        embed_dim: C, the width of stage 1; stage i has width C · 2^i.
        depths: Swin blocks per stage (each pair: a plain-window block, then a shifted-window one).
        num_heads: attention heads per stage; ``embed_dim · 2^i`` must be divisible by ``num_heads[i]``.
        window_size: M, the side of the attention windows (in tokens); the shift is ⌊M/2⌋.
        mlp_ratio: hidden width of each block's MLP over its input width.
        dropout: dropout after the attention projection and in the MLP.
        attention_dropout: dropout on the attention weights.
        drop_path: stochastic depth rate of the last block, linearly increasing from 0 at the first block.
        mean, std: per-channel input normalisation applied inside the model, or None for none.
    """

    image_size: int = 224
    patch_size: int = 4
    in_channels: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if min(self.image_size, self.patch_size, self.in_channels, self.num_classes, self.embed_dim,
               self.window_size) < 1:
            raise ValueError("image_size, patch_size, in_channels, num_classes, embed_dim and window_size must be "
                             f"positive, got {self.image_size}, {self.patch_size}, {self.in_channels}, "
                             f"{self.num_classes}, {self.embed_dim}, {self.window_size}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size must be a multiple of patch_size={self.patch_size}, got {self.image_size}")
        if not self.depths or len(self.depths) != len(self.num_heads) or min(self.depths) < 1:
            raise ValueError(f"depths and num_heads must be non-empty, of equal length and positive, got "
                             f"{self.depths} and {self.num_heads}")
        for i, h in enumerate(self.num_heads):
            if h < 1 or (self.embed_dim * 2**i) % h:
                raise ValueError(f"num_heads[{i}] must divide the stage width {self.embed_dim * 2**i}, got {h}")
        for name in ("dropout", "attention_dropout", "drop_path"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.mean is not None and not len(self.mean) == len(self.std) == self.in_channels:
            raise ValueError(f"mean and std must have in_channels={self.in_channels} entries, got {self.mean} "
                             f"and {self.std}")

    @property
    def grid_sizes(self) -> list[int]:
        """Side of the token map of each stage, e.g. [56, 28, 14, 7] for Swin-T (odd sides round up)."""
        sides = [self.image_size // self.patch_size]
        for _ in self.depths[1:]:
            sides.append((sides[-1] + 1) // 2)
        return sides


# ------------------------------------------------------------------------------------------------- windows

def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """Cut a map (N, H, W, C) into non-overlapping windows (N · H/M · W/M, M · M, C), M = ``window_size``.

    Windows are numbered row by row (window (i, j) of image n is number n · nW + i · W/M + j) and the
    tokens inside a window row by row too. H and W must be multiples of M.
    """
    N, H, W, C = x.shape
    M = window_size
    if H % M or W % M:
        raise ValueError(f"the map's H, W = {H}, {W} must be multiples of window_size={M}")
    x = x.view(N, H // M, M, W // M, M, C)  # (N, H/M, M, W/M, M, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (N, H/M, W/M, M, M, C): window index first, then position inside
    return x.reshape(-1, M * M, C)  # (N · nW, M², C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (N · H/M · W/M, M · M, C) → (N, H, W, C)."""
    M = window_size
    C = windows.shape[-1]
    x = windows.view(-1, H // M, W // M, M, M, C)  # (N, H/M, W/M, M, M, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (N, H/M, M, W/M, M, C)
    return x.reshape(-1, H, W, C)  # (N, H, W, C)


def relative_position_index(window_size: int) -> torch.Tensor:
    """For each pair of tokens (i, j) of an M×M window, the row of the bias table for their offset: (M⁴,).

    Offsets (Δrow, Δcol) = position_i − position_j range over [−(M−1), M−1]², (2M−1)² of them; shifting
    each to [0, 2M−2] and reading the pair as a base-(2M−1) number gives an index in [0, (2M−1)²).
    Flattened, as torchvision stores it; ``.view(M*M, M*M)`` gives the (query, key) matrix.
    """
    M = window_size
    rows, cols = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, M²): (row, col) of each token
    offsets = coords[:, :, None] - coords[:, None, :]  # (2, M², M²): position of query − position of key
    offsets = offsets + (M - 1)  # each in [0, 2M − 2]
    return (offsets[0] * (2 * M - 1) + offsets[1]).flatten()  # (M⁴,), in [0, (2M − 1)²)


def window_region_labels(H: int, W: int, window_size: int, shift: int | tuple[int, int]) -> torch.Tensor:
    """Region of each token of the rolled (H, W) map: (H, W) ints in [0, 9), for drawing the paper's Fig. 4.

    After rolling the map up-left by ``shift`` (one int for both axes, or (rows, columns)), the last
    ``shift`` rows and columns hold tokens that wrapped around from the other side. Along each shifted axis
    the rolled map has three bands: [0, L−M) (whole windows of ordinary neighbours), [L−M, L−shift) and
    [L−shift, L) (the last row of windows, split into its own tokens and the wrapped-around ones); region =
    3 · row band + column band, up to 9 regions. An axis with shift 0 has a single band. Tokens of
    different regions that share a window were not neighbours in the image.
    """
    shift_h, shift_w = (shift, shift) if isinstance(shift, int) else shift
    M = window_size

    def bands(L: int, s: int) -> torch.Tensor:
        band = torch.zeros(L, dtype=torch.long)  # (L,)
        if s > 0:
            band[L - M:] = 1
            band[L - s:] = 2
        return band

    return bands(H, shift_h)[:, None] * 3 + bands(W, shift_w)[None, :]  # (H, W)


def shifted_window_mask(H: int, W: int, window_size: int, shift: int | tuple[int, int]) -> torch.Tensor:
    """Attention mask of shifted-window attention on an (H, W) map: (nW, M², M²) with values 0 or −100.

    ``mask[w, i, j]`` is −100 when tokens i and j of window w (numbered as :func:`window_partition` does)
    lie in different regions of :func:`window_region_labels`, i.e. only met through the cyclic shift, and
    0 when query i may attend to key j. All zeros when ``shift`` is 0. H, W must be multiples of M.
    """
    labels = window_region_labels(H, W, window_size, shift)  # (H, W)
    labels = window_partition(labels[None, :, :, None], window_size).squeeze(-1)  # (nW, M²)
    different = labels[:, :, None] != labels[:, None, :]  # (nW, M², M²): query i, key j
    return torch.zeros(different.shape).masked_fill(different, MASK_VALUE)  # (nW, M², M²)


def msa_flops(h: int, w: int, C: int) -> int:
    """Ω(MSA) = 4hwC² + 2(hw)²C: global multi-head self-attention on h×w tokens of width C (Eq. 1).

    4hwC² for the q, k, v and output projections, 2(hw)²C for q·kᵀ and attention·v (multiply-adds; the
    softmax is not counted).
    """
    return 4 * h * w * C**2 + 2 * (h * w) ** 2 * C


def wmsa_flops(h: int, w: int, C: int, window_size: int) -> int:
    """Ω(W-MSA) = 4hwC² + 2M²hwC: attention within M×M windows (Eq. 2), linear in hw for fixed M."""
    return 4 * h * w * C**2 + 2 * window_size**2 * h * w * C


# -------------------------------------------------------------------------------------------------- layers

class Permute(nn.Module):
    """``x.permute(*dims)`` as a module (channels-first ↔ channels-last inside an ``nn.Sequential``)."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, zero a residual branch for a random ``p`` of the
    images and scale the others by 1 / (1 − p) so the expectation is unchanged. The identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)  # (N, 1, …, 1)
        return x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each M×M window, with a learnt relative position bias.

    Input (B, M², C): B windows of M² tokens (B = images × windows per image). Output: the same shape.
    Attention logits are q·kᵀ/√d + B[rel. position] (+ the shift mask), where the bias B comes from a
    table of (2M − 1)² rows (one per possible offset between two tokens of a window) × ``num_heads``,
    indexed through the persistent buffer ``relative_position_index``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, attention_dropout: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads must divide dim={dim}, got {num_heads}")
        self.window_size, self.num_heads = window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5  # 1/√d, d the width of one head
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_dropout, self.dropout = nn.Dropout(attention_dropout), nn.Dropout(dropout)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size))  # (M⁴,)

    def relative_position_bias(self) -> torch.Tensor:
        """The bias added to the attention logits of every window: (num_heads, M², M²)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index]  # (M⁴, heads)
        return bias.view(n, n, -1).permute(2, 0, 1)  # (heads, M², M²)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows (B, M², C) → (B, M², C); ``mask`` (nW, M², M²) of 0 / −100, B a multiple of nW."""
        B, n, C = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(B, n, 3, h, C // h)  # (B, M², 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, M², d)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, M², M²)
        attn = attn + self.relative_position_bias().unsqueeze(0)  # (B, heads, M², M²)
        if mask is not None:  # windows are ordered image by image, so the mask repeats every nW windows
            nW = mask.shape[0]
            attn = attn.view(B // nW, nW, h, n, n) + mask[None, :, None]  # (N, nW, heads, M², M²)
            attn = attn.view(B, h, n, n)  # (B, heads, M², M²)
        attn = self.attention_dropout(attn.softmax(dim=-1))  # each row sums to 1 over the keys
        x = (attn @ v).transpose(1, 2).reshape(B, n, C)  # (B, M², heads · d = C): heads side by side
        return self.dropout(self.proj(x))  # (B, M², C)


class SwinBlock(nn.Module):
    """x ← x + W-MSA(LN(x)); x ← x + MLP(LN(x)), on a channels-last map (N, H, W, C) → (N, H, W, C).

    With ``shift`` > 0 this is the SW-MSA block: the map is rolled by −shift before the window attention
    and by +shift after it, with :func:`shifted_window_mask` blocking pairs that only met by wrapping
    around. The map is first zero-padded at the bottom/right to a multiple of the window (padding tokens
    are attended to like any other, as in torchvision, and cropped afterwards), and a window that covers
    the whole (padded) side is not shifted along that side, since there is no border to cross.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int = 0, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attention_dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if not 0 <= shift < window_size:
            raise ValueError(f"shift must be in [0, window_size={window_size}), got {shift}")
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, attention_dropout, dropout)
        self.stochastic_depth = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        # indices 0 and 3 hold the weights, as torchvision's MLP(dim, [hidden, dim], dropout=…)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def shifted_window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) → (N, H, W, C): pad, roll, attend within windows, unroll, crop."""
        H, W = x.shape[1:3]
        M = self.window_size
        x = F.pad(x, (0, 0, 0, (-W) % M, 0, (-H) % M))  # (N, Hp, Wp, C), Hp and Wp multiples of M
        Hp, Wp = x.shape[1:3]
        shift_h = self.shift if M < Hp else 0  # one window covers the whole side: nothing to shift
        shift_w = self.shift if M < Wp else 0
        if shift_h or shift_w:
            x = torch.roll(x, shifts=(-shift_h, -shift_w), dims=(1, 2))  # (N, Hp, Wp, C), cyclic
            mask = shifted_window_mask(Hp, Wp, M, (shift_h, shift_w)).to(x)  # (nW, M², M²)
        else:
            mask = None
        windows = window_partition(x, M)  # (N · nW, M², C)
        windows = self.attn(windows, mask)  # (N · nW, M², C)
        x = window_reverse(windows, M, Hp, Wp)  # (N, Hp, Wp, C)
        if shift_h or shift_w:
            x = torch.roll(x, shifts=(shift_h, shift_w), dims=(1, 2))  # undo the cyclic shift
        return x[:, :H, :W, :]  # (N, H, W, C), padding removed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) → (N, H, W, C)."""
        x = x + self.stochastic_depth(self.shifted_window_attention(self.norm1(x)))  # pre-norm residual
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))  # (N, H, W, C)

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift={self.shift}"


class PatchMerging(nn.Module):
    """Halve the resolution, double the width: (N, H, W, C) → (N, ⌈H/2⌉, ⌈W/2⌉, 2C).

    Each 2×2 group of tokens is concatenated into one 4C vector (in the order [0::2, 0::2], [1::2, 0::2],
    [0::2, 1::2], [1::2, 1::2], as the reference code and torchvision), normalised by LayerNorm(4C) and
    projected to 2C by a bias-free linear layer: the transformer analogue of a strided convolution.
    Odd sides are zero-padded first.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))  # (N, H', W', C) with H', W' even
        # the four tokens of each 2×2 group, each (N, H'/2, W'/2, C): top-left, bottom-left, top-right, bottom-right
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        # (N, H'/2, W'/2, 4C)
        return self.reduction(self.norm(x))  # (N, H'/2, W'/2, 2C)


# --------------------------------------------------------------------------------------------------- model

class SwinTransformer(nn.Module):
    """Patch embedding → stages of Swin blocks with patch merging in between → LayerNorm → mean → head.

    ``features[0]`` is the patch embedding (Conv2d, Permute, LayerNorm), stage i is ``features[2i + 1]``
    (an ``nn.Sequential`` of :class:`SwinBlock`), the patch merging after it ``features[2i + 2]``.
    Input: images (N, in_channels, image_size, image_size) in [0, 1]. Output: logits (N, num_classes).
    """

    def __init__(self, config: SwinConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else SwinConfig()
        if cfg.mean is not None:  # not persistent: torchvision's state dicts have no such entries
            self.register_buffer("mean", torch.tensor(cfg.mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(cfg.std).view(1, -1, 1, 1), persistent=False)
        else:
            self.mean = self.std = None

        P, M = cfg.patch_size, cfg.window_size
        layers: list[nn.Module] = [nn.Sequential(  # a P×P conv with stride P = a linear map of each patch
            nn.Conv2d(cfg.in_channels, cfg.embed_dim, kernel_size=P, stride=P),  # (N, C, H/P, W/P)
            Permute([0, 2, 3, 1]),  # (N, H/P, W/P, C): channels-last from here on
            nn.LayerNorm(cfg.embed_dim),
        )]
        n_blocks, k = sum(cfg.depths), 0
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            dim = cfg.embed_dim * 2**i
            blocks = []
            for j in range(depth):
                rate = cfg.drop_path * k / max(n_blocks - 1, 1)  # 0 at the first block, drop_path at the last
                blocks.append(SwinBlock(dim, heads, M, shift=0 if j % 2 == 0 else M // 2, mlp_ratio=cfg.mlp_ratio,
                                        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                                        drop_path=rate))
                k += 1
            layers.append(nn.Sequential(*blocks))  # (N, H_i, W_i, dim)
            if i < len(cfg.depths) - 1:
                layers.append(PatchMerging(dim))  # (N, H_i/2, W_i/2, 2 · dim)
        self.features = nn.Sequential(*layers)
        self.num_features = cfg.embed_dim * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, cfg.num_classes)
        for m in self.modules():  # as the reference code and torchvision: all linear maps N(0, 0.02²), bias 0
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def stages(self) -> list[nn.Sequential]:
        """The stages ``features[1]``, ``features[3]``, … in order."""
        return [self.features[2 * i + 1] for i in range(len(self.config.depths))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, in_channels, S, S) in [0, 1] → last stage's map (N, S/(P·2^(k−1)), …, num_features)."""
        c = self.config
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"x must have shape (N, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(x.shape)}")
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.features(x)  # (N, h, w, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, in_channels, image_size, image_size) in [0, 1] → logits (N, num_classes)."""
        x = self.norm(self.forward_features(x))  # (N, h, w, num_features)
        return self.head(x.mean(dim=(1, 2)))  # (N, num_features) → (N, num_classes)


def swin_t_config(**overrides) -> SwinConfig:
    """Swin-T (28.3 M parameters, 4.5 GFLOPs at 224²): C = 96, depths 2-2-6-2, heads 3-6-12-24, window 7.

    ``drop_path`` is 0.2 as in the paper's and torchvision's training recipe (it only acts in training).
    Keyword arguments override fields of :class:`SwinConfig`.
    """
    return replace(SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=(2, 2, 6, 2),
                              num_heads=(3, 6, 12, 24), window_size=7, drop_path=0.2), **overrides)


def small_swin_config(**overrides) -> SwinConfig:
    """A small Swin for 32×32 images (CIFAR-10): patch 4 → 8×8 tokens, window 4, two stages of widths 64 and
    128 with 2 blocks each (the second stage's 4×4 map is one window, so it is never shifted). 0.54 M
    parameters. Keyword arguments override fields of :class:`SwinConfig`."""
    return replace(SwinConfig(image_size=32, patch_size=4, num_classes=10, embed_dim=64, depths=(2, 2),
                              num_heads=(2, 4), window_size=4, drop_path=0.1), **overrides)
