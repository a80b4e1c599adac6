"""Residual networks (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

A residual block computes y = ReLU(F(x) + s(x)): the stacked layers F learn only a *residual* on top of
the shortcut s, which is the identity whenever the shapes allow. Without shortcuts (``residual=False``)
the same layers form the paper's PLAIN net, whose training error grows with depth (the "degradation"
problem of §4.1); with them, a deeper net is never harder to fit than a shallower one, since F = 0
turns any block into the identity.

The ImageNet networks (``stem="imagenet"``, as torchvision's ``resnet18`` / ``resnet34`` / ``resnet50``):

    (N, 3, H, W) → conv 7×7 /2 (64) → BN → ReLU → max-pool 3×3 /2     (N, 64, H/4, W/4)
                 → layer1: blocks at width 64,  stride 1              (N, 64·e, H/4, W/4)
                 → layer2: blocks at width 128, first one stride 2    (N, 128·e, H/8, W/8)
                 → layer3: blocks at width 256, first one stride 2    (N, 256·e, H/16, W/16)
                 → layer4: blocks at width 512, first one stride 2    (N, 512·e, H/32, W/32)
                 → global average pool → fc                           (N, classes) logits

with expansion e = 1 for :class:`BasicBlock` (two 3×3 convs) and e = 4 for :class:`Bottleneck`
(1×1 reduce, 3×3, 1×1 expand). The CIFAR networks of §4.2 (``stem="cifar"``, :func:`cifar_resnet`) have
one 3×3 conv as stem, no max-pool and three stages of widths 16, 32, 64 on 32×32 maps (32 → 16 → 8);
with n basic blocks per stage the depth is 6n + 2 (ResNet-20, 32, 56, 110 for n = 3, 5, 9, 18).

When a block changes the shape (stride 2 and/or more channels), the identity shortcut must be adapted.
The paper compares three options (§3.3, Table 3):

* ``"A"``: identity, subsampled by the stride and zero-padded with the extra channels (no parameters);
* ``"B"``: a projection (1×1 conv + BN) only where the shape changes, identity elsewhere (torchvision);
* ``"C"``: a projection on every block.

Parameter names follow torchvision, so ``torchvision.models.resnet18(weights=None).state_dict()`` (and
resnet34, resnet50) loads into :func:`resnet18` (…) with ``strict=True`` and gives the same logits.

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
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNetConfig",
    "ZeroPadShortcut",
    "branch_norms",
    "cifar_resnet",
    "count_parameters",
    "mnist_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "zero_pad_shortcut",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the statistics torchvision's pretrained ResNets were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
SHORTCUTS = ("A", "B", "C")


@dataclass(frozen=True)
class ResNetConfig:
    """Hyper-parameters of a :class:`ResNet` (defaults: ResNet-18 for ImageNet, as torchvision).

    Attributes:
        block: ``"basic"`` (two 3×3 convs, expansion 1) or ``"bottleneck"`` (1×1, 3×3, 1×1, expansion 4).
        depths: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18, (3, 4, 6, 3) for ResNet-34/50.
        widths: inner width of each stage; a stage outputs ``width × expansion`` channels. The stem has
            ``widths[0]`` channels.
        in_channels: channels of the input images (3 for RGB, 1 for MNIST).
        num_classes: number of logits.
        stem: ``"imagenet"`` (7×7 /2 conv + BN + ReLU + 3×3 /2 max-pool: H → H/4) or ``"cifar"``
            (3×3 /1 conv + BN + ReLU: H → H).
        residual: False builds the PLAIN net: the same layers without any shortcut.
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (see the module docstring); ignored when ``residual`` is False.
        zero_init_residual: start the last BN of every residual branch at γ = 0, so each block starts as
            the identity (Goyal et al. 2017); off in the paper and in torchvision by default.
        mean, std: per-channel input normalisation applied inside the model, or None for none.
    """

    block: str = "basic"
    depths: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    in_channels: int = 3
    num_classes: int = 1000
    stem: str = "imagenet"
    residual: bool = True
    shortcut: str = "B"
    zero_init_residual: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if not self.depths or len(self.depths) != len(self.widths):
            raise ValueError(f"depths and widths must be non-empty and of equal length, got {self.depths} "
                             f"and {self.widths}")
        if min(self.depths) < 1 or min(self.widths) < 1:
            raise ValueError(f"depths and widths must be positive, got {self.depths} and {self.widths}")
        if self.in_channels < 1 or self.num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be positive, got {self.in_channels} and "
                             f"{self.num_classes}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together")
        if self.mean is not None and not len(self.mean) == len(self.std) == self.in_channels:
            raise ValueError(f"mean and std must have in_channels={self.in_channels} entries, got {self.mean} "
                             f"and {self.std}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def expansion(self) -> int:
        """Output channels of a block / its inner width: 1 (basic) or 4 (bottleneck)."""
        return 1 if self.block == "basic" else 4

    @property
    def depth(self) -> int:
        """Number of weighted layers as the paper counts them: stem conv + convs in blocks + fc."""
        return 1 + sum(self.depths) * (2 if self.block == "basic" else 3) + 1


def zero_pad_shortcut(x: torch.Tensor, out_channels: int, stride: int) -> torch.Tensor:
    """Option A shortcut: (N, C, H, W) → (N, out_channels, ⌈H/stride⌉, ⌈W/stride⌉), parameter-free.

    Keeps every ``stride``-th pixel (the top-left one, where a strided 1×1 conv would look) and appends
    ``out_channels − C`` all-zero channels, so the extra channels of F(x) get no shortcut at all.
    """
    if out_channels < x.shape[1]:
        raise ValueError(f"out_channels must be at least the input's {x.shape[1]} channels, got {out_channels}")
    x = x[:, :, ::stride, ::stride]  # (N, C, H/s, W/s)
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))  # (N, out_channels, H/s, W/s)


class ZeroPadShortcut(nn.Module):
    """:func:`zero_pad_shortcut` as a module (option A where a block changes shape)."""

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zero_pad_shortcut(x, self.out_channels, self.stride)

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, stride={self.stride}"


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Options B and C: a strided 1×1 conv + BN (torchvision's ``downsample``: keys ``.0`` and ``.1``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class _Block(nn.Module):
    """What both blocks share: y = ReLU(F(x) + s(x)), or y = ReLU(F(x)) in a plain net.

    Subclasses define ``expansion`` and the residual branch F (``branch``). The shortcut s lives in
    ``downsample`` (torchvision's name, kept so its weights load; with option C it also exists at stride 1):
    None for the identity, a :class:`ZeroPadShortcut` (option A) or a 1×1 conv + BN (options B, C).
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, residual: bool, shortcut: str):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.in_channels, self.out_channels, self.stride = in_channels, width * self.expansion, stride
        self.residual, self.shortcut_option = residual, shortcut
        self.relu = nn.ReLU()  # not in-place: attacks and hooks read intermediate tensors

    def _make_shortcut(self) -> nn.Module | None:
        """Called by subclasses after building F, so ``downsample`` comes last, as in torchvision."""
        same_shape = self.stride == 1 and self.in_channels == self.out_channels
        if not self.residual or (same_shape and self.shortcut_option != "C"):
            return None  # identity shortcut (or none at all in a plain net)
        if self.shortcut_option == "A":
            return ZeroPadShortcut(self.out_channels, self.stride)
        return _projection(self.in_channels, self.out_channels, self.stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch F: (N, in_channels, H, W) → (N, out_channels, H/stride, W/stride)."""
        raise NotImplementedError

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """s(x), the same shape as F(x). In a plain net (which adds nothing) this is the parameter-free
        option-A map, used only as the reference "x" when measuring ‖F(x)‖ / ‖x‖."""
        if not self.residual:
            return zero_pad_shortcut(x, self.out_channels, self.stride)
        return x if self.downsample is None else self.downsample(x)

    def forward_with_ratio(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``forward``, also returning ‖F(x)‖ / ‖s(x)‖ for each image, shape (N,)."""
        f, s = self.branch(x), self.shortcut(x)  # both (N, out_channels, H/stride, W/stride)
        ratio = f.flatten(1).norm(dim=1) / s.flatten(1).norm(dim=1).clamp_min(1e-12)  # (N,)
        return self.relu(f + s if self.residual else f), ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) → (N, out_channels, H/stride, W/stride), non-negative (after ReLU)."""
        f = self.branch(x)  # (N, out_channels, H/stride, W/stride)
        return self.relu(f + self.shortcut(x) if self.residual else f)


class BasicBlock(_Block):
    """F(x) = BN(conv3×3(ReLU(BN(conv3×3 /stride(x))))): two 3×3 convs of ``width`` channels, expansion 1.

    Used by ResNet-18/34 and the CIFAR nets. Convolutions have no bias (the BN after them has one).
    At 64 channels the two convs hold 2 · 64 · 64 · 3 · 3 = 73,728 weights.
    """

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1, residual: bool = True, shortcut: str = "B"):
        super().__init__(in_channels, width, stride, residual, shortcut)
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = self._make_shortcut()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, width, H/stride, W/stride)
        return self.bn2(self.conv2(out))  # (N, width, H/stride, W/stride)


class Bottleneck(_Block):
    """F(x) = BN(conv1×1 ↑4·width(ReLU(BN(conv3×3 /stride(ReLU(BN(conv1×1 ↓width(x))))))), expansion 4.

    The 1×1 convs first reduce the channels to ``width`` and then restore them to ``4 · width``, so the
    costly 3×3 conv runs on few channels (ResNet-50/101/152). As in torchvision, the stride sits on the 3×3
    conv, not on the first 1×1 conv as in the paper: this "ResNet v1.5" does not throw away 3/4 of the
    pixels before looking at them and is slightly more accurate. At 256 → 64 → 64 → 256 the convs hold
    256·64 + 64·64·9 + 64·256 = 69,632 weights, fewer than a basic block at 64 channels.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, residual: bool = True, shortcut: str = "B"):
        super().__init__(in_channels, width, stride, residual, shortcut)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.downsample = self._make_shortcut()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (N, width, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (N, width, H/stride, W/stride)
        return self.bn3(self.conv3(out))  # (N, 4·width, H/stride, W/stride)


class ResNet(nn.Module):
    """A residual (or plain) network: stem → stages ``layer1``, ``layer2``, … → global average pool → ``fc``.

    Input: images (N, in_channels, H, W) in [0, 1], any H, W (the global pool makes the net size-agnostic;
    the ImageNet stem wants H, W ≥ 32 or so). Output: logits (N, num_classes).
    """

    def __init__(self, config: ResNetConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else ResNetConfig()
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        if cfg.mean is not None:  # not persistent: torchvision's state dicts have no such entries
            self.register_buffer("mean", torch.tensor(cfg.mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(cfg.std).view(1, -1, 1, 1), persistent=False)
        else:
            self.mean = self.std = None

        stem_width = cfg.widths[0]
        if cfg.stem == "imagenet":  # downsample by 4 at once: ImageNet images are large
            self.conv1 = nn.Conv2d(cfg.in_channels, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:  # CIFAR (§4.2): 32×32 images are small enough to keep at full resolution
            self.conv1 = nn.Conv2d(cfg.in_channels, stem_width, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()

        channels = stem_width
        for i, (n_blocks, width) in enumerate(zip(cfg.depths, cfg.widths)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if i > 0 and j == 0 else 1  # only the first block of stages 2, 3, … downsamples
                blocks.append(block(channels, width, stride, cfg.residual, cfg.shortcut))
                channels = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. (2015) initialisation for ReLU nets, as torchvision; BN starts as the identity map.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for b in self.blocks():
                nn.init.zeros_((b.bn3 if isinstance(b, Bottleneck) else b.bn2).weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        """The stages ``layer1``, ``layer2``, … in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.config.depths))]

    def blocks(self) -> list[_Block]:
        """All residual blocks, from the input to the output (``sum(config.depths)`` of them)."""
        return [b for stage in self.stages for b in stage]

    def forward(self, x: torch.Tensor, return_branch_norms: bool = False):
        """Images (N, in_channels, H, W) in [0, 1] → logits (N, num_classes).

        With ``return_branch_norms=True`` returns ``(logits, ratios)`` where ``ratios[n, b]`` is
        ‖F(x)‖ / ‖x‖ for image n at block b: the Euclidean norm of the residual branch's output over the
        norm of the block's input as the shortcut passes it on (after option A/B/C adaptation where the
        shape changes). Shape (N, number of blocks). Small ratios mean the block is close to the identity.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"x must have shape (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if self.mean is not None:
            x = (x - self.mean) / self.std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, widths[0], H/4, W/4), or H, W for CIFAR
        ratios = []
        for stage in self.stages:  # each stage after the first: (N, C, H, W) → (N, 2C, H/2, W/2)
            if not return_branch_norms:
                x = stage(x)
                continue
            for b in stage:  # block by block (forward hooks on stages and blocks do not fire on this path)
                x, r = b.forward_with_ratio(x)
                ratios.append(r)
        x = torch.flatten(self.avgpool(x), 1)  # (N, widths[-1] · expansion)
        logits = self.fc(x)  # (N, num_classes)
        return (logits, torch.stack(ratios, dim=1)) if return_branch_norms else logits


@torch.no_grad()
def branch_norms(model: ResNet, x: torch.Tensor) -> torch.Tensor:
    """‖F(x)‖ / ‖x‖ per block, averaged over the images of ``x``: shape (number of blocks,).

    Evaluated as the model currently is (call ``model.eval()`` first to use BN's running statistics).
    """
    return model(x, return_branch_norms=True)[1].mean(0)


def count_parameters(module: nn.Module, include_norm: bool = True) -> int:
    """Number of scalar parameters of ``module``; ``include_norm=False`` skips those of BatchNorm/LayerNorm."""
    norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    skip = set() if include_norm else {id(p) for m in module.modules() if isinstance(m, norms)
                                        for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)


def _make(defaults: ResNetConfig, overrides: dict) -> ResNet:
    return ResNet(replace(defaults, **overrides))


def resnet18(**overrides) -> ResNet:
    """ResNet-18 (basic blocks, 2-2-2-2, 11.7 M parameters); keyword arguments override :class:`ResNetConfig`."""
    return _make(ResNetConfig(block="basic", depths=(2, 2, 2, 2)), overrides)


def resnet34(**overrides) -> ResNet:
    """ResNet-34 (basic blocks, 3-4-6-3, 21.8 M parameters); keyword arguments override :class:`ResNetConfig`."""
    return _make(ResNetConfig(block="basic", depths=(3, 4, 6, 3)), overrides)


def resnet50(**overrides) -> ResNet:
    """ResNet-50 v1.5 (bottlenecks, 3-4-6-3, 25.6 M parameters); keyword arguments override the config."""
    return _make(ResNetConfig(block="bottleneck", depths=(3, 4, 6, 3)), overrides)


def cifar_resnet(depth: int = 20, widths: tuple[int, ...] = (16, 32, 64), residual: bool = True,
                 shortcut: str = "A", in_channels: int = 3, num_classes: int = 10, block: str = "basic",
                 **overrides) -> ResNet:
    """The CIFAR-10 networks of §4.2: 3×3 stem, three stages on 32×32 → 16×16 → 8×8 maps, option A.

    ``depth`` = 6n + 2 with n basic blocks per stage (20, 32, 44, 56, 110), or 9n + 2 for bottlenecks
    (whose ``widths`` are then the inner widths). ``residual=False`` gives the plain net of the same depth.
    Images (N, in_channels, H, W), any H, W (32×32 for CIFAR) → logits (N, num_classes).
    """
    per_block = 2 if block == "basic" else 3
    n, rest = divmod(depth - 2, per_block * len(widths))
    if n < 1 or rest:
        raise ValueError(f"depth must be {per_block * len(widths)}n + 2 for {block} blocks and {len(widths)} "
                         f"stages, got {depth}")
    return ResNet(ResNetConfig(block=block, depths=(n,) * len(widths), widths=tuple(widths), in_channels=in_channels,
                               num_classes=num_classes, stem="cifar", residual=residual, shortcut=shortcut,
                               **overrides))


def mnist_resnet(depth: int = 8, widths: tuple[int, ...] = (8, 16, 32), residual: bool = True,
                 shortcut: str = "A", num_classes: int = 10, **overrides) -> ResNet:
    """A small CIFAR-style net for 1×28×28 MNIST / Fashion-MNIST (28 → 14 → 7), fast on a CPU.

    ``depth`` = 6n + 2 as in :func:`cifar_resnet` (8 → one basic block per stage; 20 → three).
    """
    return cifar_resnet(depth, widths, residual, shortcut, in_channels=1, num_classes=num_classes, **overrides)
