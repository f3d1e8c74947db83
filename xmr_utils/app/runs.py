"""Run folders: ``outputs/runs/<run_id>/`` — creation, lookup, JSON records, never overwritten.

A run folder holds ``params.json``, ``executed/NN_*.ipynb``, ``corpus.json``, ``metrics.json``,
``models/<direction>-<recipe>/{best.pt,last.pt,history.jsonl}``, ``figures/*.png`` and, once
the pipeline has run every notebook, ``finished.json``. A finished run is read-only: opening
it for writing raises :class:`~xmr_utils.core.errors.XmrError`.

Relative paths in notebook parameters are resolved against the project root (the folder
holding ``pyproject.toml`` and ``xmr_utils/``), so a notebook behaves the same whether papermill
runs it from the root or JupyterLab runs it from ``notebooks/``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from xmr_utils.core.errors import XmrError

DEFAULT_RUNS_ROOT = "outputs/runs"
LATEST_FILE = "LATEST"
FINISHED_FILE = "finished.json"


def project_root() -> Path:
    """The xmr project folder: ``$XMR_HOME`` if set, else the nearest parent of the working
    directory holding both ``pyproject.toml`` and ``xmr_utils/``, else the working directory."""
    if os.environ.get("XMR_HOME"):
        return Path(os.environ["XMR_HOME"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "xmr_utils").is_dir():
            return folder
    return here


def resolve_path(path: str | Path) -> Path:
    """``path`` if absolute, else relative to :func:`project_root`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable by time, unique within a second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def create_run(
    params: dict[str, Any], *, runs_root: str | Path = DEFAULT_RUNS_ROOT, run_dir: str | Path = ""
) -> Path:
    """Create a new run folder with ``params.json`` and point ``LATEST`` at it.

    ``run_dir`` names the folder explicitly; it must not hold a run already.
    """
    root = resolve_path(runs_root)
    folder = resolve_path(run_dir) if run_dir else root / new_run_id()
    if (folder / "params.json").exists():
        state = "a finished run" if (folder / FINISHED_FILE).exists() else "a run"
        raise XmrError(
            f"run folder {folder} already holds {state}; nothing was overwritten — "
            "pass a new --run-dir or leave it empty for a fresh run id"
        )
    for sub in ("executed", "figures", "models"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    write_json(folder / "params.json", params)
    root.mkdir(parents=True, exist_ok=True)
    (root / LATEST_FILE).write_text(str(folder) + "\n")
    return folder


def open_run(
    run_dir: str | Path = "",
    *,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    params: dict[str, Any] | None = None,
    create: bool = False,
) -> Path:
    """The run folder a notebook writes into.

    ``run_dir`` given: that folder, which must exist and not be finished. Empty: the latest
    unfinished run (what a person stepping through the notebooks in JupyterLab wants), or a new
    run when ``create`` is true (notebook 00) or none exists.
    """
    if run_dir:
        folder = resolve_path(run_dir)
        if not (folder / "params.json").exists():
            if create:
                return create_run(params or {}, runs_root=runs_root, run_dir=folder)
            raise XmrError(
                f"run folder {folder} does not exist or has no params.json; run notebook 00 "
                "first or leave run_dir empty"
            )
    else:
        latest = resolve_path(runs_root) / LATEST_FILE
        folder = Path(latest.read_text().strip()) if latest.exists() else None
        if create or folder is None or (folder / FINISHED_FILE).exists():
            return create_run(params or {}, runs_root=runs_root)
    if (folder / FINISHED_FILE).exists():
        raise XmrError(
            f"run folder {folder} holds a finished run and is never overwritten; "
            "leave run_dir empty to start a new run"
        )
    return folder


def mark_finished(run_dir: Path, summary: dict[str, Any]) -> None:
    """Seal ``run_dir``: later :func:`open_run` calls refuse to write into it."""
    write_json(run_dir / FINISHED_FILE, summary)


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    """Read JSON, with a clear error naming the file when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise XmrError(f"{path} does not exist; run the notebook that writes it first") from None
    except json.JSONDecodeError as err:
        raise XmrError(f"{path} is not valid JSON (line {err.lineno}): {err.msg}") from None


def update_json(path: Path, keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Set ``obj[keys[0]][keys[1]]... = value`` in the JSON file at ``path`` (created if absent)."""
    obj: dict[str, Any] = read_json(path) if path.exists() else {}
    node = obj
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    write_json(path, obj)
    return obj


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def record_params(run_dir: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge one notebook's parameters into ``params.json`` and return the whole record, so
    later notebooks read the dataset and encoders chosen earlier from a single source."""
    path = Path(run_dir) / "params.json"
    params: dict[str, Any] = read_json(path) if path.exists() else {}
    params.update(values)
    write_json(path, params)
    return params


def read_params(run_dir: Path) -> dict[str, Any]:
    """The run's recorded parameters (``params.json``)."""
    return read_json(Path(run_dir) / "params.json")
