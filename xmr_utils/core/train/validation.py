"""What training measures on the val split: metrics, collapse statistics, snapshot samples.

After each epoch (every ``eval_every``) the val split is embedded and scored
(:func:`xmr_utils.core.metrics.retrieval_metrics`: rsum selects the best epoch). The full
collapse statistics (:func:`xmr_utils.core.diagnostics.collapse_stats`) cost several times
the metrics (a seed-recipe epoch on Flickr8k: ~2 s of them beside ~0.6 s for the metrics
and ~3.5 s of bf16 training), so the loop takes them only at :func:`collapse_epochs` (every
:data:`COLLAPSE_EVERY` epochs, the snapshot epochs and the last), at an early stop, and for
the best epoch once training ends: every statistic recorded is the full computation on
fewer epochs, and it reads the scores the metrics already computed. At
the epochs ``recipe.train.snapshot_schedule()`` names, a fixed sample of val images and
their captions is embedded for the training snapshots (:class:`SnapshotSample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmr_utils.core.config import TrainConfig
from xmr_utils.core.data.views import SplitView
from xmr_utils.core.diagnostics import collapse_stats
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.metrics import retrieval_metrics
from xmr_utils.core.train.inputs import CheckedData

#: The loop takes the full collapse statistics every this many epochs (besides the snapshot
#: epochs, the last one, an early stop and the best epoch): :func:`collapse_epochs`. The
#: snapshots already spread four points over any schedule; this adds one wherever they leave
#: a long gap (a 50-epoch schedule gets 1, 17, 25, 34, 50).
COLLAPSE_EVERY: int = 25

#: The key whose presence marks a validation that carries the collapse statistics.
COLLAPSE_KEY: str = "val_collapsed"


def collapse_epochs(cfg: TrainConfig, every: int = COLLAPSE_EVERY) -> frozenset[int]:
    """The 1-based epochs whose validation takes the full collapse statistics: every
    ``every``-th, those of ``cfg.snapshot_schedule()`` (their panels show the statistics) and
    the last. The loop adds an early stop's epoch and, after training, the best one.

    E.g. 50 epochs with the default snapshots (1, 17, 34, 50) and ``every=20``:
    ``{1, 17, 20, 34, 40, 50}``; with the default ``every`` (25): ``{1, 17, 25, 34, 50}``.
    """
    if int(every) < 1:
        raise XmrError(f"collapse statistics every {every} epochs: it must be >= 1")
    return frozenset(
        {*range(int(every), cfg.epochs + 1, int(every)), *cfg.snapshot_schedule(), cfg.epochs}
    )


def val_time_share(rows: list[dict[str, Any]]) -> float:
    """Validation's share of the training time in history ``rows``:
    ``sum(val_seconds) / sum(seconds + val_seconds)`` (rows without ``val_seconds`` count as
    no validation; NaN without any time)."""
    train = sum(float(r.get("seconds", 0.0)) for r in rows)
    val = sum(float(r.get("val_seconds", 0.0)) for r in rows)
    return val / (train + val) if train + val > 0 else float("nan")


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


def val_scores(model: DualEncoder, img: np.ndarray, txt: np.ndarray) -> Tensor:
    """The ``[n, m]`` scores of the embeddings ``img [n, D]`` and ``txt [m, D]`` under
    ``model``'s similarity, which both the metrics and the collapse statistics read."""
    return model.scores(torch.from_numpy(img), torch.from_numpy(txt))


def val_metrics(
    model: DualEncoder,
    img: np.ndarray,
    txt: np.ndarray,
    owner: np.ndarray,
    scores: Tensor | None = None,
) -> dict[str, Any]:
    """Retrieval metrics (``val_rsum`` ...) of the embeddings ``img [n, D]`` and
    ``txt [m, D]`` under ``model``'s score; ``owner [m]`` maps captions to rows of ``img``;
    ``scores`` their :func:`val_scores` when already computed."""
    if scores is None:
        scores = val_scores(model, img, txt)
    return _flat("val_", retrieval_metrics(scores, owner))


def val_collapse(
    img: np.ndarray,
    txt: np.ndarray,
    owner: np.ndarray,
    similarity: str,
    scores: Tensor | None = None,
) -> dict[str, Any]:
    """The full collapse statistics (``val_effective_rank`` ..., ``val_collapsed``) of the
    embeddings ``img [n, D]`` and ``txt [m, D]``; they draw their sample from their own seeded
    generator, never from the streams training uses. ``scores``: their :func:`val_scores`
    when already computed (the image queries then read them: the same bits, one product
    fewer)."""
    return _flat("val_", collapse_stats(img, txt, owner, similarity=similarity, scores=scores))


def validate(
    model: DualEncoder,
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    owner: np.ndarray,
    batch_size: int = 4096,
    collapse: bool = True,
) -> dict[str, Any]:
    """Val metrics and (``collapse``) collapse statistics of ``model``, keys prefixed ``val_``.

    ``image_feats [n, Di]`` and ``text_feats [m, Dt]`` are the split's rows; ``owner [m]``
    maps captions to rows of ``image_feats``.
    """

    img, txt = embed(model, image_feats, text_feats, batch_size)
    scores = val_scores(model, img, txt)
    out = val_metrics(model, img, txt, owner, scores)
    if collapse:
        out.update(val_collapse(img, txt, owner, model.similarity, scores))
    return out
