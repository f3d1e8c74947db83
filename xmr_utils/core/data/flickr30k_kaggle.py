"""Reader of the Kaggle Flickr30k ``results.csv`` (``image_name| comment_number| comment``).

The real file is ``|``-delimited with a space after each delimiter. One known quirk: the
row ``2199200615.jpg| 4   A dog runs across the grass .`` lacks its second ``|``; such a
row (a number, spaces, then text) is split into comment number and caption and reported
as a fixed row. A caption that itself contains ``|`` is rejoined and reported. Blank lines
are skipped and reported. Any other malformed row raises XmrError with file and line.

Speed: the file is read in one go and split with ``str.split`` per line; only malformed
rows reach a regular expression (158,915 rows parse in well under a second).
"""

from __future__ import annotations

import re
from pathlib import Path

from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.data.records import CaptionRecords
from xmr_utils.core.data.textio import read_lines
from xmr_utils.core.errors import XmrError

HEADER: tuple[str, ...] = ("image_name", "comment_number", "comment")
HEADER_LINE = "image_name| comment_number| comment"
_NUMBER_THEN_TEXT = re.compile(r"\s*(\d+)\s+(\S.*)")


def read_results_csv(path: Path, rel: str) -> CaptionRecords:
    """Parse ``path`` (shown as ``rel`` in messages) into caption rows.

    Raises XmrError naming ``rel`` and the line for a wrong header or an unfixable row.
    """
    lines = read_lines(path)
    if not lines or tuple(f.strip() for f in lines[0].split("|")) != HEADER:
        found = repr(lines[0][:80]) if lines else "an empty file"
        raise XmrError(
            f"{rel}:1: expected the header {HEADER_LINE!r} of the Kaggle Flickr30k "
            f"results.csv but found {found}; point load_corpus at the right file"
        )
    names: list[str] = []
    texts: list[str] = []
    line_numbers: list[int] = []
    events: list[ReaderEvent] = []
    numbers: list[int] = []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            names.append(parts[0].strip())
            numbers.append(int(parts[1]))
            texts.append(parts[2].strip())
            line_numbers.append(number)
            continue
        row = _repair(parts, line, rel, number, events)
        if row is not None:
            names.append(row[0])
            numbers.append(row[1])
            texts.append(row[2])
            line_numbers.append(number)
    return CaptionRecords(rel, names, texts, line_numbers, events, numbers=numbers)


def _repair(
    parts: list[str], line: str, rel: str, number: int, events: list[ReaderEvent]
) -> tuple[str, int, str] | None:
    """Fix a row that is not ``name| number| caption`` into ``(name, comment number,
    caption)``; None for a skipped blank line."""
    if not line.strip():
        events.append(ReaderEvent("skipped_row", rel, number, "", "blank line skipped"))
        return None
    name = parts[0].strip()
    if len(parts) < 2 or not name:
        raise XmrError(
            f"{rel}:{number}: row {line[:80]!r} is not 'image_name| comment_number| comment'; "
            "fix or delete this line"
        )
    if len(parts) == 2:
        match = _NUMBER_THEN_TEXT.fullmatch(parts[1])
        if match is None:
            raise XmrError(
                f"{rel}:{number}: row {line[:80]!r} has one '|' and no caption after the "
                "comment number; fix or delete this line"
            )
        events.append(
            ReaderEvent(
                "fixed_row",
                rel,
                number,
                name,
                f"missing second '|' in the row for {name}: read comment {match.group(1)} "
                f"as {match.group(2)!r}",
            )
        )
        return name, int(match.group(1)), match.group(2).strip()
    if not parts[1].strip().isdigit():
        raise XmrError(
            f"{rel}:{number}: comment_number {parts[1].strip()!r} of {name} is not a "
            "whole number; fix this line"
        )
    caption = "|".join(parts[2:]).strip()
    events.append(
        ReaderEvent(
            "fixed_row", rel, number, name, f"caption of {name} contains '|'; kept it whole"
        )
    )
    return name, int(parts[1]), caption
