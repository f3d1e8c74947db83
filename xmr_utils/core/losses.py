"""Metric-learning losses over one batch of positive pairs: triplet hinge and InfoNCE.

Batch contract (both losses): ``anchors [B, D]`` and ``candidates [B, D]`` where row ``i``
of each is one training pair (an image and one of its captions, in either role), and
``image_ids [B]`` is the pair's image index. Candidate ``j`` is a positive of anchor
``i`` when ``image_ids[i] == image_ids[j]`` (:func:`positive_mask`); the anchor's own
positive is the diagonal ``j = i``. Other same-image candidates in the batch are never
negatives: the triplet miners skip them and InfoNCE masks them out of the softmax.

As in pytorch-metric-learning a loss is three swappable parts: a *similarity*
(:func:`xmr_utils.core.similarity.pairwise`), a *miner* (:mod:`xmr_utils.core.miners`) and a
*reduction* over anchors (:data:`REDUCE`).

Every loss is a :class:`RecordingLoss`: like pytorch-metric-learning's recordable
attributes, its forward records statistics of its own mechanism for each step (the share of
triplets whose hinge is active, the mean positive and negative similarity, ...), and
:meth:`RecordingLoss.epoch_stats` hands the training loop one history row's worth per
epoch, so the loop never asks which kind of loss it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmr_utils.core.config import InfoNCEConfig, LossConfig, TripletConfig
from xmr_utils.core.errors import XmrError
from xmr_utils.core.miners import HardestMiner, Miner, build_miner
from xmr_utils.core.recording import StatsRecorder
from xmr_utils.core.registry import Registry
from xmr_utils.core.similarity import (
    COSINE,
    LOSS_SIMILARITIES,
    NEG_SQEUCLIDEAN,
    check_similarity,
    pairwise,
)

#: Reduction name -> how per-anchor losses ``[B]`` become the batch's scalar loss.
REDUCE: Registry[Callable[[Tensor], Tensor]] = Registry(
    "reduction", {"mean": torch.mean, "sum": torch.sum}
)


def positive_mask(image_ids: Tensor) -> Tensor:
    """Bool ``[B, B]``: True where pairs ``i`` and ``j`` share an image (diagonal included)."""
    return image_ids[:, None] == image_ids[None, :]


def reduce(per_anchor: Tensor, reduction: str) -> Tensor:
    """Combine per-anchor losses ``[B]`` into a scalar by ``mean`` or ``sum``."""
    return REDUCE[reduction](per_anchor)


def _check_batch(anchors: Tensor, candidates: Tensor, image_ids: Tensor) -> None:
    if anchors.ndim != 2 or anchors.shape != candidates.shape:
        raise XmrError(
            f"anchors and candidates must both be [B, D]; got {tuple(anchors.shape)} "
            f"and {tuple(candidates.shape)}"
        )
    if image_ids.shape != anchors.shape[:1]:
        raise XmrError(f"image_ids must be [B={anchors.shape[0]}], got {tuple(image_ids.shape)}")


class RecordingLoss(nn.Module):
    """Base of the losses: statistics recorded per step, handed over per epoch.

    A subclass's ``forward`` calls :meth:`record` with 0-d tensors (a
    :class:`~xmr_utils.core.recording.StatsRecorder` sums them on their device);
    :meth:`epoch_stats` returns :meth:`summary` (what follows from the epoch's mean loss or
    the loss's state, such as ``loss_over_margin`` or ``temperature``) and the mean over the
    steps of each recorded statistic, then clears the records. A new statistic of a loss's
    mechanism is one more :meth:`record` call in its forward: the loop and the history
    need no change.
    """

    def __init__(self) -> None:
        super().__init__()
        self.recorder = StatsRecorder()

    def record(self, **values: Tensor) -> None:
        """Add one step's value of each named statistic (0-d tensors)."""
        self.recorder.record(**values)

    def summary(self, mean_loss: float) -> dict[str, float | None]:
        """History columns that follow from the epoch's ``mean_loss`` or the loss's state."""
        return {}

    def epoch_stats(self, mean_loss: float) -> dict[str, float | None]:
        """:meth:`summary`, then each recorded statistic's mean over the steps since the last
        call (the records are cleared)."""
        return {**self.summary(mean_loss), **self.recorder.means()}

    def reset_stats(self) -> None:
        """Forget the recorded steps."""
        self.recorder.clear()


class TripletLoss(RecordingLoss):
    """Hinge ``max(0, margin - s(a, p) + s(a, n))`` summed over each anchor's mined negatives.

    ``s`` is :func:`~xmr_utils.core.similarity.pairwise` with ``similarity`` (``cosine`` or
    ``neg_sqeuclidean``: with squared distances the hinge reads ``margin + d(a, p) - d(a, n)``);
    ``miner`` (default: hardest, no warm-up) picks the negatives; ``reduction`` combines the
    ``B`` per-anchor sums. With a one-negative miner this is VSE++'s max-violation loss;
    during the miner's warm-up it is VSE++'s sum of hinges over all in-batch negatives.

    Recorded per step, over the mined (anchor, negative) pairs: ``active_triplets`` (the
    share whose hinge is non-zero, i.e. that produce a gradient), ``pos_similarity`` (mean
    ``s(a, p)`` over anchors), ``neg_similarity`` (mean ``s(a, n)``) and, for a margin > 0,
    ``gap_over_margin`` (mean ``(s(a, p) - s(a, n)) / margin``: >= 1 is a satisfied
    triplet). For ``neg_sqeuclidean`` the similarities are minus the squared distances, and
    ``pos_distance`` / ``neg_distance`` record the mean ``d(a, p)`` and ``d(a, n)`` themselves.
    Summary: ``loss_over_margin`` (None for margin 0).
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
        REDUCE[reduction]  # noqa: B018 -- an unknown reduction raises a clear error here
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
        self._record_triplets(sim.detach(), negatives, hinge.detach())
        return reduce(per_anchor, self.reduction)

    @torch.no_grad()
    def _record_triplets(self, sim: Tensor, negatives: Tensor, hinge: Tensor) -> None:
        """The step's statistics over the mined triplets (``negatives [B, B]`` bool)."""
        pos_sim = sim.diagonal()
        n = negatives.sum().clamp_min(1).to(sim.dtype)
        neg_sim = torch.where(negatives, sim, torch.zeros_like(sim)).sum() / n
        self.record(
            active_triplets=(negatives & (hinge > 0)).sum().to(sim.dtype) / n,
            pos_similarity=pos_sim.mean(),
            neg_similarity=neg_sim,
        )
        if self.margin > 0:
            gap = torch.where(negatives, pos_sim[:, None] - sim, torch.zeros_like(sim)).sum()
            self.record(gap_over_margin=gap / n / self.margin)
        if self.similarity == NEG_SQEUCLIDEAN:  # the same means, as the distances they are
            self.record(pos_distance=-pos_sim.mean(), neg_distance=-neg_sim)

    def summary(self, mean_loss: float) -> dict[str, float | None]:
        return {"loss_over_margin": mean_loss / self.margin if self.margin > 0 else None}

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, similarity={self.similarity!r}, miner={self.miner!r}, "
            f"reduction={self.reduction!r}"
        )


