"""Chapter 7 — ResNet (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

The chapter's experiments as small functions:

* plain and residual CIFAR-style networks (:func:`advcourse.models.resnet.cifar_resnet`) of a shallow and
  a deep depth, trained by SGD with a one-cycle schedule and cached (:func:`train_net`); the training
  and test error are recorded several times per epoch, and so is the gradient norm of every 3×3
  convolution (:func:`layer_gradient_norms`), to tell degradation from vanishing gradients;
* the paper's constructive argument made concrete: a deep network that computes exactly what a trained
  shallow one computes, its extra blocks set to the identity (:func:`deepen`, :func:`make_identity_`);
* the layer responses of the paper's Fig. 7 (:func:`layer_responses`) next to the size of each residual
  branch (:func:`advcourse.models.resnet.branch_norms`);
* the cost of blocks and networks (:func:`block_costs`, :func:`multiply_adds`), the logits of our
  ResNet-18 against torchvision's (:func:`torchvision_difference`);
* robustness under PGD (:func:`robustness_curves`) and PGD adversarial training at growing width
  (:func:`train_adversarial`, Madry et al.'s capacity argument).

Images are (N, C, H, W) in [0, 1] — 1×28×28 Fashion-MNIST in the fast profile, 3×32×32 CIFAR-10 in the
full one; every model returns logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR

from .. import data as datasets
from ..attacks import pgd, robust_accuracy
from ..cache import load_or_train
from ..evaluate import accuracy, eval_mode, logits
from ..models.resnet import ResNet, branch_norms, cifar_resnet, count_parameters
from ..train import Shuffled, fit

__all__ = ["Settings", "FAST", "FULL", "load_data", "train_net", "train_adversarial", "Segments",
           "random_crop_flip", "conv_layers", "layer_gradient_norms", "layer_responses", "branch_norms",
           "make_identity_", "deepen", "block_costs", "multiply_adds", "torchvision_difference",
           "robustness_curves", "capacity_study", "mean_loss", "test_subset"]


@dataclass(frozen=True)
class Settings:
    """Chapter 7's settings, shared by the chapter and its claim tests.

    Data: ``data`` ("fashion_mnist" or "cifar10"; the full profile downloads the whole set).
    Networks: CIFAR-style ResNets (3×3 stem, three stages of ``widths``) of ``depths`` (shallow, deep;
    6n + 2 layers), plain or residual, shortcut option A unless said otherwise; ``shortcuts``: the
    options compared at the deep depth. Training: ``epochs`` of SGD (momentum 0.9, ``weight_decay``)
    with a one-cycle schedule peaking at ``lr``, mini-batches of ``batch_size``, random crops and flips
    if ``augment``; the curves are measured ``evals_per_epoch`` times per epoch on ``n_curve`` test
    images, the gradient norms and layer responses on ``n_probe`` training images.
    Robustness: PGD-``attack_steps`` at each of ``attack_eps`` on ``n_attack`` test images.
    Capacity: PGD adversarial training (``adv_steps`` steps, budget ``adv_eps``, ``adv_epochs``) of
    ResNet-``adv_depth`` at ``adv_scales`` × ``widths``; empty ``adv_scales`` skips it.
    """

    data: str = "fashion_mnist"
    widths: tuple = (8, 16, 32)
    depths: tuple = (8, 32)
    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 1e-4
    augment: bool = False
    evals_per_epoch: int = 2
    n_curve: int = 1000
    n_probe: int = 128
    shortcuts: tuple = ("A", "B", "C")
    attack_eps: tuple = (0.01, 0.02, 0.04)
    attack_steps: int = 10
    n_attack: int = 300
    adv_scales: tuple = ()
    adv_depth: int = 8
    adv_eps: float = 0.05
    adv_steps: int = 3
    adv_epochs: int = 3

    def recipe(self) -> dict:
        """The training settings every standard-trained model of the chapter shares, as
        :func:`train_net` keywords."""
        return {"widths": self.widths, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "augment": self.augment,
                "evals_per_epoch": self.evals_per_epoch, "n_curve": self.n_curve, "n_probe": self.n_probe}

    def smoke(self) -> Settings:
        """The smoke profile's settings (CI): these settings with the work capped to seconds on a CPU."""
        return replace(self, epochs=1, n_curve=100, n_probe=32, attack_steps=2, n_attack=50, adv_scales=(1, 2),
                       adv_steps=1, adv_epochs=1)


