"""ResNet (He et al. 2016): equal to torchvision's, shortcut options A/B/C, plain nets, branch norms."""

import pytest
import torch
import torchvision
from torch import nn

from advcourse.models.resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetConfig,
    branch_norms,
    cifar_resnet,
    count_parameters,
    mnist_resnet,
    resnet18,
    resnet50,
    zero_pad_shortcut,
)


@pytest.mark.parametrize("name, ours", [("resnet18", resnet18), ("resnet50", resnet50)])
def test_same_logits_as_torchvision(name, ours):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    # random running statistics too, so the test also covers how BN is applied in eval mode
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.1)
    model = ours().eval()
    model.load_state_dict(theirs.state_dict(), strict=True)
    assert count_parameters(model) == count_parameters(theirs)
    x = torch.rand(2, 3, 64, 64)  # the global pool makes the nets size-agnostic; small images keep this fast
    with torch.no_grad():
        ours_logits, their_logits = model(x), theirs(x)
    assert ours_logits.shape == (2, 1000)
    assert (ours_logits - their_logits).abs().max() <= 1e-5


def test_bottleneck_strides_on_the_3x3_conv():  # "ResNet v1.5", as torchvision
    block = resnet50().layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2) and block.conv3.stride == (1, 1)
    assert block.downsample[0].stride == (2, 2)


def test_parameter_counts_of_one_block():
    basic = BasicBlock(64, 64)  # two 3×3 convs at 64 channels, no bias
    assert count_parameters(basic, include_norm=False) == 2 * 64 * 64 * 3 * 3 == 73_728
    bottleneck = Bottleneck(256, 64)  # 256 → 64 (1×1) → 64 (3×3) → 256 (1×1)
    assert count_parameters(bottleneck, include_norm=False) == 256 * 64 + 64 * 64 * 9 + 64 * 256 == 69_632
    assert count_parameters(basic) == 73_728 + 2 * 2 * 64  # BN adds γ and β per channel
    assert basic.downsample is None and bottleneck.downsample is None  # shapes unchanged: identity


def test_only_the_first_block_of_a_stage_downsamples():
    model = resnet18()
    strides = [[b.conv1.stride[0] for b in stage] for stage in model.stages]
    assert strides == [[1, 1], [2, 1], [2, 1], [2, 1]]


def test_plain_net_has_the_same_parameters_as_option_a():
    residual, plain = cifar_resnet(20, shortcut="A"), cifar_resnet(20, residual=False)
    assert count_parameters(plain) == count_parameters(residual) == 269_722  # the paper's "0.27M"
    assert all(b.downsample is None for b in plain.blocks())
    # same weights, different function: the shortcuts are the only difference
    plain.load_state_dict(residual.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    residual.eval(), plain.eval()
    assert not torch.allclose(residual(x), plain(x))


def test_shortcut_options():
    a, b, c = (cifar_resnet(20, shortcut=s) for s in "ABC")
    changing = [i for i, blk in enumerate(a.blocks()) if blk.stride == 2]
    assert changing == [3, 6]  # the first block of stages 2 and 3
    # A: parameter-free everywhere; B: projections only where the shape changes; C: on every block
    assert all(blk.downsample is None or count_parameters(blk.downsample) == 0 for blk in a.blocks())
    assert [i for i, blk in enumerate(b.blocks()) if blk.downsample is not None] == changing
    assert all(isinstance(blk.downsample[0], nn.Conv2d) for blk in c.blocks())
    assert count_parameters(a) < count_parameters(b) < count_parameters(c)
    assert count_parameters(b) - count_parameters(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_zero_pad_shortcut_subsamples_and_pads():
    x = torch.randn(2, 3, 5, 6)
    y = zero_pad_shortcut(x, 8, 2)
    assert y.shape == (2, 8, 3, 3)
    assert torch.equal(y[:, :3], x[:, :, ::2, ::2]) and not y[:, 3:].any()
    with pytest.raises(ValueError, match="out_channels"):
        zero_pad_shortcut(x, 2, 1)


def test_shapes_through_cifar_resnet():
    model = cifar_resnet(20)
    assert len(model.blocks()) == 9 and model.config.depth == 20
    assert len(cifar_resnet(56).blocks()) == 27
    shapes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert shapes == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert mnist_resnet()(torch.rand(2, 1, 28, 28)).shape == (2, 10)  # 28 → 14 → 7
    with pytest.raises(ValueError, match="depth"):
        cifar_resnet(21)


def test_branch_norms_one_per_block():
    torch.manual_seed(0)
    model = cifar_resnet(20).eval()
    x = torch.rand(4, 3, 32, 32)
    logits, ratios = model(x, return_branch_norms=True)
    assert torch.allclose(logits, model(x))
    assert ratios.shape == (4, 9) and (ratios > 0).all() and ratios.isfinite().all()
    assert branch_norms(model, x).shape == (9,)
    plain = cifar_resnet(20, residual=False).eval()
    assert plain(x, return_branch_norms=True)[1].shape == (4, 9)
    # with the last BN of every branch at γ = 0 (and β = 0), F(x) = 0: every block is the identity
    ident = cifar_resnet(20, zero_init_residual=True).eval()
    assert branch_norms(ident, x).abs().max() == 0


def test_normalisation_inside_the_model():
    torch.manual_seed(0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain_input, normalising = resnet18().eval(), resnet18(mean=mean, std=std).eval()
    normalising.load_state_dict(plain_input.state_dict(), strict=True)  # mean/std are not in the state dict
    x = torch.rand(2, 3, 40, 40)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalising(x), plain_input(z), atol=1e-6)


def test_gradient_reaches_the_input():
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    mnist_resnet()(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("field, value", [("block", "wide"), ("stem", "tiny"), ("shortcut", "D"),
                                          ("depths", (2, 2)), ("num_classes", 0), ("mean", (0.5, 0.5, 0.5))])
def test_rejects_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        ResNetConfig(**{field: value})


def test_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match="shape"):
        ResNet(ResNetConfig(in_channels=1))(torch.rand(2, 3, 32, 32))
