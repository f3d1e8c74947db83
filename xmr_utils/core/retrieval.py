"""Similarity scores and exact top-k search (torch and numba; faiss on request).

Tie rule (shared with :mod:`xmr_utils.core.metrics`): items are ranked by descending score and
equal scores are broken by the lower item index first -- the order a stable descending sort
gives. ``torch.topk`` does not promise that order among equal values, so :func:`topk` repairs
it: the result is identical to ``np.argsort(-scores, kind="stable")[:, :k]``.

Similarities (``similarity``, names from :mod:`xmr_utils.core.similarity`):

* ``"dot"``: ``a @ b.T``.
* ``"neg_sqeuclidean"``: ``-|a - b|^2`` (higher = closer), expanded as
  ``-(|a'|^2 + |b'|^2 - 2 a' @ b'.T)`` after both sides are moved by one shared point
  (:func:`central_row`: ``a' = a - z``, ``b' = b - z``, which leaves every distance as it
  is). Expanding around the origin instead loses all float32 precision when the embeddings sit
  close together far from it (the collapse regime: 50 points within 0.01 of a point 100 units
  out gave rsum 71 where exact arithmetic gives 600). ``z`` is an input row, so on integer-valued
  inputs every score stays exact. Scores are not clamped at 0, because clamping would create
  ties that the inputs do not have.

Two paths compute the same results bit for bit (``tests/core/test_retrieval.py`` compares
them on random floats and on ties):

* small problems (fewer than :data:`FUSED_MIN_SCORES` scores): score blocks of ``chunk_size``
  query rows against all items (:func:`checked_score_blocks`), ranked by torch ops;
* large ones: tiles of about 2048 x 2048 scores (:mod:`xmr_utils.core.tiles`; each score has
  the bits it has in those blocks), every tile scanned by numba kernels right after its
  product (:mod:`xmr_utils.core.scan`), each thread computing and scanning its own rows.
  Exact top-10 of 5,000 x 158,915 x 1024-d runs at the speed of the matrix product alone.

Either way at most one block or tile of scores exists at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from xmr_utils.core import scan
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.similarity import check_similarity
from xmr_utils.core.tiles import (
    ScoreTiles,
    dots_to_neg_sqeuclidean,
    regroups,
    score_groups,
    sq_norms,
    tiles_in_order,
)

BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss")
#: Default size of one score block in elements (2**26 floats = 256 MB in float32).
BLOCK_ELEMENTS: int = 2**26
#: Score matrices with at least this many entries take the fused path (tiles + one numba
#: scan, :mod:`xmr_utils.core.scan`); smaller ones the torch path, which needs no JIT start-up.
FUSED_MIN_SCORES: int = 2**24
#: Rows of 4096-d (more when narrower) per float64 buffer in :func:`central_row` (16 MB).
CENTRAL_ROWS: int = 512


def as_embeddings(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` (numpy or torch, ``[N, D]``) as a contiguous float32/float64 CPU tensor.

    float64 stays float64; every other dtype becomes float32. Non-finite values, a wrong
    number of dimensions or an empty embedding dimension raise :class:`XmrError`.
    """
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise XmrError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    t = t.detach().cpu()
    if t.ndim != 2:
        raise XmrError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise XmrError(f"{name} has an empty embedding dimension (shape {tuple(t.shape)})")
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    t = t.contiguous()
    if not all_finite(t):
        raise XmrError(f"{name} contains NaN or infinite values")
    return t


def all_finite(t: torch.Tensor) -> bool:
    """True when ``t`` holds no NaN or infinity (one summing pass; a full check if it overflows)."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape[1] != b.shape[1]:
        raise XmrError(
            f"queries and items have different embedding sizes ({a.shape[1]} vs {b.shape[1]})"
        )
    if a.dtype != b.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    return a, b


def count_true(mask: torch.Tensor, dim: int) -> torch.Tensor:
    """int64 count of True along ``dim`` of a bool tensor.

    Summing as float32 is exact below 2**24 per count and several times faster than
    ``bool.sum()``, which widens to int64 element by element.
    """
    if mask.shape[dim] < 2**24:
        return mask.to(torch.float32).sum(dim=dim).to(torch.int64)
    return mask.sum(dim=dim)


class Scratch:
    """Reusable per-block buffers, so the per-block temporaries of a long pass cost no page
    faults (allocating a fresh 256 MB tensor per block was slower than the comparisons).

    ``scores`` ``[rows, cols]`` (``dtype``, only when ``with_scores``) receives score blocks;
    ``counts`` float32 ``[rows, cols]`` receives 0/1 comparison results; :meth:`masks` gives
    two bool ``[rows, cols]`` buffers (allocated on first use).
    """

    def __init__(self, rows: int, cols: int, dtype: torch.dtype, with_scores: bool) -> None:
        self.rows, self.cols = rows, cols
        self.scores = torch.empty(rows, cols, dtype=dtype) if with_scores else None
        self.counts = torch.empty(rows, cols, dtype=torch.float32)
        self._masks: tuple[torch.Tensor, torch.Tensor] | None = None

    def masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Two bool ``[rows, cols]`` buffers."""
        if self._masks is None:
            first = torch.empty_like(self.counts, dtype=torch.bool)
            self._masks = (first, torch.empty_like(first))
        return self._masks

    def fits(self, block: torch.Tensor) -> bool:
        return block.shape[0] <= self.rows and block.shape[1] == self.cols