#: The CPU profile: the embedded Fashion-MNIST (12,000 / 2,000 images), ResNet-8 and -32 at a
#: quarter of the paper's CIFAR widths, 3 epochs.
FAST = Settings()
#: The GPU profile: all of CIFAR-10, the paper's CIFAR nets (widths 16-32-64, 20 and 56 layers, random
#: crops and flips, weight decay 1e-4), 40 epochs; Madry et al.'s ε = 8/255 and PGD-7 training of
#: ResNet-32 at widths ×1, ×2, ×4 (their wide network is ×10).
FULL = Settings(data="cifar10", widths=(16, 32, 64), depths=(20, 56), epochs=40, augment=True, evals_per_epoch=1,
                n_curve=10_000, n_probe=256, attack_eps=(1 / 255, 2 / 255, 4 / 255, 8 / 255), attack_steps=20,
                n_attack=2_000, adv_scales=(1, 2, 4), adv_depth=32, adv_eps=8 / 255, adv_steps=7, adv_epochs=40)


def load_data(settings: Settings, full: bool = False):
    """The chapter's data set: ``settings.data`` from :mod:`advcourse.data` (all of it if ``full``)."""
    if settings.data not in ("fashion_mnist", "cifar10"):
        raise ValueError(f"data must be 'fashion_mnist' or 'cifar10', got {settings.data!r}")
    return getattr(datasets, settings.data)(full=full)


