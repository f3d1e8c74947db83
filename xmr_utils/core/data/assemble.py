"""Turn caption rows and split lists into a checked :class:`CaptionCorpus`.

Shared by every layout reader so that the policies are the same everywhere:

- empty or whitespace-only captions are dropped and reported (line numbers kept);
- an image referenced by a caption or split file but missing on disk fails the load
  (first few names with file:line, and the count) unless ``on_missing="drop"``, which
  drops the image and its captions and reports each one;
- an image with no (non-empty) caption is not part of the corpus: on disk it is reported
  as uncaptioned, listed in a split it is reported as a split image without captions;
- without a split from the dataset, a seeded split (:mod:`xmr_utils.core.data.splits`) is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from xmr_utils.core.data.corpus import SPLIT_NAMES, CaptionCorpus
from xmr_utils.core.data.events import ReaderEvent, summarise
from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.splits import seeded_split, seeded_split_source
from xmr_utils.core.errors import XmrError, unknown_choice

ON_MISSING: tuple[str, ...] = ("error", "drop")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
SHOW_MISSING = 5


def check_on_missing(on_missing: str) -> None:
    """Raise a clear error unless ``on_missing`` is one of :data:`ON_MISSING`."""
    if on_missing not in ON_MISSING:
        raise unknown_choice("on_missing", on_missing, ON_MISSING)


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


def _first_origins(
    names: list[str], records: CaptionRecords, splits: SplitAssignment | None
) -> dict[str, tuple[str, int]]:
    """``name -> (file, line)`` of the first caption row (else split entry) naming each image."""
    wanted = set(names)
    origins: dict[str, tuple[str, int]] = {}
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


def build_corpus(
    name: str,
    root: Path,
    image_dir: Path,
    records: CaptionRecords,
    splits: SplitAssignment | None,
    *,
    on_missing: str = "error",
    split_seed: int = 0,
) -> CaptionCorpus:
    """Check ``records`` and ``splits`` against the images in ``image_dir``; build the corpus.

    Images are ordered by their first caption row. ``splits=None`` means a seeded split.
    """
    check_on_missing(on_missing)
    events: list[ReaderEvent] = list(records.events)
    if splits is not None:
        events.extend(splits.events)

    # 1. empty captions
    keep_rows = [i for i, text in enumerate(records.texts) if text.strip()]
    if len(keep_rows) != len(records.texts):
        events.extend(_empty_caption_events(records, set(keep_rows)))
    row_names = [records.image_names[i] for i in keep_rows]
    row_texts = [records.texts[i].strip() for i in keep_rows]

    # 2. images referenced but missing on disk
    captioned = dict.fromkeys(row_names)
    listed = {} if splits is None else dict.fromkeys(n for m in splits.members.values() for n in m)
    referenced = list(dict.fromkeys([*captioned, *listed]))
    present = files_on_disk(image_dir, referenced)
    absent = [n for n in referenced if n not in present]
    # a known quirk's image (Flickr8k's stray .jpg.1) without captions is reported by the
    # split check below instead of failing the load
    missing = [n for n in absent if n not in records.known_absent or n in captioned]
    origins = _first_origins(missing, records, splits) if missing else {}
    if missing and on_missing == "error":
        shown = ", ".join(f"{n!r} ({_where(origins[n])})" for n in missing[:SHOW_MISSING])
        more = f" and {len(missing) - SHOW_MISSING} more" if len(missing) > SHOW_MISSING else ""
        raise XmrError(
            f"{len(missing)} image(s) referenced by the dataset are missing from {image_dir}: "
            f"{shown}{more}; restore them or pass on_missing='drop' to drop and report them"
        )
    for n in missing:
        file, line = origins[n]
        events.append(
            ReaderEvent(
                "missing_image",
                file,
                line,
                n,
                f"{n} is referenced but missing from {image_dir.name}/; dropped with its captions",
            )
        )
    dropped = set(missing)

    # 3. the corpus images: captioned and present
    image_names = [n for n in captioned if n not in dropped]
    index = {n: i for i, n in enumerate(image_names)}
    rows = [i for i, n in enumerate(row_names) if n in index]
    owner = np.fromiter((index[row_names[i]] for i in rows), dtype=np.int64, count=len(rows))
    captions = tuple(row_texts[i] for i in rows)

    # 4. images on disk without captions (top-level names of the listing above)
    top_level = sorted(n for n in present if "/" not in n)
    events.extend(_uncaptioned_events(top_level, index, image_dir, root))

    # 5. splits
    if splits is None:
        split_idx = seeded_split(len(image_names), split_seed)
        split_source = seeded_split_source(split_seed)
    else:
        split_idx, split_events = _resolve_splits(splits, index, dropped)
        events.extend(split_events)
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


def _empty_caption_events(records: CaptionRecords, kept: set[int]) -> list[ReaderEvent]:
    return [
        ReaderEvent(
            "empty_caption",
            records.file,
            records.lines[i],
            records.image_names[i],
            f"empty caption for {records.image_names[i]} dropped",
        )
        for i in range(len(records.texts))
        if i not in kept
    ]


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
