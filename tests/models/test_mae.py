"""advcourse.models.mae: masking, the visible-only encoder, the masked-only loss, targets and round trips."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from advcourse.models.mae import (
    MAE,
    MAEConfig,
    masked_mse,
    random_masking,
    sincos_pos_embedding_2d,
)
from advcourse.models.vit import patchify, unpatchify

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead

SMALL = MAEConfig(image_size=32, patch_size=4, dim=64, depth=2, heads=4, mlp_dim=128, decoder_dim=32,
                  decoder_depth=1, decoder_heads=4, decoder_mlp_dim=64)  # L = 64 patches of 4·4·3 = 48 values


def _model(**kw):
    torch.manual_seed(0)
    return MAE(replace(SMALL, **kw))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75, 0.9])
def test_mask_counts_and_restore(ratio):
    N, L, d = 5, 64, 3
    x = torch.randn(N, L, d)
    kept, mask, ids_restore = random_masking(x, ratio, torch.Generator().manual_seed(1))
    n_masked = round(ratio * L)
    assert kept.shape == (N, L - n_masked, d)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.sum(1) == n_masked).all()  # exactly round(ratio·L) per row
    # ids_restore is a permutation and inverts the shuffle: its inverse (argsort) is ids_shuffle.
    assert torch.equal(ids_restore.sort(1).values, torch.arange(L).expand(N, L))
    ids_shuffle = ids_restore.argsort(1)
    shuffled = x.gather(1, ids_shuffle[:, :, None].expand(-1, -1, d))
    assert torch.equal(shuffled.gather(1, ids_restore[:, :, None].expand(-1, -1, d)), x)
    assert torch.equal(shuffled[:, : L - n_masked], kept)  # the kept tokens are the first of the shuffle
    kept_positions = ids_shuffle[:, : L - n_masked]
    assert (mask.gather(1, kept_positions) == 0).all()  # ... and exactly those are unmasked


def test_masks_are_per_sample_and_reproducible():
    x = torch.zeros(8, 64, 2)
    _, m1, _ = random_masking(x, 0.75, torch.Generator().manual_seed(3))
    _, m2, _ = random_masking(x, 0.75, torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2)
    assert len({tuple(row.tolist()) for row in m1}) == 8  # every sample its own mask


def test_masking_is_uniform():
    """Every position is masked with probability ≈ ratio (no bias towards any patch)."""
    _, mask, _ = random_masking(torch.zeros(4000, 16, 1), 0.75, torch.Generator().manual_seed(0))
    assert (mask.mean(0) - 0.75).abs().max() < 0.03


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.3])
def test_encoder_sees_only_visible_patches(ratio):
    model = _model()
    seen = {}

    def record(name):
        def hook(module, args):  # a forward pre-hook: sees the block's input
            seen[name] = args[0].shape
        return hook

    model.encoder.encoder.layers[0].register_forward_pre_hook(record("enc"))
    model.decoder_layers[0].register_forward_pre_hook(record("dec"))
    loss, pred, mask = model(torch.rand(2, 3, 32, 32), mask_ratio=ratio)
    K = 64 - round(ratio * 64)
    assert seen["enc"] == (2, 1 + K, 64)  # class token + the K visible patches, no mask tokens
    assert seen["dec"] == (2, 1 + 64, 32)  # the decoder sees every position
    assert pred.shape == (2, 64, 48) and mask.shape == (2, 64) and loss.ndim == 0


def test_loss_ignores_visible_patches():
    model = _model()
    x = torch.rand(3, 3, 32, 32)
    loss, pred, mask = model(x, generator=torch.Generator().manual_seed(0))
    visible = (mask == 0)[:, :, None]
    noise = torch.randn_like(pred)
    assert torch.equal(model.loss(x, pred + noise * visible, mask), loss)  # changing visible predictions: no effect
    assert not torch.allclose(model.loss(x, pred + noise * ~visible, mask), loss)  # masked ones: effect
    pred = pred.detach().requires_grad_()
    model.loss(x, pred, mask).backward()
    assert (pred.grad * visible == 0).all() and (pred.grad * ~visible != 0).any()


def test_loss_is_mse_on_masked_patches():
    pred, target = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 1, 0, 0]])
    per_patch = ((pred - target) ** 2).mean(-1)
    expected = (per_patch[0, 0] + per_patch[0, 3] + per_patch[1, 2]) / 3
    assert torch.allclose(masked_mse(pred, target, mask), expected)


def test_targets_and_norm_pix_loss():
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(_model().targets(x), patchify(x, 4))
    normed = _model(norm_pix_loss=True).targets(x)
    assert torch.allclose(normed.mean(-1), torch.zeros(2, 64), atol=1e-5)
    assert torch.allclose(normed.std(-1), torch.ones(2, 64), atol=1e-3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(_model(mean=mean, std=std).targets(x), patchify((x - m) / s, 4))


def test_patchify_round_trip_exact():
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(x, 4), 4), x)
    p = torch.rand(2, 64, 48)
    assert torch.equal(patchify(unpatchify(p, 4), 4), p)


def _authors_sincos(dim, grid):
    """The 2-D table as the MAE authors' util/pos_embed.py computes it (numpy), for comparison."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.arange(grid, dtype=np.float64)
    gw, gh = np.meshgrid(g, g)  # "here w goes first"
    emb = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)