def count_cmp(
    op: Any, block: torch.Tensor, other: torch.Tensor, dim: int, scratch: Scratch | None
) -> torch.Tensor:
    """int64 count along ``dim`` of ``op(block, other)`` (``op``: ``torch.gt``, ``eq``, ...).

    With a fitting ``scratch`` the comparison is written as 0/1 float32 into its buffer
    (one pass, no allocation) and summed -- exact while ``block.shape[dim] < 2**24``.
    """
    if scratch is None or not scratch.fits(block) or block.shape[dim] >= 2**24:
        return count_true(op(block, other), dim)
    out = scratch.counts[: block.shape[0]]
    op(block, other, out=out)
    return out.sum(dim=dim).to(torch.int64)


def central_row(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The row ``[D]`` of ``a`` ``[N, D]`` or ``b`` ``[M, D]`` nearest to their joint mean.

    A data point rather than the mean itself: ``x - z`` is then exact for inputs on a common
    grid (integers: ties stay ties) and, by Sterbenz's lemma, wherever ``x`` and ``z`` agree to
    a factor of 2 per coordinate -- the collapse regime. Float64 arithmetic, lowest index on
    ties (``a`` first).

    Both passes (the column sums, then each row's squared distance to the mean) work through
    one small float64 buffer of :data:`CENTRAL_ROWS` rows in place: five times faster than
    whole-array temporaries, whose page faults cost more than the arithmetic. The distances
    are the bits of ``((x - mean) ** 2).sum(1)``; the sums are exact (so independent of
    their order) for float32 rows within ~2**29 of each other, and elsewhere can differ from
    one whole-array sum in the last bit, which moves the result only between rows equally
    near the mean to ~1e-16.
    """
    n, width = a.shape[0] + b.shape[0], a.shape[1]
    step = max(1, CENTRAL_ROWS * 4096 // max(1, width))
    rows = min(step, max(a.shape[0], b.shape[0], 1))
    buf = torch.empty((rows, width), dtype=torch.float64, device=a.device)

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x in (a, b):
            for i0 in range(0, x.shape[0], step):
                chunk = x[i0 : i0 + step]
                yield chunk, buf[: chunk.shape[0]].copy_(chunk)

    total = torch.zeros(width, dtype=torch.float64, device=a.device)
    for _, t in chunks():
        total += t.sum(dim=0)
    mean = total / max(1, n)
    best_d, best_row = torch.inf, a[0] if a.shape[0] else b[0]
    for chunk, t in chunks():
        d = t.sub_(mean).pow_(2).sum(dim=1)
        i = int(torch.argmin(d))
        if float(d[i]) < best_d:
            best_d, best_row = float(d[i]), chunk[i]
    return best_row.clone()


def centre_pair(
    a: torch.Tensor, b: torch.Tensor, similarity: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` ready for :func:`_block`: unchanged for ``dot``; for ``neg_sqeuclidean``
    both moved by :func:`central_row` (new tensors: the inputs are never modified)."""
    if similarity != "neg_sqeuclidean" or a.shape[0] + b.shape[0] == 0:
        return a, b
    z = central_row(a, b)
    return a - z, b - z


def _block(
    q: torch.Tensor,
    items: torch.Tensor,
    similarity: str,
    item_sq: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    s = torch.matmul(q, items.T, out=out) if out is not None else q @ items.T
    if similarity == "neg_sqeuclidean":
        assert item_sq is not None
        s = dots_to_neg_sqeuclidean(s, sq_norms(q), item_sq)
    return s


def score_matrix(a: Any, b: Any, similarity: str = "dot") -> torch.Tensor:
    """Full similarity matrix ``[N, M]`` between ``a`` ``[N, D]`` and ``b`` ``[M, D]``.

    Materialises all ``N x M`` scores; use :func:`iter_score_blocks` for large inputs.
    """
    check_similarity(similarity)
    a, b = centre_pair(*_check_pair(as_embeddings(a, "a"), as_embeddings(b, "b")), similarity)
    return _block(a, b, similarity, sq_norms(b) if similarity == "neg_sqeuclidean" else None)


def rows_per_block(n_items: int, chunk_size: int | None) -> int:
    """Query rows per score block: ``chunk_size`` or, if None, ~:data:`BLOCK_ELEMENTS` scores."""
    if chunk_size is None:
        return max(1, BLOCK_ELEMENTS // max(1, n_items))
    if int(chunk_size) < 1:
        raise XmrError(f"chunk_size must be a positive number of rows, got {chunk_size}")
    return int(chunk_size)


def iter_score_blocks(
    queries: Any, items: Any, similarity: str = "dot", chunk_size: int | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, block)`` with ``block = score_matrix(queries[start:start+B], items)``.

    ``block`` is ``[B, M]`` with ``B <= chunk_size`` (None: about :data:`BLOCK_ELEMENTS`
    scores per block). Every block is computed by the same call shape, so recomputing the
    blocks gives bit-identical scores.
    """
    check_similarity(similarity)
    q, it = _check_pair(as_embeddings(queries, "queries"), as_embeddings(items, "items"))
    q, it = centre_pair(q, it, similarity)
    yield from checked_score_blocks(q, it, similarity, rows_per_block(it.shape[0], chunk_size))


def checked_score_blocks(
    q: torch.Tensor, items: torch.Tensor, similarity: str, rows: int, scratch: Scratch | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`iter_score_blocks` for inputs already checked by :func:`as_embeddings` and
    moved by :func:`centre_pair`.

    ``q`` ``[N, D]`` and ``items`` ``[M, D]`` share dtype; ``rows`` query rows per block.
    With ``scratch`` (made ``with_scores``) every block is written into ``scratch.scores``:
    a block is only valid until the next one is produced.
    """
    item_sq = sq_norms(items) if similarity == "neg_sqeuclidean" else None
    buf = scratch.scores if scratch is not None else None
    for start in range(0, q.shape[0], rows):
        chunk = q[start : start + rows]
        out = buf[: chunk.shape[0]] if buf is not None else None
        yield start, _block(chunk, items, similarity, item_sq, out)


def stable_topk_block(
    block: torch.Tensor, k: int, scratch: Scratch | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of each row of ``block`` ``[B, M]`` under the tie rule (lower index first).

    Returns ``(values [B, k'], indices [B, k'])`` with ``k' = min(k, M)``, sorted by
    descending value, equal values by ascending index.
    """
    k = min(int(k), block.shape[1])
    vals, idx = torch.topk(block, k, dim=1, largest=True, sorted=True)
    if k == 0:
        return vals, idx
    thr = vals[:, -1:]
    # torch.topk's choice among values equal to the k-th one is arbitrary: where more than k
    # scores reach the k-th value, rebuild the set as (all > thr) + (lowest-index == thr).
    ambiguous = torch.nonzero(count_cmp(torch.ge, block, thr, 1, scratch) > k).squeeze(1)
    if ambiguous.numel():
        sub, t = block[ambiguous], thr[ambiguous]
        eq = sub == t
        need = k - (sub > t).sum(dim=1, keepdim=True)
        take = (sub > t) | (eq & (eq.cumsum(dim=1) <= need))
        sel = torch.nonzero(take)[:, 1].view(ambiguous.numel(), k)
        idx[ambiguous] = sel
        vals[ambiguous] = sub.gather(1, sel)
    idx, order = idx.sort(dim=1)
    vals = vals.gather(1, order)
    vals, order = vals.sort(dim=1, descending=True, stable=True)
    return vals, idx.gather(1, order)


def faiss_available() -> bool:
    """True when ``import faiss`` works (the optional ``faiss`` extra is installed)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss_topk(
    q: torch.Tensor, items: torch.Tensor, k: int, similarity: str
) -> tuple[torch.Tensor, torch.Tensor]:
    import faiss

    xb = np.ascontiguousarray(items.numpy(), dtype=np.float32)
    xq = np.ascontiguousarray(q.numpy(), dtype=np.float32)
    index = (
        faiss.IndexFlatIP(xb.shape[1]) if similarity == "dot" else faiss.IndexFlatL2(xb.shape[1])
    )
    index.add(xb)
    dist, ind = index.search(xq, k)
    scores = torch.from_numpy(dist if similarity == "dot" else -dist)
    return scores, torch.from_numpy(ind.astype(np.int64))


def topk(
    queries: Any,
    items: Any,
    k: int,
    similarity: str = "dot",
    chunk_size: int | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` items for every query: ``(scores [Q, k'], indices [Q, k'])``.

    ``queries`` is ``[Q, D]``, ``items`` ``[M, D]``, ``k' = min(k, M)``. Rows are sorted by
    descending score, equal scores by the lower index. ``backend``: ``"torch"`` (ours: torch
    matrix products, ranked by torch ops or, from :data:`FUSED_MIN_SCORES` scores, by the
    fused scan), ``"auto"`` (the same: it is as fast as faiss's flat index and keeps the tie
    rule), ``"faiss"`` (``IndexFlatIP`` / ``IndexFlatL2``; exact too, but faiss's own order
    among equal scores). ``chunk_size``: query rows per score block (None: ~256 MB blocks).
    """
    check_similarity(similarity)
    if backend not in BACKENDS:
        raise unknown_choice("search backend", backend, BACKENDS)
    if int(k) < 1:
        raise XmrError(f"k must be at least 1, got {k}")
    q, it = _check_pair(as_embeddings(queries, "queries"), as_embeddings(items, "items"))
    if it.shape[0] == 0:
        raise XmrError("items is empty: there is nothing to search")
    rows = rows_per_block(it.shape[0], chunk_size)  # validated for every backend
    q, it = centre_pair(q, it, similarity)  # faiss's IndexFlatL2 expands the square too
    if backend == "faiss":
        if not faiss_available():
            raise XmrError("backend='faiss' needs faiss-cpu: pip install -e .[faiss]")
        return _faiss_topk(q, it, min(int(k), it.shape[0]), similarity)
    if q.shape[0] * it.shape[0] >= FUSED_MIN_SCORES:
        return _fused_topk(q, it, int(k), similarity, rows)
    return _torch_topk(q, it, int(k), similarity, rows)


def _torch_topk(
    q: torch.Tensor, it: torch.Tensor, k: int, similarity: str, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk` by torch ops on blocks of ``rows`` query rows (full width)."""
    out_v, out_i = [], []
    scratch = Scratch(min(rows, max(1, q.shape[0])), it.shape[0], it.dtype, with_scores=True)
    for _, block in checked_score_blocks(q, it, similarity, rows, scratch):
        v, i = stable_topk_block(block, k, scratch)
        out_v.append(v)
        out_i.append(i)
    kk = min(k, it.shape[0])
    if not out_v:
        return torch.empty(0, kk, dtype=it.dtype), torch.empty(0, kk, dtype=torch.int64)
    return torch.cat(out_v), torch.cat(out_i)


def _fused_topk(
    q: torch.Tensor, it: torch.Tensor, k: int, similarity: str, rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`topk` by tiles (:func:`score_groups`: the same score bits as the blocks of
    ``rows`` rows) and the fused top-k scan on ``torch.get_num_threads()`` threads."""
    kk = min(k, it.shape[0])
    vals = np.full((q.shape[0], kk), -np.inf, dtype=q.numpy().dtype)
    idx = np.full((q.shape[0], kk), -1, dtype=np.int64)
    tiles = ScoreTiles(q, it, similarity == "neg_sqeuclidean")
    groups = score_groups(q.shape[0], it.shape[0], rows, regroups(q.dtype))
    topk_rows = scan.kernels().topk_rows
    with scan.Workers(max(1, torch.get_num_threads()), background=True) as pool:
        for group, c0, tile in tiles_in_order(tiles, groups):  # the next is computed meanwhile
            t, v, i = tile.numpy(), vals[group.r0 : group.r1], idx[group.r0 : group.r1]
            pool.start(  # defaults bind the loop's values; mypy cannot type such a lambda
                lambda _w, a, b, t=t, c0=c0, v=v, i=i: topk_rows(t, (a, b, 0, c0), v, i),  # type: ignore[misc]
                t.shape[0],
                t.shape[1],
            )
    return torch.from_numpy(vals), torch.from_numpy(idx)
