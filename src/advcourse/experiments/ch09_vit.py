"""Chapter 9 — the Vision Transformer (Dosovitskiy et al. 2021, "An image is worth 16x16 words").

The chapter's experiments as small functions:

* small ViTs and a small CNN, trained on MNIST with one shared recipe (AdamW, warm-up then cosine
  decay, random shifts of ±2 pixels) and cached (:func:`train_vit`, :func:`train_cnn`);
* what a trained ViT has learned: the cosine similarity of its position embeddings
  (:func:`position_similarity`), the principal components of its patch-embedding filters
  (:func:`embedding_components`), the mean attention distance of each head and layer
  (:func:`mean_attention_distance`) and attention rollout (:func:`attention_rollout`);
* patch size against accuracy and compute (:func:`vit_macs`, :func:`counted_macs`), and
  position-embedding interpolation to a larger patch grid (:func:`resolution_table`);
* inductive bias: a CNN and a ViT as the training set grows (:func:`data_hunger`);
* the equivalence with torchvision's ``VisionTransformer`` (:func:`torchvision_equivalence`);
* PGD robustness and transfer between the CNN and the ViT (:func:`robustness_table`,
  :func:`transfer_table`).

All images are (N, 1, 28, 28) in [0, 1] unless stated; every model returns logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks import pgd, robust_accuracy, transfer
from ..cache import load_or_train
from ..evaluate import accuracy, eval_mode
from ..models import MnistCNN
from ..models.vit import ViT, ViTConfig, interpolate_pos_embedding
from ..train import Shuffled, fit

EPS = 0.1  # the L-inf budget of the robustness section: at 0.3 both models fall to 0%


@dataclass(frozen=True)
class Settings:
    """Chapter 9's settings, shared by the chapter and its claim tests.

    The ViT: ``patch``×``patch`` patches, width ``dim``, ``depth`` blocks of ``heads`` heads, MLP
    width ``mlp_dim``. Every model (ViTs and the CNN) trains ``epochs`` epochs with batches of
    ``batch_size``, AdamW (``lr``, ``weight_decay``), a linear warm-up over the first tenth of the
    steps then cosine decay, and random shifts of up to ``shift`` pixels.
    Experiments: the patch sizes of the sweep (``patch_sizes``); the smaller training sets of the
    data-hunger study (``sizes``; the whole training set is added), each trained for at least
    ``min_steps`` updates; the class token and mean pooling compared on ``pool_n`` digits; a ViT
    trained with shifts of up to ``wide_shift`` pixels (a whole patch) as a control for what its
    position embeddings learn; ``n_maps`` test images for the attention statistics; the larger patch grids for
    position-embedding interpolation (``grids``); ``n_attack`` test digits attacked by PGD with
    ``pgd_steps`` steps at each of ``eps_values``; ``vit_b16``: also check the real ViT-B/16
    against torchvision on one image (about 25 s on a CPU, mostly building the two models).
    """

    patch: int = 7
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 128
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    shift: int = 2
    patch_sizes: tuple = (14, 7)
    sizes: tuple = (500,)
    min_steps: int = 600
    pool_n: int = 500
    wide_shift: int = 7
    n_maps: int = 256
    grids: tuple = (5, 6)
    n_attack: int = 500
    pgd_steps: int = 10
    eps_values: tuple = (0.02, 0.05, 0.1)
    vit_b16: bool = False

    def vit_config(self, patch: int | None = None, pool: str = "cls", image_size: int = 28) -> ViTConfig:
        """The chapter's ViT for 1×``image_size``² images with ``patch``×``patch`` patches (default: ``self.patch``)."""
        return ViTConfig(image_size=image_size, patch_size=patch or self.patch, in_channels=1, num_classes=10,
                         dim=self.dim, depth=self.depth, heads=self.heads, mlp_dim=self.mlp_dim, pool=pool)

    def recipe(self) -> dict:
        """The training settings every model of the chapter shares, as :func:`train_vit` keywords."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "shift": self.shift}

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # The ViT-B/16 check (25 s on a CPU) runs in the test suite instead (tests/models/test_vit.py).
        return replace(self, epochs=1, sizes=(100,), min_steps=5, pool_n=100, n_maps=32, n_attack=50,
                       pgd_steps=3, vit_b16=False)


#: The CPU profile (the embedded MNIST: 8,000 training and 2,000 test digits).
FAST = Settings()
#: The GPU profile (all of MNIST): a wider, deeper ViT trained longer, 4×4 patches added to the
#: sweep, more training-set sizes, the real ViT-B/16 checked against torchvision.
FULL = Settings(dim=128, depth=6, heads=8, mlp_dim=256, epochs=30, batch_size=128, patch_sizes=(28, 14, 7, 4),
                sizes=(600, 3000, 15_000), min_steps=3000, pool_n=3000, n_maps=1024, grids=(5, 6, 8),
                n_attack=2000, pgd_steps=20, vit_b16=True)


# --- training ------------------------------------------------------------------------

def shift_images(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own random whole number of pixels in [−s, s] along each axis.

    x (N, C, H, W) → (N, C, H, W); pixels shifted in from outside are 0 (MNIST's background).
    The augmentation used for every model of the chapter: it teaches the ViT a little of the
    translation structure a CNN gets from its architecture.
    """
    if max_shift == 0:
        return x
    N, C, H, W = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))  # (N, C, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * s + 1, (N,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * s + 1, (N,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(H, device=x.device)  # (N, H): the rows each image keeps
    cols = dx[:, None] + torch.arange(W, device=x.device)  # (N, W)
    n = torch.arange(N, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def warmup_cosine(total_steps: int, warmup: float = 0.1):
    """``schedule(optimizer)`` for :func:`advcourse.train.fit`: the learning rate grows linearly over
    the first ``warmup`` fraction of ``total_steps``, then follows a half cosine down to 0."""
    warm = max(int(warmup * total_steps), 1)

    def factor(t: int) -> float:
        return min((t + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps)))

    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: dict, progress: bool,
                      desc: str) -> dict:
    """Train ``model`` in place with the chapter's recipe ``cfg``; returns JSON-able metrics."""
    batches = Shuffled(x, y, batch_size=cfg["batch_size"], seed=cfg["seed"])
    epochs = max(cfg["epochs"], math.ceil(cfg["min_steps"] / len(batches)))
    shifts = torch.Generator().manual_seed(cfg["seed"] + 1)

    def step(model, batch):
        xb, yb = batch
        out = model(shift_images(xb, cfg["shift"], shifts))
        return F.cross_entropy(out, yb), {"train_acc": (out.argmax(1) == yb).sum().item()}

    history = fit(model, batches, step, epochs=epochs, optimizer="adamw", lr=cfg["lr"],
                  weight_decay=cfg["weight_decay"], schedule=warmup_cosine(epochs * len(batches)),
                  progress=progress, desc=desc)
    return {"loss": history["loss"], "train_acc": history["train_acc"], "epochs": epochs,
            "steps": epochs * len(batches), "seconds": history["seconds"],
            "fit_acc": accuracy(model, x, y)}  # accuracy on the (unshifted) training digits


