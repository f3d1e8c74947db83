"""``validate``: a report of what a corpus holds and what is wrong with it (notebook 00), and
:func:`text_encoding_report`: what the text encoder could not read in full (notebook 01)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xmr_utils.core.data.corpus import CaptionCorpus
from xmr_utils.core.data.events import EVENT_KINDS, ReaderEvent

if TYPE_CHECKING:  # the report is read by its attributes; data does not import the encoders
    from xmr_utils.core.encoders.base import TextReport

SHOW = 5  # examples listed per check in rows()
_SKIPPED_KINDS = ("skipped_row", "stray_entry")
_OTHER_KINDS = ("missing_split_file", "split_without_captions", "unsplit_image")
_KARPATHY_KINDS = ("foreign_karpathy", "karpathy_mismatch")


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
        images_skipped: captioned images absent on disk and in no split file, skipped as a
            known quirk (the official Flickr8k ``2258277193_586949ec62.jpg``).
        split_overlaps: images kept in more than one split (``split_overlap="keep"``; without
            it such a dataset fails to load).
        duplicate_comments: rows repeating an earlier row's ``(image, comment number)``.
        karpathy_notes: Karpathy JSONs of another dataset (not used) and images whose JSON
            captions differ from the caption file.
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
    images_skipped: tuple[ReaderEvent, ...] = ()
    split_overlaps: tuple[ReaderEvent, ...] = ()
    duplicate_comments: tuple[ReaderEvent, ...] = ()
    karpathy_notes: tuple[ReaderEvent, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no listed image is missing, no opened image is corrupt and no image is in
        two splits (kept by ``split_overlap="keep"``)."""
        return not self.missing_images and not self.corrupt_images and not self.split_overlaps

    def findings(self) -> list[str]:
        """One short line per check that found something (the pipeline prints these)."""
        lines = [
            f"{len(events)} × {EVENT_KINDS[events[0].kind]}: {_events(events, show=1)}"
            for events in self._event_checks()
            if events
        ]
        named = (
            ("image(s) listed but missing", self.missing_images),
            ("image(s) present but uncaptioned", self.uncaptioned_images),
        )
        lines += [f"{len(names)} {what}: {_names(names, show=3)}" for what, names in named if names]
        if self.duplicate_captions:
            first = self.duplicate_captions[0]
            lines.append(
                f"{len(self.duplicate_captions)} caption text(s) occur more than once, e.g. "
                f"{first.text!r} ×{first.count}"
            )
        if self.corrupt_images:
            name, why = self.corrupt_images[0]
            lines.append(f"{len(self.corrupt_images)} corrupt image(s): {name}: {why}")
        return lines

    def _event_checks(self) -> tuple[tuple[ReaderEvent, ...], ...]:
        """The event groups, each of one kind, in report order."""
        groups = (
            self.rows_fixed,
            self.rows_skipped,
            self.images_skipped,
            self.empty_captions,
            self.duplicate_comments,
            self.karpathy_notes,
            self.split_overlaps,
            self.other_events,
        )
        by_kind: dict[str, list[ReaderEvent]] = {}
        for group in groups:
            for event in group:
                by_kind.setdefault(event.kind, []).append(event)
        return tuple(tuple(events) for events in by_kind.values())

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
            (
                "captioned images absent and in no split, skipped",
                str(len(self.images_skipped)),
                _events(self.images_skipped),
            ),
            ("empty captions dropped", str(len(self.empty_captions)), _events(self.empty_captions)),
            (
                "rows repeating an (image, comment number)",
                str(len(self.duplicate_comments)),
                _events(self.duplicate_comments),
            ),
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
            (
                "images in more than one split",
                str(len(self.split_overlaps)),
                _events(self.split_overlaps),
            ),
            ("Karpathy JSON notes", str(len(self.karpathy_notes)), _events(self.karpathy_notes)),
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
            "images_skipped": [e.to_dict() for e in self.images_skipped],
            "split_overlaps": [e.to_dict() for e in self.split_overlaps],
            "duplicate_comments": [e.to_dict() for e in self.duplicate_comments],
            "karpathy_notes": [e.to_dict() for e in self.karpathy_notes],
            "findings": self.findings(),
            "ok": self.ok,
        }


def _events(events: tuple[ReaderEvent, ...], show: int = SHOW) -> str:
    shown = "; ".join(e.describe() for e in events[:show])
    return shown + (f"; … {len(events) - show} more" if len(events) > show else "")


def _names(names: tuple[str, ...], show: int = SHOW) -> str:
    shown = ", ".join(names[:show])
    return shown + (f", … {len(names) - show} more" if len(names) > show else "")


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
        images_skipped=tuple(by_kind.get("absent_unsplit_image", [])),
        split_overlaps=tuple(by_kind.get("split_overlap", [])),
        duplicate_comments=tuple(by_kind.get("duplicate_comment", [])),
        karpathy_notes=tuple(e for k in _KARPATHY_KINDS for e in by_kind.get(k, [])),
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


def text_encoding_report(
    corpus: CaptionCorpus, spec: str, report: TextReport | None, text_feats: np.ndarray
) -> dict[str, Any]:
    """What a text encoder could not read in full, for the validation report (corpus.json).

    Args:
        spec: the text encoder (``"minilm:mean"``).
        report: what it saw while filling the feature cache (caption indices), or None for a
            cache made before these counts: captions with no known word are then counted from
            the all-zero rows of ``text_feats [N_cap, D]`` and truncation is not counted.

    Returns:
        ``{"encoder", "captions", "no_known_word": {"count", "examples"}, "truncated":
        {"count", "max_tokens", "examples"}, "findings": [one line per non-zero count]}``;
        each example is ``{"caption": index, "image": name, "text": first 80 characters}``.
    """
    if report is None:
        zero = np.flatnonzero(~np.asarray(text_feats).any(axis=1))
        no_word, no_word_examples = int(len(zero)), tuple(int(i) for i in zero[:SHOW])
        truncated: int | None = None
        cut_examples: tuple[int, ...] = ()
        max_tokens = 0
    else:
        no_word, no_word_examples = report.n_no_known_word, report.examples
        truncated, cut_examples = report.n_truncated, report.truncated_examples
        max_tokens = report.max_tokens
    n = corpus.n_captions
    findings = []
    if no_word:
        findings.append(
            f"{spec}: {no_word} of {n} captions have no word the encoder knows and are zero "
            f"vectors, e.g. {_caption(corpus, no_word_examples[0])}"
        )
    if truncated:
        findings.append(
            f"{spec}: {truncated} of {n} captions are longer than {max_tokens} tokens and were "
            f"encoded from their beginning only, e.g. {_caption(corpus, cut_examples[0])}"
        )
    return {
        "encoder": spec,
        "captions": n,
        "no_known_word": {"count": no_word, "examples": _examples(corpus, no_word_examples)},
        "truncated": {
            "count": truncated,
            "max_tokens": max_tokens,
            "examples": _examples(corpus, cut_examples),
            **({} if report else {"note": "not counted: the cache predates the count"}),
        },
        "findings": findings,
    }


def _caption(corpus: CaptionCorpus, index: int) -> str:
    image = corpus.image_files[int(corpus.owner[index])].name
    return f"caption {index} of {image} {corpus.captions[index][:80]!r}"


def _examples(corpus: CaptionCorpus, indices: tuple[int, ...]) -> list[dict[str, object]]:
    return [
        {
            "caption": int(i),
            "image": corpus.image_files[int(corpus.owner[i])].name,
            "text": corpus.captions[i][:80],
        }
        for i in indices
    ]
