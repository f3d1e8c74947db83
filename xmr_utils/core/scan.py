"""One fused pass over each tile of scores: top-k, rank counts and near-tie bands (numba).

A score tile ``[R, W]`` holds rows ``g0 .. g0+R-1`` and columns ``c0 .. c0+W-1`` of a score
matrix (queries x items). The kernels read every score right after the matrix product wrote
it and update per-row and per-column state in place; for every row the caller hands the tiles
over in ascending column order. ``span = (ra, rb, g0, c0)``: the kernel works on tile rows
``ra..rb-1``, which are global rows ``g0 + ra..``, and global columns ``c0..``.

Tie rule (as in :mod:`xmr_utils.core.retrieval`): descending score, equal scores by the lower
column index first. A row's running top-k is a sorted list that a new score enters only if it
is strictly above the k-th one: columns arrive in ascending order, so an equal score always
has the higher index and ranks below. This equals ``np.argsort(-s, kind="stable")[:, :k]``.

Rank counting, for every score ``v`` at ``(g, c)``:

* rows (image -> text): ``row_cnt += v > row_hi``; ``row_lo <= v <= row_hi`` is a *row band*
  entry. With ``row_bidx >= 0`` the row's reference score is exact (``row_lo == row_hi``) and
  an entry is a tie, counted when ``c < row_bidx``; otherwise it is recorded ``(g, c, v)`` for
  the caller to settle once the exact reference is known.
* columns (text -> image): ``col_cnt += v > col_hi``; ``col_lo <= v <= col_hi`` is a *column
  band* entry. Columns whose owner row ``col_own < exact_below`` are exact (a tie counts when
  ``g < col_own``); the others are recorded.

:func:`_rank_fast` does the counting for all scores in a branch-free loop over chunks of
:data:`CHUNK` scores that the compiler vectorises, and marks the chunks that hold something
rare -- a top-k candidate, a tie, a band entry; :func:`_topk_slow` and :func:`_band_slow`
revisit only those, score by score. Kernels release the GIL; :class:`Workers` runs disjoint
rows on threads. numba is imported on first use (compiled
kernels are cached on disk, so only the first use on a machine compiles).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np

#: Scores per vectorised chunk of :func:`_rank_fast`.
CHUNK: int = 64
#: The same for :func:`_topk_rows` (32 ran at half the speed: a chunk's check costs as much as
#: its scores once candidates are rare; early chunks, which all hold some, are few).
TOPK_CHUNK: int = 64
#: Below this many scores a tile is scanned as one range, on one thread.
MIN_PARALLEL_SCORES: int = 1 << 16


def _topk_rows(tile, span, vals, idx):  # pragma: no cover - compiled by numba
    """Running top-k ``vals``/``idx`` ``[R, k]`` of rows ``span[0]..span[1]-1`` updated with
    ``tile`` (columns ``span[3]..``). Empty slots have ``idx == -1``."""
    ra, rb, _, c0 = span
    n_cols = tile.shape[1]
    k = vals.shape[1]
    for r in range(ra, rb):
        row, rv, ri = tile[r], vals[r], idx[r]
        j0 = 0
        while j0 < n_cols:
            j1 = min(n_cols, j0 + TOPK_CHUNK)
            hit = np.int32(ri[k - 1] < 0)
            kth = rv[k - 1]
            part = row[j0:j1]
            if j1 - j0 == TOPK_CHUNK:  # a constant trip count: vectorised
                for jj in range(TOPK_CHUNK):
                    hit |= np.int32(part[jj] > kth)
            else:
                for jj in range(j1 - j0):
                    hit |= np.int32(part[jj] > kth)
            if hit:
                for j in range(j0, j1):
                    v = row[j]
                    if (ri[k - 1] < 0) | (v > rv[k - 1]):
                        p = k - 1
                        while p > 0 and (ri[p - 1] < 0 or rv[p - 1] < v):
                            rv[p], ri[p] = rv[p - 1], ri[p - 1]
                            p -= 1
                        rv[p], ri[p] = v, c0 + j
            j0 = j1


def _rank_fast(tile, span, rows, cols, hits):  # pragma: no cover - compiled by numba
    """Count scores above the row's and the column's band; mark chunks in ``hits[0]`` (may
    hold a top-k candidate: judged against the k-th score at the start, conservatively) and
    ``hits[1]`` (holds a band entry). ``rows = (row_lo, row_hi, vals, row_cnt)`` by tile row,
    ``cols = (col_lo, col_hi, col_cnt)`` by global column (``col_cnt``: this worker's)."""
    ra, rb, _, c0 = span
    row_lo, row_hi, vals, row_cnt = rows
    col_lo, col_hi, col_cnt = cols
    n_cols = tile.shape[1]
    k = vals.shape[1]
    for r in range(ra, rb):
        row, lo, hi, kth = tile[r], row_lo[r], row_hi[r], vals[r, k - 1]
        acc = 0
        for ch in range(-(-n_cols // CHUNK)):
            j0, j1 = ch * CHUNK, min(n_cols, (ch + 1) * CHUNK)
            # slices and int32 flags: the form LLVM vectorises (masks, no branches)
            part, c_lo, c_hi = row[j0:j1], col_lo[c0 + j0 : c0 + j1], col_hi[c0 + j0 : c0 + j1]
            c_cnt = col_cnt[c0 + j0 : c0 + j1]
            top = np.int32(0)
            band = np.int32(0)
            n_above = np.int32(0)
            for jj in range(CHUNK if j1 - j0 == CHUNK else j1 - j0):
                v = part[jj]
                above_col = np.int32(v > c_hi[jj])
                above_row = np.int32(v > hi)
                c_cnt[jj] += above_col
                n_above += above_row
                top |= np.int32(v > kth)
                # in a band: at or above its low end, not above its high end
                band |= (np.int32(v >= c_lo[jj]) & (above_col ^ 1)) | (
                    np.int32(v >= lo) & (above_row ^ 1)
                )
            acc += n_above  # type: ignore[assignment]  # numba widens the int32 count to int64
            hits[0, r, ch] = top
            hits[1, r, ch] = band
        row_cnt[r] += acc


def _topk_slow(tile, span, hits, vals, idx):  # pragma: no cover - compiled by numba
    """Top-k insertion over the chunks ``hits[0]`` marks (all chunks while a row's top-k
    is not full)."""
    ra, rb, _, c0 = span
    n_cols = tile.shape[1]
    k = vals.shape[1]
    for r in range(ra, rb):
        row, rv, ri = tile[r], vals[r], idx[r]
        for ch in range(hits.shape[2]):
            if hits[0, r, ch] == 0 and ri[k - 1] >= 0:
                continue
            for j in range(ch * CHUNK, min(n_cols, (ch + 1) * CHUNK)):
                v = row[j]
                if (ri[k - 1] < 0) | (v > rv[k - 1]):  # `|`: one well-predicted branch
                    p = k - 1
                    while p > 0 and (ri[p - 1] < 0 or rv[p - 1] < v):
                        rv[p], ri[p] = rv[p - 1], ri[p - 1]
                        p -= 1
                    rv[p], ri[p] = v, c0 + j


def _band_slow(tile, span, hits, rows, cols, band):  # pragma: no cover - compiled by numba
    """Ties and band entries in the chunks ``hits[1]`` marks. ``rows = (row_lo, row_hi,
    row_bidx, row_cnt)`` by tile row; ``cols = (col_lo, col_hi, col_own, exact_below,
    col_cnt)``; ``band = (band_g, band_c, band_v, band_n)``: this worker's ``[2, cap]``
    buffers (0: row band, 1: column band) -- beyond ``cap`` entries are counted, not kept."""
    ra, rb, g0, c0 = span
    row_lo, row_hi, row_bidx, row_cnt = rows
    col_lo, col_hi, col_own, exact_below, col_cnt = cols
    band_g, band_c, band_v, band_n = band
    n_cols = tile.shape[1]
    for r in range(ra, rb):
        row, lo, hi, bidx, g = tile[r], row_lo[r], row_hi[r], row_bidx[r], g0 + r
        for ch in range(hits.shape[2]):
            if hits[1, r, ch] == 0:
                continue
            for j in range(ch * CHUNK, min(n_cols, (ch + 1) * CHUNK)):
                v, c = row[j], c0 + j
                if (v >= lo) & (v <= hi):
                    if bidx >= 0:
                        row_cnt[r] += c < bidx
                    else:
                        n = band_n[0]
                        if n < band_g.shape[1]:
                            band_g[0, n], band_c[0, n], band_v[0, n] = g, c, v
                        band_n[0] = n + 1
                if (v >= col_lo[c]) & (v <= col_hi[c]):
                    if col_own[c] < exact_below:
                        col_cnt[c] += g < col_own[c]
                    else:
                        n = band_n[1]
                        if n < band_g.shape[1]:
                            band_g[1, n], band_c[1, n], band_v[1, n] = g, c, v
                        band_n[1] = n + 1


def _pair_sums(img, txt, owner, neg_sqeuclidean, span, out):  # pragma: no cover - numba
    """float64 true-pair score ``out[0, c]`` of ``img[owner[c]]`` and ``txt[c]`` and the
    magnitude of its terms ``out[1, c]``, for captions ``span[0]..span[1]-1`` (compiled with
    fastmath: an estimate, whose error the band absorbs)."""
    for c in range(span[0], span[1]):
        a, b = img[owner[c]], txt[c]
        score = 0.0
        mag = 0.0
        sq = 0.0
        for d in range(txt.shape[1]):
            x, y = np.float64(a[d]), np.float64(b[d])
            mag += abs(x * y)
            if neg_sqeuclidean:
                score -= (x - y) * (x - y)
                sq += x * x + y * y
            else:
                score += x * y
        out[0, c] = score
        out[1, c] = 2.0 * mag + sq if neg_sqeuclidean else mag


@functools.cache
def kernels() -> SimpleNamespace:
    """The compiled kernels ``topk_rows``, ``rank_fast``, ``topk_slow``, ``band_slow`` and
    ``pair_sums`` (numba; GIL released; compiled on first use, then cached on disk)."""
    import numba

    jit = numba.njit(nogil=True, cache=True)
    return SimpleNamespace(
        topk_rows=jit(_topk_rows),
        rank_fast=jit(_rank_fast),
        topk_slow=jit(_topk_slow),
        band_slow=jit(_band_slow),
        pair_sums=numba.njit(nogil=True, cache=True, fastmath=True)(_pair_sums),
    )


class Workers:
    """Splits the rows of a tile into contiguous ranges, one per thread, and waits for all of
    them. Use as a context manager.

    By default the caller's thread takes the first range (:meth:`run`). With ``background``
    every range runs on a thread of the pool, so the caller can go on while they do
    (:meth:`start`, then :meth:`wait`): the tiled paths compute the next tile with torch's
    threads while the kernels read the previous one, and no core idles or spins meanwhile.
    """

    def __init__(self, n_threads: int, background: bool = False) -> None:
        self.n_threads = max(1, int(n_threads))
        self.background = background
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[Any]] = []

    def __enter__(self) -> Workers:
        size = self.n_threads if self.background else self.n_threads - 1
        if size > 0:
            self._pool = ThreadPoolExecutor(size, thread_name_prefix="xmr-scan")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            try:
                self.wait()
            finally:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _bounds(self, n_rows: int, n_cols: int) -> np.ndarray:
        parts = self.n_threads if self._pool is not None else 1
        if n_rows * n_cols < MIN_PARALLEL_SCORES:
            parts = 1
        parts = max(1, min(parts, n_rows))
        return np.linspace(0, n_rows, parts + 1).astype(np.int64)

    def start(self, fn: Callable[[int, int, int], Any], n_rows: int, n_cols: int) -> None:
        """Start ``fn(worker, row_start, row_stop)`` over ``[0, n_rows)`` after the previous
        call's ranges finished; worker ``w`` is the only one to run with index ``w``, so
        per-worker buffers need no locks. Without ``background`` the first range runs on the
        caller's thread before this returns."""
        self.wait()
        bounds = self._bounds(n_rows, n_cols)
        first = 0 if self.background else 1
        self._pending = [
            self._pool.submit(fn, w, int(bounds[w]), int(bounds[w + 1]))  # type: ignore[union-attr]
            for w in range(first, len(bounds) - 1)
        ]
        if not self.background:
            fn(0, int(bounds[0]), int(bounds[1]))

    def wait(self) -> None:
        """Wait for the ranges started last; the first error of one is raised here."""
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def run(self, fn: Callable[[int, int, int], Any], n_rows: int, n_cols: int) -> None:
        """:meth:`start` and :meth:`wait`."""
        self.start(fn, n_rows, n_cols)
        self.wait()