def test_sincos_table_matches_authors():
    table = sincos_pos_embedding_2d(16, 5)
    assert table.shape == (1, 26, 16)
    assert np.allclose(table[0].numpy(), _authors_sincos(16, 5), atol=1e-6)
    model = _model()
    assert torch.equal(model.encoder.encoder.pos_embedding, sincos_pos_embedding_2d(64, 8))
    assert not model.encoder.encoder.pos_embedding.requires_grad and not model.decoder_pos_embedding.requires_grad


def test_reconstruct_and_features():
    model = _model(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), norm_pix_loss=True).eval()
    x = torch.rand(2, 3, 32, 32)
    r = model.reconstruct(x, generator=torch.Generator().manual_seed(0))
    for image in (r.masked, r.reconstruction, r.pasted):
        assert image.shape == x.shape and image.min() >= 0 and image.max() <= 1
    pixel_mask = unpatchify(r.mask[:, :, None].expand(-1, -1, 48), 4)
    assert torch.equal(r.pasted * (1 - pixel_mask), x * (1 - pixel_mask))  # visible patches are the input's
    assert torch.equal(r.pasted * pixel_mask, r.reconstruction * pixel_mask)
    assert model.encoder_features(x).shape == (2, 64)
    assert torch.allclose(model.encoder_features(x, "mean"), model.encoder.tokens(x)[:, 1:].mean(1))


def test_to_classifier_copies_the_encoder():
    model = _model().eval()
    clf = model.to_classifier(10, pool="cls").eval()
    x = torch.rand(2, 3, 32, 32)
    assert clf(x).shape == (2, 10)
    assert torch.allclose(clf.features(x), model.encoder_features(x, "cls"))


def test_a_few_steps_lower_the_loss():
    model = _model()
    x = torch.rand(4, 3, 32, 32)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for step in range(15):
        loss, _, _ = model(x, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


@pytest.mark.parametrize("kw, name", [({"mask_ratio": 1.0}, "mask_ratio"), ({"decoder_heads": 5}, "decoder_dim"),
                                      ({"dim": 66, "heads": 3}, "sincos_pos"), ({"image_size": 30}, "divisible")])
def test_bad_config_raises(kw, name):
    with pytest.raises(ValueError, match=name):
        replace(SMALL, **kw)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="ratio"):
        random_masking(torch.zeros(1, 4, 2), 1.0)
    with pytest.raises(ValueError, match="x must have shape"):
        _model()(torch.rand(1, 3, 28, 28))