class InfoNCELoss(RecordingLoss):
    """Symmetric InfoNCE on cosine similarity with a fixed or learnable temperature.

    ``logits = cos(anchors, candidates) / T`` ``[B, B]``; the anchor->candidate loss is the
    cross-entropy of each row against its diagonal, the candidate->anchor loss the same
    over columns, and the per-pair loss their mean. Off-diagonal same-image entries are
    removed from both softmaxes (set to ``-inf``), so another caption of the same image is
    neither the target nor a negative. A learnable temperature is stored as
    ``log(1/T)`` (as in CLIP) and ``T`` is clamped to at least ``min_temperature``.

    Recorded per step: ``pos_similarity`` (mean cosine of the pairs) and ``neg_similarity``
    (mean cosine over the negatives of the softmax). Summary: ``temperature`` after the epoch.
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
        REDUCE[reduction]  # noqa: B018 -- an unknown reduction raises a clear error here
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
        cos = pairwise(anchors, candidates, COSINE)  # [B, B]
        logits = cos * scale
        n = logits.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=logits.device)
        masked = positive_mask(image_ids) & ~eye
        logits = logits.masked_fill(masked, float("-inf"))
        target = torch.arange(n, device=logits.device)
        row = F.cross_entropy(logits, target, reduction="none")
        col = F.cross_entropy(logits.T, target, reduction="none")
        self._record_pairs(cos.detach(), ~(masked | eye))
        return reduce((row + col) / 2.0, self.reduction)

    @torch.no_grad()
    def _record_pairs(self, cos: Tensor, negatives: Tensor) -> None:
        """The step's mean positive and negative cosine (``negatives [B, B]`` bool)."""
        n = negatives.sum().clamp_min(1).to(cos.dtype)
        self.record(
            pos_similarity=cos.diagonal().mean(),
            neg_similarity=torch.where(negatives, cos, torch.zeros_like(cos)).sum() / n,
        )

    def summary(self, mean_loss: float) -> dict[str, float | None]:
        return {"temperature": self.temperature}

    def extra_repr(self) -> str:
        learnable = isinstance(self.log_scale, nn.Parameter)
        return f"temperature={self.temperature:.4f}, learnable={learnable}"


#: Loss kind -> builder from its config (kinds are the configs' ``kind``).
LOSSES: Registry[Callable[[LossConfig], RecordingLoss]] = Registry("loss kind")


@LOSSES.register(TripletConfig.kind)
def _build_triplet(config: LossConfig) -> RecordingLoss:
    assert isinstance(config, TripletConfig)
    return TripletLoss(
        margin=config.margin,
        similarity=config.similarity,
        miner=build_miner(config.miner, config.warmup_epochs),
        reduction=config.reduction,
    )


@LOSSES.register(InfoNCEConfig.kind)
def _build_infonce(config: LossConfig) -> RecordingLoss:
    assert isinstance(config, InfoNCEConfig)
    return InfoNCELoss(
        temperature=config.temperature,
        learnable=config.learn_temperature,
        min_temperature=config.min_temperature,
        reduction=config.reduction,
    )


def build_loss(config: LossConfig) -> RecordingLoss:
    """The loss module a loss config describes (``forward(anchors, candidates, image_ids, *,
    epoch, generator) -> scalar``)."""
    return LOSSES[config.kind](config)
