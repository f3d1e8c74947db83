"""Collapse statistics of one model's embeddings (one epoch): is the space degenerate?

:func:`collapse_stats` returns per modality (prefix ``img_`` / ``txt_``):

* ``mean_norm``: mean L2 norm of the rows (all rows; 1 for L2-normalised embeddings).
* ``mean_pairwise_cosine``: mean cosine over off-diagonal pairs of a seeded sample.
* ``dim_std_mean``: mean over dimensions of the per-dimension standard deviation (all rows).
* ``effective_rank``: Roy & Vetterli (2007), ``exp(H(p))`` with ``p = s / sum(s)`` the
  normalised singular values of the centred sample; 0.0 when the sample has no spread.
* ``uniformity``: Wang & Isola (2020), ``log mean exp(-2 |x - y|^2)`` over distinct pairs of
  L2-normalised sample rows (-4 is the most spread possible, 0 means one point).

and across modalities:

* ``alignment``: Wang & Isola (2020) with alpha = 2: mean ``|x/|x| - y/|y||^2`` over all true
  (image, caption) pairs given by ``owner``.
* ``distinct_top1_i2t`` / ``distinct_top1_t2i``: distinct top-1 results among a seeded
  sample of queries searched against all items, divided by ``min(n_queries, n_items)`` -- 1.0
  when every query gets a different answer (as far as the item count allows; five captions
  per image cap t2i at n_images), near 0 when everything retrieves the same item.
* ``i2t_norm_share`` / ``t2i_norm_share``: how much of a query's ranking the items' norms
  alone decide (:func:`norm_share`): the squared correlation, over all items, between a
  sampled query's scores and the items' squared norms, averaged over the queries. Near 1 every
  query ranks the items in the order of their norms — under ``neg_sqeuclidean`` the item with
  the smallest norm is everyone's nearest neighbour (a hub); 0 for L2-normalised items. Not
  part of the collapse rule: it says *why* a squared-distance model retrieves the same items.
* ``collapsed``: the rule in :data:`COLLAPSE_RULE` (see :func:`collapse_reasons`).

Thresholds (why these): independent random directions in D dimensions have mean cosine
~0 (+-1/sqrt(D)); encoder outputs that are strongly anisotropic still stay near 0.6-0.9, so
``> 0.95`` only flags a space shrunk towards one direction. An effective rank below 2 means
all spread is along about one axis (a line) -- a dimensional collapse the cosine misses once
the common component is centred away. A distinct top-1 share below 0.05 means on average
twenty or more queries share each answer: a hub answers everything, which is what a
triplet model that collapsed onto a point does even when noise keeps the cosine below 0.95.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from xmr_utils.core import retrieval
from xmr_utils.core.errors import XmrError
from xmr_utils.core.similarity import check_similarity

MAX_MEAN_COSINE: float = 0.95
MIN_EFFECTIVE_RANK: float = 2.0
MIN_DISTINCT_TOP1: float = 0.05
COLLAPSE_RULE: str = (
    f"collapsed if img_ or txt_mean_pairwise_cosine > {MAX_MEAN_COSINE}, or img_ or "
    f"txt_effective_rank < {MIN_EFFECTIVE_RANK}, or distinct_top1_i2t or distinct_top1_t2i "
    f"< {MIN_DISTINCT_TOP1}"
)


def _sample_rows(n: int, sample: int, gen: torch.Generator) -> torch.Tensor:
    """Sorted row indices ``[min(n, sample)]`` drawn without replacement."""
    if n <= sample:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:sample].sort().values


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine over the ``n(n-1)`` off-diagonal pairs of ``x`` ``[n, D]`` (zero rows: 0)."""
    if x.shape[0] < 2:
        return float("nan")
    return _mean_pairwise_cosine(torch.nn.functional.normalize(x.to(torch.float64), dim=1))


def _mean_pairwise_cosine(u: torch.Tensor) -> float:
    """:func:`mean_pairwise_cosine` of rows ``u [n, D]`` already L2-normalised in float64."""
    n = u.shape[0]
    total = u.sum(dim=0)
    # sum over all pairs of u_i . u_j = |sum u|^2; remove the diagonal (|u_i|^2)
    off = total @ total - (u * u).sum()
    return float(off / (n * (n - 1)))


