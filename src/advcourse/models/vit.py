"""The Vision Transformer (Dosovitskiy et al. 2021, "An image is worth 16x16 words").

Cut the image into p×p patches, embed each patch linearly, prepend a learned class token, add
learned 1-D position embeddings and run a standard pre-LN Transformer encoder; classify from the
class token (or from the mean of the patch tokens):

    x (N, C, H, W) in [0, 1] → normalise → conv p×p stride p     (N, d, H/p, W/p)
      → flatten, transpose                                       (N, L, d),  L = HW/p²
      → [class token; patches] + pos_embedding                   (N, 1+L, d)
      → [x + MSA(LN(x)); x + MLP(LN(x))] × depth → LN            (N, 1+L, d)
      → token 0 (or mean of tokens 1…L) → linear                 (N, num_classes) logits

The strided convolution *is* the paper's linear patch embedding E (eq. 1): :func:`patchify` plus a
matrix multiply with the reshaped kernel gives the same numbers (:func:`patch_embedding_via_linear`).

Parameter names match torchvision's ``VisionTransformer`` exactly (``class_token``, ``conv_proj``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_{i}.{ln_1, self_attention, ln_2, mlp.0,
mlp.3}``, ``encoder.ln``, ``heads.head``), so ``torchvision.models.vit_b_16().state_dict()`` loads
into ``ViT(vit_b_16_config())`` with ``strict=True`` and gives the same logits. torchvision's model
does not normalise its input; set ``mean``/``std`` in the config to do it inside this one.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EncoderBlock", "ViT", "ViTConfig", "interpolate_pos_embedding",
           "patch_embedding_via_linear", "patchify", "unpatchify", "vit_b_16_config"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation torchvision's pretrained weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
POOLS = ("cls", "mean")


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of :class:`ViT`.

    Args:
        image_size: side of the square input images (divisible by ``patch_size``).
        patch_size: side p of the square patches; the sequence has L = (image_size / p)² patch tokens.
        in_channels: image channels C.
        num_classes: logits; 0 gives no head (``forward`` returns the pooled features).
        dim: token width d ("hidden size").
        depth: number of encoder blocks.
        heads: attention heads (dim divisible by heads).
        mlp_dim: hidden width of each block's MLP.
        dropout: dropout after the position embedding, inside the MLP and after attention.
        attention_dropout: dropout on the attention weights.
        pool: ``"cls"`` classifies from the class token, ``"mean"`` from the mean of the patch tokens.
        mean, std: per-channel normalisation applied inside the model (None: none, as torchvision).
    """

    image_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    num_classes: int = 1000
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    dropout: float = 0.0
    attention_dropout: float = 0.0
    pool: str = "cls"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("image_size", "patch_size", "in_channels", "dim", "depth", "heads", "mlp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be non-negative, got {self.num_classes}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size must be divisible by patch_size, got {self.image_size} and "
                             f"{self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim must be divisible by heads, got {self.dim} and {self.heads}")
        for name in ("dropout", "attention_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.mean is not None:
            if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
                raise ValueError(f"mean and std need one value per channel ({self.in_channels}), got "
                                 f"{self.mean} and {self.std}")
            if min(self.std) <= 0:
                raise ValueError(f"std must be positive, got {self.std}")

    @property
    def grid(self) -> int:
        """Patches per side, image_size / patch_size."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """L, the number of patch tokens."""
        return self.grid ** 2


def vit_b_16_config(**overrides) -> ViTConfig:
    """ViT-B/16 (Table 1 of the paper, torchvision's ``vit_b_16``): 224², p=16, d=768, 12 blocks of 12 heads,
    MLP 3072, 1000 classes, 86M parameters. Keyword arguments override fields, e.g. ``num_classes=10`` or
    ``mean=IMAGENET_MEAN, std=IMAGENET_STD``."""
    return replace(ViTConfig(image_size=224, patch_size=16, in_channels=3, num_classes=1000, dim=768, depth=12,
                             heads=12, mlp_dim=3072), **overrides)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Images (N, C, H, W) → patches (N, L, p·p·C), L = (H/p)(W/p).

    Patches are numbered row by row (left to right, top to bottom), the order of the conv's output
    grid; each patch is flattened as (row in patch, column in patch, channel), the order of the MAE
    authors' code.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    N, C, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"image sides must be divisible by p={p}, got {H}×{W}")
    h, w = H // p, W // p
    x = x.reshape(N, C, h, p, w, p)  # (N, C, h, p, w, p): pixel (i·p + r, j·p + s) → [i, r, j, s]
    x = x.permute(0, 2, 4, 3, 5, 1)  # (N, h, w, p, p, C)
    return x.reshape(N, h * w, p * p * C)  # (N, L, p²C)


def unpatchify(patches: torch.Tensor, p: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`patchify`: (N, L, p·p·C) → (N, C, h·p, w·p); ``grid`` (h, w) defaults to square."""
    if patches.ndim != 3 or patches.shape[-1] % (p * p):
        raise ValueError(f"patches must have shape (N, L, p*p*C) with p={p}, got {tuple(patches.shape)}")
    N, L, D = patches.shape
    C = D // (p * p)
    if grid is None:
        h = w = math.isqrt(L)
        if h * w != L:
            raise ValueError(f"L={L} is not a square; pass grid=(h, w)")
    else:
        h, w = grid
        if h * w != L:
            raise ValueError(f"grid {grid} does not have L={L} patches")
    x = patches.reshape(N, h, w, p, p, C)  # (N, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (N, C, h, p, w, p)
    return x.reshape(N, C, h * p, w * p)  # (N, C, H, W)


def patch_embedding_via_linear(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """The patch embedding of a p×p, stride-p convolution computed as patchify + matrix multiply.

    Shows that ``conv_proj`` is the paper's linear map E: the conv kernel (d, C, p, p), reordered to
    the (row, column, channel) order of :func:`patchify`, is a (d, p²C) matrix. x (N, C, H, W) → (N, L, d),
    equal to ``conv(x).flatten(2).transpose(1, 2)``.
    """
    p = conv.kernel_size[0]
    if conv.kernel_size != (p, p) or conv.stride != (p, p) or conv.padding != (0, 0):
        raise ValueError(f"conv must have a square kernel equal to its stride and no padding, got "
                         f"kernel {conv.kernel_size}, stride {conv.stride}, padding {conv.padding}")
    E = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # (d, C, p, p) → (d, p, p, C) → (d, p²C)
    return F.linear(patchify(x, p), E, conv.bias)  # (N, L, p²C) @ (p²C, d) → (N, L, d)


class EncoderBlock(nn.Module):
    """Pre-LN Transformer block: x + MSA(LN(x)), then x + MLP(LN(x)) (eqs. 2–3). (N, T, d) → (N, T, d).

    The MLP is Linear → GELU → Dropout → Linear → Dropout, so its linear layers are ``mlp.0`` and
    ``mlp.3`` as in torchvision.
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0, attention_dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = MultiHeadAttention(dim, heads, dropout=attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))
        for m in (self.mlp[0], self.mlp[3]):  # torchvision's initialisation
            nn.init.xavier_uniform_(m.weight)
            nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (N, T, d) → (x (N, T, d), attention weights per head (N, heads, T, T) or None)."""
        y = self.ln_1(x)
        y, weights = self.self_attention(y, y, y, need_weights=need_weights, average_attn_weights=False)
        x = x + self.dropout(y)  # (N, T, d)
        return x + self.mlp(self.ln_2(x)), weights


class Encoder(nn.Module):
    """Position embedding + the stack of blocks + final LayerNorm. (N, T, d) → (N, T, d)."""

    def __init__(self, seq_length: int, depth: int, dim: int, heads: int, mlp_dim: int, dropout: float,
                 attention_dropout: float):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))  # (1, T, d); BERT init
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(dim, heads, mlp_dim, dropout, attention_dropout)) for i in range(depth)
        ))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """x (N, T, d) → x (N, T, d), plus the list of per-layer weights (N, heads, T, T) if asked."""
        x = self.dropout(x + self.pos_embedding)  # (N, T, d)
        maps = []
        for block in self.layers:
            x, w = block(x, need_weights=return_attention)
            maps.append(w)
        x = self.ln(x)
        return (x, maps) if return_attention else x


