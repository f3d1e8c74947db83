"""Models with nothing to train: identity heads over a joint space the encoders already share
(the ``zeroshot`` recipe on ``clip:<model>`` features).

:func:`score_untrained` writes the model folder exactly as a training run would, so every
reader (notebooks 04-06, ablation tables, the browser) treats it like a trained model: the
model is scored once on val, ``best.pt`` holds it as epoch 0 ("before any training"),
``history.jsonl`` one row (epoch 0, its val metrics and collapse statistics, no loss) and
``snapshots/epoch_000.npz`` the val sample's embeddings. There is no ``last.pt``: there is no
training state to resume.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from xmr_utils.core.config import Recipe
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.train.inputs import CheckedData
from xmr_utils.core.train.model_dir import ModelDir
from xmr_utils.core.train.validation import SnapshotSample, ValSplit, embed, validate

UNTRAINED_EPOCH = 0


def score_untrained(
    recipe: Recipe, direction: str, data: CheckedData, folder: ModelDir, device: str
) -> tuple[DualEncoder, dict[str, Any], list[dict[str, Any]]]:
    """Score ``recipe``'s parameter-free model on ``data``'s val split and write ``folder``.

    Returns ``(model, val metrics, history rows)``. Raises XmrError when the recipe's model
    has parameters (it is trained by :func:`~xmr_utils.core.train.loop.train_model`) or when
    the image and caption features are not in one space.
    """
    model = DualEncoder.from_recipe(recipe, data.image_feats.shape[1], data.text_feats.shape[1])
    if any(True for _ in model.parameters()):
        raise XmrError(f"recipe {recipe.name!r} has parameters to train; use train_model")
    model = model.to(torch.device(device)).eval()
    cfg = recipe.train
    folder.clear()
    start = time.perf_counter()
    val_split = ValSplit.of(data)
    val = validate(model, val_split.image_x, val_split.text_x, val_split.owner, cfg.eval_batch_size)
    seconds = time.perf_counter() - start
    folder.save_best(model, recipe, direction, UNTRAINED_EPOCH, val)
    row: dict[str, Any] = {"epoch": UNTRAINED_EPOCH, "seconds": 0.0, "val_seconds": seconds, **val}
    folder.write_history([row])
    if cfg.snapshot_schedule():
        sample = SnapshotSample.of(data, cfg.snapshot_images, cfg.seed)
        embeddings = embed(model, sample.image_x, sample.text_x, cfg.eval_batch_size)
        folder.save_snapshot(UNTRAINED_EPOCH, sample, embeddings, model.similarity)
    return model, val, [row]
