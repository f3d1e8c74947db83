"""Reader of Karpathy's split files ``dataset_{flickr30k,flickr8k,coco}.json``.

Each ``images[]`` entry has ``filename``, ``split`` (train/val/test/restval) and
``sentences[].raw``; COCO entries also have ``filepath`` (``train2014``), which becomes
part of the image name. ``restval`` is folded into ``train`` (the common practice for
COCO; Flickr30k and Flickr8k have no restval images).

Beside a caption file, the JSON supplies the splits only; :func:`caption_differences` then
lists the images whose JSON captions differ from the caption file's (compared as words:
lower-cased, punctuation and spacing ignored, in any order), so that a JSON of another
release or another dataset is reported rather than trusted silently.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.textio import read_text
from xmr_utils.core.errors import XmrError

KARPATHY_FILES: tuple[str, ...] = (
    "dataset_flickr30k.json",
    "dataset_flickr8k.json",
    "dataset_coco.json",
)
SPLIT_OF: dict[str, str] = {"train": "train", "restval": "train", "val": "val", "test": "test"}
# every character but letters, digits and whitespace becomes a space before comparing words
_NOT_WORD = {c: " " for c in range(0x250) if not (chr(c).isalnum() or chr(c).isspace())}


@dataclass(frozen=True)
class KarpathyFile:
    """One Karpathy JSON as read.

    Attributes:
        records: its captions (``lines`` are 0: the file is one JSON document).
        splits: its images per split (``locations`` say ``images[i]``).
        dataset: the file's own ``"dataset"`` field (``"flickr30k"``), or ``""`` when absent.
        sentence_ids: ``images[i].sentences[j]`` of each caption row, for messages.
    """

    records: CaptionRecords
    splits: SplitAssignment
    dataset: str
    sentence_ids: tuple[str, ...]


def dataset_of_file(path: Path) -> str:
    """The dataset a Karpathy file is named for: ``dataset_flickr8k.json`` -> ``flickr8k``."""
    return path.stem.removeprefix("dataset_")


def read_karpathy(path: Path, rel: str) -> KarpathyFile:
    """Captions and splits of a Karpathy JSON file (``rel`` names it in messages)."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise XmrError(
            f"{rel}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}); "
            "replace the file with an intact copy"
        ) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise XmrError(f"{rel}: has no 'images' list; is this one of Karpathy's dataset_*.json?")
    names: list[str] = []
    texts: list[str] = []
    sentence_ids: list[str] = []
    members: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    origin: dict[str, tuple[str, int]] = {}
    locations: dict[str, dict[str, str]] = {split: {} for split in members}
    for i, entry in enumerate(images):
        name, split, sentences = _entry(entry, rel, i)
        members[SPLIT_OF[split]].append(name)
        origin.setdefault(name, (rel, 0))
        locations[SPLIT_OF[split]].setdefault(name, f"{rel} images[{i}] ({split})")
        for j, sentence in enumerate(sentences):
            names.append(name)
            texts.append(sentence)
            sentence_ids.append(f"images[{i}].sentences[{j}]")
    records = CaptionRecords(rel, names, texts, [0] * len(names))
    splits = SplitAssignment(
        f"karpathy ({rel}; restval -> train)", members, origin, locations=locations
    )
    dataset = data.get("dataset")
    return KarpathyFile(
        records, splits, dataset if isinstance(dataset, str) else "", tuple(sentence_ids)
    )


def _entry(entry: object, rel: str, i: int) -> tuple[str, str, list[str]]:
    """``(image name, split, raw sentences)`` of ``images[i]``, checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
        raise XmrError(f"{rel}: images[{i}] has no 'filename' string; fix or replace the file")
    name = entry["filename"]
    if isinstance(entry.get("filepath"), str) and entry["filepath"]:
        name = f"{entry['filepath']}/{name}"
    split = entry.get("split")
    if split not in SPLIT_OF:
        raise XmrError(
            f"{rel}: images[{i}] ({name}) has split {split!r}; "
            f"expected one of {', '.join(SPLIT_OF)}"
        )
    sentences = entry.get("sentences", [])
    if not isinstance(sentences, list) or not all(
        isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sentences
    ):
        raise XmrError(
            f"{rel}: images[{i}] ({name}) has sentences without a 'raw' string; "
            "fix or replace the file"
        )
    return name, split, [s["raw"] for s in sentences]


def _words(text: str) -> str:
    """``text`` as lower-case words, punctuation and spacing ignored."""
    return " ".join(text.lower().translate(_NOT_WORD).split())


def _by_image(records: CaptionRecords) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for row, name in enumerate(records.image_names):
        rows.setdefault(name, []).append(row)
    return rows


def _word_lists(records: CaptionRecords, rows: dict[str, list[int]]) -> dict[str, list[str]]:
    """Image name -> its captions as sorted word strings."""
    words = [_words(t) for t in records.texts]
    return {name: sorted(words[r] for r in image_rows) for name, image_rows in rows.items()}


def _first_extra(records: CaptionRecords, rows: list[int], extra: Counter[str]) -> int | None:
    return next((r for r in rows if extra[_words(records.texts[r])] > 0), None)


def caption_differences(karpathy: KarpathyFile, records: CaptionRecords) -> list[ReaderEvent]:
    """One ``karpathy_mismatch`` event per image whose captions in the JSON and in the
    caption file ``records`` differ as word sequences (images in only one of them are
    reported by the split checks instead)."""
    json_rows = _by_image(karpathy.records)
    file_rows = _by_image(records)
    json_words = _word_lists(karpathy.records, json_rows)
    file_words = _word_lists(records, file_rows)
    events = []
    for name, rows in json_rows.items():
        if name not in file_rows or json_words[name] == file_words[name]:
            continue
        ours = Counter(_words(karpathy.records.texts[r]) for r in rows)
        theirs = Counter(_words(records.texts[r]) for r in file_rows[name])
        if ours == theirs:
            continue
        in_json = _first_extra(karpathy.records, rows, ours - theirs)
        in_file = _first_extra(records, file_rows[name], theirs - ours)
        json_side = (
            f"{karpathy.sentence_ids[in_json]} has {karpathy.records.texts[in_json]!r}"
            if in_json is not None
            else f"the JSON has {len(rows)} captions"
        )
        file_side = (
            f"{records.where(in_file)} has {records.texts[in_file]!r}"
            if in_file is not None
            else f"{records.file} has {len(file_rows[name])}"
        )
        differing = max(sum((ours - theirs).values()), sum((theirs - ours).values()))
        events.append(
            ReaderEvent(
                "karpathy_mismatch",
                karpathy.records.file,
                0,
                name,
                f"{differing} caption(s) of {name} differ from {records.file}: "
                f"{json_side}, {file_side}",
            )
        )
    return events
