"""Chapter 9's claims, on the fast profile's data and training settings (shared model cache)."""

from dataclasses import replace

import pytest
import torch

from advcourse.evaluate import accuracy
from advcourse.exercises.ch09 import check_patch_embedding, check_rollout
from advcourse.experiments import ch09_vit as vt
from advcourse.models.vit import ViT, patch_embedding_via_linear, patchify, vit_b_16_config

S = vt.FAST  # the chapter's fast-profile settings: every model is trained with this recipe
FIT = dict(seed=0, device="cpu", progress=False)
N = 300  # test digits attacked here (the chapter attacks more)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def models(mnist):
    """The chapter's main ViT and CNN (all training digits)."""
    return {"vit": vt.train_vit(mnist, S, **FIT)[0], "cnn": vt.train_cnn(mnist, S, **FIT)[0]}


# --- unit tests of the experiment functions --------------------------------------------

def test_shift_images_moves_content_by_whole_pixels():
    x = torch.zeros(3, 1, 8, 8)
    x[:, 0, 3:5, 3:5] = 1.0                                  # a block away from the border
    out = vt.shift_images(x, 2, g())
    assert out.shape == x.shape and torch.equal(vt.shift_images(x, 0), x)
    assert torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing falls off
    for k in range(3):                                        # each is a translate of the block
        rows, cols = out[k, 0].nonzero(as_tuple=True)
        assert rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1


def test_attention_statistics_on_known_maps():
    grid, patch, T = 3, 7, 10
    uniform = torch.full((2, 4, T, T), 1.0 / T)
    eye = torch.eye(T).expand(2, 4, T, T)
    dist = vt.mean_attention_distance([uniform, eye], patch)
    assert dist.shape == (2, 4)
    assert torch.allclose(dist[0], torch.full((4,), vt.uniform_attention_distance(grid, patch)))
    assert torch.allclose(dist[1], torch.zeros(4))           # attending to itself: distance 0
    assert torch.allclose(vt.attention_rollout([eye, eye]), torch.eye(T).expand(2, T, T))
    r = vt.attention_rollout([uniform, uniform, eye])
    assert torch.allclose(r.sum(-1), torch.ones(2, T))
    m = vt.class_token_map(r)
    assert m.shape == (2, grid, grid) and torch.allclose(m.sum((1, 2)), torch.ones(2))


def test_macs_formula_matches_the_flop_counter_and_grows_as_patches_shrink():
    macs = []
    for p in (28, 14, 7, 4):
        cfg = S.vit_config(p)
        assert vt.vit_macs(cfg) == vt.counted_macs(ViT(cfg), torch.rand(2, 1, 28, 28))
        macs.append(vt.vit_macs(cfg))
    assert macs == sorted(macs)
    # the paper's "without introducing parameters": 7×7 and 4×4 patches have equally many here
    assert vt.count_parameters(ViT(S.vit_config(7))) == vt.count_parameters(ViT(S.vit_config(4)))


def test_with_positions_keeps_the_native_model_and_sizes_the_table():
    torch.manual_seed(0)
    model = ViT(S.vit_config()).eval()
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(vt.with_positions(model, 4, "2-D")(x), model(x), atol=1e-5)
    assert torch.allclose(vt.with_positions(model, 4, "1-D")(x), model(x), atol=1e-5)
    big = vt.with_positions(model, 6, "none")
    assert big.encoder.pos_embedding.shape == (1, 37, S.dim) and big.encoder.pos_embedding[0, 1:].abs().max() == 0
    with pytest.raises(ValueError, match="how"):
        vt.with_positions(model, 6, "3-D")


# --- the architecture ---------------------------------------------------------------------

def test_patch_embedding_is_reshape_plus_linear(models, mnist):
    vit = models["vit"]
    x = mnist.x_test[:32]
    assert (vit.embed_patches(x) - patch_embedding_via_linear(x, vit.conv_proj)).abs().max() < 1e-5


def test_same_logits_as_torchvision():
    small = vt.ViTConfig(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, mlp_dim=128)
    res = vt.torchvision_equivalence(small, torch.rand(4, 3, 32, 32, generator=g()))
    assert res["max_abs_diff"] <= 1e-5 and res["logit_scale"] > 0.1
    assert res["parameters"][0] == res["parameters"][1]
    with torch.device("meta"):
        assert vt.count_parameters(ViT(vit_b_16_config())) == 86_567_656  # the paper's 86M


# --- the chapter's claims -------------------------------------------------------------------