def _config(data, kind: str, n: int | None, recipe: dict, seed: int, min_steps: int) -> dict:
    n = len(data.x_train) if n is None else int(n)
    if not 0 < n <= len(data.x_train):
        raise ValueError(f"n must be in [1, {len(data.x_train)}], got {n}")
    return {"kind": kind, "data": data.source, "n": n, "seed": seed, "min_steps": min_steps, **recipe}


def train_vit(data, settings: Settings, *, patch: int | None = None, pool: str = "cls", n: int | None = None,
              min_steps: int = 0, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load from the cache) the chapter's ViT on the first ``n`` training digits (default all).

    ``patch`` and ``pool`` override the settings' patch size and pooling ("cls" or "mean");
    ``min_steps``: train more epochs if needed to make at least this many updates (small ``n``).
    Returns ``(model, meta)``; ``meta["metrics"]`` holds per-epoch ``loss`` and ``train_acc``,
    ``steps``, ``seconds`` and ``fit_acc`` (accuracy on the training digits).
    """
    vit_cfg = settings.vit_config(patch, pool)
    config = {**_config(data, "vit", n, settings.recipe(), seed, min_steps), "patch": vit_cfg.patch_size,
              "pool": pool, "dim": vit_cfg.dim, "depth": vit_cfg.depth, "heads": vit_cfg.heads,
              "mlp_dim": vit_cfg.mlp_dim}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return ViT(ViTConfig(image_size=28, patch_size=cfg["patch"], in_channels=1, num_classes=10, dim=cfg["dim"],
                             depth=cfg["depth"], heads=cfg["heads"], mlp_dim=cfg["mlp_dim"], pool=cfg["pool"]))

    def fit_model(model, cfg):
        x, y = data.x_train[:cfg["n"]], data.y_train[:cfg["n"]]
        return _train_classifier(model, x, y, cfg, progress, f"ViT p{cfg['patch']} {cfg['pool']} n={cfg['n']}")

    name = f"ch09-vit-p{vit_cfg.patch_size}-{pool}-n{config['n']}"
    return load_or_train(name, config, build, fit_model, device=device)


def train_cnn(data, settings: Settings, *, n: int | None = None, min_steps: int = 0, seed: int = 0, device="cpu",
              progress: bool = True):
    """Train (or load) the chapter's CNN, :class:`~advcourse.models.MnistCNN` (16 and 32 filters,
    100 hidden units), with the same recipe as the ViT; arguments and result as :func:`train_vit`."""
    config = {**_config(data, "cnn", n, settings.recipe(), seed, min_steps), "channels": [16, 32], "hidden": 100}

    def build(cfg):
        torch.manual_seed(cfg["seed"])
        return MnistCNN(tuple(cfg["channels"]), cfg["hidden"])

    def fit_model(model, cfg):
        x, y = data.x_train[:cfg["n"]], data.y_train[:cfg["n"]]
        return _train_classifier(model, x, y, cfg, progress, f"CNN n={cfg['n']}")

    return load_or_train(f"ch09-cnn-n{config['n']}", config, build, fit_model, device=device)


# --- what a trained ViT has learned --------------------------------------------------

def position_similarity(model: ViT) -> torch.Tensor:
    """Cosine similarity between the learned position embeddings of the patches (the class token's
    is left out), as a (g, g, g, g) tensor: entry [i, j, k, l] compares patch (i, j) with patch
    (k, l) of the g×g grid; values in [−1, 1], 1 on the diagonal. The paper's Figure 7 (centre)."""
    pos = model.encoder.pos_embedding.detach()[0, 1:]  # (L, d)
    g = model.config.grid
    unit = F.normalize(pos, dim=1)
    return (unit @ unit.T).reshape(g, g, g, g).cpu()


