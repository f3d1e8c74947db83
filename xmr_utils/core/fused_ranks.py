"""Per-query ranks in one fused pass over score tiles (the fast path of the metrics).

What is computed is what :mod:`xmr_utils.core.metrics` defines -- per image, the rank of its
best own caption and its top-k captions; per caption, how many images score above its owner
(tie rule: lower index first) -- but every score is read once by the kernels of
:mod:`xmr_utils.core.scan`, while the matrix product computes the next tile
(:mod:`xmr_utils.core.tiles`).

A score is compared with its row's reference (the image's best own caption) and its column's
(the caption's true pair) before both are known exactly: the true-pair scores of rows not yet
computed, and the best caption of a row whose tiles are not all done. Each reference is then
bracketed by a float64 estimate with an error band (:func:`pair_estimates`); scores above the
band are counted, scores in it are kept as ``(row, column, score)`` and settled once the exact
reference -- the tile's own value, gathered as the tile goes by -- is known. If a reference
falls outside its band, or the bands hold more than :data:`MAX_BAND_ENTRIES` scores (e.g.
collapsed embeddings), a second pass over bit-identical tiles counts with exact references.
The ranks are exactly those of :func:`xmr_utils.core.metrics.ranks_from_scores` on the
materialised matrix (tests compare them, ties included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xmr_utils.core import scan
from xmr_utils.core.tiles import Group, ScoreTiles, regroups, score_groups, tiles_in_order

#: Most band entries (per kind, all workers together) before the exact second pass.
MAX_BAND_ENTRIES: int = 2**24


def band_terms(dim: int) -> int:
    """Half-width of the band in units of ``u * scale`` (``u``: unit roundoff; ``scale``: the
    sum of the magnitudes of the score's terms): ``dim // 16 + 16``.

    Any summation order stays within ``dim * u * scale`` (Higham's gamma), but MKL's sgemm
    errors measured far less: at most 2.6 units on Gaussian 1024-d inputs, 16 on all-positive
    or collapsed ones (``dim // 16 + 16`` = 80 there). A score outside its band is detected
    and only costs the exact second pass; a narrower band means fewer entries to settle.
    """
    return dim // 16 + 16


@dataclass
class RankArrays:
    """Raw outputs: ``above_best`` int64 ``[N_img]`` (images: captions ranked above the best
    own one), ``topk`` int64 ``[N_img, kmax]`` (-1 pads), ``above_owner`` int64 ``[N_cap]``."""

    above_best: np.ndarray
    topk: np.ndarray
    above_owner: np.ndarray


def caption_table(owner: np.ndarray, n_img: int) -> np.ndarray:
    """int64 ``[N_img, maxcap]``: each image's caption ids in ascending order, padded with
    ``N_cap``."""
    n_cap = owner.shape[0]
    counts = np.bincount(owner, minlength=n_img)
    order = np.argsort(owner, kind="stable")
    starts = np.cumsum(counts) - counts
    slot = np.arange(n_cap) - starts[owner[order]]
    table = np.full((n_img, max(1, int(counts.max()) if n_img else 1)), n_cap, dtype=np.int64)
    table[owner[order], slot] = order
    return table


def pair_estimates(
    img: torch.Tensor, txt: torch.Tensor, owner: torch.Tensor, neg_sqeuclidean: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` ``[N_cap]`` in the embeddings' dtype, bracketing every true-pair score.

    The estimate is a float64 sum (:func:`xmr_utils.core.scan.kernels` ``.pair_sums``); the
    half-width is :func:`band_terms` units of roundoff times the magnitude of the terms,
    rounded outward.
    """
    a, b, own = img.numpy(), txt.numpy(), owner.numpy()
    sums = np.empty((2, b.shape[0]))  # score estimate, magnitude of its terms
    pair_sums = scan.kernels().pair_sums
    with scan.Workers(torch.get_num_threads()) as pool:
        pool.run(
            lambda _w, r0, r1: pair_sums(a, b, own, neg_sqeuclidean, (r0, r1), sums),
            b.shape[0],
            b.shape[1],
        )
    approx, scale = sums
    finfo = np.finfo(a.dtype)
    half = band_terms(b.shape[1]) * float(finfo.eps) / 2 * scale + float(finfo.tiny)
    lo, hi = (approx - half).astype(a.dtype), (approx + half).astype(a.dtype)
    lo = np.where(lo > approx - half, np.nextafter(lo, a.dtype.type(-np.inf)), lo)
    hi = np.where(hi < approx + half, np.nextafter(hi, a.dtype.type(np.inf)), hi)
    return lo, hi


class _RankScan:
    """The state of one pass: per-row and per-column references, counts, top-k, bands."""

    def __init__(
        self, owner: np.ndarray, n_img: int, kmax: int, dtype: np.dtype, workers: int
    ) -> None:
        n_cap = owner.shape[0]
        self.owner, self.n_img, self.dtype, self.workers = owner, n_img, dtype, workers
        self.table = caption_table(owner, n_img)
        self.has = self.table[:, 0] < n_cap
        self.row_lo = np.full(n_img, np.inf, dtype)
        self.row_hi = np.full(n_img, np.inf, dtype)
        self.row_bidx = np.zeros(n_img, np.int64)  # exact (never counts) until set
        self.row_cnt = np.zeros(n_img, np.int64)
        self.vals = np.full((n_img, kmax), -np.inf, dtype)
        self.topk = np.full((n_img, kmax), -1, np.int64)
        self.col_lo, self.col_hi = np.empty(n_cap, dtype), np.empty(n_cap, dtype)
        self.target = np.full(n_cap + 1, -np.inf, dtype)  # [n_cap]: padding of the table
        self.col_cnt = np.zeros((workers, n_cap), np.int32)
        self.cap = max(1, MAX_BAND_ENTRIES // workers)
        self.band_g = np.empty((workers, 2, self.cap), np.int32)
        self.band_c = np.empty((workers, 2, self.cap), np.int32)
        self.band_v = np.empty((workers, 2, self.cap), dtype)
        self.band_n = np.zeros((workers, 2), np.int64)

    def set_bands(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Bracket every true-pair score by ``[lo, hi]`` and every row's best by the max."""
        self.col_lo[:], self.col_hi[:] = lo, hi
        pad = np.full(1, -np.inf, self.dtype)
        row_lo = np.concatenate([lo, pad])[self.table].max(axis=1)
        row_hi = np.concatenate([hi, pad])[self.table].max(axis=1)
        self.row_lo = np.where(self.has, row_lo, np.inf).astype(self.dtype)
        self.row_hi = np.where(self.has, row_hi, np.inf).astype(self.dtype)
        self.row_bidx = np.where(self.has, -1, 0).astype(np.int64)

    def set_exact(self, captions: np.ndarray) -> None:
        """Columns ``captions`` have their exact ``target``: compare with it alone."""
        self.col_lo[captions] = self.col_hi[captions] = self.target[captions]

    def best(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(best score, lowest caption id reaching it)`` of rows ``r0..r1-1``."""
        tab = self.table[r0:r1]
        vals = self.target[tab]
        best = vals.max(axis=1)
        bidx = np.where(vals == best[:, None], tab, self.owner.shape[0]).min(axis=1)
        return best, bidx

    def set_rows_exact(self, r0: int, r1: int) -> None:
        best, bidx = self.best(r0, r1)
        has = self.has[r0:r1]
        self.row_lo[r0:r1] = self.row_hi[r0:r1] = np.where(has, best, np.inf)
        self.row_bidx[r0:r1] = np.where(has, bidx, 0)

    def owned(self, r0: int, r1: int) -> np.ndarray:
        """Sorted ids of the captions that images ``r0..r1-1`` own."""
        ids = np.sort(self.table[r0:r1].ravel())
        return ids[ids < self.owner.shape[0]]

    def take_targets(self, tile: np.ndarray, g0: int, c0: int, owned: np.ndarray) -> None:
        """Record the exact true-pair scores that ``tile`` (rows ``g0..``, columns ``c0..``)
        holds for the captions ``owned`` (sorted), and compare with them from now on."""
        mine = owned[np.searchsorted(owned, c0) : np.searchsorted(owned, c0 + tile.shape[1])]
        self.target[mine] = tile[self.owner[mine] - g0, mine - c0]
        self.set_exact(mine)

    def scan(
        self, w: int, tile: np.ndarray, rows: tuple[int, int], corner: tuple[int, int], exact: int
    ) -> None:
        """The rank kernels over tile rows ``rows[0]..rows[1]-1`` as worker ``w``; ``corner =
        (g0, c0)``: the tile's first global row and column; ``exact``: columns owned by rows
        below it have their exact reference."""
        g0, c0 = corner
        n, k = tile.shape[0], scan.kernels()
        span = (rows[0], rows[1], g0, c0)
        lo, hi = self.row_lo[g0 : g0 + n], self.row_hi[g0 : g0 + n]
        cnt, vals, idx = self.row_cnt[g0 : g0 + n], self.vals[g0 : g0 + n], self.topk[g0 : g0 + n]
        hits = np.empty((2, n, -(-tile.shape[1] // scan.CHUNK)), np.int8)
        k.rank_fast(
            tile, span, (lo, hi, vals, cnt), (self.col_lo, self.col_hi, self.col_cnt[w]), hits
        )
        k.topk_slow(tile, span, hits, vals, idx)
        cols = (self.col_lo, self.col_hi, self.owner, exact, self.col_cnt[w])
        band = (self.band_g[w], self.band_c[w], self.band_v[w], self.band_n[w])
        k.band_slow(tile, span, hits, (lo, hi, self.row_bidx[g0 : g0 + n], cnt), cols, band)

    def start_rows(self, r0: int, r1: int) -> None:
        self.vals[r0:r1] = -np.inf
        self.topk[r0:r1] = -1

    def overflowed(self) -> bool:
        return bool((self.band_n > self.cap).any())

    def _entries(self, kind: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.band_n[:, kind]
        parts = [(self.band_g[w, kind, : n[w]], self.band_c[w, kind, : n[w]],
                  self.band_v[w, kind, : n[w]]) for w in range(self.workers)]  # fmt: skip
        g, c, v = (np.concatenate(x) for x in zip(*parts, strict=True))
        return g.astype(np.int64), c.astype(np.int64), v

    def result(self) -> RankArrays:
        """Settle the band entries against the exact references and return the ranks."""
        best, bidx = self.best(0, self.n_img)
        g, c, v = self._entries(0)
        row_cnt = self.row_cnt.copy()
        above = (v > best[g]) | ((v == best[g]) & (c < bidx[g]))
        row_cnt += np.bincount(g[above], minlength=self.n_img)
        col_cnt = self.col_cnt.sum(axis=0, dtype=np.int64)
        g, c, v = self._entries(1)
        t = self.target[c]
        above = (v > t) | ((v == t) & (g < self.owner[c]))
        col_cnt += np.bincount(c[above], minlength=col_cnt.shape[0])
        return RankArrays(np.where(self.has, row_cnt, 0), self.topk, col_cnt)


def _scan_tiles(state: _RankScan, tiles: ScoreTiles, groups: list[Group], exact: bool) -> None:
    """One pass over every tile, in row order. ``exact``: references are all known.

    torch computes each tile with all its threads while the workers scan the previous one
    (:func:`~xmr_utils.core.tiles.tiles_in_order`, :class:`~xmr_utils.core.scan.Workers`
    ``background``); a tile's exact references are taken once the scan before it finished.
    """
    owned = np.empty(0, np.int64)
    with scan.Workers(state.workers, background=True) as pool:
        for group, c0, tile in tiles_in_order(tiles, groups):
            t = tile.numpy()
            pool.wait()
            if c0 == group.cols[0][0]:
                state.start_rows(group.r0, group.r1)
                owned = state.owned(group.r0, group.r1)
            if not exact:
                state.take_targets(t, group.r0, c0, owned)
                if len(group.cols) == 1:
                    state.set_rows_exact(group.r0, group.r1)
            below = state.n_img if exact else group.r1
            pool.start(  # defaults bind the loop's values; mypy cannot type such a lambda
                lambda w, a, b, t=t, at=(group.r0, c0), e=below: state.scan(  # type: ignore[misc]
                    w, t, (a, b), at, e
                ),
                t.shape[0],
                t.shape[1],
            )


def ranks_from_embeddings(
    img: torch.Tensor,
    txt: torch.Tensor,
    owner: torch.Tensor,
    neg_sqeuclidean: bool,
    rows: int,
    kmax: int,
) -> RankArrays:
    """Ranks of ``score_matrix(img [N_img, D], txt [N_cap, D])`` (checked, one dtype, moved
    by :func:`~xmr_utils.core.retrieval.centre_pair`) with ``owner`` int64 ``[N_cap]``;
    ``rows``: the row count of the score blocks whose bits the tiles keep."""
    n_img, n_cap = img.shape[0], txt.shape[0]
    dtype = img.numpy().dtype
    own = owner.numpy()
    groups = score_groups(n_img, n_cap, rows, regroups(img.dtype))
    tiles = ScoreTiles(img, txt, neg_sqeuclidean)
    workers = max(1, torch.get_num_threads())
    state = _RankScan(own, n_img, kmax, dtype, workers)
    banded = len(groups) > 1 or len(groups[0].cols) > 1
    if banded:
        lo, hi = pair_estimates(img, txt, owner, neg_sqeuclidean)
        state.set_bands(lo, hi)
    _scan_tiles(state, tiles, groups, exact=False)
    t = state.target[:n_cap]
    if not banded or (not state.overflowed() and bool(((t >= lo) & (t <= hi)).all())):
        return state.result()
    second = _RankScan(own, n_img, kmax, dtype, workers)
    second.target[:] = state.target
    second.set_exact(np.arange(n_cap))
    second.set_rows_exact(0, n_img)
    _scan_tiles(second, tiles, groups, exact=True)
    return second.result()


def ranks_from_scores(scores: torch.Tensor, owner: torch.Tensor, kmax: int) -> RankArrays:
    """Ranks of a materialised score matrix ``[N_img, N_cap]`` (float32/float64) with
    ``owner`` int64 ``[N_cap]``: one exact pass, references gathered first."""
    s = scores.contiguous().numpy()
    own = owner.numpy()
    n_img, n_cap = s.shape
    state = _RankScan(own, n_img, kmax, s.dtype, max(1, torch.get_num_threads()))
    state.target[:n_cap] = s[own, np.arange(n_cap)]
    state.set_exact(np.arange(n_cap))
    state.set_rows_exact(0, n_img)
    step = max(1, 2**22 // max(1, n_cap))
    with scan.Workers(state.workers) as pool:
        for r0 in range(0, n_img, step):
            block = s[r0 : r0 + step]
            pool.run(  # defaults bind the loop's values; mypy cannot type such a lambda
                lambda w, a, b, t=block, at=(r0, 0): state.scan(w, t, (a, b), at, n_img),  # type: ignore[misc]
                block.shape[0],
                n_cap,
            )
    return state.result()
