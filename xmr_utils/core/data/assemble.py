"""Turn caption rows and split lists into a checked :class:`CaptionCorpus`.

Shared by every layout reader so that the policies are the same everywhere:

- empty or whitespace-only captions are dropped and reported (line numbers kept); two rows
  with the same image and comment number are reported (``duplicate_comment``);
- an image referenced by a caption or split file but missing on disk fails the load
  (first few names with file:line, and the count) unless ``on_missing="drop"``, which
  drops the image and its captions and reports each one;
- known quirks are skipped and reported instead: a quirk's image without captions (the
  Flickr8k stray ``.jpg.1`` entries) and, where the split files say so
  (:attr:`~xmr_utils.core.data.records.SplitAssignment.unsplit_absent_is_quirk`), a
  captioned image that is in no split file and absent on disk; an image that a split file
  names must exist;
- an image with no (non-empty) caption is not part of the corpus: on disk it is reported
  as uncaptioned, listed in a split it is reported as a split image without captions;
- an image listed in more than one split fails the load (names, where each split lists
  them, count) unless ``split_overlap="keep"``, which keeps it in each split and reports it;
- a dataset with no usable caption left fails the load, naming the caption file;
- without a split from the dataset, a seeded split (:mod:`xmr_utils.core.data.splits`) is used.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmr_utils.core.data.corpus import SPLIT_NAMES, CaptionCorpus
from xmr_utils.core.data.events import ReaderEvent, summarise
from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.splits import seeded_split, seeded_split_source
from xmr_utils.core.errors import XmrError, unknown_choice

ON_MISSING: tuple[str, ...] = ("error", "drop")
SPLIT_OVERLAP: tuple[str, ...] = ("error", "keep")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
SHOW_MISSING = 5


def check_on_missing(on_missing: str) -> None:
    """Raise a clear error unless ``on_missing`` is one of :data:`ON_MISSING`."""
    if on_missing not in ON_MISSING:
        raise unknown_choice("on_missing", on_missing, ON_MISSING)


def check_split_overlap(split_overlap: str) -> None:
    """Raise a clear error unless ``split_overlap`` is one of :data:`SPLIT_OVERLAP`."""
    if split_overlap not in SPLIT_OVERLAP:
        raise unknown_choice("split_overlap", split_overlap, SPLIT_OVERLAP)


def files_on_disk(image_dir: Path, names: Iterable[str]) -> set[str]:
    """Which of the folders used by ``names`` hold which files (one directory scan per folder).

    Names may contain ``/`` (COCO's ``train2014/x.jpg``); the result uses the same form.
    """
    present: set[str] = set()
    for sub in sorted({name.rpartition("/")[0] for name in names} | {""}):
        folder = image_dir / sub if sub else image_dir
        prefix = f"{sub}/" if sub else ""
        try:
            with os.scandir(folder) as entries:
                present.update(prefix + e.name for e in entries if e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
    return present


@dataclass(frozen=True)
class _Rows:
    """The caption rows kept after dropping empty captions: indices into the records."""

    rows: list[int]
    names: list[str]
    texts: list[str]


def build_corpus(
    name: str,
    root: Path,
    image_dir: Path,
    records: CaptionRecords,
    splits: SplitAssignment | None,
    *,
    on_missing: str = "error",
    split_seed: int = 0,
    split_overlap: str = "error",
) -> CaptionCorpus:
    """Check ``records`` and ``splits`` against the images in ``image_dir``; build the corpus.

    Images are ordered by their first caption row. ``splits=None`` means a seeded split.
    """
    check_on_missing(on_missing)
    check_split_overlap(split_overlap)
    events: list[ReaderEvent] = list(records.events)
    if splits is not None:
        events.extend(splits.events)
    kept = _non_empty_rows(records, events)
    if not kept.rows:
        raise _empty_dataset_error(root, image_dir, records, kept)
    events.extend(_duplicate_comment_events(records))
    present, dropped = _check_on_disk(image_dir, records, kept, splits, on_missing, events)

    image_names = [n for n in dict.fromkeys(kept.names) if n not in dropped]
    if not image_names:
        raise _empty_dataset_error(root, image_dir, records, kept)
    index = {n: i for i, n in enumerate(image_names)}
    rows = [i for i, n in enumerate(kept.names) if n in index]
    owner = np.fromiter((index[kept.names[i]] for i in rows), dtype=np.int64, count=len(rows))
    captions = tuple(kept.texts[i] for i in rows)
    top_level = sorted(n for n in present if "/" not in n)  # on disk, not in sub-folders
    events.extend(_uncaptioned_events(top_level, index, image_dir, root))

    if splits is None:
        split_idx = seeded_split(len(image_names), split_seed)
        split_source = seeded_split_source(split_seed)
    else:
        split_idx, split_events = _resolve_splits(splits, index, dropped)
        events.extend(split_events)
        events.extend(_overlap_events(split_idx, splits, image_names, split_overlap))
        split_source = splits.source

    return CaptionCorpus(
        name=name,
        root=root,
        image_files=tuple(image_dir / n for n in image_names),
        captions=captions,
        owner=owner,
        splits=split_idx,
        split_source=split_source,
        notes=summarise(events),
        events=tuple(events),
    )


def _non_empty_rows(records: CaptionRecords, events: list[ReaderEvent]) -> _Rows:
    """The rows with a non-blank caption; each dropped row is reported with its line."""
    rows = []
    for i, text in enumerate(records.texts):
        if text.strip():
            rows.append(i)
            continue
        events.append(
            ReaderEvent(
                "empty_caption",
                records.file,
                records.lines[i],
                records.image_names[i],
                f"empty caption for {records.image_names[i]} dropped",
            )
        )
    names = [records.image_names[i] for i in rows]
    return _Rows(rows, names, [records.texts[i].strip() for i in rows])


def _duplicate_comment_events(records: CaptionRecords) -> list[ReaderEvent]:
    """One event per row that repeats an earlier row's ``(image, comment number)``."""
    if not records.numbers:
        return []
    first: dict[tuple[str, int], int] = {}
    events = []
    for row, key in enumerate(zip(records.image_names, records.numbers, strict=True)):
        if key not in first:
            first[key] = row
            continue
        earlier = first[key]
        same = records.texts[row].strip() == records.texts[earlier].strip()
        what = (
            "repeats the same caption"
            if same
            else f"has {records.texts[row]!r} where line {records.lines[earlier]} has "
            f"{records.texts[earlier]!r}"
        )
        events.append(
            ReaderEvent(
                "duplicate_comment",
                records.file,
                records.lines[row],
                key[0],
                f"second row for {key[0]} comment {key[1]}: {what}; both kept",
            )
        )
    return events


def _check_on_disk(
    image_dir: Path,
    records: CaptionRecords,
    kept: _Rows,
    splits: SplitAssignment | None,
    on_missing: str,
    events: list[ReaderEvent],
) -> tuple[set[str], set[str]]:
    """``(names on disk, names left out)``: fails on a missing image (``on_missing="error"``),
    else reports it; skips and reports the known quirks (see the module docstring)."""
    captioned = dict.fromkeys(kept.names)
    listed = {} if splits is None else dict.fromkeys(n for m in splits.members.values() for n in m)
    referenced = list(dict.fromkeys([*captioned, *listed]))
    present = files_on_disk(image_dir, referenced)
    absent = [n for n in referenced if n not in present]
    quirk_ok = splits is not None and splits.unsplit_absent_is_quirk
    skipped = [n for n in absent if quirk_ok and n in captioned and n not in listed]
    # a known quirk's image (Flickr8k's stray .jpg.1) without captions is reported by the
    # split check instead of failing the load
    missing = [
        n for n in absent if n not in skipped and (n not in records.known_absent or n in captioned)
    ]
    origins = _first_origins(missing + skipped, records, splits)
    if missing and on_missing == "error":
        shown = ", ".join(f"{n!r} ({_where(origins[n])})" for n in missing[:SHOW_MISSING])
        more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        raise XmrError(
            f"{len(missing)} image(s) referenced by the dataset are missing from {image_dir}: "
            f"{shown}{more}; restore them or pass on_missing='drop' to drop and report them"
        )
    counts = Counter(kept.names)
    for n in skipped:
        file, line = origins[n]
        message = (
            f"{n} has {counts[n]} caption(s) but is in no split file and not in "
            f"{image_dir.name}/ (a known quirk of the official Flickr8k release); skipped"
        )
        events.append(ReaderEvent("absent_unsplit_image", file, line, n, message))
    for n in missing:
        file, line = origins[n]
        message = f"{n} is referenced but missing from {image_dir.name}/; dropped with its captions"
        events.append(ReaderEvent("missing_image", file, line, n, message))
    return present, {*missing, *skipped}


def _first_origins(
    names: list[str], records: CaptionRecords, splits: SplitAssignment | None
) -> dict[str, tuple[str, int]]:
    """``name -> (file, line)`` of the first caption row (else split entry) naming each image."""
    wanted = set(names)
    origins: dict[str, tuple[str, int]] = {}
    if not wanted:
        return origins
    for name, line in zip(records.image_names, records.lines, strict=True):
        if name in wanted and name not in origins:
            origins[name] = (records.file, line)
    for name in wanted - origins.keys():
        if splits is not None and name in splits.origin:
            origins[name] = splits.origin[name]
        else:
            origins[name] = (records.file, 0)
    return origins


def _where(origin: tuple[str, int]) -> str:
    return f"{origin[0]}:{origin[1]}" if origin[1] else origin[0]


def _empty_dataset_error(
    root: Path, image_dir: Path, records: CaptionRecords, kept: _Rows
) -> XmrError:
    """The error for a dataset with no usable caption left, naming the caption file."""
    path = root / records.file
    if not records.texts:
        why = "holds no caption rows (at most a header)"
    elif not kept.rows:
        why = f"has {len(records.texts)} caption rows, all of them empty"
    else:
        why = f"names {len(set(kept.names))} image(s), none of them in {image_dir}"
    return XmrError(
        f"{path} {why}, so the dataset is empty; replace it with the complete caption file "
        "or point dataset at another folder"
    )


def _uncaptioned_events(
    on_disk: list[str], index: dict[str, int], image_dir: Path, root: Path
) -> list[ReaderEvent]:
    folder = image_dir.relative_to(root).as_posix() if image_dir.is_relative_to(root) else ""
    return [
        ReaderEvent(
            "uncaptioned_image",
            folder or str(image_dir),
            0,
            n,
            f"{n} is on disk but has no captions; not in the corpus",
        )
        for n in on_disk
        if n not in index and n.lower().endswith(IMAGE_SUFFIXES)
    ]


def _resolve_splits(
    splits: SplitAssignment, index: dict[str, int], dropped: set[str]
) -> tuple[dict[str, np.ndarray], list[ReaderEvent]]:
    events: list[ReaderEvent] = []
    result: dict[str, np.ndarray] = {}
    assigned: set[str] = set()
    for split in SPLIT_NAMES:
        names = splits.members.get(split, [])
        idx = []
        for n in dict.fromkeys(names):
            if n in index:
                idx.append(index[n])
                assigned.add(n)
            elif n not in dropped:
                file, line = splits.origin.get(n, (splits.source, 0))
                events.append(
                    ReaderEvent(
                        "split_without_captions",
                        file,
                        line,
                        n,
                        f"{n} is listed in the {split} split but has no captions; left out",
                    )
                )
        result[split] = np.asarray(idx, dtype=np.int64)
    for n in index:
        if n not in assigned:
            events.append(
                ReaderEvent(
                    "unsplit_image",
                    splits.source,
                    0,
                    n,
                    f"{n} has captions but is in no split of {splits.source}",
                )
            )
    return result, events


def _overlap_events(
    split_idx: dict[str, np.ndarray],
    splits: SplitAssignment,
    image_names: list[str],
    split_overlap: str,
) -> list[ReaderEvent]:
    """Refuse (``split_overlap="error"``) or report (``"keep"``) images in several splits."""
    member_of: dict[int, list[str]] = {}
    for split in SPLIT_NAMES:
        for i in split_idx.get(split, ()):
            member_of.setdefault(int(i), []).append(split)
    shared = [(image_names[i], names) for i, names in member_of.items() if len(names) > 1]
    if not shared:
        return []
    listed = {n: "; ".join(splits.location(s, n) for s in names) for n, names in shared}
    if split_overlap == "error":
        shown = ", ".join(f"{n!r} ({listed[n]})" for n, _ in shared[:SHOW_MISSING])
        more = f" and {len(shared) - SHOW_MISSING} more" if len(shared) > SHOW_MISSING else ""
        raise XmrError(
            f"{len(shared)} image(s) are listed in more than one split, so the metrics would "
            f"score images the model trained or was selected on: {shown}{more}; list each "
            "image in one split only, or pass split_overlap='keep' (-p split_overlap keep) to "
            "keep them in each split"
        )
    return [
        ReaderEvent(
            "split_overlap",
            splits.source,
            0,
            n,
            f"{n} is in the {' and '.join(names)} splits ({listed[n]}); kept in each",
        )
        for n, names in shared
    ]
