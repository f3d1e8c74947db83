"""xmr_utils.core.tiles: the tiling covers the matrix once, and every score keeps its bits.

The bit test is the assumption the fast paths stand on: within MKL's large kernel a score
does not depend on the shape or position of the product it was computed in. It computes
the tiles exactly as the fast paths do (:func:`tiles_in_order`, torch's threads) against
the full-width blocks of ``checked_score_blocks`` on random floats, where any change of
summation order would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmr_utils.core import retrieval, tiles
from xmr_utils.core.tiles import Buffer, ScoreTiles, regroups, score_groups, tiles_in_order


def covered(groups: list[tiles.Group], n_q: int, n_items: int) -> np.ndarray:
    seen = np.zeros((n_q, n_items), np.int64)
    for g in groups:
        for c0, c1 in g.cols:
            seen[g.r0 : g.r1, c0:c1] += 1
    return seen


@pytest.mark.parametrize(
    ("n_q", "n_items", "rows"),
    [
        (5000, 158915, 422),
        (31783, 158915, 422),
        (1000, 5000, 300),
        (50, 5000, 300),
        (700, 800, 300),
        (900, 5000, 100),
    ],
)
def test_groups_cover_every_score_once_and_keep_small_blocks(
    n_q: int, n_items: int, rows: int
) -> None:
    groups = score_groups(n_q, n_items, rows)
    if n_q * n_items <= 10**8:
        assert (covered(groups, n_q, n_items) == 1).all()
    assert [g.r0 for g in groups] == sorted(g.r0 for g in groups)
    assert groups[0].r0 == 0 and groups[-1].r1 == n_q
    blocks = [(r0, min(n_q, r0 + rows)) for r0 in range(0, n_q, rows)]
    for g in groups:
        widths = [c1 - c0 for c0, c1 in g.cols]
        if g.split:  # regrouped large-kernel rows, wide tiles
            assert g.r1 - g.r0 > tiles.SMALL_BLOCK_ROWS and min(widths) >= tiles.MIN_TILE_COLS
            assert all(
                b1 - b0 > tiles.SMALL_BLOCK_ROWS for b0, b1 in blocks if b0 < g.r1 and b1 > g.r0
            )
        else:  # exactly one block of checked_score_blocks, full width
            assert (g.r0, g.r1) in blocks and g.cols == ((0, n_items),)


def test_score_groups_at_flickr30k_scale() -> None:
    groups = score_groups(31783, 158915, retrieval.rows_per_block(158915, None))
    assert len(groups) == 16 and all(g.split for g in groups)  # the 133-row tail is large too
    assert {len(g.cols) for g in groups} == {78}
    assert all(1024 <= g.r1 - g.r0 <= 2048 for g in groups)


def test_buffer_grows_and_reuses() -> None:
    buf = Buffer(torch.float32)
    a = buf.view(3, 4)
    assert a.shape == (3, 4) and a.is_contiguous()
    b = buf.view(2, 2)
    assert b.data_ptr() == a.data_ptr()
    assert buf.view(10, 10).numel() == 100


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
def test_score_tiles_compute_the_similarity(similarity: str) -> None:
    rng = np.random.default_rng(0)
    q, it = (
        rng.integers(-3, 4, (9, 5)).astype(np.float32),
        rng.integers(-3, 4, (12, 5)).astype(np.float32),
    )
    qt, itt = retrieval.centre_pair(torch.from_numpy(q), torch.from_numpy(it), similarity)
    st = ScoreTiles(qt, itt, similarity == "neg_sqeuclidean")
    full = retrieval.score_matrix(q, it, similarity)
    assert torch.equal(st.compute(2, 7, 3, 11, Buffer(torch.float32)), full[2:7, 3:11])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
@pytest.mark.parametrize(("n_q", "dim"), [(1000, 256), (1100, 96)])
def test_tiles_are_bit_identical_to_full_width_blocks(
    dtype: torch.dtype, similarity: str, n_q: int, dim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = torch.Generator().manual_seed(n_q)
    q = torch.randn(n_q, dim, generator=gen, dtype=dtype)
    it = torch.randn(4100, dim, generator=gen, dtype=dtype)
    qc, itc = retrieval.centre_pair(q, it, similarity)
    rows = 300  # blocks of 300 rows; 1000 rows leave a 100-row (small-kernel) tail
    want = torch.cat(
        [b.clone() for _, b in retrieval.checked_score_blocks(qc, itc, similarity, rows)]
    )
    st = ScoreTiles(qc, itc, similarity == "neg_sqeuclidean")
    got = torch.full_like(want, torch.nan)
    groups = score_groups(n_q, 4100, rows, regroups(dtype))
    for g, c0, tile in tiles_in_order(st, groups):
        got[g.r0 : g.r1, c0 : c0 + tile.shape[1]] = tile
    assert torch.equal(got, want)
    # float32 is regrouped into tiles; float64 keeps the 300-row full-width blocks
    assert any(g.split for g in groups) is (dtype == torch.float32)


def test_tiles_in_order_keep_a_tile_valid_while_the_next_is_computed() -> None:
    gen = torch.Generator().manual_seed(0)
    q, it = torch.randn(300, 16, generator=gen), torch.randn(5000, 16, generator=gen)
    groups = score_groups(300, 5000, 150)
    full = retrieval.score_matrix(q, it, "dot")
    previous = None
    for g, c0, tile in tiles_in_order(ScoreTiles(q, it, False), groups):
        if previous is not None:  # the one before is intact until the one after this
            pg, pc0, ptile = previous
            assert torch.equal(ptile, full[pg.r0 : pg.r1, pc0 : pc0 + ptile.shape[1]])
        previous = (g, c0, tile)
    assert previous is not None and len([c for g in groups for c in g.cols]) > 2


def test_without_regrouping_the_groups_are_the_checked_blocks() -> None:
    """float64 (``regroups``): MKL's dgemm on an AVX2 CPU gave other bits in other shapes."""
    assert regroups(torch.float32) and not regroups(torch.float64)
    groups = score_groups(1000, 4100, 300, regroup=False)
    assert [(g.r0, g.r1, g.cols, g.split) for g in groups] == [
        (r0, min(1000, r0 + 300), ((0, 4100),), False) for r0 in range(0, 1000, 300)
    ]
