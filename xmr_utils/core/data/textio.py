"""Read a dataset text file as lines: UTF-8 with or without BOM, LF or CRLF line endings."""

from __future__ import annotations

from pathlib import Path

from xmr_utils.core.errors import XmrError


def read_text(path: Path) -> str:
    """The whole file as one string with ``\\n`` line endings and no BOM.

    Raises XmrError naming the file (and line) when it cannot be read or is not UTF-8.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XmrError(
            f"cannot read {path} ({exc.strerror}); check that it exists and is readable"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise XmrError(
            f"{path}:{line}: byte {data[exc.start]:#04x} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_lines(path: Path) -> list[str]:
    """The file's lines without line endings (a final newline does not add an empty line)."""
    text = read_text(path)
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []
