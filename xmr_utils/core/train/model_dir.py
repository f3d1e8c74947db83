"""One model folder and everything in it, read and written only here.

A training run of one recipe and direction writes into one folder (the app names it
``models/<direction>-<recipe>/``; :class:`ModelDir` takes any path):

* ``best.pt`` — the best-val model (:data:`CHECKPOINT_FORMAT`: weights, recipe, input widths,
  direction, epoch, val metrics, the device it was trained on), read by :func:`load_model`;
* ``last.pt`` — everything a resumed run needs (:data:`RESUME_FORMAT`: the recipe, direction
  and data fingerprint it belongs to, :class:`~xmr_utils.core.train.state.Training`'s state
  and the :class:`~xmr_utils.core.train.state.TrainState`);
* ``history.jsonl`` — one flat JSON row per finished epoch;
* ``snapshots/epoch_NNN.npz`` — the embeddings of a fixed val sample after epoch NNN
  (:class:`Snapshot`).

Files are replaced atomically (written beside, then renamed), so a run killed at any point
leaves either the old or the new file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmr_utils.core.config import Recipe
from xmr_utils.core.errors import XmrError
from xmr_utils.core.heads import DualEncoder
from xmr_utils.core.train.inputs import CheckedData
from xmr_utils.core.train.state import Training, TrainState
from xmr_utils.core.train.validation import SnapshotSample

CHECKPOINT_FORMAT = "xmr-dual-encoder/1"
RESUME_FORMAT = "xmr-train-state/1"


@dataclass(frozen=True)
class Snapshot:
    """The joint space after one epoch, on a fixed sample of val images and their captions.

    ``image_ids [n]`` and ``caption_ids [m]`` index the full ``image_feats`` / ``text_feats``
    (corpus indices); ``owner [m]`` maps each caption to its image's row in ``image_ids``;
    ``image_emb [n, D]`` and ``text_emb [m, D]`` are the eval-mode embeddings; ``similarity``
    is the model's score (``dot`` or ``neg_sqeuclidean``; files written before the name was
    settled store it as ``metric``).
    """

    epoch: int
    image_ids: np.ndarray
    caption_ids: np.ndarray
    owner: np.ndarray
    image_emb: np.ndarray
    text_emb: np.ndarray
    similarity: str
    path: Path


def data_fingerprint(data: CheckedData) -> str:
    """A short hash of the feature shapes and the two splits: a ``last.pt`` resumes only
    on the data it was trained on."""
    h = hashlib.sha256()
    h.update(repr((data.image_feats.shape, data.text_feats.shape)).encode())
    for arr in (data.train.images, data.train.captions, data.val.images, data.val.captions):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def device_record(model: DualEncoder) -> dict[str, str]:
    """Where ``model`` lives, for its checkpoints: ``{"device": "cuda:0", "device_name":
    ...}`` (``cpu`` for a model without parameters)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    record = {"device": str(device)}
    if device.type == "cuda":
        record["device_name"] = torch.cuda.get_device_name(device)
    return record


def _same_recipe(saved: dict[str, Any], recipe: Recipe) -> bool:
    """Whether a recipe read from a checkpoint is ``recipe`` (fields added since it was
    written take their defaults; older loss formats are read)."""
    try:
        return bool(Recipe.from_dict(saved) == recipe)
    except XmrError:
        return False