def test_subset(data, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images and labels (the order interleaves the classes, so any prefix is
    stratified)."""
    return data.x_test[:n], data.y_test[:n]


# --- training ------------------------------------------------------------------------------

class Segments:
    """Cut every pass over ``batches`` into ``parts`` consecutive segments.

    Each iteration of a ``Segments`` object yields the next segment's batches, so
    ``fit(model, Segments(batches, 4), step, epochs=4 * k, validate=...)`` runs k ordinary epochs
    and validates four times in each. ``len`` is the longest segment's number of batches.
    """

    def __init__(self, batches, parts: int):
        if parts < 1:
            raise ValueError(f"parts must be positive, got {parts}")
        self.batches, self.parts, self.n = batches, parts, len(batches)
        if self.n < parts:
            raise ValueError(f"cannot cut {self.n} batches into {parts} segments")
        self._segment, self._it = 0, None

    def __len__(self) -> int:
        return -(-self.n // self.parts)

    def __iter__(self):
        k = self._segment % self.parts
        if k == 0:
            self._it = iter(self.batches)  # a new pass (a fresh shuffle)
        count = (k + 1) * self.n // self.parts - k * self.n // self.parts
        self._segment += 1
        it = self._it
        return (next(it) for _ in range(count))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """The paper's CIFAR augmentation: pad ``pad`` pixels with zeros, take a random crop of the original
    size and flip it horizontally with probability 1/2. (N, C, H, W) → (N, C, H, W), values unchanged."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=generator)).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)
                 [None, :, None, None], rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _build(cfg: dict) -> ResNet:
    torch.manual_seed(cfg["seed"])
    model = cifar_resnet(cfg["depth"], tuple(cfg["widths"]), cfg["residual"], cfg["shortcut"],
                         in_channels=cfg["in_channels"], num_classes=10)
    # Channels-last memory layout: the same function, about 12% faster convolutions on a CPU.
    return model.to(memory_format=torch.channels_last)


def train_net(data, *, depth: int, residual: bool, shortcut: str = "A", widths=(8, 16, 32), epochs: int = 3,
              batch_size: int = 128, lr: float = 0.1, weight_decay: float = 1e-4, augment: bool = False,
              evals_per_epoch: int = 2, n_curve: int = 1000, n_probe: int = 128, seed: int = 0, device="cpu",
              progress: bool = True):
    """Train (or load from the cache) a plain or residual CIFAR-style net of ``depth`` layers on ``data``.

    SGD with momentum 0.9 and ``weight_decay``, a one-cycle learning rate peaking at ``lr``; random
    crops and flips if ``augment``. ``evals_per_epoch`` times per epoch the history records the running
    training loss and error of the batches since the last record (train mode, as the paper's thin
    curves), the error on the first ``n_curve`` test images (eval mode) and the gradient norm of every
    3×3 conv on the first ``n_probe`` training images (:func:`layer_gradient_norms`).
    Returns ``(model, meta)``; ``meta["metrics"]``: lists per record ``loss``, ``train_err``,
    ``test_err``, ``grad_norms`` (one list per record, one norm per layer), ``grad_norms_init`` and
    ``epoch`` (the fractional epoch of each record), and ``seconds``.
    """
    config = {"arch": "cifar_resnet", "depth": depth, "residual": residual, "shortcut": shortcut,
              "widths": list(widths), "in_channels": data.x_train.shape[1], "data": data.source,
              "n": len(data.x_train), "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "weight_decay": weight_decay, "augment": augment, "evals_per_epoch": evals_per_epoch,
              "n_curve": n_curve, "n_probe": n_probe, "seed": seed, "optimizer": "sgd-momentum-0.9-onecycle"}

    def fit_net(model, cfg):
        dev = next(model.parameters()).device
        x_probe, y_probe = data.x_train[:cfg["n_probe"]].to(dev), data.y_train[:cfg["n_probe"]].to(dev)
        x_curve, y_curve = test_subset(data, cfg["n_curve"])
        grad_init = layer_gradient_norms(model, x_probe, y_probe)
        batches = Shuffled(data.x_train, data.y_train, batch_size=cfg["batch_size"], seed=cfg["seed"])
        parts = cfg["evals_per_epoch"]
        flips = torch.Generator().manual_seed(cfg["seed"] + 1)

        def step(model, batch):
            xb, yb = batch
            if cfg["augment"]:
                xb = random_crop_flip(xb, flips)
            out = model(xb.contiguous(memory_format=torch.channels_last))  # the layout of _build's model
            return F.cross_entropy(out, yb), {"train_err": (out.argmax(1) != yb).sum().item()}

        def validate(model):
            return {"test_err": 1 - accuracy(model, x_curve, y_curve),
                    "grad_norms": layer_gradient_norms(model, x_probe, y_probe)}

        total = cfg["epochs"] * len(batches)
        history = fit(model, Segments(batches, parts), step, epochs=cfg["epochs"] * parts, optimizer="sgd",
                      lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                      schedule=lambda opt: OneCycleLR(opt, max_lr=cfg["lr"], total_steps=total),
                      validate=validate, progress=progress,
                      desc=f"{'residual' if residual else 'plain'}-{depth}{shortcut if residual else ''}")
        return {"loss": history["loss"], "train_err": history["train_err"], "test_err": history["test_err"],
                "grad_norms": history["grad_norms"], "grad_norms_init": grad_init,
                "epoch": [(k + 1) / parts for k in range(len(history["loss"]))], "seconds": history["seconds"]}

    kind = f"residual{shortcut}" if residual else "plain"
    return load_or_train(f"ch07-{data.source}-{kind}-{depth}", config, _build, fit_net, device=device)


def train_adversarial(data, *, scale: int, depth: int = 8, widths=(8, 16, 32), eps: float = 0.05, steps: int = 3,
                      epochs: int = 3, batch_size: int = 128, lr: float = 0.1, weight_decay: float = 1e-4,
                      augment: bool = False, seed: int = 0, device="cpu", progress: bool = True):
    """PGD adversarial training (Madry et al.) of a residual net ``scale`` times wider than ``widths``.

    Each batch is replaced by its PGD examples (``steps`` steps of 2.5ε/steps from a random start,
    budget ``eps``); otherwise the recipe of :func:`train_net` (SGD, one-cycle at ``lr``). ε grows
    linearly from 0 during the first epoch. Returns ``(model, meta)``; ``meta["metrics"]["loss"]`` is
    the loss on the PGD examples per epoch (the saddle-point value).
    """
    config = {"arch": "cifar_resnet", "depth": depth, "residual": True, "shortcut": "A",
              "widths": [w * scale for w in widths], "in_channels": data.x_train.shape[1], "data": data.source,
              "n": len(data.x_train), "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "weight_decay": weight_decay, "augment": augment, "seed": seed, "eps": eps, "steps": steps,
              "optimizer": "sgd-momentum-0.9-onecycle", "training": "pgd", "warmup_epochs": 1}

    def fit_net(model, cfg):
        batches = Shuffled(data.x_train, data.y_train, batch_size=cfg["batch_size"], seed=cfg["seed"])
        gen = torch.Generator().manual_seed(cfg["seed"] + 1)
        seen = [0]

        def step(model, batch):
            xb, yb = batch
            if cfg["augment"]:
                xb = random_crop_flip(xb, gen)
            seen[0] += 1
            e = cfg["eps"] * min(1.0, seen[0] / len(batches))  # the ε warm-up
            x_adv = pgd(model, xb, yb, e, 2.5 * e / cfg["steps"], steps=cfg["steps"], generator=gen) if e else xb
            return F.cross_entropy(model(x_adv), yb)

        history = fit(model, batches, step, epochs=cfg["epochs"], optimizer="sgd", lr=cfg["lr"],
                      weight_decay=cfg["weight_decay"],
                      schedule=lambda opt: OneCycleLR(opt, max_lr=cfg["lr"], total_steps=cfg["epochs"] * len(batches)),
                      progress=progress, desc=f"PGD training ×{scale}")
        return {"loss": history["loss"], "seconds": history["seconds"]}

    return load_or_train(f"ch07-{data.source}-pgd-{depth}-x{scale}", config, _build, fit_net, device=device)


# --- probes: gradients, responses, branches ------------------------------------------------

def conv_layers(model: ResNet) -> list[nn.Conv2d]:
    """The stem conv and every 3×3 conv of the blocks, from the input to the output (projection
    shortcuts and 1×1 convs excluded): the "layers" the paper counts, less the final fc."""
    return [model.conv1] + [m for b in model.blocks() for m in (b.conv1, b.conv2, getattr(b, "conv3", None))
                            if m is not None and m.kernel_size == (3, 3)]


def layer_gradient_norms(model: ResNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """‖∂L/∂W‖ of every layer of :func:`conv_layers` for the mean cross-entropy on ``x`` (N, C, H, W), ``y`` (N,).

    Computed as in training, in train mode (BN normalises with the batch's statistics), on a copy of the
    model, so neither its running statistics nor its gradients change. Returns one float per layer.
    """
    probe = copy.deepcopy(model).train()
    probe.zero_grad(set_to_none=True)
    F.cross_entropy(probe(x), y).backward()
    return [m.weight.grad.norm().item() for m in conv_layers(probe)]


@torch.no_grad()
def layer_responses(model: ResNet, x: torch.Tensor) -> torch.Tensor:
    """The paper's Fig. 7: the standard deviation of every block layer's response — the output of its
    BN, before the ReLU and before the addition — over all of ``x``'s (N, C, H, W) values, in eval mode.
    Returns a tensor (2 · blocks,) for basic blocks, in order from the input."""
    bns = [m for b in model.blocks() for m in (b.bn1, b.bn2, getattr(b, "bn3", None)) if m is not None]
    stds = {}
    hooks = [bn.register_forward_hook(lambda m, i, out, k=k: stds.__setitem__(k, out.std().item()))
             for k, bn in enumerate(bns)]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.tensor([stds[k] for k in range(len(bns))])


# --- the constructive argument ---------------------------------------------------------------

def _identity_bn_(bn: nn.BatchNorm2d, gamma: float = 1.0) -> None:
    """In eval mode, BN computes γ·(x − mean)/√(var + eps) + β: mean 0, var 1 − eps, β 0 leaves γ·x."""
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(gamma)
    bn.bias.zero_()


@torch.no_grad()
def make_identity_(block) -> None:
    """Set a :class:`~advcourse.models.resnet.BasicBlock` that keeps its shape (stride 1, in = out channels)
    to the identity on non-negative inputs (the outputs of a ReLU), in eval mode; in place.

    Residual block: the last BN's γ = β = 0 makes F(x) = 0, so y = ReLU(0 + x) = x (a projection
    shortcut, option C, is set to the identity too). Plain block: both convs become Dirac kernels
    (output channel c copies input channel c) and both BNs the identity, so y = ReLU(ReLU(x)) = x.
    """
    if block.stride != 1 or block.in_channels != block.out_channels or hasattr(block, "conv3"):
        raise ValueError("block must be a BasicBlock with stride 1 and as many output as input channels")
    if block.residual:
        _identity_bn_(block.bn2, gamma=0.0)
        if block.downsample is not None:  # option C: a 1×1 projection on every block
            nn.init.dirac_(block.downsample[0].weight)
            _identity_bn_(block.downsample[1])
    else:
        for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)):
            nn.init.dirac_(conv.weight)
            _identity_bn_(bn)


