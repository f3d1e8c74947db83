"""Retrieval metrics for image->text (i2t) and text->image (t2i), as pure functions.

Inputs: ``scores`` ``[N_img, N_cap]`` (numpy or torch; higher = more similar) and ``owner``
``[N_cap]`` (int: caption -> image row). Relevance comes from ``owner`` only, so an image may
own any number of captions; images that own none are left out of the i2t metrics.

Tie rule (here and in :mod:`xmr_utils.core.retrieval`): items are ranked by descending score and
equal scores are broken by the lower index first (the order a stable descending sort gives);
ranks are 1-based. So the rank of item ``j`` in a row ``s`` is
``1 + #{l: s[l] > s[j]} + #{l < j: s[l] == s[j]}``.

Every metric is built from per-query ranks (:class:`RetrievalRanks`):

* ``R@k``: percent (0-100) of queries whose best relevant item has rank <= k.
* ``medr`` / ``meanr``: median / mean of that rank (``np.median``: mean of the two middle
  values for an even count).
* ``mAP@k``: the seed's ml_metrics-style ``apk(actual=[query's own id], predicted=ids of the
  top-k results)`` averaged over queries; with one relevant id this equals the reciprocal
  rank truncated at k (``1/rank`` if rank <= k else 0).
* ``mAPcap@k`` (i2t only): AP@k with all of the image's captions relevant -- the sum over
  relevant positions ``p <= k`` of precision@p, divided by ``min(n_relevant, k)``.
* ``rsum``: the sum of the six R@k; ``n_images`` (image queries with >= 1 caption),
  ``n_captions``.

Score matrices are processed in row blocks so extra memory stays at about one block
(:data:`xmr_utils.core.retrieval.BLOCK_ELEMENTS` scores); :func:`evaluate_embeddings` never
materialises more than one block of the score matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xmr_utils.core import fused_ranks, retrieval
from xmr_utils.core.errors import XmrError
from xmr_utils.core.retrieval import Scratch, count_cmp, count_true
from xmr_utils.core.similarity import check_similarity

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
#: Most near-tie (band) entries kept before t2i falls back to a second exact pass.
MAX_BAND_ENTRIES: int = 2**24


@dataclass(frozen=True)
class RetrievalRanks:
    """Per-query ranks: everything the metrics need (and what a browser shows per query).

    Attributes:
        i2t_best_rank: int64 ``[N_img]``: 1-based rank of the image's best-ranked own caption
            in its score row; 0 for images that own no caption.
        i2t_topk: int64 ``[N_img, kmax]``: caption ids of the top-``kmax`` of each row (tie
            rule applied); -1 pads when there are fewer than ``kmax`` captions.
        i2t_topk_relevant: bool ``[N_img, kmax]``: whether ``i2t_topk`` is the image's caption.
        n_relevant: int64 ``[N_img]``: number of captions each image owns.
        t2i_rank: int64 ``[N_cap]``: 1-based rank of the owner image in the caption's column.
    """

    i2t_best_rank: np.ndarray
    i2t_topk: np.ndarray
    i2t_topk_relevant: np.ndarray
    n_relevant: np.ndarray
    t2i_rank: np.ndarray


def _as_scores(scores: Any) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(scores)) if not isinstance(scores, torch.Tensor) else scores
    t = t.detach().cpu()
    if t.ndim != 2:
        raise XmrError(f"scores must be 2-D [N_img, N_cap], got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise XmrError(f"scores must be a real-valued array, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)  # exact for integers up to 2**53
    elif t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)  # float16 / bfloat16 widen exactly
    if not retrieval.all_finite(t):
        raise XmrError("scores contain NaN or infinite values")
    return t


def _as_owner(owner: Any, n_img: int, n_cap: int) -> torch.Tensor:
    o = owner if isinstance(owner, torch.Tensor) else torch.from_numpy(np.asarray(owner))
    o = o.detach().cpu()
    if o.ndim != 1:
        raise XmrError(f"owner must be 1-D [N_cap], got shape {tuple(o.shape)}")
    if o.is_floating_point() or o.is_complex() or o.dtype == torch.bool:
        raise XmrError(f"owner must be an integer array (caption -> image index), got {o.dtype}")
    if o.shape[0] != n_cap:
        raise XmrError(f"owner has {o.shape[0]} entries but there are {n_cap} captions")
    if n_cap == 0:
        raise XmrError("there are no captions to evaluate (owner is empty)")
    o = o.to(torch.int64)
    if int(o.min()) < 0 or int(o.max()) >= n_img:
        raise XmrError(
            f"owner refers to image {int(o.min()) if int(o.min()) < 0 else int(o.max())}, "
            f"outside the {n_img} image rows"
        )
    return o.contiguous()


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or min(out) < 1 or len(set(out)) != len(out):
        raise XmrError(f"ks must be distinct positive integers, got {tuple(ks)}")
    return out


def _caption_table(owner: torch.Tensor, n_img: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(table [N_img, maxcap], counts [N_img])``: each image's caption ids, padded with N_cap."""
    n_cap = owner.shape[0]
    counts = torch.bincount(owner, minlength=n_img)
    order = torch.sort(owner, stable=True).indices
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(n_cap) - starts[owner[order]]
    table = torch.full((n_img, max(1, int(counts.max()))), n_cap, dtype=torch.int64)
    table[owner[order], slot] = order
    return table, counts


