"""Reader of the official Flickr8k text files.

``Flickr8k.token.txt`` holds ``<image>#<n>\\t<caption>`` lines. Known quirks of the public
release, each handled and reported:

- stray entries ``2258277193_586949ec62.jpg.1#n`` for an image that is not in the image
  folder: any ``<image>.jpg.<digits>#n`` entry is skipped, and the image it names may be
  absent from disk without failing the load;
- five captions for ``2258277193_586949ec62.jpg``, an image that no split file lists and the
  image archive does not ship (8091 JPEGs for 8092 captioned names): a captioned image that is
  in no split file and absent on disk is skipped with its captions
  (:attr:`~xmr_utils.core.data.records.SplitAssignment.unsplit_absent_is_quirk`); an image
  that a split file names must still exist;
- a row whose tab was turned into spaces is repaired.

Split files ``Flickr_8k.{train,dev,test}Images.txt`` list one image per line (dev -> val); a
missing split file gives an empty split, reported.
"""

from __future__ import annotations

import re
from pathlib import Path

from xmr_utils.core.data.events import ReaderEvent
from xmr_utils.core.data.records import CaptionRecords, SplitAssignment
from xmr_utils.core.data.textio import read_lines
from xmr_utils.core.errors import XmrError

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES: dict[str, str] = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
_STRAY = re.compile(r"(.+\.jpe?g)\.\d+", re.IGNORECASE)
_ID_THEN_SPACES = re.compile(r"(\S+#\d+)\s+(.*)")


def read_token_file(path: Path, rel: str) -> CaptionRecords:
    """Caption rows of ``Flickr8k.token.txt`` (``rel`` names it in messages)."""
    names: list[str] = []
    texts: list[str] = []
    line_numbers: list[int] = []
    events: list[ReaderEvent] = []
    known_absent: set[str] = set()
    numbers: list[int] = []
    for number, line in enumerate(read_lines(path), start=1):
        caption_id, tab, text = line.partition("\t")
        if not tab:
            if not line.strip():
                events.append(ReaderEvent("skipped_row", rel, number, "", "blank line skipped"))
                continue
            match = _ID_THEN_SPACES.fullmatch(line.strip())
            if match is None:
                raise XmrError(
                    f"{rel}:{number}: row {line[:80]!r} is not '<image>#<n><TAB><caption>'; "
                    "fix or delete this line"
                )
            caption_id, text = match.groups()
            events.append(
                ReaderEvent(
                    "fixed_row",
                    rel,
                    number,
                    caption_id,
                    "no tab after the caption id; split at spaces",
                )
            )
        name, hash_sign, index = caption_id.strip().rpartition("#")
        if not hash_sign or not name or not index.isdigit():
            raise XmrError(
                f"{rel}:{number}: caption id {caption_id[:60]!r} is not '<image>#<n>'; "
                "fix this line"
            )
        stray = _STRAY.fullmatch(name)
        if stray is not None:
            known_absent.add(stray.group(1))
            events.append(
                ReaderEvent(
                    "stray_entry",
                    rel,
                    number,
                    name,
                    f"stray entry {caption_id.strip()} (image name with a '.1' suffix) skipped",
                )
            )
            continue
        names.append(name)
        texts.append(text.strip())
        line_numbers.append(number)
        numbers.append(int(index))
    return CaptionRecords(rel, names, texts, line_numbers, events, frozenset(known_absent), numbers)


def read_split_files(text_dir: Path, root: Path) -> SplitAssignment:
    """Image names per split from the official split files in ``text_dir``."""
    members: dict[str, list[str]] = {}
    origin: dict[str, tuple[str, int]] = {}
    locations: dict[str, dict[str, str]] = {}
    events: list[ReaderEvent] = []
    for split, file_name in SPLIT_FILES.items():
        path = text_dir / file_name
        rel = path.relative_to(root).as_posix()
        members[split] = []
        locations[split] = {}
        if not path.is_file():
            events.append(
                ReaderEvent(
                    "missing_split_file",
                    rel,
                    0,
                    file_name,
                    f"split file not found: the {split} split is empty",
                )
            )
            continue
        for number, line in enumerate(read_lines(path), start=1):
            name = line.strip()
            if not name:
                continue
            members[split].append(name)
            origin.setdefault(name, (rel, number))
            locations[split].setdefault(name, f"{rel}:{number}")
    return SplitAssignment(
        "official Flickr8k split files",
        members,
        origin,
        events,
        locations,
        unsplit_absent_is_quirk=True,
    )
