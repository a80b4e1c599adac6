"""Chapter 11 checkers: masked autoencoders."""

from __future__ import annotations

import torch


def _reference_loss(pred, target, mask):
    per_patch = ((pred - target) ** 2).mean(-1)  # (N, L)
    return (per_patch * mask).sum() / mask.sum()


def check_masked_loss(fn, trials: int = 10, seed: int = 0) -> str:
    """Chapter 11, exercise "The loss on masked patches only".

    ``fn(pred, target, mask) -> loss`` takes predicted and true patches ``pred``, ``target`` (N, L, D) and a
    mask (N, L) of 0s and 1s, 1 = masked. It must return a scalar tensor: the squared error averaged over
    the D values of each masked patch and then over all masked patches of the batch (the paper's loss,
    the authors' ``(loss * mask).sum() / mask.sum()``). Visible patches must not count at all.
    """
    g = torch.Generator().manual_seed(seed)
    for t in range(trials):
        n, L, D = 1 + t % 3, 6 + 3 * t, [1, 16, 48][t % 3]
        pred, target = torch.randn(n, L, D, generator=g), torch.randn(n, L, D, generator=g)
        mask = (torch.rand(n, L, generator=g) < [0.25, 0.5, 0.75, 0.9][t % 4]).float()
        mask[0, 0], mask[-1, -1] = 1.0, 0.0  # at least one masked and one visible patch
        expected = _reference_loss(pred, target, mask)
        got = fn(pred.clone(), target.clone(), mask.clone())
        assert isinstance(got, torch.Tensor) and got.numel() == 1, \
            f"trial {t}: expected a scalar tensor, got {type(got).__name__} {getattr(got, 'shape', '')}"
        got = got.reshape(())
        if torch.allclose(got, expected, rtol=1e-4, atol=1e-6):
            continue
        all_patches = ((pred - target) ** 2).mean()
        if torch.allclose(got, all_patches, rtol=1e-4):
            raise AssertionError(f"trial {t}: you averaged over every patch; the visible patches must not count")
        visible = _reference_loss(pred, target, 1 - mask)
        if torch.allclose(got, visible, rtol=1e-4):
            raise AssertionError(f"trial {t}: you averaged over the visible patches; mask = 1 marks the MASKED ones")
        per_patch_sum = ((((pred - target) ** 2).sum(-1) * mask).sum() / mask.sum())
        if torch.allclose(got, per_patch_sum, rtol=1e-4):
            raise AssertionError(f"trial {t}: you summed over the D values of a patch; take their mean")
        zeroed_mean = (((pred - target) ** 2).mean(-1) * mask).mean()
        if torch.allclose(got, zeroed_mean, rtol=1e-4):
            raise AssertionError(f"trial {t}: you zeroed the visible patches but divided by all N·L patches; "
                                 "divide by the number of masked patches")
        per_image = ((((pred - target) ** 2).mean(-1) * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()
        if n > 1 and torch.allclose(got, per_image, rtol=1e-4):
            raise AssertionError(f"trial {t}: you averaged per image, then over images; average over all masked "
                                 "patches of the batch at once (images with more masked patches weigh more)")
        raise AssertionError(f"trial {t}: expected {expected.item():.6g}, got {got.item():.6g}")
    return f"All {trials} checks passed: your loss counts the masked patches only."


def check_random_masking(fn, seed: int = 0) -> str:
    """Chapter 11, exercise "Random masking".

    ``fn(n, L, ratio, generator) -> mask`` must return a float mask (n, L) of 0s and 1s, 1 = masked, with
    exactly ``round(ratio * L)`` ones in every row, each row an independent uniformly random subset
    (every patch equally likely to be masked, whatever its position), drawn from ``generator`` (a
    ``torch.Generator``), so that the same seed gives the same masks.
    """
    for n, L, ratio in ((3, 16, 0.75), (5, 49, 0.75), (4, 196, 0.75), (2, 10, 0.15), (6, 49, 0.9)):
        mask = fn(n, L, ratio, torch.Generator().manual_seed(seed))
        assert isinstance(mask, torch.Tensor) and mask.shape == (n, L), \
            f"expected a tensor of shape ({n}, {L}), got {getattr(mask, 'shape', type(mask).__name__)}"
        assert set(mask.unique().tolist()) <= {0.0, 1.0}, "the mask must hold only 0s and 1s"
        k = round(ratio * L)
        counts = mask.sum(1)
        assert (counts == k).all(), (f"with L = {L} and ratio = {ratio} every row must mask exactly {k} patches "
                                     f"(round(ratio·L)), got {counts.tolist()}; draw a subset, not independent coins")
        again = fn(n, L, ratio, torch.Generator().manual_seed(seed))
        assert torch.equal(mask, again), "the same generator seed must give the same masks: draw from `generator`"
    rows = fn(4000, 16, 0.75, torch.Generator().manual_seed(seed + 1))
    assert len({tuple(r.tolist()) for r in rows[:50]}) > 40, "every image needs its own random mask"
    freq = rows.float().mean(0)
    worst = (freq - 0.75).abs().max().item()
    assert worst < 0.04, (f"patch positions are not masked equally often (a position's frequency is off by {worst:.2f} "
                          "from 0.75): the subset must be uniformly random, e.g. from a random permutation")
    return "All checks passed: uniform random masks with exactly round(ratio·L) masked patches per image."
