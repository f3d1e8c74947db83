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


def pairwise(a: Tensor, b: Tensor, similarity: str) -> Tensor:
    """Dense similarity ``[A, C]`` between the rows of ``a [A, D]`` and ``b [C, D]``.

    Differentiable (the losses call it). ``neg_sqeuclidean`` is clamped at 0 distance.
    """
    import torch.nn.functional as F

    if similarity == COSINE:
        return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    if similarity == DOT:
        return a @ b.T
    if similarity == NEG_SQEUCLIDEAN:
        sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return -sq.clamp_min(0.0)
    raise unknown_choice("similarity", similarity, SIMILARITIES)
