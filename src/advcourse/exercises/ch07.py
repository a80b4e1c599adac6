"""Chapter 7 checkers: ResNet."""

from __future__ import annotations

import torch
from torch import nn

from ..models.resnet import BasicBlock


def _random_block(channels: int, residual: bool, shortcut: str, g: torch.Generator) -> BasicBlock:
    """A BasicBlock with random weights, BN parameters and running statistics (as if trained)."""
    block = BasicBlock(channels, channels, residual=residual, shortcut=shortcut)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return block


def check_identity_block(fn, trials: int = 6, seed: int = 0) -> str:
    """Chapter 7, exercise "Extra layers that do nothing".

    ``fn(block)`` receives a trained-looking :class:`advcourse.models.resnet.BasicBlock` of stride 1 whose
    input and output have the same number of channels — sometimes residual (shortcut option A or B,
    identity shortcut; or C, a 1×1 projection), sometimes plain (``block.residual`` is False) — and must
    change its parameters and BN statistics in place (returning nothing, or the block) so that in eval
    mode the block maps every non-negative input x (N, C, H, W), such as the output of a ReLU, to x itself.
    """
    g = torch.Generator().manual_seed(seed)
    cases = [(True, "A"), (False, "A"), (True, "C"), (False, "A"), (True, "B"), (False, "A")]
    for t in range(trials):
        residual, shortcut = cases[t % len(cases)]
        channels = [4, 8, 16][t % 3]
        block = _random_block(channels, residual, shortcut, g)
        kind = ("residual block" + (" with a projection shortcut (option C)" if shortcut == "C" else "")
                if residual else "plain block")
        out = fn(block)
        if out is not None and out is not block:
            raise AssertionError(f"trial {t} ({kind}): change the block in place (return it or nothing), "
                                 "do not build a new one")
        block.eval()
        x = torch.rand(3, channels, 6, 6, generator=g) * 3
        x[torch.rand(x.shape, generator=g) < 0.4] = 0.0  # outputs of a ReLU: many exact zeros
        with torch.no_grad():
            y = block(x)
        err = (y - x).abs().max().item()
        assert y.shape == x.shape, f"trial {t} ({kind}): the block changed the shape to {tuple(y.shape)}"
        if err > 1e-4:
            hint = ("a residual block is ReLU(F(x) + x): make F(x) = 0 (the last BN's output)" if residual else
                    "a plain block has no shortcut: each conv must copy its input channel to the same output "
                    "channel (a Dirac kernel) and each BN must pass its input through unchanged (eval mode uses "
                    "the running statistics)")
            raise AssertionError(f"trial {t} ({kind}): the output differs from the input by up to {err:.3g}; {hint}")
    return f"All {trials} checks passed: your function turns plain and residual blocks into the identity."
