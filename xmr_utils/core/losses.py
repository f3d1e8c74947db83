"""Metric-learning losses over one batch of positive pairs: triplet hinge and InfoNCE.

Batch contract (both losses): ``anchors [B, D]`` and ``candidates [B, D]`` where row ``i``
of each is one training pair (an image and one of its captions, in either role), and
``image_ids [B]`` is the pair's image index. Candidate ``j`` is a positive of anchor
``i`` when ``image_ids[i] == image_ids[j]`` (:func:`positive_mask`); the anchor's own
positive is the diagonal ``j = i``. Other same-image candidates in the batch are never
negatives: the triplet miners skip them and InfoNCE masks them out of the softmax.

As in pytorch-metric-learning a loss is three swappable parts: a *similarity*
(:func:`xmr_utils.core.similarity.pairwise`), a *miner* (:mod:`xmr_utils.core.miners`) and a
*reduction* over anchors (``mean`` or ``sum``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmr_utils.core.config import REDUCTIONS, LossConfig
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.miners import HardestMiner, Miner, build_miner
from xmr_utils.core.registry import Registry
from xmr_utils.core.similarity import COSINE, LOSS_SIMILARITIES, check_similarity, pairwise


def positive_mask(image_ids: Tensor) -> Tensor:
    """Bool ``[B, B]``: True where pairs ``i`` and ``j`` share an image (diagonal included)."""
    return image_ids[:, None] == image_ids[None, :]


def reduce(per_anchor: Tensor, reduction: str) -> Tensor:
    """Combine per-anchor losses ``[B]`` into a scalar by ``mean`` or ``sum``."""
    if reduction == "mean":
        return per_anchor.mean()
    if reduction == "sum":
        return per_anchor.sum()
    raise unknown_choice("reduction", reduction, REDUCTIONS)


def _check_batch(anchors: Tensor, candidates: Tensor, image_ids: Tensor) -> None:
    if anchors.ndim != 2 or anchors.shape != candidates.shape:
        raise XmrError(
            f"anchors and candidates must both be [B, D]; got {tuple(anchors.shape)} "
            f"and {tuple(candidates.shape)}"
        )
    if image_ids.shape != anchors.shape[:1]:
        raise XmrError(f"image_ids must be [B={anchors.shape[0]}], got {tuple(image_ids.shape)}")


class TripletLoss(nn.Module):
    """Hinge ``max(0, margin - s(a, p) + s(a, n))`` summed over each anchor's mined negatives.

    ``s`` is :func:`~xmr_utils.core.similarity.pairwise` with ``similarity`` (``cosine`` or
    ``neg_sqeuclidean``: with squared distances the hinge reads ``margin + d(a, p) - d(a, n)``);
    ``miner`` (default: hardest, no warm-up) picks the negatives; ``reduction`` combines the
    ``B`` per-anchor sums. With a one-negative miner this is VSE++'s max-violation loss;
    during the miner's warm-up it is VSE++'s sum of hinges over all in-batch negatives.
    """

    def __init__(
        self,
        margin: float = 0.2,
        similarity: str = COSINE,
        miner: Miner | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        check_similarity(similarity, LOSS_SIMILARITIES)
        if reduction not in REDUCTIONS:
            raise unknown_choice("reduction", reduction, REDUCTIONS)
        if margin < 0:
            raise XmrError(f"triplet margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.similarity = similarity
        self.miner = miner if miner is not None else HardestMiner()
        self.reduction = reduction

    def forward(
        self,
        anchors: Tensor,
        candidates: Tensor,
        image_ids: Tensor,
        *,
        epoch: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Scalar loss for ``anchors [B, D]``, ``candidates [B, D]``, ``image_ids [B]``."""
        _check_batch(anchors, candidates, image_ids)
        sim = pairwise(anchors, candidates, self.similarity)  # [B, B]
        pos_sim = sim.diagonal()  # [B]
        negatives = self.miner(
            sim, positive_mask(image_ids), pos_sim, epoch=epoch, generator=generator
        )
        hinge = (self.margin - pos_sim[:, None] + sim).clamp_min(0.0)
        per_anchor = torch.where(negatives, hinge, torch.zeros_like(hinge)).sum(dim=1)
        return reduce(per_anchor, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, similarity={self.similarity!r}, miner={self.miner!r}, "
            f"reduction={self.reduction!r}"
        )


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE on cosine similarity with a fixed or learnable temperature.

    ``logits = cos(anchors, candidates) / T`` ``[B, B]``; the anchor->candidate loss is the
    cross-entropy of each row against its diagonal, the candidate->anchor loss the same
    over columns, and the per-pair loss their mean. Off-diagonal same-image entries are
    removed from both softmaxes (set to ``-inf``), so another caption of the same image is
    neither the target nor a negative. A learnable temperature is stored as
    ``log(1/T)`` (as in CLIP) and ``T`` is clamped to at least ``min_temperature``.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learnable: bool = True,
        min_temperature: float = 0.01,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not 0 < min_temperature <= temperature:
            raise XmrError(
                f"need 0 < min_temperature <= temperature, got {min_temperature} and {temperature}"
            )
        if reduction not in REDUCTIONS:
            raise unknown_choice("reduction", reduction, REDUCTIONS)
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.max_log_scale = math.log(1.0 / min_temperature)
        self.reduction = reduction

    @property
    def temperature(self) -> float:
        """Current (clamped) temperature."""
        return float(torch.exp(-self.log_scale.detach().clamp(max=self.max_log_scale)))

    def forward(
        self,
        anchors: Tensor,
        candidates: Tensor,
        image_ids: Tensor,
        *,
        epoch: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Scalar loss for ``anchors [B, D]``, ``candidates [B, D]``, ``image_ids [B]``.

        ``epoch`` and ``generator`` are accepted for the common loss signature and unused.
        """
        _check_batch(anchors, candidates, image_ids)
        scale = self.log_scale.clamp(max=self.max_log_scale).exp()
        logits = pairwise(anchors, candidates, COSINE) * scale  # [B, B]
        n = logits.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(positive_mask(image_ids) & ~eye, float("-inf"))
        target = torch.arange(n, device=logits.device)
        row = F.cross_entropy(logits, target, reduction="none")
        col = F.cross_entropy(logits.T, target, reduction="none")
        return reduce((row + col) / 2.0, self.reduction)

    def extra_repr(self) -> str:
        learnable = isinstance(self.log_scale, nn.Parameter)
        return f"temperature={self.temperature:.4f}, learnable={learnable}"


LOSSES: Registry[Callable[[LossConfig], nn.Module]] = Registry("loss kind")


@LOSSES.register("triplet")
def _build_triplet(config: LossConfig) -> nn.Module:
    return TripletLoss(
        margin=config.margin,
        similarity=config.similarity,
        miner=build_miner(config.miner, config.warmup_epochs),
        reduction=config.reduction,
    )


@LOSSES.register("infonce")
def _build_infonce(config: LossConfig) -> nn.Module:
    return InfoNCELoss(
        temperature=config.temperature,
        learnable=config.learn_temperature,
        min_temperature=config.min_temperature,
        reduction=config.reduction,
    )


def build_loss(config: LossConfig) -> nn.Module:
    """The loss module a :class:`LossConfig` describes (``forward(anchors, candidates,
    image_ids, *, epoch, generator) -> scalar``)."""
    return LOSSES[config.kind](config)
