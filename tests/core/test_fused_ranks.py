"""xmr_utils.core.fused_ranks: bit-identical to the torch path, and its bands and fallbacks.

The tie cases against brute force run on both paths in ``test_metrics.py`` (``score_path``).
Here: random float embeddings at real tile sizes, where the two paths agree only if every
score keeps its bits and every band entry is settled right; and the second pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmr_utils.core import fused_ranks, metrics, retrieval, tiles
from xmr_utils.core.fused_ranks import band_terms, caption_table, pair_estimates

FIELDS = ("i2t_best_rank", "i2t_topk", "i2t_topk_relevant", "n_relevant", "t2i_rank")


def assert_same_ranks(a: metrics.RetrievalRanks, b: metrics.RetrievalRanks) -> None:
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_caption_table_lists_each_images_captions_in_order() -> None:
    table = caption_table(np.array([2, 0, 2, 2, 0]), 4)
    assert table.tolist() == [[1, 4, 5], [5, 5, 5], [0, 2, 3], [5, 5, 5]]


def test_band_terms_grow_with_the_dimension() -> None:
    assert band_terms(64) == 20 and band_terms(1024) == 80 and band_terms(4096) == 272


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
def test_pair_estimates_bracket_the_float32_and_the_exact_scores(similarity: str) -> None:
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(50, 1024, generator=gen)  # all-positive terms: the largest rounding errors
    txt = torch.rand(300, 1024, generator=gen)
    owner = torch.arange(300) % 50
    img, txt = retrieval.centre_pair(img, txt, similarity)
    lo, hi = pair_estimates(img, txt, owner, similarity == "neg_sqeuclidean")
    assert lo.dtype == np.float32 and (lo < hi).all()
    s32 = retrieval.score_matrix(img, txt, similarity).numpy() if similarity == "dot" else None
    a, b = img[owner].double(), txt.double()
    exact = (a * b).sum(1) if similarity == "dot" else -((a - b) ** 2).sum(1)
    assert ((lo <= exact.numpy()) & (exact.numpy() <= hi)).all()
    if s32 is not None:
        t = s32[owner.numpy(), np.arange(300)]
        assert ((lo <= t) & (t <= hi)).all()


def paths(monkeypatch: pytest.MonkeyPatch, fused: bool) -> None:
    monkeypatch.setattr(retrieval, "FUSED_MIN_SCORES", 0 if fused else 2**62)


@pytest.mark.parametrize("similarity", ["dot", "neg_sqeuclidean"])
@pytest.mark.parametrize("n_img", [1000, 1100])
def test_fused_ranks_are_bit_identical_to_the_torch_path_on_random_floats(
    similarity: str, n_img: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = torch.Generator().manual_seed(n_img)
    img = torch.nn.functional.normalize(torch.randn(n_img, 96, generator=gen), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(4100, 96, generator=gen), dim=1)
    owner = torch.from_numpy(np.random.default_rng(0).integers(0, n_img, 4100))
    monkeypatch.setattr(retrieval, "BLOCK_ELEMENTS", 300 * 4100)  # blocks of 300 rows
    monkeypatch.setattr(tiles, "TILE_ROWS", 512)  # several groups: column bands in use
    paths(monkeypatch, fused=False)
    want = metrics.ranks_from_embeddings(img, txt, owner, similarity)
    paths(monkeypatch, fused=True)
    calls: list[bool] = []
    real = fused_ranks._scan_tiles
    monkeypatch.setattr(
        fused_ranks, "_scan_tiles", lambda *a, **kw: calls.append(True) or real(*a, **kw)
    )
    got = metrics.ranks_from_embeddings(img, txt, owner, similarity)
    assert calls == [True]  # one pass: the bands held every reference
    assert_same_ranks(got, want)
    assert 1 < np.median(got.t2i_rank) < n_img  # a real spread of ranks, not a degenerate case


@pytest.mark.parametrize("why", ["overflow", "estimate off"])
def test_second_pass_when_the_bands_overflow_or_miss(
    why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = torch.Generator().manual_seed(1)
    img = torch.randint(-2, 3, (700, 64), generator=gen).float()  # exact scores, many ties
    txt = torch.randint(-2, 3, (2100, 64), generator=gen).float()
    owner = torch.arange(2100) % 700
    monkeypatch.setattr(retrieval, "BLOCK_ELEMENTS", 200 * 2100)
    monkeypatch.setattr(tiles, "TILE_ROWS", 400)
    paths(monkeypatch, fused=False)
    want = metrics.ranks_from_embeddings(img, txt, owner)
    paths(monkeypatch, fused=True)
    if why == "overflow":
        monkeypatch.setattr(fused_ranks, "MAX_BAND_ENTRIES", 10)
    else:
        real_bands = fused_ranks.pair_estimates
        monkeypatch.setattr(
            fused_ranks, "pair_estimates", lambda *a: tuple(x + 1 for x in real_bands(*a))
        )
    calls: list[bool] = []
    real = fused_ranks._scan_tiles
    monkeypatch.setattr(
        fused_ranks, "_scan_tiles", lambda *a, **kw: calls.append(kw["exact"]) or real(*a, **kw)
    )
    assert_same_ranks(metrics.ranks_from_embeddings(img, txt, owner), want)
    assert calls == [False, True]


def test_fused_ranks_from_a_score_matrix_equal_the_torch_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, (300, 1500)).astype(np.float32)
    owner = rng.integers(0, 300, 1500)
    paths(monkeypatch, fused=False)
    want = metrics.ranks_from_scores(scores, owner)
    paths(monkeypatch, fused=True)
    assert_same_ranks(metrics.ranks_from_scores(scores, owner), want)
    assert_same_ranks(metrics.ranks_from_scores(scores.T.copy().T, owner), want)  # not C-contiguous
