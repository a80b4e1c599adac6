"""Chapter 10's claims, on the fast profile's settings (shared model cache)."""

import pytest
import torch

from advcourse.evaluate import accuracy
from advcourse.exercises.ch10 import check_relative_index, check_shift_mask
from advcourse.experiments import ch10_swin as sw
from advcourse.models.swin import SwinBlock, msa_flops, relative_position_index, shifted_window_mask, wmsa_flops

S = sw.FAST  # the chapter's fast-profile settings: the models below are the chapter's (same cache entries)
N = 300  # test digits attacked here (the chapter attacks S.n_eval)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def models(mnist):
    swin, meta = sw.train_swin(mnist, S, seed=0, progress=False)
    cnn, _ = sw.train_cnn(mnist, S, seed=0, progress=False)
    return {"tiny Swin": swin, "CNN": cnn, "meta": meta}


@pytest.fixture(scope="module")
def test_set(mnist):
    return sw.test_subset(mnist, N)


# --- exercises ----------------------------------------------------------------------

def test_relative_index_checker():
    assert "passed" in check_relative_index(lambda M: relative_position_index(M).view(M * M, M * M))
    with pytest.raises(AssertionError, match="query − key"):  # key − query: the transposed matrix
        check_relative_index(lambda M: relative_position_index(M).view(M * M, M * M).T)
    with pytest.raises(AssertionError):  # rows multiplied by M instead of 2M − 1
        def by_m(M):
            r, c = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
            r, c = r.flatten(), c.flatten()
            return (r[:, None] - r[None] + M - 1) * M + (c[:, None] - c[None] + M - 1)
        check_relative_index(by_m)


