"""Masked autoencoder (He et al. 2022, "Masked autoencoders are scalable vision learners").

Hide a large random subset of the image patches (75 %), encode only the visible ones with a ViT,
and let a small decoder predict the pixels of the hidden ones:

    x (N, C, H, W) in [0, 1] → normalise → patch tokens + positions           (N, L, d)
      → random_masking: keep K = L − round(ratio·L) per image                  (N, K, d)
      → [class token; kept] → ViT blocks → LN                                  (N, 1+K, d)   encoder
      → linear to decoder width, append L−K copies of one learned mask token,
        unshuffle to image order, add decoder positions                        (N, 1+L, e)
      → decoder blocks → LN → linear, drop class token                         (N, L, p²C)   pixels per patch
    loss = mean squared error on the masked patches only

Because the encoder never sees mask tokens it runs on a quarter of the sequence, which is what makes
pre-training cheap; because the decoder is thrown away afterwards, it can be small. The encoder is
a :class:`~advcourse.models.vit.ViT` (torchvision's parameter names), so :meth:`MAE.to_classifier`
hands its weights to a classifier for fine-tuning, and :meth:`MAE.encoder_features` gives features
for a linear probe. As in the authors' code (facebookresearch/mae, ``models_mae.py``), both position
embeddings are fixed 2-D sine–cosine tables by default, and the pixel targets are the patches of the
*normalised* image (what the encoder sees), optionally normalised again per patch (``norm_pix_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from .vit import EncoderBlock, ViT, ViTConfig, patchify, unpatchify

__all__ = ["MAE", "MAEConfig", "Reconstruction", "mae_vit_base_config", "masked_mse", "random_masking",
           "sincos_pos_embedding_2d"]


@dataclass(frozen=True)
class MAEConfig:
    """Hyper-parameters of :class:`MAE`. The defaults are MAE ViT-Base/16 with the paper's decoder (8 blocks, 512 wide).

    Args:
        image_size, patch_size, in_channels: the images and patches, as in :class:`ViTConfig`.
        dim, depth, heads, mlp_dim: the ViT encoder.
        decoder_dim, decoder_depth, decoder_heads, decoder_mlp_dim: the decoder, a narrower stack of the same blocks.
        mask_ratio: default fraction of patches hidden, in [0, 1).
        norm_pix_loss: targets are each patch's pixels minus their mean over the patch, divided by their std
            (the paper's better-representations variant, Table 1c).
        sincos_pos: fixed 2-D sine–cosine position embeddings (as the authors); False learns them.
        mean, std: per-channel input normalisation inside the model (None: none).
    """

    image_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    decoder_mlp_dim: int = 2048
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    sincos_pos: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        self.encoder_config()  # validates the encoder's fields
        for name in ("decoder_dim", "decoder_depth", "decoder_heads", "decoder_mlp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim must be divisible by decoder_heads, got {self.decoder_dim} and "
                             f"{self.decoder_heads}")
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.sincos_pos and (self.dim % 4 or self.decoder_dim % 4):
            raise ValueError(f"sincos_pos needs dim and decoder_dim divisible by 4, got {self.dim} and "
                             f"{self.decoder_dim}")

    def encoder_config(self, num_classes: int = 0, pool: str = "cls") -> ViTConfig:
        """The :class:`ViTConfig` of the encoder (no head by default)."""
        return ViTConfig(image_size=self.image_size, patch_size=self.patch_size, in_channels=self.in_channels,
                         num_classes=num_classes, dim=self.dim, depth=self.depth, heads=self.heads,
                         mlp_dim=self.mlp_dim, pool=pool, mean=self.mean, std=self.std)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2


def mae_vit_base_config(**overrides) -> MAEConfig:
    """MAE with a ViT-B/16 encoder and the default 512-wide, 8-block decoder (the authors' ``mae_vit_base_patch16``)."""
    return replace(MAEConfig(), **overrides)


def sincos_pos_embedding_2d(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine–cosine position embeddings (1, [1 +] grid², dim), patches row by row.

    The first dim/2 channels encode the patch's column, the last dim/2 its row (the authors' order),
    each with the 1-D sinusoids of Vaswani et al. (sines in the first half, cosines in the second,
    frequencies 1 / 10000^(2i/(dim/2))). The class token's row is zero. Values in [−1, 1]; needs
    dim % 4 == 0.
    """
    if dim % 4 or grid < 1:
        raise ValueError(f"dim must be divisible by 4 and grid positive, got dim={dim}, grid={grid}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (dim/4,)
    coord = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coord, coord, indexing="ij")  # (g, g) each; patch (i, j) → row i, column j

    def one_d(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # (g², dim/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (g², dim/2)

    pe = torch.cat([one_d(cols), one_d(rows)], dim=1)  # (g², dim)
    if cls_token:
        pe = torch.cat([torch.zeros(1, dim, dtype=pe.dtype), pe])  # (1 + g², dim)
    return pe.float().unsqueeze(0)  # (1, [1 +] g², dim)


def random_masking(x: torch.Tensor, ratio: float, generator: torch.Generator | None = None):
    """Keep a uniformly random subset of L − round(ratio·L) tokens per sample (the authors' per-sample shuffle).

    Each sample draws L uniform noises; sorting them gives a random permutation ``ids_shuffle``,
    whose first K entries are the kept tokens. ``ids_restore`` is its inverse permutation, so
    ``gather(shuffled, ids_restore)`` puts a length-L sequence in shuffled order back in image order.

    Args:
        x: tokens (N, L, d).
        ratio: fraction of tokens masked, in [0, 1).
        generator: a ``torch.Generator`` on x's device, for reproducible masks.

    Returns:
        ``(kept, mask, ids_restore)``: kept tokens (N, K, d) in shuffled order; mask (N, L) in image
        order, 1 = masked (removed), 0 = kept, exactly round(ratio·L) ones per row; ids_restore (N, L).
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (N, L, d), got {tuple(x.shape)}")
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    N, L, d = x.shape
    K = L - round(ratio * L)  # tokens kept; rounding, so the masked count is exact (the authors truncate K)
    if K < 1:
        raise ValueError(f"ratio={ratio} masks all {L} tokens")
    noise = torch.rand(N, L, generator=generator, device=x.device)  # (N, L) in [0, 1)
    ids_shuffle = noise.argsort(dim=1)  # (N, L): a uniform random permutation per sample
    ids_restore = ids_shuffle.argsort(dim=1)  # (N, L): its inverse
    ids_keep = ids_shuffle[:, :K]  # (N, K)
    kept = x.gather(1, ids_keep[:, :, None].expand(-1, -1, d))  # (N, K, d)
    mask = torch.ones(N, L, dtype=x.dtype, device=x.device)  # (N, L), in shuffled order: first K kept
    mask[:, :K] = 0
    mask = mask.gather(1, ids_restore)  # (N, L), back in image order
    return kept, mask, ids_restore


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked patches only.

    pred, target (N, L, D); mask (N, L), 1 = masked. The per-patch MSE is averaged over the masked
    patches; visible patches get zero weight, so their predictions do not change the loss or get a
    gradient. Returns a scalar (0 if nothing is masked).
    """
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (N, L)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class Reconstruction(NamedTuple):
    """Output of :meth:`MAE.reconstruct`; images (N, C, H, W) in [0, 1], mask (N, L) with 1 = masked."""

    masked: torch.Tensor  # the input with masked patches set to 0.5 grey: what the encoder saw
    reconstruction: torch.Tensor  # the decoder's prediction for every patch
    pasted: torch.Tensor  # visible patches from the input, masked ones from the prediction
    mask: torch.Tensor


class MAE(nn.Module):
    """Masked autoencoder: images (N, C, H, W) in [0, 1] → ``(loss, pred, mask)``; see the module docstring."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        c = self.config = config
        L, p = c.num_patches, c.patch_size
        self.encoder = ViT(c.encoder_config())
        self.decoder_embed = nn.Linear(c.dim, c.decoder_dim)
        self.mask_token = nn.Parameter(torch.empty(1, 1, c.decoder_dim).normal_(std=0.02))  # shared by all masked
        self.decoder_pos_embedding = nn.Parameter(torch.empty(1, L + 1, c.decoder_dim).normal_(std=0.02))
        self.decoder_layers = nn.Sequential(*(EncoderBlock(c.decoder_dim, c.decoder_heads, c.decoder_mlp_dim)
                                              for _ in range(c.decoder_depth)))
        self.decoder_ln = nn.LayerNorm(c.decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(c.decoder_dim, p * p * c.in_channels)  # pixels of one patch
        if c.sincos_pos:  # fixed tables, kept as frozen parameters so the ViT state dict stays torchvision's
            pairs = ((self.encoder.encoder.pos_embedding, c.dim), (self.decoder_pos_embedding, c.decoder_dim))
            for param, dim in pairs:
                param.data.copy_(sincos_pos_embedding_2d(dim, c.grid))
                param.requires_grad_(False)
        nn.init.normal_(self.encoder.class_token, std=0.02)

    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] → the pixel targets (N, L, p²C), per-patch normalised if norm_pix_loss."""
        target = patchify(self.encoder.normalize(x), self.config.patch_size)  # (N, L, p²C)
        if self.config.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)  # (N, L, 1) each
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def forward_encoder(self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
        """Encode the visible patches only: images (N, C, H, W) → latent (N, 1+K, d), mask, ids_restore (N, L)."""
        vit = self.encoder
        pos = vit.encoder.pos_embedding  # (1, 1+L, d)
        x = vit.embed_patches(x) + pos[:, 1:]  # (N, L, d); positions added before the shuffle, so tokens keep theirs
        x, mask, ids_restore = random_masking(x, mask_ratio, generator)  # (N, K, d)
        cls = (vit.class_token + pos[:, :1]).expand(x.shape[0], -1, -1)  # (N, 1, d)
        x = torch.cat([cls, x], dim=1)  # (N, 1+K, d)
        for block in vit.encoder.layers:
            x = block(x)[0]
        return vit.encoder.ln(x), mask, ids_restore  # (N, 1+K, d)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Latent (N, 1+K, d) and ids_restore (N, L) → predicted pixels (N, L, p²C) for every patch, image order."""
        x = self.decoder_embed(latent)  # (N, 1+K, e)
        N, K, e = x.shape[0], x.shape[1] - 1, x.shape[2]
        L = ids_restore.shape[1]
        patches = torch.cat([x[:, 1:], self.mask_token.expand(N, L - K, -1)], dim=1)  # (N, L, e), shuffled order
        patches = patches.gather(1, ids_restore[:, :, None].expand(-1, -1, e))  # (N, L, e), image order
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embedding  # (N, 1+L, e)
        for block in self.decoder_layers:  # every token, mask tokens included, attends to every other
            x = block(x)[0]
        return self.decoder_pred(self.decoder_ln(x))[:, 1:]  # (N, L, p²C): drop the class token

    def loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:func:`masked_mse` between ``pred`` (N, L, p²C) and the targets of images x (N, C, H, W)."""
        return masked_mse(pred, self.targets(x), mask)

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None):
        """Images (N, C, H, W) in [0, 1] → ``(loss, pred, mask)``.

        loss is a scalar, pred (N, L, p²C) the predicted patches (in target space, see :meth:`targets`),
        mask (N, L) with 1 = masked. ``mask_ratio`` defaults to the config's.
        """
        mask_ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, ids_restore = self.forward_encoder(x, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.loss(x, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask_ratio: float | None = None,
                    generator: torch.Generator | None = None) -> Reconstruction:
        """Mask, encode, decode and turn the prediction back into images in [0, 1] (clamped).

        With ``norm_pix_loss`` the model predicts each patch only up to its mean and scale; this uses
        the true per-patch mean and std of x to draw it, so such pictures show structure, not the
        model's guess of colour and contrast.
        """
        _, pred, mask = self.forward(x, mask_ratio, generator)  # (N, L, p²C), (N, L)
        p, C = self.config.patch_size, self.config.in_channels
        if self.config.norm_pix_loss:
            raw = patchify(self.encoder.normalize(x), p)  # (N, L, p²C)
            pred = pred * (raw.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + raw.mean(dim=-1, keepdim=True)
        recon = unpatchify(pred, p)  # (N, C, H, W), normalised space
        if self.encoder.mean is not None:
            recon = recon * self.encoder.std + self.encoder.mean  # back to [0, 1] pixel space
        recon = recon.clamp(0, 1)
        pixel_mask = unpatchify(mask[:, :, None].expand(-1, -1, p * p * C), p)  # (N, C, H, W), 1 = masked
        masked = x * (1 - pixel_mask) + 0.5 * pixel_mask
        pasted = x * (1 - pixel_mask) + recon * pixel_mask
        return Reconstruction(masked, recon, pasted, mask)

    def encoder_features(self, x: torch.Tensor, pool: str = "cls") -> torch.Tensor:
        """Images (N, C, H, W) → features (N, d) of the encoder on the whole, unmasked image.

        ``pool="cls"`` takes the class token, ``"mean"`` the mean of the patch tokens; for linear
        probing or as a frozen feature extractor.
        """
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        tokens = self.encoder.tokens(x)  # (N, 1+L, d)
        return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(dim=1)

    def to_classifier(self, num_classes: int, pool: str = "mean") -> ViT:
        """A new :class:`ViT` classifier with this encoder's weights and a fresh zero head, for fine-tuning.

        The position embedding is copied as a learnable parameter (the authors keep it fixed; freeze
        ``encoder.pos_embedding`` to do the same). ``pool="mean"`` is the authors' default for fine-tuning
        (they put a fresh LayerNorm after the average; here the encoder's final LayerNorm comes before it).
        """
        vit = ViT(self.config.encoder_config(num_classes=num_classes, pool=pool))
        missing, unexpected = vit.load_state_dict(self.encoder.state_dict(), strict=False)
        if unexpected or any(not k.startswith("heads.") for k in missing):  # only the new head may be missing
            raise RuntimeError(f"encoder weights do not fit the classifier: missing {missing}, unexpected {unexpected}")
        return vit.to(self.encoder.class_token.device)
