"""Negative miners: which in-batch candidates each anchor uses as negatives.

Contract (every miner): given a similarity matrix ``sim [A, C]`` between anchors and the
batch's candidates (higher = more similar), the positive mask ``pos_mask [A, C]`` (True
where the candidate belongs to the anchor's image — same-image captions are never
negatives) and each anchor's positive similarity ``pos_sim [A]``, return a bool mask
``[A, C]`` of the negatives each anchor uses. The mask is never True where ``pos_mask``
is; a row is all False when the anchor has no negative in the batch. Mining is selection
only: it runs without gradients.

Rules (ties go to the lowest candidate index, as ``torch.argmax`` does):

* ``random`` — one candidate drawn uniformly from the anchor's non-positives. This is the
  seed's negative: the seed drew, for each anchor, a caption of another image uniformly
  from the whole training set (img2txt) or another image (txt2img). A batch is a uniform
  random sample of the training pairs, so conditional on the anchor's pair the other
  pairs in the batch are a uniform sample of the remaining pairs; by exchangeability a
  uniform pick among the non-positive ones is a caption drawn uniformly from all captions
  of other images — the seed's distribution, without extra forward passes. For txt2img
  the candidates are the batch's images, so an image is drawn in proportion to its
  caption count, which equals the seed's uniform draw when every image has the same
  number of captions (5 in Flickr8k/Flickr30k). Draws of different anchors in one batch
  are correlated (they share the batch); each anchor's marginal distribution is not.
* ``hardest`` — the most similar non-positive (VSE++ "max violation").
* ``semihard`` — the most similar non-positive that is still *less* similar than the
  positive (``sim < pos_sim``: the hardest negative that does not yet out-rank the
  positive, FaceNet's semi-hard rule in similarity space); when the anchor has none
  (every negative already out-ranks the positive) it falls back to the hardest one.

Warm-up (any miner): for ``epoch < warmup_epochs`` every non-positive is used, so the
triplet loss becomes VSE++'s sum of hinges over all in-batch negatives.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xmr_utils.core.errors import XmrError
from xmr_utils.core.registry import Registry


def _one_per_row(scores: Tensor, allowed: Tensor) -> Tensor:
    """Bool mask ``[A, C]`` with the argmax of ``scores`` over ``allowed`` in each row.

    Rows with no allowed entry stay all False.
    """
    masked = scores.masked_fill(~allowed, float("-inf"))
    best = masked.argmax(dim=1)
    chosen = torch.zeros_like(allowed)
    rows = torch.arange(scores.shape[0], device=scores.device)
    chosen[rows, best] = True
    return chosen & allowed.any(dim=1, keepdim=True)


class Miner:
    """Base class: checks inputs, applies the warm-up, then calls :meth:`select`."""

    name = "base"

    def __init__(self, warmup_epochs: int = 0) -> None:
        if warmup_epochs < 0:
            raise XmrError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.warmup_epochs = warmup_epochs

    def __call__(
        self,
        sim: Tensor,
        pos_mask: Tensor,
        pos_sim: Tensor,
        *,
        epoch: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Negatives per anchor: bool ``[A, C]`` (see the module docstring)."""
        if sim.ndim != 2 or pos_mask.shape != sim.shape or pos_sim.shape != sim.shape[:1]:
            raise XmrError(
                f"miner expects sim [A, C], pos_mask [A, C] and pos_sim [A]; got "
                f"{tuple(sim.shape)}, {tuple(pos_mask.shape)} and {tuple(pos_sim.shape)}"
            )
        with torch.no_grad():
            negatives = ~pos_mask.bool()
            if epoch < self.warmup_epochs:
                return negatives
            return self.select(sim.detach(), negatives, pos_sim.detach(), generator)

    def select(
        self, sim: Tensor, negatives: Tensor, pos_sim: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """Pick from ``negatives [A, C]`` (bool); returns a bool mask ``[A, C]``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(warmup_epochs={self.warmup_epochs})"


MINERS: Registry[type[Miner]] = Registry("miner")


@MINERS.register("random")
class RandomMiner(Miner):
    """One uniformly random non-positive per anchor (the seed's negative)."""

    name = "random"

    def select(
        self, sim: Tensor, negatives: Tensor, pos_sim: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        # i.i.d. uniform keys, argmax over the allowed ones = a uniform pick among them.
        keys = torch.rand(sim.shape, generator=generator, device=sim.device)
        return _one_per_row(keys, negatives)


@MINERS.register("hardest")
class HardestMiner(Miner):
    """The most similar non-positive per anchor (max violation)."""

    name = "hardest"

    def select(
        self, sim: Tensor, negatives: Tensor, pos_sim: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        return _one_per_row(sim, negatives)


@MINERS.register("semihard")
class SemiHardMiner(Miner):
    """The most similar non-positive with ``sim < pos_sim``; else the hardest one."""

    name = "semihard"

    def select(
        self, sim: Tensor, negatives: Tensor, pos_sim: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        easier = negatives & (sim < pos_sim[:, None])
        has_easier = easier.any(dim=1, keepdim=True)
        return _one_per_row(sim, torch.where(has_easier, easier, negatives))


def build_miner(name: str, warmup_epochs: int = 0) -> Miner:
    """The miner registered as ``name`` (unknown names raise XmrError listing the accepted)."""
    return MINERS[name](warmup_epochs=warmup_epochs)
