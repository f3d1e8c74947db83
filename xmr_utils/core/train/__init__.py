"""Training: one model per recipe and direction, selected on val rsum, resumable.

One module per job:

* :mod:`~xmr_utils.core.train.inputs` — the arrays a model trains on, checked once
  (:class:`TrainData`);
* :mod:`~xmr_utils.core.train.pairs` — directions, seeds and the epoch's shuffled batches
  (:class:`TrainPairs`);
* :mod:`~xmr_utils.core.train.state` — the live training objects and the loop's bookkeeping
  (:class:`Training`, :class:`TrainState`, :func:`build_training`);
* :mod:`~xmr_utils.core.train.validation` — val metrics, collapse statistics and the snapshot
  sample (:func:`validate`, :func:`embed`, :func:`collapse_epochs`, :func:`val_time_share`);
* :mod:`~xmr_utils.core.train.model_dir` — the model folder and its file formats
  (:class:`ModelDir`: ``best.pt``, ``last.pt``, ``history.jsonl``, ``snapshots/``);
* :mod:`~xmr_utils.core.train.loop` — the loop itself (:func:`train_model`, :func:`run_epoch`).
"""

from xmr_utils.core.train.inputs import CheckedData, TrainData, check_data
from xmr_utils.core.train.loop import (
    EpochOptions,
    EpochResult,
    TrainResult,
    early_stop_reason,
    run_epoch,
    train_model,
)
from xmr_utils.core.train.model_dir import (
    CHECKPOINT_FORMAT,
    RESUME_FORMAT,
    ModelDir,
    Snapshot,
    data_fingerprint,
    load_model,
    load_snapshots,
)
from xmr_utils.core.train.pairs import DIRECTIONS, TrainPairs, check_direction, direction_seed
from xmr_utils.core.train.state import Training, TrainState, build_training
from xmr_utils.core.train.validation import (
    COLLAPSE_EVERY,
    SnapshotSample,
    ValSplit,
    collapse_epochs,
    embed,
    snapshot_sample,
    val_time_share,
    validate,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "COLLAPSE_EVERY",
    "DIRECTIONS",
    "RESUME_FORMAT",
    "CheckedData",
    "EpochOptions",
    "EpochResult",
    "ModelDir",
    "Snapshot",
    "SnapshotSample",
    "TrainData",
    "TrainPairs",
    "TrainResult",
    "TrainState",
    "Training",
    "ValSplit",
    "build_training",
    "check_data",
    "check_direction",
    "collapse_epochs",
    "data_fingerprint",
    "direction_seed",
    "early_stop_reason",
    "embed",
    "load_model",
    "load_snapshots",
    "run_epoch",
    "snapshot_sample",
    "train_model",
    "val_time_share",
    "validate",
]
