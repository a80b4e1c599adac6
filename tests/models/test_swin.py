"""Swin Transformer (Liu et al. 2021): equal to torchvision's, windows, cyclic shift, mask, merging, FLOPs."""

from itertools import pairwise

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer as TorchvisionSwin
from torchvision.models.swin_transformer import SwinTransformerBlock

from advcourse.models.swin import (
    DropPath,
    PatchMerging,
    SwinBlock,
    SwinConfig,
    SwinTransformer,
    WindowAttention,
    msa_flops,
    relative_position_index,
    shifted_window_mask,
    small_swin_config,
    swin_t_config,
    window_partition,
    window_region_labels,
    window_reverse,
    wmsa_flops,
)


def test_swin_t_same_logits_as_torchvision():
    torch.manual_seed(0)
    theirs = torchvision.models.swin_t(weights=None).eval()
    model = SwinTransformer(swin_t_config()).eval()
    model.load_state_dict(theirs.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == 28_288_354  # torchvision's Swin_T_Weights meta
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ours, their = model(x), theirs(x)
    assert ours.shape == (2, 1000)
    assert (ours - their).abs().max() <= 1e-5


@pytest.mark.parametrize("image_size, depths, heads", [
    (32, (2, 2), (2, 4)),  # the small config: 8×8 tokens, stage 2 is one window (no shift there)
    (40, (2, 2), (2, 4)),  # 10×10 tokens: padded to 12×12 before rolling; merging pads 5×5 to 6×6
    (36, (2, 2, 2), (2, 4, 8)),  # 9 → 5 → 3: odd maps everywhere
])
def test_small_swin_same_logits_as_torchvision(image_size, depths, heads):
    torch.manual_seed(0)
    config = small_swin_config(image_size=image_size, depths=depths, num_heads=heads)
    theirs = TorchvisionSwin(patch_size=[4, 4], embed_dim=config.embed_dim, depths=list(depths),
                             num_heads=list(heads), window_size=[4, 4], num_classes=10).eval()
    model = SwinTransformer(config).eval()
    model.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(3, 3, image_size, image_size)
    with torch.no_grad():
        assert (model(x) - theirs(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("H, W", [(4, 12), (6, 10)])
def test_block_on_non_square_maps_matches_torchvision(H, W):
    # (4, 12): the window covers all rows, so only the columns are shifted; (6, 10): padded to (8, 12)
    torch.manual_seed(0)
    theirs = SwinTransformerBlock(16, 2, window_size=[4, 4], shift_size=[2, 2]).eval()
    ours = SwinBlock(16, 2, window_size=4, shift=2).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    nn.init.normal_(ours.attn.relative_position_bias_table)  # a bias that matters
    theirs.attn.relative_position_bias_table.data.copy_(ours.attn.relative_position_bias_table.data)
    x = torch.randn(2, H, W, 16)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5


def test_window_partition_round_trip():
    x = torch.randn(2, 8, 12, 5)
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 5)
    assert torch.equal(windows[1], x[0, :4, 4:8].reshape(16, 5))  # windows row by row, tokens row by row
    assert torch.equal(windows[6], x[1, :4, :4].reshape(16, 5))  # image 1 starts after image 0's 6 windows
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)
    with pytest.raises(ValueError, match="window_size"):
        window_partition(torch.randn(1, 6, 8, 2), 4)


def test_cyclic_shift_is_undone():
    x = torch.randn(2, 8, 8, 3)
    rolled = torch.roll(x, shifts=(-2, -2), dims=(1, 2))
    assert torch.equal(rolled[:, 0, 0], x[:, 2, 2])  # the map moved up-left…
    assert torch.equal(rolled[:, -1, -1], x[:, 1, 1])  # …and the first rows/columns wrapped to the end
    assert torch.equal(torch.roll(rolled, shifts=(2, 2), dims=(1, 2)), x)


def test_mask_on_the_papers_toy():
    H = W = 8
    M, s = 4, 2
    labels = window_region_labels(H, W, M, s)
    assert labels.unique().numel() == 9  # 4 windows, 9 regions
    mask = shifted_window_mask(H, W, M, s)
    assert mask.shape == (4, 16, 16) and set(mask.unique().tolist()) == {-100.0, 0.0}
    # independent truth: the shifted partition of the *unrolled* map cuts each axis at M − s and 2M − s,
    # i.e. into [0, 2), [2, 6), [6, 8). Token (r, c) of the rolled map came from ((r + s) % 8, (c + s) % 8).
    group = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2])
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    source = torch.stack([group[(rows + s) % H], group[(cols + s) % W]], dim=-1)  # (8, 8, 2)
    source = window_partition(source[None], M)  # (4, 16, 2): the source group of each token of each window
    same = (source[:, :, None] == source[:, None, :]).all(-1)  # (4, 16, 16)
    assert torch.equal(mask == 0, same)
    regions_per_window = [labels_w.unique().numel() for labels_w in window_partition(labels[None, ..., None], M)]
    assert regions_per_window == [1, 2, 2, 4]
    assert not shifted_window_mask(H, W, M, 0).any()