def effective_rank(x: torch.Tensor) -> float:
    """Roy & Vetterli (2007) effective rank of the centred ``x`` ``[n, D]`` (0.0: no spread).

    The singular values come from the eigenvalues of the smaller Gram matrix (``[n, n]`` or
    ``[D, D]``), float64: for 2000 x 4096 that takes about 1 s where a direct SVD took over
    20 s on 2 cores. Tested against ``torch.linalg.svdvals``.
    """
    xd = x.to(torch.float64)
    xc = xd - xd.mean(dim=0, keepdim=True)
    gram = xc @ xc.T if xc.shape[0] <= xc.shape[1] else xc.T @ xc
    s = torch.linalg.eigvalsh(gram).clamp(min=0.0).sqrt()
    if float(s.sum()) <= 0.0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola (2020): ``log mean exp(-t |u_i - u_j|^2)`` over pairs ``i < j``.

    ``u`` are the L2-normalised rows of ``x`` ``[n, D]``; ``n < 2`` gives NaN.
    """
    if x.shape[0] < 2:
        return float("nan")
    return _uniformity(torch.nn.functional.normalize(x.to(torch.float64), dim=1), t)


def _uniformity(u: torch.Tensor, t: float = 2.0) -> float:
    """:func:`uniformity` of rows ``u [n, D]`` already L2-normalised in float64.

    The pairwise dots come from one float32 product, the rest is float64: unit rows have no
    cancellation to fear (``|u_i - u_j|^2 = 2 - 2 u_i.u_j`` within ~1e-7 of its float64
    value, where the statistic ranges over [-4, 0]), and at 2000 x 4096 the product is ~3x
    faster than float64 distances.
    """
    n = u.shape[0]
    u32 = u.to(torch.float32)
    norms = (u * u).sum(dim=1)
    # -t |u_i - u_j|^2 over all ordered pairs i != j: the mean of the pairs i < j, each twice
    vals = (u32 @ u32.T).to(torch.float64).mul_(2.0).sub_(norms[:, None]).sub_(norms[None, :])
    vals.clamp_max_(0.0).mul_(t).fill_diagonal_(-math.inf)
    return float(torch.logsumexp(vals.flatten(), dim=0) - math.log(n * (n - 1)))


def alignment(image_emb: torch.Tensor, text_emb: torch.Tensor, owner: torch.Tensor) -> float:
    """Wang & Isola (2020), alpha = 2: mean ``|x/|x| - y/|y||^2`` over pairs ``(owner[c], c)``.

    ``image_emb`` ``[N, D]``, ``text_emb`` ``[M, D]``, ``owner`` int64 ``[M]``.
    """
    total = 0.0
    step = max(1, retrieval.BLOCK_ELEMENTS // (4 * text_emb.shape[1]))
    images = torch.nn.functional.normalize(image_emb.double(), dim=1)  # each row once
    for c0 in range(0, text_emb.shape[0], step):
        y = torch.nn.functional.normalize(text_emb[c0 : c0 + step].double(), dim=1)
        d = y.sub_(images[owner[c0 : c0 + step]])  # y - x in y's buffer: the same squares
        total += float(d.mul_(d).sum())
    return total / text_emb.shape[0]


def distinct_top1_share(queries: torch.Tensor, items: torch.Tensor, similarity: str) -> float:
    """Distinct top-1 items of ``queries`` ``[Q, D]`` over ``items`` ``[M, D]``, / min(Q, M)."""
    return _query_scan(queries, items, similarity, norms=False)[0]


def norm_share(queries: torch.Tensor, items: torch.Tensor, similarity: str) -> float:
    """Mean over ``queries [Q, D]`` of the squared Pearson correlation, over ``items [M, D]``,
    between the query's scores (``similarity``) and the items' squared norms ``|x_j|^2``:
    the share of each query's score variance over the items that their norms alone explain.

    Items whose squared norms agree within 1e-5 (relative; L2-normalised rows) give 0.
    Under ``neg_sqeuclidean`` the score is ``-|q|^2 - |x|^2 + 2 q.x``, so a share near 1
    means the ``|x|^2`` term outweighs the query-dependent ``q.x`` term and every query
    ranks the items alike.
    """
    return _query_scan(queries, items, similarity, top1=False)[1]


def _query_scan(
    queries: torch.Tensor,
    items: torch.Tensor,
    similarity: str,
    top1: bool = True,
    norms: bool = True,
    scores: torch.Tensor | None = None,
) -> tuple[float, float]:
    """``(distinct_top1_share, norm_share)`` of ``queries [Q, D]`` over ``items [M, D]`` from
    one pass over the score blocks (:func:`~xmr_utils.core.retrieval.iter_score_blocks`: the
    scores :func:`~xmr_utils.core.retrieval.topk` ranks, bit for bit); the statistic not
    asked for is NaN. A top-1 is the first maximal score of its row: the tie rule's lower
    index. ``scores`` (optional): the caller's ``[Q, M]`` score matrix of these queries, read
    instead of computed (:func:`~xmr_utils.core.retrieval.score_matrix` gives the same bits)."""
    sq = items.to(torch.float64).pow(2).sum(dim=1)  # [M]
    n = sq - sq.mean()
    flat = items.shape[0] < 2 or float(n.abs().max()) <= 1e-5 * float(sq.mean())
    share = 0.0 if norms and flat else float("nan")  # equal norms explain nothing
    norms = norms and not flat
    if not (top1 or norms):
        return float("nan"), share
    best: list[torch.Tensor] = []
    total = 0.0
    rows = max(1, retrieval.BLOCK_ELEMENTS // (4 * max(items.shape[0], 1)))
    blocks = (
        retrieval.iter_score_blocks(queries, items, similarity, chunk_size=rows)
        if scores is None
        else ((r0, scores[r0 : r0 + rows]) for r0 in range(0, scores.shape[0], rows))
    )
    for _, block in blocks:
        if top1:
            best.append(block.argmax(dim=1))
        if norms:
            s = block.to(torch.float64)
            s = s - s.mean(dim=1, keepdim=True)
            cov = s @ n  # [q]
            var = (s * s).sum(dim=1) * (n @ n)
            total += float(torch.where(var > 0, cov * cov / var.clamp_min(1e-300), 0.0).sum())
    distinct = float("nan")
    if top1:
        distinct = len(torch.unique(torch.cat(best))) / min(queries.shape[0], items.shape[0])
    return distinct, (total / queries.shape[0] if norms else share)


def _modality(x: torch.Tensor, sample_rows: torch.Tensor, prefix: str) -> dict[str, float]:
    xd = x.double()  # one float64 copy for both all-row statistics
    s = x[sample_rows]
    u = torch.nn.functional.normalize(s.to(torch.float64), dim=1)  # for both pair statistics
    return {
        f"{prefix}mean_norm": float(xd.norm(dim=1).mean()),
        f"{prefix}mean_pairwise_cosine": _mean_pairwise_cosine(u) if len(s) >= 2 else math.nan,
        f"{prefix}dim_std_mean": float(xd.std(dim=0, unbiased=False).mean()),
        f"{prefix}effective_rank": effective_rank(s),
        f"{prefix}uniformity": _uniformity(u) if len(s) >= 2 else math.nan,
    }


def collapse_stats(
    image_emb: Any,
    text_emb: Any,
    owner: Any,
    similarity: str = "dot",
    sample: int = 2000,
    seed: int = 0,
    scores: Any = None,
) -> dict[str, float | bool]:
    """Collapse statistics of ``image_emb`` ``[N, D]`` and ``text_emb`` ``[M, D]``.

    ``owner`` ``[M]`` maps each caption to its image row (true pairs for ``alignment``);
    ``similarity`` (``"dot"`` | ``"neg_sqeuclidean"``) is the retrieval score of the
    distinct-top-1 shares. Pairwise statistics and the queries use a ``sample`` of rows per
    modality drawn with ``seed``. ``scores`` (optional): the ``[N, M]`` matrix
    ``retrieval.score_matrix(image_emb, text_emb, similarity)`` when the caller already has
    it (validation scores it for its metrics); when the sample holds every image row the
    image queries read it instead of scoring again, with the same bits. Keys: see the module
    docstring.
    """
    check_similarity(similarity)
    if int(sample) < 2:
        raise XmrError(f"sample must be at least 2 rows, got {sample}")
    img = retrieval.as_embeddings(image_emb, "image_emb")
    txt = retrieval.as_embeddings(text_emb, "text_emb")
    if img.shape[1] != txt.shape[1]:
        raise XmrError(
            f"image_emb and text_emb have different sizes ({img.shape[1]} vs {txt.shape[1]})"
        )
    if img.shape[0] < 2 or txt.shape[0] < 2:
        raise XmrError(
            f"collapse statistics need at least 2 images and 2 captions, "
            f"got {img.shape[0]} and {txt.shape[0]}"
        )
    o = torch.from_numpy(np.asarray(owner)) if not isinstance(owner, torch.Tensor) else owner
    if o.ndim != 1 or o.shape[0] != txt.shape[0] or o.is_floating_point():
        raise XmrError(
            f"owner must be an integer array with one entry per caption ({txt.shape[0]})"
        )
    o = o.to(torch.int64)
    if int(o.min()) < 0 or int(o.max()) >= img.shape[0]:
        raise XmrError(f"owner refers to an image outside the {img.shape[0]} image rows")
    gen = torch.Generator().manual_seed(int(seed))
    img_rows = _sample_rows(img.shape[0], int(sample), gen)
    txt_rows = _sample_rows(txt.shape[0], int(sample), gen)
    stats: dict[str, float | bool] = {}
    stats.update(_modality(img, img_rows, "img_"))
    stats.update(_modality(txt, txt_rows, "txt_"))
    stats["alignment"] = alignment(img, txt, o)
    given = _image_query_scores(scores, img, txt, len(img_rows))
    i2t = _query_scan(img[img_rows], txt, similarity, scores=given)
    t2i = _query_scan(txt[txt_rows], img, similarity)
    stats["distinct_top1_i2t"], stats["distinct_top1_t2i"] = i2t[0], t2i[0]
    stats["i2t_norm_share"], stats["t2i_norm_share"] = i2t[1], t2i[1]
    stats["collapsed"] = bool(collapse_reasons(stats))
    return stats


def _image_query_scores(
    scores: Any, img: torch.Tensor, txt: torch.Tensor, n_queries: int
) -> torch.Tensor | None:
    """The caller's ``[N, M]`` scores of ``img`` x ``txt`` as a checked tensor when the
    ``n_queries`` sampled image queries are every image row (``N <= sample``: all of them, in
    order), else None (the sampled queries are scored afresh)."""
    if scores is None:
        return None
    scores = scores if isinstance(scores, torch.Tensor) else torch.from_numpy(np.asarray(scores))
    if tuple(scores.shape) != (img.shape[0], txt.shape[0]):
        raise XmrError(
            f"scores must be [{img.shape[0]}, {txt.shape[0]}] (images x captions), "
            f"got {list(scores.shape)}"
        )
    return scores if n_queries == img.shape[0] else None


def collapse_reasons(stats: dict[str, float | bool]) -> tuple[str, ...]:
    """Which parts of :data:`COLLAPSE_RULE` fire for ``stats`` (empty: not collapsed)."""
    reasons = []
    for p in ("img_", "txt_"):
        if stats[f"{p}mean_pairwise_cosine"] > MAX_MEAN_COSINE:
            reasons.append(f"{p}mean_pairwise_cosine > {MAX_MEAN_COSINE}")
        if stats[f"{p}effective_rank"] < MIN_EFFECTIVE_RANK:
            reasons.append(f"{p}effective_rank < {MIN_EFFECTIVE_RANK}")
    for d in ("i2t", "t2i"):
        if stats[f"distinct_top1_{d}"] < MIN_DISTINCT_TOP1:
            reasons.append(f"distinct_top1_{d} < {MIN_DISTINCT_TOP1}")
    return tuple(reasons)
