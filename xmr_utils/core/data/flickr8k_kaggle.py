"""Reader of the Kaggle Flickr8k ``captions.txt`` (CSV with header ``image,caption``).

Captions may contain commas and quotes; quoted fields follow the CSV rules. An unquoted
caption that contains commas splits into extra fields: image names never contain commas,
so the fields after the first are rejoined and the row is reported as fixed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.data.records import CaptionRecords
from xmr_utils.core.data.textio import read_lines
from xmr_utils.core.errors import XmrError

HEADER: tuple[str, ...] = ("image", "caption")


def read_captions_txt(path: Path, rel: str) -> CaptionRecords:
    """Caption rows of ``captions.txt`` (``rel`` names it in messages)."""
    lines = read_lines(path)
    reader = csv.reader(lines, strict=True)
    names: list[str] = []
    texts: list[str] = []
    line_numbers: list[int] = []
    events: list[ReaderEvent] = []
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            raise XmrError(
                f"{rel}:1: expected the header 'image,caption' of the Kaggle Flickr8k "
                f"captions.txt but found {lines[0][:80]!r}; point load_corpus at the right file"
                if lines
                else f"{rel}: the file is empty; replace it with the Kaggle Flickr8k captions.txt"
            )
        for row in reader:
            number = reader.line_num
            if not row or not "".join(row).strip():
                events.append(ReaderEvent("skipped_row", rel, number, "", "blank line skipped"))
                continue
            name = row[0].strip()
            if len(row) < 2 or not name:
                raise XmrError(
                    f"{rel}:{number}: row {lines[number - 1][:80]!r} is not 'image,caption'; "
                    "fix or delete this line"
                )
            if len(row) > 2:
                events.append(
                    ReaderEvent(
                        "fixed_row",
                        rel,
                        number,
                        name,
                        f"unquoted commas in the caption of {name}; rejoined {len(row) - 1} fields",
                    )
                )
            names.append(name)
            texts.append(",".join(row[1:]).strip())
            line_numbers.append(number)
    except csv.Error as exc:
        raise XmrError(
            f"{rel}:{reader.line_num}: not valid CSV ({exc}); fix the quoting on this line"
        ) from None
    return CaptionRecords(rel, names, texts, line_numbers, events)
