"""Chapter 11 — masked autoencoders (He et al. 2022, "Masked autoencoders are scalable vision learners").

The chapter's experiments as small functions:

* one small MAE pre-trained on the training images without their labels (:func:`train_mae`), and a few
  briefly trained ones for the masking-ratio sweep (:func:`ratio_sweep`);
* the asymmetric design, counted and timed: multiply-adds and seconds of the encoder and the decoder at
  several masking ratios (:func:`compute_costs`), and the encoder checked against torchvision's
  ``VisionTransformer`` on the same visible tokens (:func:`torchvision_encoder_check`);
* how redundant images are: the error on masked patches of the MAE, of a harmonic interpolation from the
  visible pixels (:func:`harmonic_fill`) and of a constant grey, at several ratios (:func:`masked_errors`);
* what the encoder learned, with few labels: a linear probe on frozen features (:func:`probe_accuracy`)
  and fine-tuning against training from scratch (:func:`fine_tune`);
* adversarial examples: PGD against the fine-tuned and the scratch classifiers
  (:func:`robustness_table`), and masking plus reconstruction as an input "purifier", attacked without and
  with knowledge of it (:func:`purification_table`).

Images are (N, C, H, W) in [0, 1] — MNIST (N, 1, 28, 28) in the fast profile; every classifier returns
logits. The MAE's targets are raw pixels in [0, 1] (no input normalisation), unless ``norm_pix``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..attacks import pgd, robust_accuracy
from ..cache import load_or_train
from ..defenses import EOT, Preprocessed
from ..evaluate import accuracy, eval_mode
from ..models.mae import MAE, MAEConfig
from ..models.vit import ViT, patchify, unpatchify
from ..runtime import device_of
from ..train import Shuffled, fit


@dataclass(frozen=True)
class Settings:
    """Chapter 11's settings, shared by the chapter and its claim tests.

    The MAE: ``patch``×``patch`` patches; encoder width ``dim``, ``depth`` blocks of ``heads`` heads, MLP
    ``mlp_dim``; decoder ``decoder_dim``, ``decoder_depth``, ``decoder_heads``, ``decoder_mlp_dim``;
    pre-trained at ``mask_ratio`` for ``epochs`` epochs of ``batch_size`` with AdamW (``lr``,
    ``weight_decay``, linear warm-up over ``warmup`` of the steps, then cosine decay), on all training
    images, labels unused. Few labels: the first ``n_labels`` training images; features pooled by
    ``pool`` for the probe; fine-tuning (and the scratch baseline) ``ft_steps`` updates of ``ft_batch``
    at ``ft_lr``. Sweep: one MAE per ratio of ``sweep_ratios``, each ``sweep_epochs`` epochs on the first
    ``sweep_n`` images, probed as above (none in the fast profile: brief runs on a CPU measure noise).
    Test-time ratios of the reconstructions and the error curves: ``test_ratios``, on ``n_eval`` test
    images, harmonic interpolation with ``interp_iters`` sweeps.
    Attacks: ``n_attack`` test images, L∞ PGD with ``pgd_steps`` steps at each of ``eps_values``; the
    purifier is tested on the first ``n_purify`` of them with ``purify_steps`` steps, its adaptive attack
    averaging ``eot_samples`` random masks per step.
    ``dataset``: ``"mnist"`` or ``"cifar10"``.
    """

    dataset: str = "mnist"
    patch: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 128
    decoder_dim: int = 64
    decoder_depth: int = 1
    decoder_heads: int = 4
    decoder_mlp_dim: int = 128
    mask_ratio: float = 0.75
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.1
    n_labels: int = 500
    pool: str = "mean"
    ft_steps: int = 200
    ft_batch: int = 50
    ft_lr: float = 1e-3
    sweep_ratios: tuple = ()
    sweep_n: int = 8000
    sweep_epochs: int = 2
    test_ratios: tuple = (0.15, 0.25, 0.5, 0.75, 0.9)
    n_eval: int = 500
    interp_iters: int = 200
    n_attack: int = 150
    pgd_steps: int = 10
    eps_values: tuple = (0.02, 0.05, 0.1)
    n_purify: int = 100
    purify_steps: int = 20
    eot_samples: int = 4

    def mae_config(self, shape, ratio: float | None = None, norm_pix: bool = False) -> MAEConfig:
        """The chapter's MAE for images of ``shape`` (C, H, W), masking ``ratio`` (default ``mask_ratio``)."""
        C, H, W = shape
        if H != W:
            raise ValueError(f"images must be square, got {H}×{W}")
        return MAEConfig(image_size=H, patch_size=self.patch, in_channels=C, dim=self.dim, depth=self.depth,
                         heads=self.heads, mlp_dim=self.mlp_dim, decoder_dim=self.decoder_dim,
                         decoder_depth=self.decoder_depth, decoder_heads=self.decoder_heads,
                         decoder_mlp_dim=self.decoder_mlp_dim,
                         mask_ratio=self.mask_ratio if ratio is None else ratio, norm_pix_loss=norm_pix)

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        # CIFAR-10 and the encoder's and decoder's depths and heads, at widths a CPU trains in seconds
        # (width 384 takes minutes per epoch here).
        return replace(self, dim=48, mlp_dim=192, decoder_dim=24, decoder_mlp_dim=96, epochs=1, batch_size=64,
                       n_labels=128, ft_steps=3, ft_batch=32, sweep_ratios=(0.25, 0.75), sweep_n=256,
                       sweep_epochs=1, n_eval=32, interp_iters=10, n_attack=16, pgd_steps=2, n_purify=8,
                       purify_steps=2, eot_samples=2)