class _Ranker:
    """Accumulates :class:`RetrievalRanks` from row blocks ``[B, N_cap]`` of the score matrix."""

    def __init__(self, owner: torch.Tensor, n_img: int, kmax: int, scratch: Scratch | None) -> None:
        self.owner, self.n_img, self.n_cap, self.kmax = owner, n_img, owner.shape[0], kmax
        self.scratch = scratch
        self.table, self.counts = _caption_table(owner, n_img)
        self.best = torch.zeros(n_img, dtype=torch.int64)
        self.topk = torch.full((n_img, kmax), -1, dtype=torch.int64)
        self.t2i_count = torch.zeros(self.n_cap, dtype=torch.int64)
        self.target = torch.zeros(self.n_cap, dtype=torch.float64)
        self.cols = torch.arange(self.n_cap)

    def owned_captions(self, i0: int, i1: int) -> torch.Tensor:
        """Caption ids ``[C]`` owned by images ``i0..i1-1``."""
        t = self.table[i0:i1].flatten()
        return t[t < self.n_cap]

    def i2t(self, i0: int, block: torch.Tensor) -> None:
        """Best own-caption rank and top-k of rows ``i0 .. i0+B-1``."""
        b = block.shape[0]
        pos = self.table[i0 : i0 + b]
        valid = pos < self.n_cap
        ps = block.gather(1, pos.clamp(max=self.n_cap - 1)).masked_fill(~valid, -torch.inf)
        best = ps.max(dim=1, keepdim=True).values
        bidx = torch.where((ps == best) & valid, pos, self.n_cap).min(dim=1, keepdim=True).values
        rank = 1 + count_cmp(torch.gt, block, best, 1, self.scratch)
        tied = torch.nonzero(count_cmp(torch.eq, block, best, 1, self.scratch) > 1).squeeze(1)
        if tied.numel():
            eq = block[tied] == best[tied]
            rank[tied] += count_true(eq & (self.cols[None, :] < bidx[tied]), 1)
        self.best[i0 : i0 + b] = torch.where(valid.any(dim=1), rank, 0)
        _, idx = retrieval.stable_topk_block(block, self.kmax, self.scratch)
        self.topk[i0 : i0 + b, : idx.shape[1]] = idx

    def t2i_exact(
        self, i0: int, block: torch.Tensor, target: torch.Tensor, pending: torch.Tensor | None
    ) -> None:
        """Count, per caption, images of rows ``i0..`` ranked above its owner.

        ``target`` ``[N_cap]`` must be exact for captions whose owner is in these rows or
        earlier. For captions owned by later rows, ``pending`` ``[N_cap]`` (or None: exact
        ``target``) is the threshold: scores ``> pending`` are counted here, the caller
        resolves the rest.
        """
        i1 = i0 + block.shape[0]
        if pending is None:  # rows i < owner count when score >= target
            pending = torch.nextafter(target, torch.tensor(-torch.inf, dtype=target.dtype))
        thr = torch.where(self.owner >= i1, pending, target)
        self.t2i_count += count_cmp(torch.gt, block, thr[None, :], 0, self.scratch)
        cols = self.owned_captions(i0, i1)
        sub = block[:, cols]
        rows = torch.arange(i0, i1)[:, None]
        self.t2i_count[cols] += count_true((sub == target[cols]) & (rows < self.owner[cols]), 0)

    def record_targets(self, i0: int, block: torch.Tensor) -> None:
        cols = self.owned_captions(i0, i0 + block.shape[0])
        self.target[cols] = block[self.owner[cols] - i0, cols].to(torch.float64)

    def result(self) -> RetrievalRanks:
        topk = self.topk
        rel = (topk >= 0) & (self.owner[topk.clamp(min=0)] == torch.arange(self.n_img)[:, None])
        return RetrievalRanks(
            i2t_best_rank=self.best.numpy(),
            i2t_topk=topk.numpy(),
            i2t_topk_relevant=rel.numpy(),
            n_relevant=self.counts.numpy(),
            t2i_rank=(1 + self.t2i_count).numpy(),
        )