def deepen(shallow: ResNet, depth: int) -> ResNet:
    """A ``depth``-layer copy of a trained CIFAR-style ``shallow`` net that computes the same function.

    Stem, fc and the shallow blocks are copied; each stage is filled up with identity blocks
    (:func:`make_identity_`) after them. Plain stays plain, residual stays residual. Returns the deep
    net in eval mode: its logits equal ``shallow``'s (eval mode) up to float rounding.
    """
    cfg = shallow.config
    if cfg.stem != "cifar" or cfg.block != "basic":
        raise ValueError("shallow must be a CIFAR-style net of basic blocks (cifar_resnet / mnist_resnet)")
    deep = cifar_resnet(depth, cfg.widths, cfg.residual, cfg.shortcut, in_channels=cfg.in_channels,
                        num_classes=cfg.num_classes)
    for name in ("conv1", "bn1", "fc"):
        getattr(deep, name).load_state_dict(getattr(shallow, name).state_dict())
    for old, new in zip(shallow.stages, deep.stages):
        if len(new) < len(old):
            raise ValueError(f"depth {depth} is shallower than the shallow net ({cfg.depth} layers)")
        for j, block in enumerate(new):
            if j < len(old):
                block.load_state_dict(old[j].state_dict())
            else:
                make_identity_(block)
    return deep.to(next(shallow.parameters()).device).eval()