def test_vit_learns_mnist_but_trails_the_cnn(models, mnist):
    acc_vit = accuracy(models["vit"], mnist.x_test, mnist.y_test)
    acc_cnn = accuracy(models["cnn"], mnist.x_test, mnist.y_test)
    assert acc_vit > 0.9 and acc_cnn > acc_vit  # "a few points below" a CNN of comparable size


def test_position_embeddings_learn_the_grid_only_when_shifts_cross_patches(models, mnist):
    far = S.vit_config().grid - 1
    main = vt.similarity_by_distance(vt.position_similarity(models["vit"]))
    wide = vt.similarity_by_distance(vt.position_similarity(vt.train_vit(mnist, replace(S, shift=S.wide_shift),
                                                                          **FIT)[0]))
    assert main[1] < main[far] + 0.05                                # ±2 px: neighbours no more alike
    assert wide[1] > wide[far] + 0.1                                 # ±7 px: closer patches more similar
    assert wide["same row or column"] > wide["other"] + 0.02          # and rows and columns appear
    torch.manual_seed(0)
    d0 = vt.similarity_by_distance(vt.position_similarity(ViT(S.vit_config())))
    assert max(abs(v) for v in d0.values()) < 0.1                    # nothing at initialisation


def _initial(p):
    torch.manual_seed(0)
    return ViT(S.vit_config(p))


def test_embedding_filters_are_structured_only_where_they_compress(mnist, models):
    small, big = S.patch, max(S.patch_sizes)
    assert small ** 2 < S.dim < big ** 2                             # 49 → 64 is no compression, 196 → 64 is
    found = {}
    for p in (small, big):
        model = models["vit"] if p == small else vt.train_vit(mnist, S, patch=p, **FIT)[0]
        w, w0 = model.conv_proj.weight.detach(), _initial(p).conv_proj.weight
        var, var0 = vt.embedding_components(model, k=8)[1].sum(), vt.embedding_components(_initial(p), k=8)[1].sum()
        found[p] = ((w - w0).norm() / w0.norm()).item(), (var - var0).item()
    assert abs(found[small][1]) < 0.05 and found[small][0] < 0.5     # barely moved, spectrum as at init
    assert found[big][1] > 0.04 and found[big][0] > found[small][0]   # compressed: concentrated, moved more


def test_heads_are_selective_but_not_by_distance(models, mnist):
    maps = vt.attention_maps(models["vit"], mnist.x_test[:S.n_maps])
    dist = vt.mean_attention_distance(maps, S.patch).mean(1)         # mean over heads, per layer
    assert dist[-1] < dist[0] + 0.5                                  # no growth with depth at this scale
    assert (dist - vt.uniform_attention_distance(S.vit_config().grid, S.patch)).abs().max() < 2.0
    top = torch.stack([w.max(-1).values.mean() for w in maps])
    assert top.min() > 3 / maps[0].shape[-1]                         # yet far from uniform attention


def test_class_token_rollout_looks_at_the_digit(models, mnist):
    x = mnist.x_test[:S.n_maps]
    maps = vt.class_token_map(vt.attention_rollout(vt.attention_maps(models["vit"], x)))
    ink = vt.ink_share(maps, x, S.patch)
    assert ink["mass"] > ink["area"] + 0.05


def test_position_embeddings_matter_and_2d_interpolation_beats_1d(models, mnist):
    x, y = mnist.x_test[:1000], mnist.y_test[:1000]
    res = vt.resolution_table(models["vit"], x, y, S.grids)
    assert res["none"][0] < res["2-D"][0] - 0.1                      # a bag of patches loses accuracy
    assert res["2-D"][-1] > res["1-D"][-1] + 0.05                    # the grid, not the sequence
    assert res["2-D"][-1] > res["none"][-1]


def test_both_poolings_learn(mnist):
    """The chapter's standing claim: the class token is not what makes the ViT work (which pooling wins at
    one shared learning rate is reported as measured)."""
    for pool in ("cls", "mean"):
        model = vt.train_vit(mnist, S, pool=pool, n=S.pool_n, min_steps=S.min_steps, **FIT)[0]
        assert accuracy(model, mnist.x_test, mnist.y_test) > 0.7


