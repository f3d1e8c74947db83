"""xmr_utils.core.scan: each kernel against numpy on hand-made tiles, and the two thread runners."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from xmr_utils.core import scan


def stable_topk(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("levels", "k", "width"), [(None, 5, 70), (2, 10, 33), (3, 4, 1), (1, 50, 9)]
)
def test_topk_rows_over_tiles_equals_stable_argsort(
    dtype: type, levels: int | None, k: int, width: int
) -> None:
    rng = np.random.default_rng(0)
    shape = (9, 130)
    s = rng.standard_normal(shape) if levels is None else rng.integers(0, levels, shape)
    s = s.astype(dtype)
    kk = min(k, shape[1])
    vals, idx = np.full((9, kk), -np.inf, dtype), np.full((9, kk), -1, np.int64)
    for c0 in range(0, shape[1], width):  # tiles in ascending column order, rows 2..8 only
        tile = np.ascontiguousarray(s[:, c0 : c0 + width])
        scan.kernels().topk_rows(tile, (2, 9, 0, c0), vals, idx)
    want = stable_topk(s, kk)
    np.testing.assert_array_equal(idx[2:], want[2:])
    np.testing.assert_array_equal(vals[2:], np.take_along_axis(s, want, 1)[2:])
    assert (idx[:2] == -1).all()  # rows outside the span are untouched


def rank_state(n_rows: int, n_cols: int, dtype: type) -> dict[str, np.ndarray]:
    return {
        "row_lo": np.full(n_rows, np.inf, dtype),
        "row_hi": np.full(n_rows, np.inf, dtype),
        "row_bidx": np.zeros(n_rows, np.int64),
        "row_cnt": np.zeros(n_rows, np.int64),
        "vals": np.full((n_rows, 3), -np.inf, dtype),
        "idx": np.full((n_rows, 3), -1, np.int64),
        "col_lo": np.full(n_cols, np.inf, dtype),
        "col_hi": np.full(n_cols, np.inf, dtype),
        "col_own": np.zeros(n_cols, np.int64),
        "col_cnt": np.zeros(n_cols, np.int32),
        "band_g": np.zeros((2, 4), np.int32),
        "band_c": np.zeros((2, 4), np.int32),
        "band_v": np.zeros((2, 4), dtype),
        "band_n": np.zeros(2, np.int64),
    }


def run_rank(tile: np.ndarray, st: dict[str, np.ndarray], g0: int, exact_below: int) -> None:
    k = scan.kernels()
    span = (0, tile.shape[0], g0, 0)
    hits = np.empty((2, tile.shape[0], -(-tile.shape[1] // scan.CHUNK)), np.int8)
    k.rank_fast(tile, span, (st["row_lo"], st["row_hi"], st["vals"], st["row_cnt"]),
                (st["col_lo"], st["col_hi"], st["col_cnt"]), hits)  # fmt: skip
    k.topk_slow(tile, span, hits, st["vals"], st["idx"])
    k.band_slow(tile, span, hits, (st["row_lo"], st["row_hi"], st["row_bidx"], st["row_cnt"]),
                (st["col_lo"], st["col_hi"], st["col_own"], exact_below, st["col_cnt"]),
                (st["band_g"], st["band_c"], st["band_v"], st["band_n"]))  # fmt: skip


def test_rank_kernels_count_ties_and_keep_band_entries() -> None:
    # 3 rows (global rows 10..12) x 150 columns, integer scores: many exact ties
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 4, (3, 150)).astype(np.float32)
    st = rank_state(3, 150, np.float32)
    # row 0: exact reference 2 at column 40 -> counts > 2, and == 2 at columns < 40
    st["row_lo"][0] = st["row_hi"][0] = 2.0
    st["row_bidx"][0] = 40
    # row 1: banded reference in [1, 2] -> counts > 2, keeps 1 <= v <= 2 (only 4 fit)
    st["row_lo"][1], st["row_hi"][1], st["row_bidx"][1] = 1.0, 2.0, -1
    # columns 0..99 exact with reference 1 owned by global row 11; 100..149 banded [3, 3]
    st["col_lo"][:100] = st["col_hi"][:100] = 1.0
    st["col_own"][:100] = 11
    st["col_lo"][100:], st["col_hi"][100:], st["col_own"][100:] = 3.0, 3.0, 99
    run_rank(tile, st, g0=10, exact_below=12)

    row0 = tile[0]
    assert st["row_cnt"][0] == (row0 > 2).sum() + (row0[:40] == 2).sum()
    assert st["row_cnt"][1] == (tile[1] > 2).sum()
    assert st["row_cnt"][2] == 0  # reference +inf: nothing above
    want_cols = (tile[:, :100] > 1).sum(0) + (tile[:1, :100] == 1).sum(0)  # row 10 < owner 11
    np.testing.assert_array_equal(st["col_cnt"][:100], want_cols)
    np.testing.assert_array_equal(st["col_cnt"][100:], 0)  # nothing above 3
    in_row1 = np.flatnonzero((tile[1] >= 1) & (tile[1] <= 2))
    in_cols = np.argwhere(tile[:, 100:] == 3)
    assert st["band_n"].tolist() == [len(in_row1), len(in_cols)]  # counted beyond capacity
    np.testing.assert_array_equal(st["band_g"][0], 11)
    np.testing.assert_array_equal(st["band_c"][0], in_row1[:4])
    np.testing.assert_array_equal(st["band_v"][0], tile[1, in_row1[:4]])
    np.testing.assert_array_equal(st["band_c"][1], 100 + in_cols[:4, 1])  # in scan order
    np.testing.assert_array_equal(st["band_g"][1], 10 + in_cols[:4, 0])
    np.testing.assert_array_equal(st["idx"], stable_topk(tile, 3))


def test_pair_sums_are_float64_scores_and_term_magnitudes() -> None:
    rng = np.random.default_rng(2)
    img = rng.standard_normal((4, 33)).astype(np.float32)
    txt = rng.standard_normal((6, 33)).astype(np.float32)
    owner = np.array([3, 0, 0, 2, 1, 3])
    a, b = img[owner].astype(np.float64), txt.astype(np.float64)
    for neg, want, mag in (
        (False, (a * b).sum(1), np.abs(a * b).sum(1)),
        (True, -((a - b) ** 2).sum(1), 2 * np.abs(a * b).sum(1) + (a * a).sum(1) + (b * b).sum(1)),
    ):
        out = np.zeros((2, 6))
        scan.kernels().pair_sums(img, txt, owner, neg, (1, 6), out)
        np.testing.assert_allclose(out[0, 1:], want[1:], rtol=1e-12)
        np.testing.assert_allclose(out[1, 1:], mag[1:], rtol=1e-12)
        assert out[0, 0] == 0 and out[1, 0] == 0  # outside the span


@pytest.mark.parametrize(
    ("n_threads", "n_rows", "n_cols", "parts"),
    [(3, 10, 10**5, 3), (3, 2, 10**5, 2), (3, 10, 10, 1), (1, 10, 10**5, 1)],
)
def test_workers_split_rows_into_contiguous_ranges(
    n_threads: int, n_rows: int, n_cols: int, parts: int
) -> None:
    seen: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def fn(w: int, a: int, b: int) -> None:
        with lock:
            seen.append((w, a, b))

    with scan.Workers(n_threads) as pool:
        pool.run(fn, n_rows, n_cols)
    seen.sort()
    assert [w for w, _, _ in seen] == list(range(parts))
    assert seen[0][1] == 0 and seen[-1][2] == n_rows
    assert all(seen[i][2] == seen[i + 1][1] for i in range(parts - 1))


def test_background_workers_run_every_range_off_the_callers_thread() -> None:
    seen: list[tuple[int, int, int, str]] = []
    lock = threading.Lock()

    def fn(w: int, a: int, b: int) -> None:
        with lock:
            seen.append((w, a, b, threading.current_thread().name))

    with scan.Workers(2, background=True) as pool:
        pool.start(fn, 10, 10**5)
        pool.wait()
        assert sorted(s[:3] for s in seen) == [(0, 0, 5), (1, 5, 10)]
        pool.start(fn, 4, 10)  # small: one range
    assert (0, 0, 4) in [s[:3] for s in seen]  # __exit__ waited for it
    assert all(s[3].startswith("xmr-scan") for s in seen)


def test_start_waits_for_the_previous_ranges_and_wait_raises_their_error() -> None:
    order: list[str] = []

    def slow(w: int, a: int, b: int) -> None:
        time.sleep(0.2)
        order.append("slow")

    def fails(w: int, a: int, b: int) -> None:
        order.append("next")
        raise ValueError("range failed")

    with scan.Workers(2, background=True) as pool:
        pool.start(slow, 1, 1)
        pool.start(fails, 1, 1)  # waits for `slow` first
        with pytest.raises(ValueError, match="range failed"):
            pool.wait()
    assert order == ["slow", "next"]
