"""One exception type for every user-facing mistake.

Library code raises :class:`XmrError` with a message that names the value or file at
fault and the fix. Notebooks and the pipeline show that one sentence instead of a deep
traceback (see :func:`xmr_utils.app.cli.main`).
"""

from __future__ import annotations

from collections.abc import Iterable


class XmrError(ValueError):
    """A clear, user-facing error: the message says what is wrong and how to fix it."""


def unknown_choice(kind: str, value: object, accepted: Iterable[str]) -> XmrError:
    """Build the error for a name that is not one of the accepted ones.

    >>> str(unknown_choice("miner", "hard", ["random", "hardest"]))
    "unknown miner 'hard'; accepted: hardest, random"
    """
    return XmrError(f"unknown {kind} {value!r}; accepted: {', '.join(sorted(accepted))}")