def _row_blocks(scores: torch.Tensor, step: int) -> Iterator[tuple[int, torch.Tensor]]:
    for i0 in range(0, scores.shape[0], step):
        yield i0, scores[i0 : i0 + step]


def _from_fused(r: fused_ranks.RankArrays, owner: torch.Tensor, n_img: int) -> RetrievalRanks:
    counts = np.bincount(owner.numpy(), minlength=n_img)
    topk = torch.from_numpy(r.topk)
    rel = (topk >= 0) & (owner[topk.clamp(min=0)] == torch.arange(n_img)[:, None])
    return RetrievalRanks(
        i2t_best_rank=np.where(counts > 0, r.above_best + 1, 0),
        i2t_topk=r.topk,
        i2t_topk_relevant=rel.numpy(),
        n_relevant=counts,
        t2i_rank=1 + r.above_owner,
    )


def ranks_from_scores(scores: Any, owner: Any, kmax: int = max(DEFAULT_KS)) -> RetrievalRanks:
    """Per-query ranks from a score matrix ``[N_img, N_cap]`` and ``owner`` ``[N_cap]``.

    Matrices of at least :data:`~xmr_utils.core.retrieval.FUSED_MIN_SCORES` entries are read
    once by the fused scan (:func:`xmr_utils.core.fused_ranks.ranks_from_scores`), smaller
    ones by torch ops; both give the same ranks.
    """
    s = _as_scores(scores)
    o = _as_owner(owner, s.shape[0], s.shape[1])
    if s.shape[0] * s.shape[1] >= retrieval.FUSED_MIN_SCORES:
        return _from_fused(fused_ranks.ranks_from_scores(s, o, int(kmax)), o, s.shape[0])
    rows = retrieval.rows_per_block(s.shape[1], None)
    scratch = Scratch(min(rows, s.shape[0]), s.shape[1], s.dtype, with_scores=False)
    ranker = _Ranker(o, s.shape[0], int(kmax), scratch)
    target = s[o, torch.arange(s.shape[1])]
    for i0, block in _row_blocks(s, rows):
        ranker.i2t(i0, block)
        ranker.t2i_exact(i0, block, target, None)
    return ranker.result()