#: The CPU profile: the embedded MNIST (8,000 training and 2,000 test digits), a 4-block encoder of width 64.
FAST = Settings()
#: The GPU profile: all of CIFAR-10 (32×32 RGB, 64 patches of 4×4×3 = 48 numbers), a ViT-S-sized encoder
#: (width 384, 12 blocks — the paper's encoders are ViT-B/L/H) and a 4-block decoder, pre-trained for
#: 100 epochs (the paper: 800–1600 epochs of ImageNet).
FULL = Settings(dataset="cifar10", dim=384, depth=12, heads=6, mlp_dim=1536, decoder_dim=192, decoder_depth=4,
                decoder_heads=6, decoder_mlp_dim=768, epochs=100, batch_size=256, n_labels=5000, ft_steps=3000,
                ft_batch=128, ft_lr=5e-4, sweep_ratios=(0.15, 0.25, 0.5, 0.75, 0.9), sweep_n=50_000,
                sweep_epochs=20,
                n_eval=5000, n_attack=1000, pgd_steps=20, eps_values=(1 / 255, 2 / 255, 4 / 255), n_purify=500,
                purify_steps=40, eot_samples=8)


def load_data(settings: Settings, full: bool = False):
    """The chapter's data set: :func:`advcourse.data.mnist` or :func:`~advcourse.data.cifar10` (all if ``full``)."""
    from .. import data

    if settings.dataset not in ("mnist", "cifar10"):
        raise ValueError(f"dataset must be 'mnist' or 'cifar10', got {settings.dataset!r}")
    return getattr(data, settings.dataset)(full=full)


# --- pre-training -----------------------------------------------------------------------

