"""Chapter 10 checkers: Swin Transformer (relative position index, shifted-window mask)."""

from __future__ import annotations

import torch


def _relative_index_reference(M: int) -> torch.Tensor:
    """(M², M²): row of the (2M − 1)² bias table for query i and key j of an M×M window."""
    rows, cols = torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")
    r, c = rows.flatten(), cols.flatten()
    return (r[:, None] - r[None, :] + M - 1) * (2 * M - 1) + (c[:, None] - c[None, :] + M - 1)


def check_relative_index(fn, sizes=(1, 2, 3, 4, 7)) -> str:
    """Chapter 10, exercise "The relative position index".

    ``fn(M) -> index`` must return an integer tensor of shape (M², M²) whose entry [i, j] is the row
    of the (2M − 1)²-row bias table for query token i and key token j of an M×M window (tokens
    numbered row by row): with (Δr, Δc) = position of i − position of j, the row is
    (Δr + M − 1)·(2M − 1) + (Δc + M − 1).
    """
    for M in sizes:
        got = fn(M)
        assert isinstance(got, torch.Tensor), f"M = {M}: expected a tensor, got {type(got).__name__}"
        assert got.shape == (M * M, M * M), f"M = {M}: expected shape {(M * M, M * M)}, got {tuple(got.shape)}"
        assert not got.is_floating_point(), f"M = {M}: the index must be an integer tensor (it indexes a table)"
        assert got.min() >= 0 and got.max() < (2 * M - 1) ** 2, \
            f"M = {M}: entries must lie in [0, (2M − 1)²) = [0, {(2 * M - 1) ** 2}); did you shift by M − 1?"
        ref = _relative_index_reference(M)
        if not torch.equal(got.long(), ref):
            if torch.equal(got.long(), ref.T):
                raise AssertionError(f"M = {M}: you computed position of key − position of query; "
                                     "the offset is query − key (entry [i, j] uses position_i − position_j)")
            bad = (got.long() != ref).nonzero()[0].tolist()
            raise AssertionError(f"M = {M}: entry {bad} is {int(got[bad[0], bad[1]])}, expected "
                                 f"{int(ref[bad[0], bad[1]])}; rows are multiplied by 2M − 1 = {2 * M - 1}")
    return f"All {len(sizes)} window sizes passed: your index reads the (2M − 1)² table correctly."


def _shift_mask_reference(H: int, W: int, M: int, s: int) -> torch.Tensor:
    """(nW, M², M²) bool, True where query i and key j of a rolled window came from different shifted windows."""
    def bands(L):  # shifted-window number of each place along one axis: windows start at s, s + M, …
        return torch.bucketize(torch.arange(L), torch.arange(s, L, M), right=True)

    group = bands(H)[:, None] * (W + 1) + bands(W)[None, :]  # (H, W): the shifted window of each token
    group = torch.roll(group, shifts=(-s, -s), dims=(0, 1))  # the rolled map the implementation attends over
    windows = group.view(H // M, M, W // M, M).permute(0, 2, 1, 3).reshape(-1, M * M)  # (nW, M²)
    return windows[:, :, None] != windows[:, None, :]


def check_shift_mask(fn) -> str:
    """Chapter 10, exercise "The mask of the shifted windows".

    ``fn(H, W, M, s) -> blocked`` takes an H×W token map (H, W multiples of M), the window side M and
    the shift 0 < s < M. The map is rolled by −s along both axes (``torch.roll(x, (-s, -s), (0, 1))``)
    and cut into (H/M)·(W/M) windows numbered row by row, tokens in each window row by row.
    It must return a bool tensor (nW, M², M²) that is True where query i and key j of window w must
    not attend to each other: they lie in different windows of the shifted partition of the
    original map, whose windows start at s, s + M, … along each axis (they only met through the
    wrap-around).
    """
    cases = [(8, 8, 4, 2), (8, 12, 4, 1), (12, 8, 4, 3), (14, 14, 7, 3), (6, 6, 3, 1)]
    for H, W, M, s in cases:
        got = fn(H, W, M, s)
        n = (H // M) * (W // M)
        assert isinstance(got, torch.Tensor) and got.shape == (n, M * M, M * M), \
            f"(H, W, M, s) = {(H, W, M, s)}: expected a tensor of shape {(n, M * M, M * M)}, got " \
            f"{getattr(got, 'shape', type(got))}"
        got = got.bool() if got.dtype == torch.bool else got != 0
        ref = _shift_mask_reference(H, W, M, s)
        assert torch.equal(got, got.transpose(1, 2)), f"{(H, W, M, s)}: the mask must be symmetric"
        assert not got.diagonal(dim1=1, dim2=2).any(), f"{(H, W, M, s)}: a token must be allowed to attend to itself"
        if not torch.equal(got, ref):
            w = int((got != ref).any(-1).any(-1).nonzero()[0])
            raise AssertionError(f"{(H, W, M, s)}: window {w} is wrong (expected {int(ref[w].sum())} blocked pairs, "
                                 f"got {int(got[w].sum())}); roll by −s, then compare shifted-window membership")
    return f"All {len(cases)} maps passed: your mask blocks exactly the pairs that met through the cyclic shift."
