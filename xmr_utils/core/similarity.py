"""The similarity vocabulary: one word and one set of names for "how close are two embeddings".

A *similarity* scores a pair of embeddings, higher = closer. Three are defined, each once:

* ``"cosine"``: ``<a/|a|, b/|b|>``;
* ``"dot"``: ``<a, b>`` (equal to cosine when both sides are L2-normalised, and cheaper);
* ``"neg_sqeuclidean"``: ``-|a - b|^2``.

The losses train with :data:`LOSS_SIMILARITIES` (``cosine`` or ``neg_sqeuclidean``); a trained
model scores with :data:`SCORE_SIMILARITIES` (``dot`` or ``neg_sqeuclidean``):
:func:`score_similarity` maps the loss's similarity to the model's (a cosine recipe
L2-normalises its heads, so its model scores with ``dot``). Retrieval, the metrics, the
collapse diagnostics and the training snapshots all take the model's similarity by the
parameter name ``similarity``. "Metric" means only an evaluation metric (R@K, mAP@k).

``neg_sqeuclidean`` is computed by :func:`neg_sqeuclidean`, exact enough where embeddings
collapse: both sides are shifted by one shared centre before ``|a|^2 + |b|^2 - 2 a.b`` is
expanded. Without the shift the float32 expansion loses every digit of a distance that is
small next to the squared norms (points within 0.01 of a common point 100 units from the
origin: squared norms 1e4, their rounding 1e-3, the distances 1e-4), precisely the regime
the seed's collapse lives in; with it the error scales with the spread of the points, not
with their distance from the origin. The shift itself rounds each shifted coordinate at
most once, at the spread's scale (not at all where a coordinate and the centre agree within
a factor of two, as they do near a collapse). A caller scoring in blocks computes one
:func:`shared_centre` of all queries and items and passes it to every block.

Older files spelled these differently: ``LossConfig.distance`` with ``"sqeuclidean"``, and
``metric`` in snapshot files; :data:`LEGACY_NAMES` maps the old values, and the readers that
own those files accept the old keys.

torch is imported inside the functions, not at module top: :mod:`xmr_utils.core.config`
validates names against this module and stays importable without torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from xmr_utils.core.errors import unknown_choice

if TYPE_CHECKING:
    from torch import Tensor

COSINE = "cosine"
DOT = "dot"
NEG_SQEUCLIDEAN = "neg_sqeuclidean"

#: Every similarity name.
SIMILARITIES: tuple[str, ...] = (COSINE, DOT, NEG_SQEUCLIDEAN)
#: What a loss may train with.
LOSS_SIMILARITIES: tuple[str, ...] = (COSINE, NEG_SQEUCLIDEAN)
#: What a trained model (and retrieval, metrics, diagnostics) scores with.
SCORE_SIMILARITIES: tuple[str, ...] = (DOT, NEG_SQEUCLIDEAN)
#: Old spellings of a similarity name (``LossConfig.distance="sqeuclidean"``) -> the name.
LEGACY_NAMES: dict[str, str] = {"sqeuclidean": NEG_SQEUCLIDEAN}


def check_similarity(name: str, accepted: Iterable[str] = SCORE_SIMILARITIES) -> str:
    """Return ``name`` if it is one of ``accepted``, else raise a clear :class:`XmrError`.

    >>> check_similarity("dot")
    'dot'
    >>> check_similarity("cos")
    Traceback (most recent call last):
    ...
    xmr_utils.core.errors.XmrError: unknown similarity 'cos'; accepted: dot, neg_sqeuclidean
    """
    accepted = tuple(accepted)
    if name not in accepted:
        raise unknown_choice("similarity", name, accepted)
    return name


def score_similarity(loss_similarity: str) -> str:
    """The similarity a model trained with ``loss_similarity`` scores with: ``cosine`` ->
    ``dot`` (its heads L2-normalise, so the dot product is the cosine), ``neg_sqeuclidean``
    -> ``neg_sqeuclidean``."""
    check_similarity(loss_similarity, LOSS_SIMILARITIES)
    return DOT if loss_similarity == COSINE else NEG_SQEUCLIDEAN


def shared_centre(a: Tensor, b: Tensor) -> Tensor:
    """The mean ``[D]`` of the rows of ``a [A, D]`` and ``b [C, D]`` together (accumulated in
    float64, returned in ``a``'s dtype, without gradient)."""
    import torch

    with torch.no_grad():
        total = a.detach().sum(0, dtype=torch.float64) + b.detach().sum(0, dtype=torch.float64)
        return (total / (a.shape[0] + b.shape[0])).to(a.dtype)


def neg_sqeuclidean(
    a: Tensor, b: Tensor, centre: Tensor | None = None, *, clamp: bool = True
) -> Tensor:
    """``-|a_i - b_j|^2`` ``[A, C]`` for ``a [A, D]`` and ``b [C, D]``, exact enough near a
    collapse: both sides are shifted by ``centre [D]`` (default :func:`shared_centre`)
    before the expansion ``|a|^2 + |b|^2 - 2 a.b``. Differentiable in ``a`` and ``b``.

    Memory: the two shifted copies and the ``[A, C]`` result. ``clamp`` keeps distances
    >= 0 (rounding can make a tiny distance negative); a ranking caller may turn it off,
    since clamping creates ties the inputs do not have.
    """
    if centre is None:
        centre = shared_centre(a, b)
    a, b = a - centre, b - centre
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return -sq.clamp_min(0.0) if clamp else -sq


def pairwise(a: Tensor, b: Tensor, similarity: str) -> Tensor:
    """Dense similarity ``[A, C]`` between the rows of ``a [A, D]`` and ``b [C, D]``.

    Differentiable (the losses call it). ``neg_sqeuclidean`` is :func:`neg_sqeuclidean`
    (clamped at 0 distance).
    """
    import torch.nn.functional as F

    if similarity == COSINE:
        return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    if similarity == DOT:
        return a @ b.T
    if similarity == NEG_SQEUCLIDEAN:
        return neg_sqeuclidean(a, b)
    raise unknown_choice("similarity", similarity, SIMILARITIES)
