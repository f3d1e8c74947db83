"""The environment every xmr process and kernel runs with: one table, one owner.

Offline model hubs, the numba and matplotlib caches under ``data/cache/``, no tokenizer
threads, and ``XMR_HOME`` (the project root, so kernels started from ``notebooks/`` resolve
relative paths like papermill's). :func:`apply_defaults` sets what is not set already; the
pipeline calls it before it starts kernels (they inherit it), ``make lab`` starts JupyterLab
through it, and the test suite applies it once per session.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from xmr_utils.app.runs import resolve_path


def defaults() -> Mapping[str, str]:
    """Variable -> value of the study's environment (paths resolved against the project)."""
    return {
        "NUMBA_CACHE_DIR": str(resolve_path("data/cache/numba")),
        "MPLCONFIGDIR": str(resolve_path("data/cache/matplotlib")),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "XMR_HOME": str(resolve_path(".")),
    }


def apply_defaults() -> dict[str, str]:
    """Set every variable of :func:`defaults` that the environment does not set yet; returns
    the values now in effect."""
    for key, value in defaults().items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in defaults()}
