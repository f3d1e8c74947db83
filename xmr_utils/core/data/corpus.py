"""The data contract every reader returns: :class:`CaptionCorpus`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.errors import unknown_choice

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class CaptionCorpus:
    """Images, their captions and the splits of one dataset.

    Attributes:
        name: short dataset name used for the feature cache folder (``synthetic``, ``flickr8k``).
        root: the dataset folder it was read from.
        image_files: absolute paths, one per image; image index ``i`` is ``image_files[i]``.
        captions: caption strings, one per caption index.
        owner: int64 array ``[N_cap]``: caption index -> image index. Relevance is derived
            from this array only (an image may have any number of captions).
        splits: split name (``train``, ``val``, ``test``) -> sorted int64 image indices.
        split_source: where the splits came from (e.g. ``"seeded (seed=0)"`` or ``"karpathy"``).
        notes: what the reader fixed or skipped, one line per kind of event (notebook 00).
        events: every row the reader repaired or skipped, every image it dropped or left
            out, with file and line (:class:`~xmr_utils.core.data.events.ReaderEvent`);
            :func:`xmr_utils.core.data.validate` reports them.
    """

    name: str
    root: Path
    image_files: tuple[Path, ...]
    captions: tuple[str, ...]
    owner: np.ndarray
    splits: dict[str, np.ndarray]
    split_source: str = ""
    notes: tuple[str, ...] = field(default=())
    events: tuple[ReaderEvent, ...] = field(default=())

    def __post_init__(self) -> None:
        owner = np.asarray(self.owner, dtype=np.int64)
        object.__setattr__(self, "owner", owner)
        if len(owner) != len(self.captions):
            raise ValueError(f"owner has {len(owner)} entries for {len(self.captions)} captions")
        if len(owner) and (owner.min() < 0 or owner.max() >= len(self.image_files)):
            raise ValueError("owner refers to an image index outside image_files")
        object.__setattr__(
            self,
            "splits",
            {name: np.sort(np.asarray(idx, dtype=np.int64)) for name, idx in self.splits.items()},
        )

    @property
    def n_images(self) -> int:
        return len(self.image_files)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    def split_images(self, split: str) -> np.ndarray:
        """Image indices ``[n]`` of ``split`` (an unknown split name raises a clear error)."""

        if split not in self.splits:
            raise unknown_choice("split", split, self.splits)
        return self.splits[split]

    def split_captions(self, split: str) -> np.ndarray:
        """Caption indices ``[m]`` whose owner image is in ``split``, in caption order."""
        return np.flatnonzero(np.isin(self.owner, self.split_images(split)))

    def image_fingerprint(self) -> str:
        """Hash of the image list (relative names and byte sizes): changes when images change."""
        h = hashlib.sha256()
        for path in self.image_files:
            size = path.stat().st_size if path.exists() else -1
            h.update(f"{path.name}\0{size}\n".encode())
        return h.hexdigest()[:16]

    def caption_fingerprint(self) -> str:
        """Hash of the captions and their owners: changes when any caption text changes."""
        h = hashlib.sha256()
        h.update(self.owner.tobytes())
        h.update(json.dumps(self.captions).encode())
        return h.hexdigest()[:16]

    def split_fingerprint(self) -> str:
        """Hash of the split assignment (for encoders trained on the training split)."""
        h = hashlib.sha256()
        for name in sorted(self.splits):
            h.update(name.encode())
            h.update(self.splits[name].tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, object]:
        """Plain-JSON summary: sizes, split sizes and where the splits came from."""
        return {
            "name": self.name,
            "root": str(self.root),
            "images": self.n_images,
            "captions": self.n_captions,
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "split_source": self.split_source,
            "notes": list(self.notes),
        }
