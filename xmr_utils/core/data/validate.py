"""``validate``: a report of what a corpus holds and what is wrong with it (notebook 00)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.data.events import ReaderEvent

SHOW = 5  # examples listed per check in rows()
_SKIPPED_KINDS = ("skipped_row", "stray_entry")
_OTHER_KINDS = ("missing_split_file", "split_without_captions", "unsplit_image")


@dataclass(frozen=True)
class DuplicateCaption:
    """A caption text (compared lower-cased, whitespace collapsed) that occurs ``count`` times."""

    text: str
    count: int
    images: tuple[str, ...]  # names of the images it describes, in caption order


@dataclass(frozen=True)
class ValidationReport:
    """What a corpus holds and what the reader fixed, skipped or found wrong.

    Attributes:
        dataset, root: ``corpus.name`` and its folder.
        images, captions: counts.
        captions_per_image: ``(captions per image, number of images)`` pairs, ascending.
        split_sizes: ``(split, number of images)`` pairs; ``split_source`` says whence.
        rows_fixed: malformed rows the reader repaired (file, line, what).
        rows_skipped: rows the reader skipped (blank lines, stray entries).
        missing_images: images listed but missing on disk (dropped by the reader or gone since).
        uncaptioned_images: images on disk without captions, and corpus images with none.
        empty_captions: empty captions the reader dropped (file, line).
        duplicate_captions: caption texts that occur more than once.
        corrupt_images: ``(image name, reason)`` of unreadable images; only checked when
            ``images_opened`` (``validate(..., open_images=True)``).
        other_events: split problems (missing split file, images in no split, ...).
    """

    dataset: str
    root: str
    images: int
    captions: int
    captions_per_image: tuple[tuple[int, int], ...]
    split_sizes: tuple[tuple[str, int], ...]
    split_source: str
    rows_fixed: tuple[ReaderEvent, ...]
    rows_skipped: tuple[ReaderEvent, ...]
    missing_images: tuple[str, ...]
    uncaptioned_images: tuple[str, ...]
    empty_captions: tuple[ReaderEvent, ...]
    duplicate_captions: tuple[DuplicateCaption, ...]
    corrupt_images: tuple[tuple[str, str], ...]
    images_opened: bool
    other_events: tuple[ReaderEvent, ...]

    @property
    def ok(self) -> bool:
        """True when no listed image is missing and no opened image is corrupt."""
        return not self.missing_images and not self.corrupt_images

    def rows(self) -> list[tuple[str, str, str]]:
        """The report as ``(check, value, details)`` rows of text, for a table."""
        hist = ", ".join(f"{k}: {v} images" for k, v in self.captions_per_image)
        rows = [
            ("dataset", self.dataset, self.root),
            ("images", str(self.images), ""),
            ("captions", str(self.captions), ""),
            ("captions per image", hist, ""),
        ]
        rows += [(f"{name} split", str(n), self.split_source) for name, n in self.split_sizes]
        rows += [
            ("rows fixed", str(len(self.rows_fixed)), _events(self.rows_fixed)),
            ("rows skipped", str(len(self.rows_skipped)), _events(self.rows_skipped)),
            (
                "images listed but missing",
                str(len(self.missing_images)),
                _names(self.missing_images),
            ),
            (
                "images present but uncaptioned",
                str(len(self.uncaptioned_images)),
                _names(self.uncaptioned_images),
            ),
            ("empty captions dropped", str(len(self.empty_captions)), _events(self.empty_captions)),
            (
                "duplicate caption texts",
                str(len(self.duplicate_captions)),
                "; ".join(f"{d.text!r} ×{d.count}" for d in self.duplicate_captions[:SHOW]),
            ),
            (
                "corrupt images",
                str(len(self.corrupt_images)) if self.images_opened else "not checked",
                "; ".join(f"{n}: {why}" for n, why in self.corrupt_images[:SHOW])
                if self.images_opened
                else "run validate(corpus, open_images=True) to open every image",
            ),
            ("split notes", str(len(self.other_events)), _events(self.other_events)),
        ]
        return rows

    def to_frame(self):  # -> pandas.DataFrame
        """The rows as a pandas DataFrame with columns check, value, details."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=["check", "value", "details"])

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form of the whole report (every event and name, not just examples)."""
        return {
            "dataset": self.dataset,
            "root": self.root,
            "images": self.images,
            "captions": self.captions,
            "captions_per_image": {str(k): v for k, v in self.captions_per_image},
            "split_sizes": dict(self.split_sizes),
            "split_source": self.split_source,
            "rows_fixed": [e.to_dict() for e in self.rows_fixed],
            "rows_skipped": [e.to_dict() for e in self.rows_skipped],
            "missing_images": list(self.missing_images),
            "uncaptioned_images": list(self.uncaptioned_images),
            "empty_captions": [e.to_dict() for e in self.empty_captions],
            "duplicate_captions": [
                {"text": d.text, "count": d.count, "images": list(d.images)}
                for d in self.duplicate_captions
            ],
            "corrupt_images": [{"image": n, "reason": why} for n, why in self.corrupt_images],
            "images_opened": self.images_opened,
            "other_events": [e.to_dict() for e in self.other_events],
            "ok": self.ok,
        }


def _events(events: tuple[ReaderEvent, ...]) -> str:
    shown = "; ".join(e.describe() for e in events[:SHOW])
    return shown + (f"; … {len(events) - SHOW} more" if len(events) > SHOW else "")


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:SHOW])
    return shown + (f", … {len(names) - SHOW} more" if len(names) > SHOW else "")


def validate(corpus: CaptionCorpus, open_images: bool = False) -> ValidationReport:
    """Check ``corpus`` and collect what its reader reported.

    Without ``open_images`` no image is opened (only listed on disk), so the whole check
    costs well under a second for Flickr30k. With ``open_images=True`` every image is
    opened with PIL (``verify`` and a reduced-size decode), and zero-byte, truncated or
    non-image files are listed by name.
    """
    by_kind: dict[str, list[ReaderEvent]] = {}
    for event in corpus.events:
        by_kind.setdefault(event.kind, []).append(event)
    counts = np.bincount(corpus.owner, minlength=corpus.n_images)
    hist = sorted(Counter(counts.tolist()).items())
    missing = [e.item for e in by_kind.get("missing_image", [])]
    missing += [p.name for p in _absent(corpus.image_files)]
    uncaptioned = [e.item for e in by_kind.get("uncaptioned_image", [])]
    uncaptioned += [corpus.image_files[i].name for i in np.flatnonzero(counts == 0)]
    corrupt = _corrupt(corpus.image_files) if open_images else []
    return ValidationReport(
        dataset=corpus.name,
        root=str(corpus.root),
        images=corpus.n_images,
        captions=corpus.n_captions,
        captions_per_image=tuple(hist),
        split_sizes=tuple((k, int(len(v))) for k, v in corpus.splits.items()),
        split_source=corpus.split_source,
        rows_fixed=tuple(by_kind.get("fixed_row", [])),
        rows_skipped=tuple(e for k in _SKIPPED_KINDS for e in by_kind.get(k, [])),
        missing_images=tuple(missing),
        uncaptioned_images=tuple(uncaptioned),
        empty_captions=tuple(by_kind.get("empty_caption", [])),
        duplicate_captions=_duplicates(corpus),
        corrupt_images=tuple(corrupt),
        images_opened=open_images,
        other_events=tuple(e for k in _OTHER_KINDS for e in by_kind.get(k, [])),
    )


def _absent(paths: Iterable[Path]) -> list[Path]:
    """Paths not on disk, with one directory listing per folder (strings: pathlib is slow)."""
    paths = list(paths)
    split = [os.path.split(str(p)) for p in paths]
    listing = {folder: set(_listdir(folder)) for folder in {f for f, _ in split}}
    pairs = zip(paths, split, strict=True)
    return [p for p, (folder, name) in pairs if name not in listing[folder]]


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _duplicates(corpus: CaptionCorpus) -> tuple[DuplicateCaption, ...]:
    keys = [" ".join(c.lower().split()) for c in corpus.captions]
    counts = Counter(keys)
    repeated = {k for k, n in counts.items() if n > 1}
    if not repeated:
        return ()
    images: dict[str, list[str]] = {k: [] for k in repeated}
    for key, owner in zip(keys, corpus.owner.tolist(), strict=True):
        if key in repeated:
            images[key].append(corpus.image_files[owner].name)
    ordered = sorted(repeated, key=lambda k: (-counts[k], k))
    return tuple(DuplicateCaption(k, counts[k], tuple(images[k])) for k in ordered)


def _corrupt(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """``(name, reason)`` of each file that PIL cannot open, verify and decode."""
    from PIL import Image

    bad = []
    for path in paths:
        try:
            if path.stat().st_size == 0:
                bad.append((path.name, "empty file (0 bytes)"))
                continue
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
        except Exception as exc:  # PIL raises many types for bad files; report, never crash
            bad.append((path.name, f"{type(exc).__name__}: {exc}"))
    return bad
