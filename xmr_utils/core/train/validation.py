"""What training measures on the val split: metrics, collapse statistics, snapshot samples.

After each epoch (every ``eval_every``) the val split is embedded and scored
(:func:`xmr_utils.core.metrics.retrieval_metrics`,
:func:`xmr_utils.core.diagnostics.collapse_stats`); at the epochs
``recipe.train.snapshot_schedule()`` names, a fixed sample of val images and their captions
is embedded for the training snapshots (:class:`SnapshotSample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmr_utils.core.data.views import SplitView
from xmr_utils.core.diagnostics import collapse_stats
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.metrics import retrieval_metrics
from xmr_utils.core.train.inputs import CheckedData


@dataclass(frozen=True)
class ValSplit:
    """The val split's rows: ``image_x [n, Di]``, ``text_x [m, Dt]``, and ``owner [m]``
    mapping each caption to its row of ``image_x``."""

    image_x: np.ndarray
    text_x: np.ndarray
    owner: np.ndarray

    @classmethod
    def of(cls, data: CheckedData) -> ValSplit:
        return cls(
            data.image_feats[data.val.images], data.text_feats[data.val.captions], data.val.owner
        )


@dataclass(frozen=True)
class SnapshotSample:
    """The fixed val sample a run's snapshots embed: ``image_ids [n]`` and ``caption_ids [m]``
    (corpus indices, sorted), ``owner [m]`` (caption -> row of ``image_ids``) and their
    features ``image_x [n, Di]``, ``text_x [m, Dt]``."""

    image_ids: np.ndarray
    caption_ids: np.ndarray
    owner: np.ndarray
    image_x: np.ndarray
    text_x: np.ndarray

    @classmethod
    def of(cls, data: CheckedData, n_images: int, seed: int) -> SnapshotSample:
        """:func:`snapshot_sample` of ``data``'s val split, with the sample's features."""
        image_ids, caption_ids, owner = snapshot_sample(data.val.images, data.owner, n_images, seed)
        return cls(
            image_ids, caption_ids, owner, data.image_feats[image_ids], data.text_feats[caption_ids]
        )


def snapshot_sample(
    val_images: np.ndarray, owner: np.ndarray, n_images: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The snapshot sample: ``min(n_images, len(val_images))`` val images drawn with a numpy
    generator seeded by ``seed`` (never torch's streams) and all their captions.

    Returns ``(image_ids [n], caption_ids [m], local_owner [m])``, ids sorted; ``owner [N_cap]``
    maps every caption to its image.
    """
    val = SplitView.of("val", np.sort(np.asarray(val_images, dtype=np.int64)), owner)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(val), size=min(n_images, len(val)), replace=False)
    sample = val.subset(np.sort(pick), "snapshot")
    return sample.images, sample.captions, sample.owner


def embed(
    model: DualEncoder, image_feats: np.ndarray, text_feats: np.ndarray, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode embeddings ``([N, D], [M, D])`` float32 of image and caption features."""
    return model.embed_numpy(image_feats, text_feats, batch_size=batch_size)


def _flat(prefix: str, stats: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in stats.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, Tensor) and value.numel() == 1:
            value = value.item()
        elif isinstance(value, np.ndarray | Tensor):
            value = value.tolist()
        out[f"{prefix}{key}"] = value
    return out


def validate(
    model: DualEncoder,
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    owner: np.ndarray,
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Val metrics and collapse statistics of ``model``, keys prefixed ``val_``.

    ``image_feats [n, Di]`` and ``text_feats [m, Dt]`` are the split's rows; ``owner [m]``
    maps captions to rows of ``image_feats``.
    """

    img, txt = embed(model, image_feats, text_feats, batch_size)
    scores = model.scores(torch.from_numpy(img), torch.from_numpy(txt))
    metrics = retrieval_metrics(scores, owner)
    collapse = collapse_stats(img, txt, owner, similarity=model.similarity)
    return {**_flat("val_", metrics), **_flat("val_", collapse)}