def test_patch_sweep_result_and_its_diagnosis_agree(mnist):
    """Where the smaller patch loses, the chapter blames under-fitting: then it must be the less fitted one."""
    runs = {p: vt.train_vit(mnist, S, patch=p, **FIT) for p in S.patch_sizes}  # p = S.patch: the main ViT
    acc = {p: accuracy(m, mnist.x_test, mnist.y_test) for p, (m, _) in runs.items()}
    fit = {p: meta["metrics"]["fit_acc"] for p, (_, meta) in runs.items()}
    big, small = max(S.patch_sizes), min(S.patch_sizes)
    if acc[small] <= acc[big] + 0.005:
        assert fit[small] < fit[big]


def test_the_cnn_lead_shrinks_as_data_grow(mnist):
    h = vt.data_hunger(mnist, S, **FIT)
    gaps = [c - v for c, v in zip(h["cnn"], h["vit"])]
    assert gaps[0] > gaps[-1] + 0.03
    assert h["cnn_fit"][0] > 0.95                                    # the CNN fits its small set


def test_vit_is_no_more_robust_than_the_cnn(models, mnist):
    x, y = mnist.x_test[:N], mnist.y_test[:N]
    rob = vt.robustness_table({"cnn": models["cnn"], "vit": models["vit"]}, x, y, [0.05, vt.EPS], steps=S.pgd_steps,
                              generator=g())
    for k in (1, 2):
        assert rob["vit"][k] <= rob["cnn"][k] + 0.02
    assert rob["vit"][2] < 0.35 and rob["cnn"][2] < 0.35              # neither is robust at ε = 0.1


def test_white_box_is_strongest_and_vit_examples_do_not_fool_the_cnn(models, mnist):
    x, y = mnist.x_test[:N], mnist.y_test[:N]
    tt = vt.transfer_table({"cnn": models["cnn"], "vit": models["vit"]}, x, y, vt.EPS, steps=S.pgd_steps,
                           generator=g())
    assert tt[("cnn", "cnn")] <= tt[("vit", "cnn")] and tt[("vit", "vit")] <= tt[("cnn", "vit")]
    assert tt[("vit", "cnn")] > tt[("cnn", "cnn")] + 0.3


def test_smaller_patches_are_not_more_robust(mnist, models):
    x, y = mnist.x_test[:N], mnist.y_test[:N]
    big = vt.train_vit(mnist, S, patch=max(S.patch_sizes), **FIT)[0]
    rob = vt.robustness_table({"small": models["vit"], "big": big}, x, y, [0.05], steps=S.pgd_steps, generator=g())
    assert rob["small"][1] <= rob["big"][1] + 0.02


def test_shift_tolerance_is_learned_not_built_in(models, mnist):
    """Exercise ch09-ex-equivariance: small shifts keep the prediction, a whole-patch shift does not."""
    x = mnist.x_test[:300]
    with torch.no_grad():
        pred = models["vit"](x).argmax(1)
        kept = {s: (models["vit"](torch.nn.functional.pad(x, (s, 0))[..., :28]).argmax(1) == pred).float().mean()
                for s in (1, S.patch)}
    assert kept[1] > 0.9 and kept[S.patch] < kept[1] - 0.3


# --- the exercise checkers --------------------------------------------------------------------

def test_patch_embedding_checker():
    def right(x, w, b, p):
        return patchify(x, p) @ w.permute(0, 2, 3, 1).reshape(len(w), -1).T + b

    def columns(x, w, b, p):  # patches numbered column by column
        return right(x.transpose(2, 3), w.transpose(2, 3), b, p)

    def channel_order(x, w, b, p):  # flattens patches (row, col, channel) but the kernel (channel, row, col)
        return patchify(x, p) @ w.reshape(len(w), -1).T + b

    def conv(x, w, b, p):
        return torch.nn.functional.conv2d(x, w, b, stride=p).flatten(2).transpose(1, 2)

    assert "passed" in check_patch_embedding(right)
    with pytest.raises(AssertionError, match="column by column"):
        check_patch_embedding(columns)
    with pytest.raises(AssertionError, match="order"):
        check_patch_embedding(channel_order)
    with pytest.raises(AssertionError, match="convolution"):
        check_patch_embedding(conv)
    assert torch.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)).sum() == 4  # convolutions restored


def test_rollout_checker():
    assert "passed" in check_rollout(vt.attention_rollout)

    def reversed_order(maps):
        return vt.attention_rollout(maps[::-1])

    def no_residual(maps):
        return vt.attention_rollout(maps, residual=False)

    with pytest.raises(AssertionError, match="order"):
        check_rollout(reversed_order)
    with pytest.raises(AssertionError, match="identity"):
        check_rollout(no_residual)
    with pytest.raises(AssertionError, match="heads"):
        check_rollout(lambda maps: maps[-1])