def warmup_cosine(total_steps: int, warmup: float = 0.1):
    """``schedule(optimizer)`` for :func:`advcourse.train.fit`: a linear warm-up over the first ``warmup``
    fraction of ``total_steps``, then a half cosine to 0 (the paper's schedule, Appendix A.1)."""
    warm = max(int(warmup * total_steps), 1)

    def factor(t: int) -> float:
        return min((t + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps)))

    return lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_mae(data, settings: Settings, *, ratio: float | None = None, epochs: int | None = None,
              n: int | None = None, norm_pix: bool = False, seed: int = 0, device="cpu", progress: bool = True):
    """Pre-train (or load from the cache) an MAE on all training images of ``data``, labels unused.

    ``ratio`` and ``epochs`` override the settings' masking ratio and epochs, ``n`` trains on the first n
    images only (the sweep), ``norm_pix`` uses
    per-patch normalised targets. Returns ``(model, meta)``; ``meta["metrics"]`` holds ``loss`` per epoch
    (the masked-patch MSE, averaged over the epoch's batches), ``steps`` and ``seconds``.
    """
    shape = tuple(data.x_train.shape[1:])
    cfg = settings.mae_config(shape, ratio, norm_pix)
    n = len(data.x_train) if n is None else min(int(n), len(data.x_train))
    config = {"kind": "mae", "data": data.source, "dataset": settings.dataset, "n": n, "seed": seed,
              "epochs": settings.epochs if epochs is None else epochs, "batch_size": settings.batch_size,
              "lr": settings.lr, "weight_decay": settings.weight_decay, "warmup": settings.warmup,
              "model": {k: v for k, v in vars(cfg).items()}}

    def build(c):
        torch.manual_seed(c["seed"])
        return MAE(MAEConfig(**c["model"]))

    def step(model, batch):
        (xb,) = batch
        return model(xb)[0]  # the masked-patch MSE; a fresh random mask per image and step

    def fit_mae(model, c):
        batches = Shuffled(data.x_train[: c["n"]], batch_size=c["batch_size"], seed=c["seed"])
        history = fit(model, batches, step, epochs=c["epochs"], optimizer="adamw", lr=c["lr"],
                      weight_decay=c["weight_decay"], schedule=warmup_cosine(c["epochs"] * len(batches), c["warmup"]),
                      progress=progress, desc=f"MAE {cfg.mask_ratio:.0%}")
        return {"loss": history["loss"], "steps": c["epochs"] * len(batches), "seconds": history["seconds"]}

    tag = f"r{round(100 * cfg.mask_ratio)}-n{n}-e{config['epochs']}" + ("-normpix" if norm_pix else "")
    return load_or_train(f"ch11-mae-{settings.dataset}-{tag}", config, build, fit_mae, device=device)


# --- the asymmetric design: compute -------------------------------------------------------