def test_shift_mask_checker():
    assert "passed" in check_shift_mask(lambda H, W, M, s: shifted_window_mask(H, W, M, s) != 0)
    with pytest.raises(AssertionError):  # no mask at all: the wrap-around pairs attend to each other
        check_shift_mask(lambda H, W, M, s: torch.zeros((H // M) * (W // M), M * M, M * M, dtype=torch.bool))
    with pytest.raises(AssertionError):  # windows cut at M − s instead of s: right only when s = M/2
        check_shift_mask(lambda H, W, M, s: shifted_window_mask(H, W, M, M - s) != 0)


# --- the cost of attention -------------------------------------------------------------

def test_counted_multiply_adds_equal_the_formulas_and_grow_as_claimed():
    c = sw.attention_costs((7, 14, 28), repeats=1)
    assert c["macs_msa"] == c["formula_msa"] and c["macs_wmsa"] == c["formula_wmsa"]
    assert sw.growth_exponent(c["tokens"], c["macs_msa"]) > 1.5  # Ω ∝ hw·(2C + hw): quadratic once hw ≫ 2C
    assert abs(sw.growth_exponent(c["tokens"], c["macs_wmsa"]) - 1) < 1e-9  # exactly linear
    assert msa_flops(56, 56, 96) == 2_003_828_736 and wmsa_flops(56, 56, 96, 7) == 145_108_992


def test_global_attention_takes_much_longer_at_stage_one():
    c = sw.attention_costs((14, 56), repeats=3)
    ratio = [m / w for m, w in zip(c["sec_msa"], c["sec_wmsa"])]
    assert ratio[-1] > 3  # 13.8× the multiply-adds at 56 × 56; in time at least 3×
    assert ratio[-1] > 2 * ratio[0]  # the gap widens with the map (multiply-adds: 1.6× at 14², 13.8× at 56²)


# --- shifted windows ----------------------------------------------------------------

def test_roll_and_mask_compute_attention_in_the_nine_shifted_windows():
    assert len(sw.shifted_partition(8, 4, 2)) ** 2 == 9  # Fig. 2: 4 windows → 9
    torch.manual_seed(0)
    for shift in (1, 2, 3):
        block = SwinBlock(8, 2, window_size=4, shift=shift).eval()
        torch.nn.init.normal_(block.attn.relative_position_bias_table)
        x = torch.randn(1, 8, 8, 8)
        with torch.no_grad():
            assert (block.shifted_window_attention(x) - sw.attention_in_shifted_windows(block, x)).abs().max() < 1e-5
    rolled = torch.roll(x, shifts=(-2, -2), dims=(1, 2))
    assert torch.equal(rolled[0, 0, 0], x[0, 2, 2])  # toward the top-left
    assert torch.equal(torch.roll(rolled, shifts=(2, 2), dims=(1, 2)), x)  # the reverse shift restores the map


def test_shifted_windows_connect_windows_but_stay_local():
    reach = sw.token_reach(side=56, window=7, blocks=4, token=(24, 24))
    counts = [int(r.sum()) for r in reach]
    assert counts[:2] == [49, 196]  # one window, then 14 × 14 (exercise "Counting the reach")
    assert all(a < b for a, b in zip(counts, counts[1:]))  # information does spread…
    assert counts[-1] <= 0.25 * 56 * 56  # …but after four blocks it covers a quarter of the map at most


# --- the model and the reference -----------------------------------------------------------

def test_swin_t_equals_torchvision_and_has_the_papers_shapes():
    ref = sw.swin_t_check(n_images=1)
    assert ref["max_diff"] <= 1e-4
    assert ref["params"] == 28_288_354 and round(ref["params"] / 1e6) == 28  # paper: 28M
    assert round(ref["macs"] / 1e9, 1) == 4.5  # paper: 4.5G FLOPs
    stages = [r for r in ref["shapes"] if r["name"].startswith("stage")]
    assert [r["shape"][1:] for r in stages] == [(56, 56, 96), (28, 28, 192), (14, 14, 384), (7, 7, 768)]
    assert [r["pixels"] for r in stages] == [4, 8, 16, 32]  # a stage-4 token covers 32×32 pixels


# --- the tiny Swin and the CNN -------------------------------------------------------------

def test_tiny_swin_learns_and_the_cnn_is_of_similar_accuracy(mnist, models):
    acc_swin = accuracy(models["tiny Swin"], mnist.x_test, mnist.y_test)
    acc_cnn = accuracy(models["CNN"], mnist.x_test, mnist.y_test)
    assert acc_swin > 0.9
    assert abs(acc_swin - acc_cnn) < 0.03  # "a CNN of similar accuracy"
    assert models["meta"]["metrics"]["test_acc"][-1] == pytest.approx(acc_swin, abs=1e-6)
    tables = sw.learnt_bias_tables(models["tiny Swin"])
    assert tables.shape == (S.num_heads[0], 2 * S.window - 1, 2 * S.window - 1)


def test_neither_model_is_robust_and_the_swin_is_the_more_fragile(models, test_set):
    x, y = test_set
    nets = {k: models[k] for k in ("tiny Swin", "CNN")}
    curves = sw.robustness_curves(nets, x, y, (0.0, S.eps / 2, S.eps), steps=S.pgd_steps, generator=g())
    for clean, _, attacked in curves.values():
        assert attacked < clean - 0.3  # PGD at ε = 0.1 removes a large part of the accuracy
    swin, cnn = curves["tiny Swin"], curves["CNN"]
    assert swin[1] < cnn[1] - 0.2 and swin[2] < cnn[2]  # "lost its accuracy sooner than the CNN"


def test_transfer_between_the_architectures_is_weaker_than_white_box(models, test_set):
    x, y = test_set
    nets = {k: models[k] for k in ("tiny Swin", "CNN")}
    xc, yc = sw.common_correct(nets, x, y)
    assert len(yc) > 0.8 * len(y)
    T = sw.transfer_table(nets, xc, yc, eps=S.eps, steps=S.pgd_steps, generator=g())
    assert T[0, 1] > T[0, 0] + 0.1 and T[1, 0] > T[1, 1] + 0.1  # weaker than white-box
    assert T[0, 1] > 0.8  # the Swin's examples hardly fool the CNN
    assert T[1, 0] < T[0, 1] - 0.1  # transfer is stronger from the CNN to the Swin