class ViT(nn.Module):
    """Vision Transformer classifier: images (N, C, H, W) in [0, 1], H = W = image_size → logits (N, num_classes)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        c = self.config = config
        if c.mean is not None:  # not persistent: the state dict stays torchvision's
            self.register_buffer("mean", torch.tensor(c.mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(c.std).view(1, -1, 1, 1), persistent=False)
        else:
            self.mean = self.std = None
        self.conv_proj = nn.Conv2d(c.in_channels, c.dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, c.dim))  # (1, 1, d)
        self.encoder = Encoder(c.num_patches + 1, c.depth, c.dim, c.heads, c.mlp_dim, c.dropout, c.attention_dropout)
        self.heads = nn.Sequential(OrderedDict([("head", nn.Linear(c.dim, c.num_classes))] if c.num_classes else []))
        # torchvision's initialisation: LeCun-normal patch embedding, zero head (as the paper fine-tunes).
        fan_in = c.in_channels * c.patch_size ** 2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        if c.num_classes:
            nn.init.zeros_(self.heads.head.weight)
            nn.init.zeros_(self.heads.head.bias)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(x − mean) / std per channel, or x unchanged without a configured normalisation."""
        return x if self.mean is None else (x - self.mean) / self.std

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] → patch tokens (N, L, d), without class token or positions."""
        c = self.config
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"x must have shape (N, {c.in_channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(x.shape)}")
        x = self.conv_proj(self.normalize(x))  # (N, d, h, w)
        return x.flatten(2).transpose(1, 2)  # (N, h·w, d) = (N, L, d), patches row by row

    def tokens(self, x: torch.Tensor, return_attention: bool = False):
        """Images (N, C, H, W) → the encoder's output tokens (N, 1+L, d), token 0 the class token.

        With ``return_attention`` also the list (one per block) of attention weights (N, heads, 1+L, 1+L).
        """
        x = self.embed_patches(x)  # (N, L, d)
        cls = self.class_token.expand(x.shape[0], -1, -1)  # (N, 1, d)
        return self.encoder(torch.cat([cls, x], dim=1), return_attention)  # (N, 1+L, d)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (N, 1+L, d) → one vector per image (N, d): the class token, or the mean patch token."""
        return tokens[:, 0] if self.config.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) → pooled features (N, d), what the head sees."""
        return self.pool(self.tokens(x))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Images (N, C, H, W) in [0, 1] → logits (N, num_classes) (features (N, d) if num_classes = 0).

        With ``return_attention=True`` returns ``(logits, maps)``, maps a list of ``depth`` tensors
        (N, heads, 1+L, 1+L) of attention weights, rows = queries, token 0 = class token; e.g. for
        attention rollout (Abnar & Zuidema 2020) or the mean attention distance of the paper's Fig. 7.
        """
        if return_attention:
            tokens, maps = self.tokens(x, return_attention=True)
            return self.heads(self.pool(tokens)), maps
        return self.heads(self.features(x))

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every block, a list of ``depth`` tensors (N, heads, 1+L, 1+L)."""
        return self.forward(x, return_attention=True)[1]


def interpolate_pos_embedding(model_or_tensor: ViT | torch.Tensor, new_grid: int | tuple[int, int],
                              mode: str = "bicubic"):
    """Resample learned position embeddings to a larger (or smaller) patch grid (§3.2 of the paper).

    To fine-tune or evaluate at a higher resolution with the same patch size, the sequence gets
    longer; the paper interpolates the pre-trained embeddings in 2-D according to their location.
    The class token's embedding is kept as is. Interpolation uses ``align_corners=True`` (as
    torchvision), so the corners stay put and, going from a g×g to a (2g−1)×(2g−1) grid, every
    other new position equals an old one exactly.

    Args:
        model_or_tensor: a position embedding (1, 1 + g², d), or a square :class:`ViT`.
        new_grid: the new patch grid, an int for square or (h, w) (tensor only).
        mode: ``"bicubic"`` or ``"bilinear"``.

    Returns:
        For a tensor, the new (1, 1 + h·w, d) embedding. For a model, a new :class:`ViT` (a copy; the
        original is untouched) for image_size = new_grid · patch_size with the interpolated embedding.
    """
    gh, gw = (new_grid, new_grid) if isinstance(new_grid, int) else tuple(new_grid)
    if min(gh, gw) < 1:
        raise ValueError(f"new_grid must be positive, got {new_grid}")
    if isinstance(model_or_tensor, ViT):
        if gh != gw:
            raise ValueError(f"a ViT has a square grid; new_grid must be square, got {new_grid}")
        model = model_or_tensor
        new = ViT(replace(model.config, image_size=gh * model.config.patch_size))
        state = copy.deepcopy(model.state_dict())
        state["encoder.pos_embedding"] = interpolate_pos_embedding(state["encoder.pos_embedding"], gh, mode)
        new.load_state_dict(state)
        return new.to(model.class_token.device).train(model.training)
    pos = model_or_tensor
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(f"position embedding must have shape (1, 1 + g*g, d), got {tuple(pos.shape)}")
    _, T, d = pos.shape
    g = math.isqrt(T - 1)
    if g * g != T - 1:
        raise ValueError(f"position embedding has {T - 1} patch positions, not a square grid")
    cls, grid = pos[:, :1], pos[:, 1:]  # (1, 1, d), (1, g², d)
    grid = grid.reshape(1, g, g, d).permute(0, 3, 1, 2)  # (1, d, g, g): an image with d channels
    grid = F.interpolate(grid, size=(gh, gw), mode=mode, align_corners=True)  # (1, d, gh, gw)
    grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, d)  # (1, gh·gw, d)
    return torch.cat([cls, grid], dim=1)  # (1, 1 + gh·gw, d)