def similarity_by_distance(sim: torch.Tensor) -> dict:
    """Mean position-embedding similarity of pairs of distinct patches grouped by their distance on
    the grid (Chebyshev: 1 = neighbours, diagonal ones included). ``sim`` (g, g, g, g) from
    :func:`position_similarity`. Returns {distance: mean cosine similarity}, distances 1 … g − 1,
    and ``"same row or column"`` / ``"other"``: pairs at distance ≥ 2 that do / do not share a row or column."""
    g = sim.shape[0]
    ij = torch.stack(torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij"), -1).reshape(-1, 2)  # (L, 2)
    diff = (ij[:, None, :] - ij[None, :, :]).abs()  # (L, L, 2)
    cheb = diff.max(-1).values
    flat = sim.reshape(g * g, g * g)
    out = {int(k): flat[cheb == k].mean().item() for k in range(1, g)}
    far = cheb >= 2
    line = (diff == 0).any(-1)
    out["same row or column"] = flat[far & line].mean().item()
    out["other"] = flat[far & ~line].mean().item()
    return out


def embedding_components(model: ViT, k: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of the patch-embedding filters (the rows of E), the paper's Figure 7 (left).

    The d filters are vectors of p·p·C pixel weights; after removing their mean, the top ``k``
    right singular vectors are the directions the filters span most. Returns the components
    (k, C, p, p) and the fraction of the filters' variance each explains (k,), decreasing.
    """
    w = model.conv_proj.weight.detach().cpu()  # (d, C, p, p)
    d, C, p, _ = w.shape
    flat = w.reshape(d, -1)
    flat = flat - flat.mean(0, keepdim=True)
    _, s, vt = torch.linalg.svd(flat, full_matrices=False)
    var = s ** 2 / (s ** 2).sum()
    k = min(k, len(s))
    return vt[:k].reshape(k, C, p, p), var[:k]


def attention_maps(model: ViT, x: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """Attention weights of every block for images ``x`` (N, C, H, W): a list of ``depth`` CPU tensors
    (N, heads, 1+L, 1+L), rows (queries) summing to 1, token 0 the class token."""
    device = next(model.parameters()).device
    chunks = []
    with eval_mode(model), torch.no_grad():
        for xb in x.split(batch_size):
            chunks.append([m.cpu() for m in model.attention_maps(xb.to(device))])
    return [torch.cat(layer) for layer in zip(*chunks)]


def patch_centres(grid: int, patch: int) -> torch.Tensor:
    """Pixel coordinates (row, column) of the centres of the g×g patches, row by row: (g·g, 2)."""
    ij = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1).reshape(-1, 2)
    return (ij.float() + 0.5) * patch


def mean_attention_distance(maps: list[torch.Tensor], patch: int) -> torch.Tensor:
    """The paper's "attention distance" (Figure 7 right, Appendix D.7): for each layer and head, the
    distance in pixels between a query patch and the patches it attends to, weighted by the attention
    weights and averaged over query patches and images.

    ``maps``: :func:`attention_maps`' list of (N, heads, 1+L, 1+L). The class token is left out as
    query and key; each query's weights over the L patch keys are renormalised to sum to 1.
    Returns (depth, heads), in pixels (for 28×28 images at most 28·√2).
    """
    L = maps[0].shape[-1] - 1
    g = math.isqrt(L)
    centres = patch_centres(g, patch)
    dist = torch.cdist(centres, centres)  # (L, L) pixels between patch centres
    out = []
    for w in maps:
        w = w[:, :, 1:, 1:]  # (N, h, L, L): patches attending to patches
        w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        out.append((w * dist).sum(-1).mean(dim=(0, 2)))  # (h,)
    return torch.stack(out)


def uniform_attention_distance(grid: int, patch: int) -> float:
    """The attention distance of a head that spreads its weight evenly over all patches (pixels)."""
    centres = patch_centres(grid, patch)
    return torch.cdist(centres, centres).mean().item()


def attention_rollout(maps: list[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020), as in the paper's Appendix D.8.

    Average each layer's weights over heads; with ``residual``, add the identity for the residual
    connection and renormalise the rows, Ā = (A + I) / 2; then multiply the layers' matrices,
    R = Ā_depth ⋯ Ā_1. ``maps``: list of (N, heads, T, T). Returns R (N, T, T), rows summing to 1:
    row 0 says how much each input token contributes to the class token at the output.
    """
    rollout = None
    for w in maps:
        a = w.mean(1)  # (N, T, T)
        if residual:
            a = 0.5 * (a + torch.eye(a.shape[-1]))
            a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # later layers act on the result of earlier ones
    return rollout


def class_token_map(rollout: torch.Tensor) -> torch.Tensor:
    """Row 0 of a rollout (N, 1+L, 1+L) restricted to the patches and renormalised: (N, g, g), sums to 1."""
    row = rollout[:, 0, 1:]
    row = row / row.sum(-1, keepdim=True)
    g = math.isqrt(row.shape[-1])
    return row.reshape(-1, g, g)


def ink_share(maps: torch.Tensor, x: torch.Tensor, patch: int, threshold: float = 0.2) -> dict:
    """Does the class token look at the digit? ``maps`` (N, g, g) from :func:`class_token_map`,
    ``x`` (N, 1, H, W). A patch "has ink" if any pixel exceeds ``threshold``. Returns the mean
    fraction of the map's mass on inked patches (``mass``) and the mean fraction of patches that
    are inked (``area``): a map that ignored the image would put ``area`` of its mass there."""
    inked = F.max_pool2d(x, patch)[:, 0] > threshold  # (N, g, g)
    return {"mass": (maps * inked).sum((1, 2)).mean().item(), "area": inked.float().mean().item()}


# --- patch size, compute and resolution ------------------------------------------------

def vit_macs(config: ViTConfig) -> int:
    """Multiply–accumulate operations of one forward pass of a ViT on one image (matrix products
    only; LayerNorm, softmax, GELU and additions are a few percent more).

    With T = 1 + L tokens of width d: the patch embedding L·(p²C)·d; per block the Q, K, V and
    output projections 4·T·d², the scores QKᵀ and the weighted sum of values 2·T²·d, the MLP
    2·T·d·d_mlp; the head d·K. The T² term is what makes small patches expensive.
    """
    c = config
    L, T, d = c.num_patches, c.num_patches + 1, c.dim
    block = 4 * T * d * d + 2 * T * T * d + 2 * T * d * c.mlp_dim
    return L * c.patch_size ** 2 * c.in_channels * d + c.depth * block + d * c.num_classes


def counted_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of ``model(x)`` per image as counted by ``torch.utils.flop_counter`` (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() // (2 * len(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def upscale(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, H, W) resized to size×size (bilinear, antialiased), kept in [0, 1]."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def with_positions(model: ViT, grid: int, how: str) -> ViT:
    """A copy of ``model`` for a g×g patch grid (images of side g·p) with its position embeddings
    adapted by ``how``:

    * ``"2-D"``: interpolated in 2-D on the patch grid (bicubic, the paper's §3.2);
    * ``"1-D"``: the raster sequence of L embeddings resampled to g² entries (linear), ignoring
      that the sequence folds into rows;
    * ``"none"``: all patch position embeddings set to 0 (a bag of patches; the class token keeps its own).
    """
    new = interpolate_pos_embedding(model, grid)  # a copy with the right sizes
    pos = model.encoder.pos_embedding.detach()
    with torch.no_grad():
        if how == "1-D":
            seq = pos[:, 1:].transpose(1, 2)  # (1, d, L)
            seq = F.interpolate(seq, size=grid * grid, mode="linear", align_corners=True)
            new.encoder.pos_embedding[:, 1:] = seq.transpose(1, 2)
        elif how == "none":
            new.encoder.pos_embedding[:, 1:] = 0
        elif how != "2-D":
            raise ValueError(f"how must be '2-D', '1-D' or 'none', got {how!r}")
    return new.eval()


def resolution_table(model: ViT, x: torch.Tensor, y: torch.Tensor, grids, hows=("2-D", "1-D", "none")) -> dict:
    """Accuracy of ``model`` (trained on a g₀×g₀ grid) on the test digits ``x`` (N, 1, 28, 28) enlarged
    to each grid of ``grids`` (side g·p), for each way ``hows`` of adapting its position embeddings
    (:func:`with_positions`), without any fine-tuning. The native grid g₀ is included first.
    Returns {how: [accuracy per grid]} and ``"grids"``: the grids, native first."""
    p, g0 = model.config.patch_size, model.config.grid
    grids = [g0, *[g for g in grids if g != g0]]
    out = {"grids": grids}
    for how in hows:
        accs = []
        for g in grids:
            xs = x if g == g0 else upscale(x, g * p)
            accs.append(accuracy(with_positions(model, g, how), xs, y))
        out[how] = accs
    return out


# --- inductive bias: CNN vs ViT as the data grows ----------------------------------------

def data_hunger(data, settings: Settings, *, seed: int = 0, device="cpu", progress: bool = False) -> dict:
    """Train the CNN and the ViT on the first n training digits for each n of ``settings.sizes`` and
    on all of them; the smaller sets get at least ``settings.min_steps`` updates.
    Returns {"n": [...], "cnn": [test accuracy], "vit": [...], "cnn_fit": [training accuracy], "vit_fit": [...],
    "steps": [updates per run]}."""
    sizes = [*settings.sizes, len(data.x_train)]
    out = {"n": sizes, "cnn": [], "vit": [], "cnn_fit": [], "vit_fit": [], "steps": []}
    for n in sizes:
        steps = settings.min_steps if n < len(data.x_train) else 0
        for kind, trainer in (("cnn", train_cnn), ("vit", train_vit)):
            model, meta = trainer(data, settings, n=n, min_steps=steps, seed=seed, device=device, progress=progress)
            out[kind].append(accuracy(model, data.x_test, data.y_test))
            out[f"{kind}_fit"].append(meta["metrics"]["fit_acc"])
        out["steps"].append(meta["metrics"]["steps"])
    return out


# --- the reference implementation -------------------------------------------------------

def torchvision_equivalence(config: ViTConfig, x: torch.Tensor, seed: int = 0) -> dict:
    """Build torchvision's ``VisionTransformer`` with ``config``'s sizes (random weights; its zero-
    initialised head is randomised so the logits are not all 0), load its state dict into our
    :class:`ViT` with ``strict=True`` and compare the logits on ``x`` (N, 3, H, W).
    Returns ``max_abs_diff``, ``logit_scale`` (largest |logit|) and ``parameters`` (of each model)."""
    import torchvision

    c = config
    torch.manual_seed(seed)
    ref = torchvision.models.VisionTransformer(image_size=c.image_size, patch_size=c.patch_size,
                                               num_layers=c.depth, num_heads=c.heads, hidden_dim=c.dim,
                                               mlp_dim=c.mlp_dim, num_classes=c.num_classes).eval()
    with torch.no_grad():
        ref.heads.head.weight.normal_(std=0.1)
        ref.heads.head.bias.normal_(std=0.1)
    ours = ViT(replace(c, in_channels=3, mean=None, std=None)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    return {"max_abs_diff": (got - expected).abs().max().item(), "logit_scale": expected.abs().max().item(),
            "parameters": (count_parameters(ref), count_parameters(ours))}


# --- adversarial examples -----------------------------------------------------------------

def robustness_table(models: dict, x: torch.Tensor, y: torch.Tensor, eps_values, *, steps: int = 10,
                     generator: torch.Generator | None = None) -> dict:
    """Accuracy of each model under white-box L∞ PGD (``steps`` steps of 2.5ε/steps, one random start)
    at each ε of ``eps_values``. ``models``: name -> model. Returns {name: [accuracy per ε]}, ε = 0 first
    (clean accuracy), fractions in [0, 1]."""
    return {name: [accuracy(m, x, y)] + [robust_accuracy(m, x, y, pgd, eps=e, steps=steps, early_stop=True,
                                                         generator=generator) for e in eps_values]
            for name, m in models.items()}


def transfer_table(models: dict, x: torch.Tensor, y: torch.Tensor, eps: float = EPS, *, steps: int = 10,
                   generator: torch.Generator | None = None) -> dict:
    """PGD examples crafted on each model (source) and shown to each model (target), on the same
    images and budget. Returns {(source, target): target's accuracy}; source = target is white-box.
    PGD runs without early stopping, so the examples are pushed as far as the budget allows."""
    out = {}
    for src_name, src in models.items():
        x_adv = pgd(src, x, y, eps=eps, steps=steps, generator=generator)
        for dst_name, dst in models.items():
            out[(src_name, dst_name)] = accuracy(dst, x_adv, y)
    return out


def transfer_rates(models: dict, x: torch.Tensor, y: torch.Tensor, eps: float = EPS, *, steps: int = 10,
                   generator: torch.Generator | None = None) -> dict:
    """For each ordered pair (source, target) of distinct models: of the PGD examples crafted on the
    source that fool it, the fraction that also fool the target (:func:`advcourse.attacks.transfer`)."""
    out = {}
    for src_name, src in models.items():
        for dst_name, dst in models.items():
            if src_name != dst_name:
                res = transfer(src, dst, x, y, pgd, eps=eps, steps=steps, generator=generator)
                out[(src_name, dst_name)] = res.transfer_rate
    return out


# --- figures ------------------------------------------------------------------------------

def plot_position_similarity(sim: torch.Tensor, ax=None):
    """The paper's Figure 7 (centre): one tile per patch (i, j) showing its position embedding's
    cosine similarity with every other patch's, tiles laid out like the patches. ``sim`` (g, g, g, g)."""
    import matplotlib.pyplot as plt

    g = sim.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4))
    canvas = torch.full((g * (g + 1) - 1, g * (g + 1) - 1), float("nan"))
    for i in range(g):
        for j in range(g):
            canvas[i * (g + 1):i * (g + 1) + g, j * (g + 1):j * (g + 1) + g] = sim[i, j]
    im = ax.imshow(canvas.numpy(), cmap="viridis", vmin=-1, vmax=1)
    ax.set_xticks([j * (g + 1) + (g - 1) / 2 for j in range(g)], [str(j + 1) for j in range(g)], fontsize=8)
    ax.set_yticks([i * (g + 1) + (g - 1) / 2 for i in range(g)], [str(i + 1) for i in range(g)], fontsize=8)
    ax.set_xlabel("input patch column", fontsize=9)
    ax.set_ylabel("input patch row", fontsize=9)
    for s in ax.spines.values():
        s.set_visible(False)
    cbar = plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("cosine similarity", fontsize=8)
    cbar.ax.tick_params(labelsize=8)
    return ax


def plot_attention_distance(dist: torch.Tensor, uniform: float, ax=None, label: str | None = None, color="C0"):
    """The paper's Figure 7 (right): one dot per head at each layer, the mean attention distance in
    pixels; a dashed line at the distance of uniform attention. ``dist`` (depth, heads)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3))
    depth, heads = dist.shape
    layers = torch.arange(1, depth + 1).repeat_interleave(heads).float()
    jitter = (torch.arange(heads).float() - (heads - 1) / 2).repeat(depth) * 0.06
    ax.scatter((layers + jitter).numpy(), dist.flatten().numpy(), s=18, color=color, label=label)
    ax.axhline(uniform, ls="--", color="0.5", lw=1)
    ax.set_xticks(range(1, depth + 1))
    ax.set_xlabel("layer (block)", fontsize=9)
    ax.set_ylabel("mean attention distance (pixels)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_rollout(x: torch.Tensor, maps: torch.Tensor, titles=None, ncols: int = 6):
    """Test digits (top row) and the class token's rollout map over them (bottom row), as in the
    paper's Figure 6. ``x`` (N, 1, H, W), ``maps`` (N, g, g)."""
    import matplotlib.pyplot as plt

    n = min(len(x), ncols)
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.4), squeeze=False)
    for k in range(n):
        axes[0][k].imshow(x[k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        heat = F.interpolate(maps[k][None, None], size=x.shape[-2:], mode="nearest")[0, 0]
        axes[1][k].imshow(x[k, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[1][k].imshow(heat.numpy(), cmap="inferno", alpha=0.6)
        if titles is not None:
            axes[0][k].set_title(titles[k], fontsize=8)
        for ax in axes[:, k]:
            ax.axis("off")
    fig.tight_layout()
    return fig