# --- costs and the reference implementation --------------------------------------------------

def multiply_adds(model: nn.Module, shape: tuple) -> int:
    """Multiply-adds of one forward pass of an input of ``shape`` (C, H, W) through the convs and linear
    layers (the "FLOPs" of the paper, which counts a multiply-add once; BN, ReLU and additions left out)."""
    total = [0]

    def count(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total[0] += m.in_features * m.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def block_costs(size: int = 56) -> dict:
    """Parameters (convs only, BN excluded) and multiply-adds on a ``size``×``size`` map of the paper's
    Fig. 5: a basic block at 64 channels and a bottleneck at 256 → 64 → 256.
    Returns ``{name: {"params": int, "madds": int}}``."""
    from ..models.resnet import BasicBlock, Bottleneck

    blocks = {"basic block, 64 → 64 → 64": BasicBlock(64, 64),
              "bottleneck, 256 → 64 → 64 → 256": Bottleneck(256, 64)}
    return {name: {"params": count_parameters(b, include_norm=False),
                   "madds": multiply_adds(b, (b.in_channels, size, size))} for name, b in blocks.items()}


@torch.no_grad()
def torchvision_difference(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, seed: int = 0) -> float:
    """Give torchvision's model random BN statistics and affine parameters (so eval-mode BN is tested
    too), load its state dict into ``ours`` (strictly: every name and shape must match) and return the
    largest absolute difference of their eval-mode logits on ``x``."""
    g = torch.Generator().manual_seed(seed)
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t, lo, hi in ((m.running_mean, -0.1, 0.1), (m.running_var, 0.5, 1.5), (m.weight, 0.5, 1.5),
                              (m.bias, -0.1, 0.1)):
                t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    return (ours(x) - theirs(x)).abs().max().item()


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of ``model`` (eval mode) on ``x`` (N, C, H, W), ``y`` (N,)."""
    out = logits(model, x)  # (N, classes)
    return F.cross_entropy(out, y.to(out.device)).item()


def loss_gap(a: nn.Module, b: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """How much lower ``a``'s cross-entropy is than ``b``'s on the same images, with its sampling error.

    ``x`` (N, C, H, W), ``y`` (N,); both models in eval mode. Returns ``(gap, se)``: ``gap`` the mean over
    the images of loss_b − loss_a (positive: ``a`` fits better), ``se`` its standard error. The difference
    is taken image by image (paired), so what the two models have in common cancels out of ``se``.
    """
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 images for a standard error, got {len(x)}")
    out_a, out_b = logits(a, x), logits(b, x)  # (N, classes) each
    y = y.to(out_a.device)
    d = F.cross_entropy(out_b, y, reduction="none") - F.cross_entropy(out_a, y, reduction="none")
    return d.mean().item(), (d.std() / len(d) ** 0.5).item()


# --- robustness ------------------------------------------------------------------------------

def robustness_curves(models: dict, x: torch.Tensor, y: torch.Tensor, eps_values, *, steps: int = 10,
                      generator: torch.Generator | None = None) -> dict:
    """Accuracy under L∞ PGD (``steps`` steps of 2.5ε/steps from a random start, early stop) for each
    model (name → model) and each ε of ``eps_values``, on ``x`` (N, C, H, W), ``y`` (N,).
    Returns ``{name: [clean accuracy, accuracy at each ε]}``, fractions in [0, 1]."""
    return {name: [accuracy(m, x, y)] + [robust_accuracy(m, x, y, pgd, eps=e, alpha=2.5 * e / steps, steps=steps,
                                                         early_stop=True, generator=generator)
                                         for e in eps_values]
            for name, m in models.items()}


def capacity_study(data, settings: Settings, *, seed: int = 0, device="cpu",
                   generator: torch.Generator | None = None, progress: bool = False) -> dict:
    """Madry et al.'s capacity argument with ResNets: PGD adversarial training (:func:`train_adversarial`)
    of ResNet-``adv_depth`` at each width multiplier of ``settings.adv_scales``, evaluated on the first
    ``n_attack`` test images: clean accuracy and accuracy under PGD-``attack_steps`` at ``adv_eps``.
    Returns ``{scale: {"params", "clean", "pgd", "loss"}}`` (``loss``: last epoch's loss on PGD examples);
    empty if ``adv_scales`` is empty."""
    s = settings
    x, y = test_subset(data, s.n_attack)
    out = {}
    for scale in s.adv_scales:
        model, meta = train_adversarial(data, scale=scale, depth=s.adv_depth, widths=s.widths, eps=s.adv_eps,
                                        steps=s.adv_steps, epochs=s.adv_epochs, batch_size=s.batch_size, lr=s.lr,
                                        weight_decay=s.weight_decay, augment=s.augment, seed=seed, device=device,
                                        progress=progress)
        out[scale] = {"params": count_parameters(model), "clean": accuracy(model, x, y),
                      "pgd": robust_accuracy(model, x, y, pgd, eps=s.adv_eps, alpha=2.5 * s.adv_eps / s.attack_steps,
                                             steps=s.attack_steps, early_stop=True, generator=generator),
                      "loss": meta["metrics"]["loss"][-1]}
    return out


# --- figures -----------------------------------------------------------------------------------

def plot_curves(metas: dict, deep: str, shallow: str, ax=None, title: str = ""):
    """The paper's Fig. 4 for two nets: training error (thin) and test error (bold) against epochs.
    ``metas``: name → :func:`train_net` metadata; ``deep`` and ``shallow`` pick two of them."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 2.8))
    for k, name in enumerate((shallow, deep)):
        m = metas[name]["metrics"]
        ax.plot(m["epoch"], [100 * e for e in m["train_err"]], color=f"C{k}", lw=1, ls="--")
        ax.plot(m["epoch"], [100 * e for e in m["test_err"]], color=f"C{k}", lw=2.2, label=name)
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_ylabel("error (%)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, title="bold: test, dashed: training", title_fontsize=7)
    return ax


def plot_layer_profile(values: dict, ylabel: str, ax=None, title: str = "", logy: bool = False,
                       relative_depth: bool = True):
    """One curve per net of a per-layer quantity (name → sequence), against the layer's position.
    With ``relative_depth`` the x axis is the fraction of the way from input to output, so nets of
    different depths share it."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 2.8))
    for k, (name, v) in enumerate(values.items()):
        v = torch.as_tensor(v, dtype=torch.float)
        pos = (torch.arange(len(v)) + 1) / len(v) if relative_depth else torch.arange(1, len(v) + 1)
        ax.plot(pos.numpy(), v.numpy(), marker="o", ms=2.5, lw=1, color=f"C{k}", label=name)
    ax.set_xlabel("position of the layer (input → output)" if relative_depth else "layer", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    return ax