class ModelDir:
    """The files of one model folder (see the module docstring); ``path`` need not exist."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.best = self.path / "best.pt"
        self.last = self.path / "last.pt"
        self.history = self.path / "history.jsonl"
        self.snapshot_dir = self.path / "snapshots"

    def __repr__(self) -> str:
        return f"ModelDir({str(self.path)!r})"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        """Remove every training file (a restart: nothing of an earlier run may survive)."""
        for path in (self.best, self.last, self.history):
            path.unlink(missing_ok=True)
        self.clear_snapshots(after_epoch=0)

    # ------------------------------------------------------------------ history.jsonl

    def read_history(self, upto_epoch: int | None = None) -> list[dict[str, Any]]:
        """The history rows (of epochs <= ``upto_epoch`` when given); [] without a file."""
        if not self.history.exists():
            return []
        rows = [json.loads(line) for line in self.history.read_text().splitlines() if line.strip()]
        return [r for r in rows if upto_epoch is None or r["epoch"] <= upto_epoch]

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Replace the history by ``rows`` (truncating what a killed run wrote past them)."""
        self.history.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def append_history(self, row: dict[str, Any]) -> None:
        with self.history.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    # ------------------------------------------------------------------ best.pt

    def save_best(
        self, model: DualEncoder, recipe: Recipe, direction: str, epoch: int, val: dict[str, Any]
    ) -> None:
        """Write ``best.pt``: the model after 1-based ``epoch`` and its val metrics."""
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "recipe": recipe.to_dict(),
            "image_dim": model.image_dim,
            "text_dim": model.text_dim,
            "direction": direction,
            "epoch": epoch,
            "val": val,
            "device": device_record(model),
        }
        _atomic_save(checkpoint, self.best)

    def load_best(self, device: str = "cpu") -> tuple[DualEncoder, Recipe, dict[str, Any]]:
        """:func:`load_model` of ``best.pt``."""
        return load_model(self.best, device=device)

    # ------------------------------------------------------------------ last.pt

    def save_resume(
        self,
        training: Training,
        recipe: Recipe,
        direction: str,
        fingerprint: str,
        state: TrainState,
    ) -> None:
        """Write ``last.pt``: everything to continue ``training`` after ``state.epoch``."""
        saved = {
            "format": RESUME_FORMAT,
            "recipe": recipe.to_dict(),
            "direction": direction,
            "fingerprint": fingerprint,
            **training.state_dict(),
            "state": state.to_dict(),
            "device": device_record(training.model),
        }
        _atomic_save(saved, self.last)

    def load_resume(
        self, training: Training, recipe: Recipe, direction: str, fingerprint: str
    ) -> TrainState | None:
        """Restore ``training`` from ``last.pt`` and return its state (None: no file).

        Raises XmrError when the file is not a training state or belongs to another
        recipe, direction or data.
        """
        if not self.last.exists():
            return None
        saved = torch.load(self.last, map_location=training.device, weights_only=True)
        if saved.get("format") != RESUME_FORMAT:
            raise XmrError(f"{self.last} is not an xmr training state; remove it")
        if not _same_recipe(saved["recipe"], recipe) or saved["direction"] != direction:
            raise XmrError(
                f"{self.last} was written by another recipe or direction; pass "
                f"resume=False or use a new out_dir"
            )
        if saved["fingerprint"] != fingerprint:
            raise XmrError(f"{self.last} was trained on other data or splits; start over")
        training.load_state_dict(saved)
        return TrainState.from_dict(saved["state"])

    def load_last(
        self, image_dim: int, text_dim: int, device: str = "cpu"
    ) -> tuple[DualEncoder, Recipe, TrainState]:
        """The model as ``last.pt`` holds it, after the last finished epoch (eval mode), its
        recipe and the loop's state (``state.epoch`` is that epoch): the model a run that
        keeps its last epoch, as the seed did, would report. ``image_dim`` / ``text_dim`` are
        the widths of the features it was trained on."""
        if not self.last.exists():
            raise XmrError(f"no {self.last}; train the model first")
        saved = torch.load(self.last, map_location=device, weights_only=True)
        if saved.get("format") != RESUME_FORMAT:
            raise XmrError(f"{self.last} is not an xmr training state; remove it")
        recipe = Recipe.from_dict(saved["recipe"])
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten
            model = DualEncoder.from_recipe(recipe, image_dim, text_dim)
        model = model.to(device)
        model.load_state_dict(saved["model"])
        model.eval()
        return model, recipe, TrainState.from_dict(saved["state"])

    # ------------------------------------------------------------------ snapshots/

    def snapshot_path(self, epoch: int) -> Path:
        return self.snapshot_dir / f"epoch_{epoch:03d}.npz"

    def save_snapshot(
        self,
        epoch: int,
        sample: SnapshotSample,
        embeddings: tuple[np.ndarray, np.ndarray],
        similarity: str,
    ) -> None:
        """Write the snapshot of 1-based ``epoch``: ``embeddings`` = (image ``[n, D]``,
        caption ``[m, D]``) of ``sample``, scored with ``similarity``."""
        path = self.snapshot_path(epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        image_emb, text_emb = embeddings
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                epoch=np.int64(epoch),
                image_ids=sample.image_ids,
                caption_ids=sample.caption_ids,
                owner=sample.owner,
                image_emb=image_emb,
                text_emb=text_emb,
                similarity=np.str_(similarity),
            )
        os.replace(tmp, path)

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot in the folder, by epoch (may be empty: a run trained before
        snapshots existed, or with ``snapshot_epochs=()``)."""
        snapshots = [_read_snapshot(path) for path in self.snapshot_dir.glob("epoch_*.npz")]
        return sorted(snapshots, key=lambda snap: snap.epoch)

    def clear_snapshots(self, after_epoch: int) -> None:
        """Remove snapshots of epochs > ``after_epoch`` (they belong to no saved state)."""
        for path in self.snapshot_dir.glob("epoch_*.npz"):
            stem = path.stem.removeprefix("epoch_")
            if not stem.isdigit() or int(stem) > after_epoch:
                path.unlink()


def _read_snapshot(path: Path) -> Snapshot:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Snapshot(
                epoch=int(z["epoch"]),
                image_ids=z["image_ids"],
                caption_ids=z["caption_ids"],
                owner=z["owner"],
                image_emb=z["image_emb"],
                text_emb=z["text_emb"],
                similarity=str(z["similarity" if "similarity" in z else "metric"]),
                path=path,
            )
    except (OSError, ValueError, KeyError) as exc:
        raise XmrError(
            f"{path} is not a readable snapshot ({exc}); retrain to rewrite it"
        ) from None


def load_snapshots(out_dir: str | Path) -> list[Snapshot]:
    """Every snapshot a training run wrote into the model folder ``out_dir``, by epoch."""
    return ModelDir(out_dir).snapshots()


def load_model(checkpoint: Path, device: str = "cpu") -> tuple[DualEncoder, Recipe, dict[str, Any]]:
    """Load a ``best.pt``: the model (eval mode), its recipe, and meta (direction, epoch,
    val metrics, input dims)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise XmrError(f"no checkpoint at {checkpoint}; train the model first")
    try:
        ckpt = torch.load(checkpoint, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise XmrError(f"{checkpoint} is not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise XmrError(f"{checkpoint} is not an xmr model checkpoint ({CHECKPOINT_FORMAT})")
    recipe = Recipe.from_dict(ckpt["recipe"])
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep RNG as is
        model = DualEncoder.from_recipe(recipe, ckpt["image_dim"], ckpt["text_dim"])
    model = model.to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = {k: ckpt[k] for k in ("direction", "epoch", "val", "image_dim", "text_dim")}
    meta["device"] = ckpt.get("device", {})  # where it was trained (older files: unknown)
    return model, recipe, meta
