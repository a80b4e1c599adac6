"""advcourse.models.vit equals torchvision's VisionTransformer; patches, positions and attention maps."""

from dataclasses import replace

import pytest
import torch
import torchvision

from advcourse.models.vit import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViT,
    ViTConfig,
    interpolate_pos_embedding,
    patch_embedding_via_linear,
    patchify,
    unpatchify,
    vit_b_16_config,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models: threads only add overhead

SMALL = ViTConfig(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128)


def _randomise_head(model):
    """torchvision zero-initialises the head, which would make every logit 0 and any comparison vacuous."""
    with torch.no_grad():
        model.heads.head.weight.normal_(std=0.1)
        model.heads.head.bias.normal_(std=0.1)
    return model


def _small_pair():
    torch.manual_seed(0)
    ref = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                               hidden_dim=64, mlp_dim=128, num_classes=10)
    ref = _randomise_head(ref).eval()
    ours = ViT(SMALL).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def test_small_vit_equals_torchvision():
    ref, ours = _small_pair()
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = ref(x)
        assert expected.abs().max() > 0.1
        assert (ours(x) - expected).abs().max() <= 1e-5
    # With gradients on, torchvision takes its fused attention kernel: still equal to float32 rounding.
    assert (ours(x) - ref(x)).abs().max() <= 1e-5
    # And back: our weights load into torchvision's model.
    ref2 = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                                                hidden_dim=64, mlp_dim=128, num_classes=10).eval()
    ref2.load_state_dict(ours.state_dict(), strict=True)


def test_vit_b_16_equals_torchvision():
    """The real ViT-B/16 (86M parameters, random weights): about 10 s on one CPU thread, the slowest test here."""
    torch.manual_seed(0)
    ref = _randomise_head(torchvision.models.vit_b_16(weights=None)).eval()
    ours = ViT(vit_b_16_config()).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - ref(x)).abs().max() <= 1e-5
    assert sum(p.numel() for p in ours.parameters()) == 86_567_656


def test_conv_patch_embedding_is_patchify_plus_linear():
    torch.manual_seed(0)
    conv = ViT(SMALL).conv_proj
    x = torch.rand(3, 3, 32, 32)
    expected = conv(x).flatten(2).transpose(1, 2)  # (N, L, d)
    assert torch.allclose(patch_embedding_via_linear(x, conv), expected, atol=1e-5, rtol=0)


def test_patchify_order_and_round_trip():
    x = torch.rand(2, 3, 24, 40)
    p = 8
    patches = patchify(x, p)
    assert patches.shape == (2, 3 * 5, p * p * 3)
    # Patch (i, j) is number i·w + j; inside it, (row, column, channel) order.
    i, j, r, s, c = 1, 3, 2, 5, 1
    assert patches[0, i * 5 + j, (r * p + s) * 3 + c] == x[0, c, i * p + r, j * p + s]
    assert torch.equal(unpatchify(patches, p, grid=(3, 5)), x)
    square = torch.rand(2, 1, 16, 16)
    assert torch.equal(unpatchify(patchify(square, 4), 4), square)


def test_interpolated_pos_embedding():
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 16, 8)  # a 4×4 grid
    assert torch.equal(interpolate_pos_embedding(pos, 4), pos)  # same grid: unchanged
    big = interpolate_pos_embedding(pos, 7)
    assert big.shape == (1, 1 + 49, 8)
    assert torch.equal(big[:, 0], pos[:, 0])  # the class token's embedding is not interpolated
    # align_corners: the old 4×4 grid sits exactly on every other point of the new 7×7 grid.
    old, new = pos[0, 1:].reshape(4, 4, 8), big[0, 1:].reshape(7, 7, 8)
    assert torch.allclose(new[::2, ::2], old, atol=1e-5, rtol=0)
    assert interpolate_pos_embedding(pos, (3, 6)).shape == (1, 1 + 18, 8)


def test_interpolated_model_runs_on_larger_images():
    _, small = _small_pair()
    big = interpolate_pos_embedding(small, 6)  # 4×4 → 6×6 patches: 48×48 images
    assert big.config.image_size == 48 and small.config.image_size == 32
    assert big(torch.rand(2, 3, 48, 48)).shape == (2, 10)
    same = interpolate_pos_embedding(small, 4).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(same(x), small(x))


def test_attention_maps():
    _, model = _small_pair()
    x = torch.rand(2, 3, 32, 32)
    logits, maps = model(x, return_attention=True)
    assert torch.allclose(logits, model(x), atol=1e-6, rtol=0)
    assert len(maps) == 2 and all(m.shape == (2, 4, 17, 17) for m in maps)
    assert all(torch.allclose(m.sum(-1), torch.ones(2, 4, 17)) for m in maps)
    assert all(torch.equal(a, b) for a, b in zip(maps, model.attention_maps(x)))


def test_normalisation_inside_the_model():
    _, plain = _small_pair()
    cfg = replace(SMALL, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    normed = ViT(cfg).eval()
    normed.load_state_dict(plain.state_dict(), strict=True)  # mean/std are not in the state dict
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normed(x), plain((x - mean) / std), atol=1e-5, rtol=0)


def test_mean_pooling_and_headless():
    torch.manual_seed(0)
    model = ViT(replace(SMALL, pool="mean")).eval()
    x = torch.rand(2, 3, 32, 32)
    tokens = model.tokens(x)
    assert tokens.shape == (2, 17, 64)
    assert torch.allclose(model.features(x), tokens[:, 1:].mean(1))
    headless = ViT(replace(SMALL, num_classes=0))
    assert headless(x).shape == (2, 64)


def test_gradients_reach_the_input():
    _, model = _small_pair()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x)[:, 3].sum().backward()
    assert x.grad.shape == x.shape and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kw, name", [({"image_size": 30}, "divisible by patch_size"),
                                      ({"heads": 5}, "dim must be divisible by heads"),
                                      ({"pool": "max"}, "pool"),
                                      ({"mean": (0.5,) * 3}, "together"),
                                      ({"mean": (0.5,), "std": (0.2,)}, "one value per channel")])
def test_bad_config_raises(kw, name):
    with pytest.raises(ValueError, match=name):
        replace(SMALL, **kw)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="x must have shape"):
        ViT(SMALL)(torch.rand(1, 3, 33, 33))