def count_macs(fn, *args) -> int:
    """Multiply-adds of the matrix products and convolutions in ``fn(*args)`` (FLOPs / 2, forward only)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() // 2


def _best_time(fn, *args, repeats: int = 3) -> float:
    """The fastest of ``repeats`` calls of ``fn(*args)`` in seconds (the least disturbed by other work)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def compute_costs(model: MAE, x: torch.Tensor, ratios, repeats: int = 3, seed: int = 0) -> dict:
    """What the encoder and the decoder cost at each masking ratio, for a batch ``x`` (N, C, H, W).

    Returns lists, one entry per ratio: ``tokens`` (tokens the encoder sees, class token included),
    ``enc_macs`` / ``dec_macs`` (forward multiply-adds per image, counted by PyTorch's FLOP counter),
    ``enc_seconds`` (best time of a forward and backward pass of the encoder alone on the batch) and
    ``step_seconds`` (the same for the whole MAE with its loss: one training step without the update).
    Ratio 0 is an encoder that sees every patch — what an encoder fed mask tokens would cost.
    """
    def g():  # the same mask at every call
        return torch.Generator(device=x.device).manual_seed(seed)

    def encoder_pass(r):
        model.zero_grad(set_to_none=True)
        model.forward_encoder(x, r, g())[0].square().mean().backward()

    def training_pass(r):
        model.zero_grad(set_to_none=True)
        model(x, r, g())[0].backward()

    out = {k: [] for k in ("ratio", "tokens", "enc_macs", "dec_macs", "enc_seconds", "step_seconds")}
    with eval_mode(model):
        for r in ratios:
            latent, _, ids = model.forward_encoder(x, r, g())
            out["ratio"].append(r)
            out["tokens"].append(latent.shape[1])
            out["enc_macs"].append(count_macs(model.forward_encoder, x, r, g()) // len(x))
            out["dec_macs"].append(count_macs(model.forward_decoder, latent, ids) // len(x))
            out["enc_seconds"].append(_best_time(encoder_pass, r, repeats=repeats))
            out["step_seconds"].append(_best_time(training_pass, r, repeats=repeats))
        model.zero_grad(set_to_none=True)
    return out


def torchvision_encoder_check(config: MAEConfig, x: torch.Tensor, ratio: float = 0.75, seed: int = 0) -> dict:
    """Is the MAE encoder a ViT run on the visible patches? Load its weights into torchvision's
    ``VisionTransformer`` (RGB only), embed all patches and add positions with torchvision's modules, keep
    the same patches as the MAE's mask, prepend the class token and run torchvision's blocks and final norm.

    ``x`` (N, 3, H, W). Returns ``max_abs_diff`` (against :meth:`MAE.forward_encoder`), ``scale`` (the
    largest |value| of the latent), ``visible`` (tokens seen, class token included) and ``patches`` (L).
    """
    import torchvision

    if config.in_channels != 3:
        raise ValueError("torchvision's VisionTransformer takes RGB images: use in_channels=3")
    torch.manual_seed(seed)
    mae = MAE(config).eval()
    c = config
    ref = torchvision.models.VisionTransformer(image_size=c.image_size, patch_size=c.patch_size, num_layers=c.depth,
                                               num_heads=c.heads, hidden_dim=c.dim, mlp_dim=c.mlp_dim).eval()
    missing, unexpected = ref.load_state_dict(mae.encoder.state_dict(), strict=False)
    if unexpected or any(not k.startswith("heads.") for k in missing):
        raise RuntimeError(f"state dicts differ: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        latent, mask, ids_restore = mae.forward_encoder(x, ratio, torch.Generator().manual_seed(seed))
        pos = ref.encoder.pos_embedding  # (1, 1+L, d)
        tokens = ref._process_input(x) + pos[:, 1:]  # (N, L, d): torchvision's patch embedding
        keep = ids_restore.argsort(1)[:, : latent.shape[1] - 1]  # (N, K): the MAE's kept patches, its order
        kept = tokens.gather(1, keep[:, :, None].expand(-1, -1, c.dim))
        cls = (ref.class_token + pos[:, :1]).expand(len(x), -1, -1)
        expected = ref.encoder.ln(ref.encoder.layers(torch.cat([cls, kept], 1)))
    return {"max_abs_diff": (latent - expected).abs().max().item(), "scale": expected.abs().max().item(),
            "visible": latent.shape[1], "patches": c.num_patches, "masked": int(mask[0].sum())}


# --- how redundant are images? -------------------------------------------------------------

def pixel_mask(mask: torch.Tensor, patch: int, channels: int) -> torch.Tensor:
    """A patch mask (N, L), 1 = masked, as an image mask (N, C, H, W) of 0s and 1s."""
    return unpatchify(mask[:, :, None].expand(-1, -1, patch * patch * channels).float(), patch)


def harmonic_fill(x: torch.Tensor, hidden: torch.Tensor, iters: int = 300) -> torch.Tensor:
    """Fill the hidden pixels of ``x`` (N, C, H, W) from the visible ones by harmonic interpolation.

    ``hidden`` (N, C, H, W), 1 = unknown. The unknown pixels start at the mean of the image's visible
    pixels; each of ``iters`` Jacobi sweeps replaces them by the mean of their four neighbours (the image
    edge replicated), the visible pixels staying fixed. This converges to the smoothest filling — the
    solution of Laplace's equation with the visible pixels as boundary values — and uses no learning at all.
    """
    hidden = hidden.to(x.dtype)
    seen = 1 - hidden
    start = (x * seen).sum((2, 3), keepdim=True) / seen.sum((2, 3), keepdim=True).clamp_min(1)  # (N, C, 1, 1)
    out = x * seen + start * hidden
    for _ in range(iters):
        pad = F.pad(out, (1, 1, 1, 1), mode="replicate")  # (N, C, H + 2, W + 2)
        avg = 0.25 * (pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1] + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:])
        out = x * seen + avg * hidden
    return out


def masked_errors(model: MAE, x: torch.Tensor, ratios, *, fill: float, iters: int = 300, seed: int = 0) -> dict:
    """Mean squared error per pixel on the masked patches, at each ratio, of three ways to fill them:
    the MAE's reconstruction (``"MAE"``), :func:`harmonic_fill` from the visible pixels
    (``"interpolation"``) and the constant ``fill`` (e.g. the training set's mean pixel, ``"constant"``).

    All three see the same random masks. ``x`` (N, C, H, W) in [0, 1]. Returns {"ratio": [...], name:
    [MSE per ratio]}; pixel values in [0, 1], so MSEs in [0, 1].
    """
    p, C = model.config.patch_size, model.config.in_channels
    out = {"ratio": list(ratios), "MAE": [], "interpolation": [], "constant": []}
    for r in ratios:
        rec = model.reconstruct(x, r, torch.Generator(device=x.device).manual_seed(seed))
        hidden = pixel_mask(rec.mask, p, C)
        n = hidden.sum().clamp_min(1)
        out["MAE"].append((((rec.reconstruction - x) ** 2) * hidden).sum().item() / n.item())
        out["interpolation"].append((((harmonic_fill(x, hidden, iters) - x) ** 2) * hidden).sum().item() / n.item())
        out["constant"].append((((fill - x) ** 2) * hidden).sum().item() / n.item())
    return out


# --- few labels: linear probe and fine-tuning -------------------------------------------------

@torch.no_grad()
def encoder_features(model: MAE, x: torch.Tensor, pool: str = "mean", batch_size: int = 500) -> torch.Tensor:
    """Features (N, d) of the MAE's encoder on whole, unmasked images ``x`` (N, C, H, W), batched."""
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([model.encoder_features(xb.to(device), pool).cpu() for xb in x.split(batch_size)])


def linear_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                 l2: float = 1e-3, iters: int = 100) -> float:
    """Test accuracy of a multinomial logistic regression on frozen features (N, d).

    The features are standardised with the training set's mean and std (the paper puts a BatchNorm
    without affine parameters before its linear classifier, which does the same), and the
    regression is fitted by L-BFGS with an L2 penalty ``l2`` on the weights.
    """
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-6)
    a, b = (f_train - mean) / std, (f_test - mean) / std
    k = int(y_train.max()) + 1
    linear = nn.Linear(a.shape[1], k)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(a), y_train) + l2 * linear.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (linear(b).argmax(1) == y_test).float().mean().item()