@pytest.mark.parametrize("shift", [0, 2])
def test_masked_cyclic_shift_equals_attention_in_the_shifted_windows(shift):
    # The paper's claim: rolling + masking computes exactly self-attention within each window of the
    # shifted partition (9 windows of sizes 2×2 … 4×4 here), with no padding.
    torch.manual_seed(0)
    M, H, C = 4, 8, 8
    block = SwinBlock(C, 2, window_size=M, shift=shift).eval()
    attn = block.attn
    nn.init.normal_(attn.relative_position_bias_table)
    x = torch.randn(1, H, H, C)
    with torch.no_grad():
        fast = block.shifted_window_attention(x)
        slow = torch.zeros_like(x)
        cuts = [0, *range(M - shift if shift else M, H, M), H]  # [0, 2, 6, 8] or [0, 4, 8]
        for r0, r1 in pairwise(cuts):
            for c0, c1 in pairwise(cuts):
                rr, cc = torch.meshgrid(torch.arange(r0, r1), torch.arange(c0, c1), indexing="ij")
                rr, cc = rr.flatten(), cc.flatten()
                tokens = x[0, rr, cc]  # (n, C)
                q, k, v = attn.qkv(tokens).view(len(rr), 3, 2, C // 2).permute(1, 2, 0, 3)  # (heads, n, d)
                offset = (rr[:, None] - rr[None] + M - 1) * (2 * M - 1) + (cc[:, None] - cc[None] + M - 1)
                bias = attn.relative_position_bias_table[offset].permute(2, 0, 1)  # (heads, n, n)
                weights = ((q @ k.transpose(1, 2)) * (C // 2) ** -0.5 + bias).softmax(-1)
                slow[0, rr, cc] = attn.proj((weights @ v).transpose(0, 1).reshape(len(rr), C))
    assert (fast - slow).abs().max() <= 1e-5


def test_relative_position_index():
    M = 7
    index = relative_position_index(M)
    assert index.shape == (M**4,)
    assert index.min() == 0 and index.max() == (2 * M - 1) ** 2 - 1
    assert index.unique().numel() == (2 * M - 1) ** 2  # every offset occurs
    matrix = index.view(M * M, M * M)
    centre = (M - 1) * (2 * M - 1) + (M - 1)  # offset (0, 0)
    assert (matrix.diagonal() == centre).all()
    assert torch.equal(matrix + matrix.T, torch.full_like(matrix, 2 * centre))  # offset(i, j) = −offset(j, i)
    attn = WindowAttention(96, M, 3)
    assert "relative_position_index" in attn.state_dict()  # persistent, as torchvision's
    assert attn.relative_position_bias_table.shape == ((2 * M - 1) ** 2, 3)
    assert attn.relative_position_bias().shape == (3, M * M, M * M)


def test_patch_merging_halves_resolution_and_doubles_width():
    merge = PatchMerging(16)
    assert merge(torch.randn(2, 8, 6, 16)).shape == (2, 4, 3, 32)
    assert merge(torch.randn(2, 5, 5, 16)).shape == (2, 3, 3, 32)  # odd sides are padded
    assert merge.reduction.bias is None and merge.norm.normalized_shape == (64,)
    assert swin_t_config().grid_sizes == [56, 28, 14, 7]


def test_flop_formulas_give_the_papers_numbers():
    h = w = 56
    C, M = 96, 7
    hw = h * w  # 3,136 tokens in stage 1 of Swin-T
    projections = 4 * hw * C * C  # q, k, v and output projections: 115,605,504
    assert projections == 115_605_504
    assert msa_flops(h, w, C) == projections + 2 * hw * hw * C == 2_003_828_736  # ≈ 2.0 G
    assert wmsa_flops(h, w, C, M) == projections + 2 * M * M * hw * C == 145_108_992  # ≈ 0.15 G
    assert 13 < msa_flops(h, w, C) / wmsa_flops(h, w, C, M) < 14
    # global attention is quadratic in the number of tokens, windowed attention linear
    assert wmsa_flops(2 * h, 2 * w, C, M) == 4 * wmsa_flops(h, w, C, M)
    assert msa_flops(2 * h, 2 * w, C) > 10 * msa_flops(h, w, C)


def test_normalisation_inside_the_model():
    torch.manual_seed(0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    raw = SwinTransformer(small_swin_config()).eval()
    normalising = SwinTransformer(small_swin_config(mean=mean, std=std)).eval()
    normalising.load_state_dict(raw.state_dict(), strict=True)  # mean/std are not in the state dict
    x = torch.rand(2, 3, 32, 32)
    z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(normalising(x), raw(z), atol=1e-6)


def test_gradient_reaches_the_input_and_drop_path_trains():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    SwinTransformer(small_swin_config()).train()(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    drop = DropPath(0.5).train()
    y = drop(torch.ones(4000, 3))
    assert set(y.unique().tolist()) == {0.0, 2.0} and abs(y.mean().item() - 1) < 0.1
    assert torch.equal(drop.eval()(torch.ones(5, 3)), torch.ones(5, 3))


@pytest.mark.parametrize("overrides, field", [({"image_size": 30}, "image_size"), ({"num_heads": (3, 4)}, "num_heads"),
                                              ({"depths": (2,)}, "depths"), ({"drop_path": 1.0}, "drop_path")])
def test_rejects_bad_config(overrides, field):
    with pytest.raises(ValueError, match=field):
        small_swin_config(**overrides)
    with pytest.raises(ValueError, match="shift"):
        SwinBlock(16, 2, window_size=4, shift=4)


def test_rejects_wrong_input_shape():
    model = SwinTransformer(SwinConfig(image_size=32, embed_dim=16, depths=(1,), num_heads=(1,), window_size=4))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 3, 64, 64))
