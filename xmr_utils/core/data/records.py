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
        numbers: the comment number of each row (``results.csv``'s ``comment_number``,
            the ``#n`` of ``Flickr8k.token.txt``); empty when the file has none.
    """

    file: str
    image_names: list[str]
    texts: list[str]
    lines: list[int]
    events: list[ReaderEvent] = field(default_factory=list)
    known_absent: frozenset[str] = frozenset()
    numbers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not len(self.image_names) == len(self.texts) == len(self.lines):
            raise ValueError("image_names, texts and lines must have one entry per row")
        if self.numbers and len(self.numbers) != len(self.texts):
            raise ValueError("numbers must be empty or have one entry per row")

    def where(self, row: int) -> str:
        """``file:line`` of row ``row`` (just ``file`` for sources without lines)."""
        line = self.lines[row]
        return f"{self.file}:{line}" if line else self.file


@dataclass(frozen=True)
class SplitAssignment:
    """Image names per split, as listed by split files or a Karpathy JSON.

    Attributes:
        source: what the split is (``"karpathy (dataset_flickr30k.json)"``); becomes
            ``CaptionCorpus.split_source``.
        members: split name (train/val/test) -> image names, in listed order.
        origin: image name -> ``(file, line)`` where it was first listed (for messages).
        events: what the split reader fixed or found missing (e.g. a missing split file).
        locations: split name -> image name -> where that split lists it
            (``"Flickr8k_text/Flickr_8k.testImages.txt:12"``, ``"dataset_flickr8k.json
            images[5]"``), for the message about an image listed in two splits.
        unsplit_absent_is_quirk: True when a captioned image that is in no split and absent
            on disk is a known quirk of the public files (the official Flickr8k release
            captions ``2258277193_586949ec62.jpg``, which its archive does not ship): such an
            image is skipped and reported instead of failing the load.
    """

    source: str
    members: dict[str, list[str]]
    origin: dict[str, tuple[str, int]]
    events: list[ReaderEvent] = field(default_factory=list)
    locations: dict[str, dict[str, str]] = field(default_factory=dict)
    unsplit_absent_is_quirk: bool = False

    def location(self, split: str, name: str) -> str:
        """Where ``split`` lists ``name`` (the split source when not recorded)."""
        return self.locations.get(split, {}).get(name, self.source)