def i2t_caption_ranks(scores: Any, owner: Any) -> np.ndarray:
    """int64 ``[N_cap]``: 1-based rank of each caption within its owner image's score row."""
    s = _as_scores(scores)
    o = _as_owner(owner, s.shape[0], s.shape[1])
    n_cap = s.shape[1]
    out = torch.empty(n_cap, dtype=torch.int64)
    cols = torch.arange(n_cap)
    step = retrieval.rows_per_block(n_cap, None)
    for c0 in range(0, n_cap, step):
        c = cols[c0 : c0 + step]
        rows = s[o[c]]
        t = rows.gather(1, c[:, None])
        ahead = count_true(rows > t, 1) + count_true((rows == t) & (cols[None, :] < c[:, None]), 1)
        out[c] = 1 + ahead
    return out.numpy()


def t2i_image_ranks(scores: Any, owner: Any) -> np.ndarray:
    """int64 ``[N_cap]``: 1-based rank of the owner image within each caption's score column."""
    return ranks_from_scores(scores, owner, kmax=1).t2i_rank


def _pair_targets(
    img: torch.Tensor, txt: torch.Tensor, owner: torch.Tensor, similarity: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``(estimate [N_cap], bound [N_cap])`` of the true-pair scores.

    The estimate is computed in the embeddings' dtype; both it and the score block are
    length-D sums, each off by at most ``D * eps * scale`` (any summation order), so
    ``2 (D + 4) eps scale`` bounds their difference (checked afterwards anyway).
    """
    n_cap, dim = txt.shape
    approx = torch.empty(n_cap, dtype=torch.float64)
    scale = torch.empty(n_cap, dtype=torch.float64)
    step = max(1, retrieval.BLOCK_ELEMENTS // (4 * dim))
    for c0 in range(0, n_cap, step):
        a, b = img[owner[c0 : c0 + step]], txt[c0 : c0 + step]
        ab = a * b
        if similarity == "dot":
            approx[c0 : c0 + step] = ab.sum(dim=1)
            scale[c0 : c0 + step] = ab.abs_().sum(dim=1)
        else:
            na, nb = retrieval.sq_norms(a).double(), retrieval.sq_norms(b).double()
            dot = ab.sum(dim=1).double()
            approx[c0 : c0 + step] = 2 * dot - na - nb
            scale[c0 : c0 + step] = 2 * ab.abs_().sum(dim=1).double() + na + nb
    finfo = torch.finfo(img.dtype)
    return approx, 2 * (dim + 4) * finfo.eps * scale + finfo.tiny


def ranks_from_embeddings(
    image_emb: Any,
    text_emb: Any,
    owner: Any,
    similarity: str = "dot",
    chunk_size: int | None = None,
    kmax: int = max(DEFAULT_KS),
) -> RetrievalRanks:
    """Per-query ranks of ``similarity(image_emb [N_img, D], text_emb [N_cap, D])``.

    One pass computes both directions without materialising the score matrix. From
    :data:`~xmr_utils.core.retrieval.FUSED_MIN_SCORES` scores it runs on tiles scanned by
    the fused kernels (:func:`xmr_utils.core.fused_ranks.ranks_from_embeddings`); below, on
    blocks of ``chunk_size`` image rows ranked by torch ops. t2i needs each caption's
    true-pair score and i2t each image's best own caption before every block holding them is
    computed: both count against a float64 estimate with an error band and settle the few
    in-band scores once the exact value is known. If the band grows past
    :data:`MAX_BAND_ENTRIES` (e.g. collapsed embeddings) or the estimate misses, a second pass
    over bit-identical scores counts exactly. The result equals :func:`ranks_from_scores` on
    the materialised matrix, on either path.
    """
    check_similarity(similarity)
    img = retrieval.as_embeddings(image_emb, "image_emb")
    txt = retrieval.as_embeddings(text_emb, "text_emb")
    if img.shape[1] != txt.shape[1]:
        raise XmrError(
            f"image_emb and text_emb have different sizes ({img.shape[1]} vs {txt.shape[1]})"
        )
    dtype = torch.promote_types(img.dtype, txt.dtype)
    img, txt = retrieval.centre_pair(img.to(dtype), txt.to(dtype), similarity)
    o = _as_owner(owner, img.shape[0], txt.shape[0])
    rows = retrieval.rows_per_block(txt.shape[0], chunk_size)
    if img.shape[0] * txt.shape[0] >= retrieval.FUSED_MIN_SCORES:
        neg = similarity == "neg_sqeuclidean"
        found = fused_ranks.ranks_from_embeddings(img, txt, o, neg, rows, int(kmax))
        return _from_fused(found, o, img.shape[0])
    return _torch_ranks_from_embeddings(img, txt, o, similarity, rows, int(kmax))


def _torch_ranks_from_embeddings(
    img: torch.Tensor, txt: torch.Tensor, o: torch.Tensor, similarity: str, rows: int, kmax: int
) -> RetrievalRanks:
    """:func:`ranks_from_embeddings` by torch ops on full-width blocks of ``rows`` rows."""
    dtype = img.dtype
    if rows >= img.shape[0]:  # one block: every target is exact before counting
        lo = hi = torch.full((txt.shape[0],), torch.inf, dtype=dtype)
    else:
        approx, eps = _pair_targets(img, txt, o, similarity)
        lo, hi = (approx - eps).to(dtype), (approx + eps).to(dtype)
    scratch = Scratch(min(rows, img.shape[0]), txt.shape[0], dtype, with_scores=True)
    ranker = _Ranker(o, img.shape[0], int(kmax), scratch)
    band: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    n_band, fallback, last_owner = 0, False, int(o.max())
    for i0, block in retrieval.checked_score_blocks(img, txt, similarity, rows, scratch):
        i1 = i0 + block.shape[0]
        ranker.i2t(i0, block)
        ranker.record_targets(i0, block)
        # captions owned by rows < i1 have their exact target now; later ones use the band
        ranker.t2i_exact(i0, block, ranker.target.to(dtype), hi)
        if fallback or last_owner < i1:
            continue
        lo_pending = torch.where(o >= i1, lo, torch.inf)
        mask_a, mask_b = scratch.masks()
        in_band = torch.ge(block, lo_pending, out=mask_a[: block.shape[0]])
        in_band &= torch.le(block, hi, out=mask_b[: block.shape[0]])
        r, c = torch.nonzero(in_band, as_tuple=True)
        n_band += r.numel()
        fallback = n_band > MAX_BAND_ENTRIES
        if fallback:
            band.clear()
        else:
            band.append((r + i0, c, block[r, c].to(torch.float64)))
    t = ranker.target
    if rows < img.shape[0]:
        fallback = fallback or not bool(((t >= lo.double()) & (t <= hi.double())).all())
    if fallback:
        ranker.t2i_count.zero_()
        exact = t.to(dtype)
        for i0, block in retrieval.checked_score_blocks(img, txt, similarity, rows, scratch):
            ranker.t2i_exact(i0, block, exact, None)
    elif band:
        r, c, v = (torch.cat(x) for x in zip(*band, strict=True))
        above = (v > t[c]) | ((v == t[c]) & (r < o[c]))
        ranker.t2i_count += torch.bincount(c[above], minlength=txt.shape[0])
    return ranker.result()


def seed_apk(actual: Sequence[int], predicted: Sequence[int], k: int = 10) -> float:
    """The seed's average precision at ``k`` (ml_metrics ``apk``), as the seed wrote it.

    The reference definition of ``mAP@k`` and ``mAPcap@k``: the vectorised
    :func:`metrics_from_ranks` is checked against it (``tests/core/test_metrics.py``), and so is
    the seed-style evaluation of ``benchmarks/bench_eval.py``. ``actual``: the relevant ids;
    ``predicted``: ranked ids (only the first ``k`` count, repeats count once).

    >>> seed_apk([3], [1, 2, 3])
    0.3333333333333333
    """
    predicted = list(predicted)[:k]
    score, num_hits = 0.0, 0.0
    for i, p in enumerate(predicted):
        if p in actual and p not in predicted[:i]:
            num_hits += 1.0
            score += num_hits / (i + 1.0)
    if not actual:
        return 0.0
    return score / min(len(actual), k)


def metrics_from_ranks(ranks: RetrievalRanks, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """The metric dict (keys in the module docstring) from per-query ranks."""
    ks = _check_ks(ks)
    if max(ks) > ranks.i2t_topk.shape[1]:
        held = ranks.i2t_topk.shape[1]
        raise XmrError(f"ks go up to {max(ks)} but the ranks hold only the top-{held}")
    has = ranks.n_relevant > 0
    best = ranks.i2t_best_rank[has].astype(np.float64)
    rel = ranks.i2t_topk_relevant[has].astype(np.float64)
    n_rel = ranks.n_relevant[has].astype(np.float64)
    t2i = ranks.t2i_rank.astype(np.float64)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * float(np.mean(best <= k))
    out["i2t_medr"] = float(np.median(best))
    out["i2t_meanr"] = float(np.mean(best))
    for k in ks:
        out[f"i2t_mAP@{k}"] = float(np.mean(np.where(best <= k, 1.0 / best, 0.0)))
    positions = np.arange(1, rel.shape[1] + 1, dtype=np.float64)
    precision = np.cumsum(rel, axis=1) / positions
    for k in ks:
        ap = (rel[:, :k] * precision[:, :k]).sum(axis=1) / np.minimum(n_rel, k)
        out[f"i2t_mAPcap@{k}"] = float(np.mean(ap))
    for k in ks:
        out[f"t2i_R@{k}"] = 100.0 * float(np.mean(t2i <= k))
    out["t2i_medr"] = float(np.median(t2i))
    out["t2i_meanr"] = float(np.mean(t2i))
    for k in ks:
        out[f"t2i_mAP@{k}"] = float(np.mean(np.where(t2i <= k, 1.0 / t2i, 0.0)))
    out["rsum"] = sum(out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in ks)
    out["n_images"] = float(has.sum())
    out["n_captions"] = float(len(t2i))
    return out


def retrieval_metrics(scores: Any, owner: Any, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """All metrics of a score matrix ``[N_img, N_cap]`` with ``owner`` ``[N_cap]``.

    Keys (default ``ks``): ``i2t_R@1/5/10, i2t_medr, i2t_meanr, i2t_mAP@1/5/10,
    i2t_mAPcap@1/5/10, t2i_R@1/5/10, t2i_medr, t2i_meanr, t2i_mAP@1/5/10, rsum, n_images,
    n_captions``. See the module docstring for definitions and the tie rule.
    """
    ks = _check_ks(ks)
    return metrics_from_ranks(ranks_from_scores(scores, owner, kmax=max(ks)), ks)


def evaluate_embeddings(
    image_emb: Any,
    text_emb: Any,
    owner: Any,
    similarity: str = "dot",
    chunk_size: int | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """:func:`retrieval_metrics` of ``similarity(image_emb, text_emb)`` without materialising it.

    ``image_emb`` ``[N_img, D]``, ``text_emb`` ``[N_cap, D]``, ``owner`` ``[N_cap]``;
    ``similarity``: ``"dot"`` or ``"neg_sqeuclidean"``; ``chunk_size``: image rows per score
    block (None: ~256 MB blocks).
    """
    ks = _check_ks(ks)
    ranks = ranks_from_embeddings(image_emb, text_emb, owner, similarity, chunk_size, max(ks))
    return metrics_from_ranks(ranks, ks)
