"""The environment every xmr process and kernel runs with: one table, one owner.

Offline model hubs, the numba and matplotlib caches under ``data/cache/``, no tokenizer
threads (:func:`tool_defaults`), and ``XMR_HOME`` (the project root, so kernels started from
``notebooks/`` resolve relative paths like papermill's). :func:`apply_defaults` sets what is
not set already; the pipeline calls it before it starts kernels (they inherit it). Every
Makefile target starts its command through ``python -m xmr_utils.app.env CMD ...``
(:func:`main`), which sets the tool defaults first, so the Makefile spells none of them out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from xmr_utils.app.runs import resolve_path


def tool_defaults(home: Path | None = None) -> dict[str, str]:
    """Variable -> value for the libraries the study uses: offline hubs (nothing is fetched
    at run time), numba's and matplotlib's caches under ``<home>/data/cache/`` (``home``: the
    project root, :func:`~xmr_utils.app.runs.project_root`, unless given), no tokenizer
    threads."""
    cache = Path(home) / "data" / "cache" if home is not None else resolve_path("data/cache")
    return {
        "NUMBA_CACHE_DIR": str(cache / "numba"),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def defaults() -> Mapping[str, str]:
    """Variable -> value of the study's environment (paths resolved against the project):
    :func:`tool_defaults` and ``XMR_HOME``."""
    return {**tool_defaults(), "XMR_HOME": str(resolve_path("."))}


def apply_defaults() -> dict[str, str]:
    """Set every variable of :func:`defaults` that the environment does not set yet; returns
    the values now in effect."""
    for key, value in defaults().items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in defaults()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xmr_utils.app.env CMD [ARG ...]``: run ``CMD`` (it replaces this process)
    with every variable of :func:`tool_defaults` that is not set already; without ``CMD``,
    print the values in effect, one ``NAME=value`` a line.

    ``XMR_HOME`` is left alone: a process started this way finds the project from its working
    directory, and children it starts elsewhere (tests in temporary folders) keep theirs.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    for key, value in tool_defaults().items():
        os.environ.setdefault(key, value)
    if not args:
        for key in tool_defaults():
            print(f"{key}={os.environ[key]}")
        return 0
    try:
        os.execvp(args[0], args)
    except OSError as err:
        print(f"error: cannot run {args[0]!r}: {err.strerror}", file=sys.stderr)
        return 127
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    raise SystemExit(main())
