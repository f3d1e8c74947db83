"""What a reader fixed, skipped or dropped: :class:`ReaderEvent` and its one-line summaries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

# kind -> what an event of that kind means (also the heading used in notes and reports)
EVENT_KINDS: dict[str, str] = {
    "fixed_row": "malformed row repaired",
    "skipped_row": "row skipped",
    "stray_entry": "stray caption entry skipped (known quirk)",
    "empty_caption": "empty caption dropped",
    "missing_image": "image listed but missing on disk, dropped (on_missing='drop')",
    "missing_split_file": "split file absent, split left empty",
    "uncaptioned_image": "image on disk without captions, not in the corpus",
    "split_without_captions": "image listed in a split but without captions, left out",
    "unsplit_image": "captioned image in no split",
    "absent_unsplit_image": (
        "captioned image absent on disk and in no split, skipped with its captions (known quirk)"
    ),
    "split_overlap": "image in more than one split, kept in each (split_overlap='keep')",
    "duplicate_comment": "two caption rows with the same image and comment number",
    "karpathy_mismatch": "Karpathy JSON that disagrees with the caption file or its own name",
    "foreign_karpathy": "Karpathy JSON of another dataset, not used for the splits",
}


@dataclass(frozen=True)
class ReaderEvent:
    """One thing a reader repaired, skipped or dropped, with where it happened.

    Attributes:
        kind: one of :data:`EVENT_KINDS`.
        file: the file concerned, relative to the dataset root (``results.csv``).
        line: 1-based line number in ``file``; 0 when the event is not about one line.
        item: the image name (or raw row) concerned.
        message: one sentence saying what was wrong and what the reader did.
    """

    kind: str
    file: str
    line: int
    item: str
    message: str

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown reader event kind {self.kind!r}")

    def where(self) -> str:
        """``file:line`` (or just ``file`` when the event is not about one line)."""
        return f"{self.file}:{self.line}" if self.line else self.file

    def describe(self) -> str:
        """``file:line: message`` in one line."""
        return f"{self.where()}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarise(events: Iterable[ReaderEvent], show: int = 3) -> tuple[str, ...]:
    """One note per event kind: the count, the meaning and the first ``show`` occurrences."""
    by_kind: dict[str, list[ReaderEvent]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    notes = []
    for kind, group in by_kind.items():
        if len(group) == 1:
            notes.append(group[0].describe())
            continue
        first = "; ".join(e.describe() for e in group[:show])
        more = f"; … {len(group) - show} more" if len(group) > show else ""
        notes.append(f"{len(group)} × {EVENT_KINDS[kind]}: {first}{more}")
    return tuple(notes)