def probe_accuracy(model: MAE, data, n: int, pool: str = "mean") -> float:
    """:func:`linear_probe` on the MAE encoder's features of the first ``n`` training images, tested on all
    test images."""
    f_train = encoder_features(model, data.x_train[:n], pool)
    f_test = encoder_features(model, data.x_test, pool)
    return linear_probe(f_train, data.y_train[:n], f_test, data.y_test)


def random_mae(data, settings: Settings, seed: int = 0) -> MAE:
    """The chapter's MAE untrained, initialised exactly as :func:`train_mae` initialises it: the baseline of
    the probe."""
    torch.manual_seed(seed)
    return MAE(settings.mae_config(tuple(data.x_train.shape[1:]))).eval()


def fine_tune(data, settings: Settings, *, pretrained: bool, seed: int = 0, device="cpu", progress: bool = True):
    """Train (or load) a ViT classifier on the first ``settings.n_labels`` labelled training images.

    ``pretrained``: start from the encoder of :func:`train_mae` (the decoder is dropped) — fine-tuning;
    otherwise from the same architecture's random initialisation — training from scratch. Both use the
    same recipe: ``ft_steps`` AdamW updates of ``ft_batch`` images at ``ft_lr`` (warm-up then cosine),
    classifying from the mean of the patch tokens with a fresh zero head. Returns ``(model, meta)``;
    ``meta["metrics"]`` holds ``loss`` per epoch, ``fit_acc`` (accuracy on the labelled images) and ``seconds``.
    """
    shape = tuple(data.x_train.shape[1:])
    cfg = settings.mae_config(shape)
    n = settings.n_labels
    config = {"kind": "vit-finetune" if pretrained else "vit-scratch", "data": data.source,
              "dataset": settings.dataset, "n": n, "seed": seed, "steps": settings.ft_steps,
              "batch_size": settings.ft_batch, "lr": settings.ft_lr, "weight_decay": settings.weight_decay,
              "warmup": settings.warmup, "pool": settings.pool, "encoder": vars(cfg.encoder_config(10)),
              "pretraining": ({"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                               "model": vars(cfg)} if pretrained else None)}

    def build(c):
        torch.manual_seed(c["seed"])
        return ViT(cfg.encoder_config(num_classes=10, pool=c["pool"]))

    def step(model, batch):
        xb, yb = batch
        out = model(xb)
        return F.cross_entropy(out, yb), {"train_acc": (out.argmax(1) == yb).sum().item()}

    def fit_classifier(model, c):
        if c["pretraining"] is not None:
            mae = train_mae(data, settings, seed=c["seed"], device=device_of(model), progress=progress)[0]
            model.load_state_dict(mae.to_classifier(10, pool=c["pool"]).state_dict())
        x, y = data.x_train[: c["n"]], data.y_train[: c["n"]]
        batches = Shuffled(x, y, batch_size=c["batch_size"], seed=c["seed"])
        epochs = math.ceil(c["steps"] / len(batches))
        history = fit(model, batches, step, epochs=epochs, optimizer="adamw", lr=c["lr"],
                      weight_decay=c["weight_decay"], schedule=warmup_cosine(epochs * len(batches), c["warmup"]),
                      progress=progress, desc="fine-tune" if c["pretraining"] else "from scratch")
        return {"loss": history["loss"], "train_acc": history["train_acc"], "steps": epochs * len(batches),
                "seconds": history["seconds"], "fit_acc": accuracy(model, x, y)}

    name = f"ch11-{'finetune' if pretrained else 'scratch'}-{settings.dataset}-n{n}"
    return load_or_train(name, config, build, fit_classifier, device=device)


def ratio_sweep(data, settings: Settings, *, seed: int = 0, device="cpu", progress: bool = False) -> dict:
    """One MAE per ratio of ``settings.sweep_ratios``, each pre-trained for ``settings.sweep_epochs`` epochs on
    the first ``settings.sweep_n`` training images (the same updates for all), then linear-probed with
    ``settings.n_labels`` labels.

    Returns {"ratio": [...], "probe": [test accuracy], "loss": [last epoch's masked-patch MSE],
    "seconds": [pre-training time]}.
    """
    out = {"ratio": list(settings.sweep_ratios), "probe": [], "loss": [], "seconds": []}
    for r in settings.sweep_ratios:
        model, meta = train_mae(data, settings, ratio=r, epochs=settings.sweep_epochs, n=settings.sweep_n,
                                seed=seed, device=device, progress=progress)
        out["probe"].append(probe_accuracy(model, data, settings.n_labels, settings.pool))
        out["loss"].append(meta["metrics"]["loss"][-1])
        out["seconds"].append(meta["metrics"]["seconds"])
    return out


# --- adversarial examples ------------------------------------------------------------------------

def robustness_table(models: dict, x: torch.Tensor, y: torch.Tensor, eps_values, *, steps: int = 10,
                     generator: torch.Generator | None = None) -> dict:
    """Accuracy of each model (name -> classifier) clean and under white-box L∞ PGD (``steps`` steps, one
    random start) at each ε. Returns {name: [clean, accuracy per ε]}, fractions in [0, 1]."""
    return {name: [accuracy(m, x, y)] + [robust_accuracy(m, x, y, pgd, eps=e, steps=steps, early_stop=True,
                                                         generator=generator) for e in eps_values]
            for name, m in models.items()}


class MaskAndReconstruct(nn.Module):
    """An input "purifier": mask a fresh random ``ratio`` of the patches of each image, let the MAE
    reconstruct them, and paste its reconstruction into the masked patches. (N, C, H, W) → (N, C, H, W) in
    [0, 1]; differentiable (so an attacker can go through it) and random at every call."""

    def __init__(self, mae: MAE, ratio: float):
        super().__init__()
        self.mae, self.ratio = mae, float(ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, pred, mask = self.mae(x, self.ratio)  # pred (N, L, p²C) in pixel space, mask (N, L)
        p, C = self.mae.config.patch_size, self.mae.config.in_channels
        hidden = pixel_mask(mask, p, C)
        return x * (1 - hidden) + unpatchify(pred, p).clamp(0, 1) * hidden


def purification_table(classifier: nn.Module, mae: MAE, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                       ratio: float = 0.75, steps: int = 10, eot_samples: int = 4, seed: int = 0) -> dict:
    """Does masking + reconstruction undo adversarial perturbations? All accuracies on ``x`` (N, C, H, W), ``y``.

    * ``clean``: the classifier on x; ``clean, purified``: on :class:`MaskAndReconstruct` (x);
    * ``PGD``: on PGD examples crafted against the classifier alone (ε, ``steps`` steps);
    * ``PGD, purified``: the same examples, purified first — an attacker who ignores the purifier;
    * ``adaptive PGD, purified``: PGD against the purifier and classifier together, each step's gradient
      averaged over ``eot_samples`` random masks (EOT, Chapter 6) — an attacker who knows the defence.

    The purified accuracies use one random mask per image. Returns {name: accuracy}.
    """
    if getattr(mae.config, "norm_pix_loss", False):
        raise ValueError("the purifier needs an MAE that predicts pixels (norm_pix_loss=False)")
    torch.manual_seed(seed)  # the purifier's masks come from the global generator
    g = torch.Generator(device=x.device).manual_seed(seed)
    defended = Preprocessed(MaskAndReconstruct(mae, ratio), classifier).eval()
    x_adv = pgd(classifier, x, y, eps=eps, steps=steps, generator=g)
    x_ada = pgd(EOT(defended, eot_samples), x, y, eps=eps, steps=steps, generator=g)
    with torch.no_grad():
        return {"clean": accuracy(classifier, x, y), "clean, purified": accuracy(defended, x, y),
                "PGD": accuracy(classifier, x_adv, y), "PGD, purified": accuracy(defended, x_adv, y),
                "adaptive PGD, purified": accuracy(defended, x_ada, y)}


# --- figures -------------------------------------------------------------------------------------

def plot_reconstructions(model: MAE, x: torch.Tensor, ratios, seed: int = 0):
    """The paper's Figures 2–4 for a few images: for each ratio a row of (masked input, reconstruction with
    the visible patches pasted back) pairs, and a first row with the originals. ``x`` (n, C, H, W), n ≤ 4."""
    import matplotlib.pyplot as plt

    n = len(x)
    fig, axes = plt.subplots(1 + len(ratios), 2 * n, figsize=(min(6.8, 1.1 * 2 * n), 1.0 * (1 + len(ratios)) + 0.2),
                             squeeze=False)

    def show(ax, img, title=None):
        img = img.permute(1, 2, 0).squeeze(-1).cpu().numpy()
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=8)

    for k in range(n):
        show(axes[0][2 * k], x[k], "original")
        axes[0][2 * k + 1].axis("off")
    for row, r in enumerate(ratios, start=1):
        rec = model.reconstruct(x, r, torch.Generator(device=x.device).manual_seed(seed + row))
        for k in range(n):
            show(axes[row][2 * k], rec.masked[k], "masked" if row == 1 else None)
            show(axes[row][2 * k + 1], rec.pasted[k], "MAE" if row == 1 else None)
        axes[row][0].set_ylabel(f"{r:.0%}", fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


__all__ = ["FAST", "FULL", "MaskAndReconstruct", "Settings", "compute_costs", "count_macs", "encoder_features",
           "fine_tune", "harmonic_fill", "linear_probe", "load_data", "masked_errors", "patchify", "pixel_mask",
           "plot_reconstructions", "probe_accuracy", "purification_table", "random_mae", "ratio_sweep",
           "robustness_table", "torchvision_encoder_check", "train_mae", "warmup_cosine"]
