"""Training pairs and directions: which (image, caption) pairs an epoch visits, in what order.

An epoch is one pass over every training (image, caption) pair (or one caption per image,
the seed's epoch), shuffled with a seeded ``torch.Generator`` and cut into batches by
indexing in-memory feature tensors with the permutation (no per-item ``Dataset``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xmr_utils.core.config import DIRECTIONS
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.train.inputs import CheckedData


def check_direction(direction: str) -> str:
    """``direction`` if it is one of :data:`~xmr_utils.core.config.DIRECTIONS` (``img2txt``:
    image anchors, the pair's caption the positive, other images' captions in the batch the
    negatives; ``txt2img``: caption anchors, images as candidates), else an XmrError."""
    if direction not in DIRECTIONS:
        raise unknown_choice("direction", direction, DIRECTIONS)
    return direction


def direction_seed(seed: int, direction: str) -> int:
    """The torch seed of ``direction``'s model: ``seed`` for img2txt, ``seed + 1000`` for
    txt2img (initialisation, dropout, shuffling and miner draws derive from it)."""
    return seed + 1000 * DIRECTIONS.index(direction)


def feature_tensor(x: np.ndarray, device: torch.device, name: str) -> Tensor:
    """``x`` as a float32 tensor on ``device``; NaN or infinite values raise XmrError."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if not bool(torch.isfinite(t).all()):
        raise XmrError(f"{name} contains NaN or infinite values")
    return t


@dataclass(frozen=True)
class TrainPairs:
    """Training pairs as tensors on the training device.

    ``image_feats [N_img, Di]`` and ``text_feats [N_cap, Dt]`` are the full feature tables;
    pair ``k`` is (image ``pair_images[k]``, caption ``pair_captions[k]``), both ``[P]``.
    """

    image_feats: Tensor
    text_feats: Tensor
    pair_images: Tensor
    pair_captions: Tensor
    epoch_pairs: str = "all"

    @classmethod
    def of(cls, data: CheckedData, device: torch.device, epoch_pairs: str) -> TrainPairs:
        """The train split's pairs of ``data`` on ``device`` (features checked finite)."""
        return cls(
            image_feats=feature_tensor(data.image_feats, device, "image_feats"),
            text_feats=feature_tensor(data.text_feats, device, "text_feats"),
            pair_images=torch.from_numpy(data.owner[data.train.captions]).to(device),
            pair_captions=torch.from_numpy(data.train.captions).to(device),
            epoch_pairs=epoch_pairs,
        )

    def __len__(self) -> int:
        """Pairs per epoch: all pairs, or one per distinct image (``epoch_pairs``)."""
        if self.epoch_pairs == "one_per_image":
            return int(torch.unique(self.pair_images).numel())
        return int(self.pair_images.shape[0])

    def n_batches(self, batch_size: int) -> int:
        """Batches per epoch (a last batch of a single pair is dropped: it has no negative)."""
        full, rest = divmod(len(self), batch_size)
        return full + (rest >= 2)

    def epoch_order(self, generator: torch.Generator) -> Tensor:
        """Pair indices ``[len(self)]`` of one epoch in shuffled order.

        ``one_per_image``: a uniform random key per pair, pairs sorted by (image, key), the
        first pair of each image kept — one caption per image drawn uniformly — then shuffled.
        """
        if self.epoch_pairs == "all":
            return torch.randperm(len(self), generator=generator)
        images = self.pair_images.cpu()
        keys = torch.rand(len(images), generator=generator, dtype=torch.float64)
        by_image = torch.argsort(images.double() + keys)  # keys < 1 keep images grouped
        sorted_images = images[by_image]
        first = torch.ones(len(images), dtype=torch.bool)
        first[1:] = sorted_images[1:] != sorted_images[:-1]
        chosen = by_image[first]
        return chosen[torch.randperm(len(chosen), generator=generator)]

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """Yield ``(image_x [B, Di], text_x [B, Dt], image_ids [B])`` for one shuffled epoch."""
        device = self.pair_images.device
        perm = self.epoch_order(generator).to(device)
        for b in range(self.n_batches(batch_size)):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            images = self.pair_images[idx]
            yield self.image_feats[images], self.text_feats[self.pair_captions[idx]], images
