"""The score matrix in tiles: which tiles, and each one computed into one of two reused buffers.

The fast paths of :mod:`xmr_utils.core.retrieval` and :mod:`xmr_utils.core.metrics` never hold
more than two tiles of scores: the one the scan reads and the next one being computed
(:func:`tiles_in_order`). Tiles are large (:data:`TILE_ROWS` x :data:`TILE_COLS`, 16 MB in
float32) so that the matrix product runs at the speed of a large square one, and small enough
to stay in the last-level cache until the scan has read them.

Bits. MKL computes a product by one of two kernels with different rounding: one for blocks of
at most :data:`SMALL_BLOCK_ROWS` rows (or very small products), one for the rest; within
the large kernel a score's bits do not depend on the block's shape or position (checked by
``tests/core/test_tiles.py``). :func:`score_groups` therefore regroups only rows that
:func:`xmr_utils.core.retrieval.checked_score_blocks` computes with the large kernel, and
keeps every other block exactly as that function shapes it: each score has the bits it has
there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch

#: Query rows per tile (groups of rows are at least half this, or all rows there are).
TILE_ROWS: int = 2048
#: Item columns per tile (at least half this, or all columns there are).
TILE_COLS: int = 2048
#: Blocks of at most this many rows take MKL's small-matrix kernel (other rounding).
SMALL_BLOCK_ROWS: int = 128
#: Narrower score matrices keep the row blocks of ``checked_score_blocks`` as they are.
MIN_TILE_COLS: int = 1024


class Group(NamedTuple):
    """Rows ``r0..r1-1`` of the score matrix, computed as the column ranges ``cols``.

    ``split``: the rows are large-kernel rows regrouped by :func:`score_groups` and their
    width is split into tiles; otherwise the block keeps the shape ``checked_score_blocks``
    gives it (one full-width tile).
    """

    r0: int
    r1: int
    cols: tuple[tuple[int, int], ...]
    split: bool


#: Elements of the buffer :func:`sq_norms` squares its rows in (4 MB of float32).
SQ_NORM_BUFFER: int = 2**20


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norms ``[N]`` of the rows of ``x`` ``[N, D]``: the bits of
    ``(x * x).sum(dim=1)``, squared a few rows at a time in one small buffer (a whole-array
    temporary costs more in page faults than the arithmetic)."""
    n, width = x.shape
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    rows = max(1, SQ_NORM_BUFFER // max(1, width))
    buf = torch.empty((min(rows, n), width), dtype=x.dtype, device=x.device)
    for r0 in range(0, n, rows):
        chunk = x[r0 : r0 + rows]
        squares = torch.mul(chunk, chunk, out=buf[: chunk.shape[0]])
        torch.sum(squares, dim=1, out=out[r0 : r0 + chunk.shape[0]])
    return out


def dots_to_neg_sqeuclidean(
    dots: torch.Tensor, q_sq: torch.Tensor, item_sq: torch.Tensor
) -> torch.Tensor:
    """``dots`` ``[B, W]`` -> ``2 dots - q_sq[:, None] - item_sq[None, :]`` in place (this
    order of operations is part of every score's bits)."""
    return dots.mul_(2.0).sub_(q_sq[:, None]).sub_(item_sq[None, :])


def _split(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` in ``ceil(n / size)`` near-equal consecutive ranges."""
    n = stop - start
    parts = max(1, math.ceil(n / size))
    edges = [start + (n * i) // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def regroups(dtype: torch.dtype) -> bool:
    """Whether :func:`score_groups` may regroup blocks of ``dtype`` scores into tiles: float32
    only. Its large-kernel bits did not depend on the block's shape on either host this ran
    on (AVX-512 and AVX2); float64's did on the AVX2 one (MKL's dgemm gave a row other bits
    in a 256-row block than in a 129-row one, and in a 1024-wide one than in a 4100-wide one),
    so float64 keeps the blocks of ``checked_score_blocks`` as they are."""
    return dtype == torch.float32


def score_groups(n_queries: int, n_items: int, rows: int, regroup: bool = True) -> list[Group]:
    """Row groups ``(r0, r1, ((c0, c1), ...))`` that tile a ``[n_queries, n_items]`` matrix.

    ``rows`` is the row count of the blocks of ``checked_score_blocks``. Rows that those blocks
    compute with MKL's large kernel (blocks of more than :data:`SMALL_BLOCK_ROWS` rows, at
    least :data:`MIN_TILE_COLS` wide) are regrouped into tiles of about :data:`TILE_ROWS` x
    :data:`TILE_COLS`; every other block keeps its rows and its full width, and so does every
    block when not ``regroup`` (:func:`regroups`).
    """
    blocks = [(r0, min(n_queries, r0 + rows)) for r0 in range(0, n_queries, rows)]
    if not regroup or rows <= SMALL_BLOCK_ROWS or n_items < MIN_TILE_COLS:
        return [Group(r0, r1, ((0, n_items),), False) for r0, r1 in blocks]
    large_end = n_queries
    if blocks and blocks[-1][1] - blocks[-1][0] <= SMALL_BLOCK_ROWS:
        large_end = blocks[-1][0]
    cols = tuple(_split(0, n_items, TILE_COLS))
    groups = [Group(r0, r1, cols, True) for r0, r1 in _split(0, large_end, TILE_ROWS) if r1 > r0]
    if large_end < n_queries:
        groups.append(Group(large_end, n_queries, ((0, n_items),), False))
    return groups


class Buffer:
    """One reusable block of memory for tiles of any shape up to the largest asked for."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.data = torch.empty(0, dtype=dtype)

    def view(self, rows: int, cols: int) -> torch.Tensor:
        """A contiguous ``[rows, cols]`` view (valid until the next call)."""
        if self.data.numel() < rows * cols:
            self.data = torch.empty(rows * cols, dtype=self.data.dtype)
        return self.data[: rows * cols].view(rows, cols)


class ScoreTiles:
    """Computes tiles of ``score_matrix(queries, items)``.

    ``queries`` ``[N, D]`` and ``items`` ``[M, D]`` are checked, share a dtype and are already
    moved by :func:`xmr_utils.core.retrieval.centre_pair`; ``neg_sqeuclidean`` selects the
    expanded squared distance, else dot products. Safe to use from several threads, each with
    its own :class:`Buffer`.
    """

    def __init__(self, queries: torch.Tensor, items: torch.Tensor, neg_sqeuclidean: bool) -> None:
        self.queries, self.items = queries, items
        self.q_sq = sq_norms(queries) if neg_sqeuclidean else None
        self.item_sq = sq_norms(items) if neg_sqeuclidean else None

    def compute(self, r0: int, r1: int, c0: int, c1: int, buf: Buffer) -> torch.Tensor:
        """The tile ``[r1-r0, c1-c0]`` of rows ``r0..`` and columns ``c0..``, in ``buf``."""
        out = buf.view(r1 - r0, c1 - c0)
        torch.matmul(self.queries[r0:r1], self.items[c0:c1].T, out=out)
        if self.q_sq is not None and self.item_sq is not None:
            dots_to_neg_sqeuclidean(out, self.q_sq[r0:r1], self.item_sq[c0:c1])
        return out


def tiles_in_order(
    tiles: ScoreTiles, groups: Sequence[Group]
) -> Iterator[tuple[Group, int, torch.Tensor]]:
    """Yield ``(group, c0, tile)`` for every tile of ``groups``, group by group and each
    group's columns in order, computed with torch's threads.

    Tiles alternate between two buffers, so a tile stays valid while the next one is
    computed (until the one after it): a scan of one tile may run on other threads while the
    caller asks for the next (:class:`xmr_utils.core.scan.Workers` ``background``).
    """
    buffers = (Buffer(tiles.items.dtype), Buffer(tiles.items.dtype))
    n = 0
    for group in groups:
        for c0, c1 in group.cols:
            yield group, c0, tiles.compute(group.r0, group.r1, c0, c1, buffers[n % 2])
            n += 1
