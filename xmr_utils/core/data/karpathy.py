"""Reader of Karpathy's split files ``dataset_{flickr30k,flickr8k,coco}.json``.

Each ``images[]`` entry has ``filename``, ``split`` (train/val/test/restval) and
``sentences[].raw``; COCO entries also have ``filepath`` (``train2014``), which becomes
part of the image name. ``restval`` is folded into ``train`` (the common practice for
COCO; Flickr30k and Flickr8k have no restval images).
"""

from __future__ import annotations

import json
from pathlib import Path

from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.textio import read_text
from xmr_utils.core.errors import XmrError

KARPATHY_FILES: tuple[str, ...] = (
    "dataset_flickr30k.json",
    "dataset_flickr8k.json",
    "dataset_coco.json",
)
SPLIT_OF: dict[str, str] = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def read_karpathy(path: Path, rel: str) -> tuple[CaptionRecords, SplitAssignment]:
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
    members: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    origin: dict[str, tuple[str, int]] = {}
    for i, entry in enumerate(images):
        name, split, sentences = _entry(entry, rel, i)
        members[SPLIT_OF[split]].append(name)
        origin.setdefault(name, (rel, 0))
        for sentence in sentences:
            names.append(name)
            texts.append(sentence)
    records = CaptionRecords(rel, names, texts, [0] * len(names))
    return records, SplitAssignment(f"karpathy ({rel}; restval -> train)", members, origin)


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
