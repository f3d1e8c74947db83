"""What a layout reader hands to :mod:`xmr_utils.core.data.assemble`: caption rows, split lists."""

from __future__ import annotations

from dataclasses import dataclass, field

from xmr_utils.core.data.events import ReaderEvent


@dataclass(frozen=True)
class CaptionRecords:
    """Caption rows as read from one caption file, before any checks against the disk.

    Attributes:
        file: the caption file, relative to the dataset root (used in messages).
        image_names: image file name (relative to the image folder) of each row.
        texts: caption text of each row (stripped; may be empty, assemble reports those).
        lines: 1-based line number of each row in ``file`` (0 for JSON sources).
        events: rows the reader repaired or skipped.
        known_absent: image names that a known quirk refers to (the Flickr8k stray
            ``.jpg.1`` entries): their absence on disk is reported, not fatal.
    """

    file: str
    image_names: list[str]
    texts: list[str]
    lines: list[int]
    events: list[ReaderEvent] = field(default_factory=list)
    known_absent: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not len(self.image_names) == len(self.texts) == len(self.lines):
            raise ValueError("image_names, texts and lines must have one entry per row")


@dataclass(frozen=True)
class SplitAssignment:
    """Image names per split, as listed by split files or a Karpathy JSON.

    Attributes:
        source: what the split is (``"karpathy (dataset_flickr30k.json)"``); becomes
            ``CaptionCorpus.split_source``.
        members: split name (train/val/test) -> image names, in listed order.
        origin: image name -> ``(file, line)`` where it was first listed (for messages).
        events: what the split reader fixed or found missing (e.g. a missing split file).
    """

    source: str
    members: dict[str, list[str]]
    origin: dict[str, tuple[str, int]]
    events: list[ReaderEvent] = field(default_factory=list)
