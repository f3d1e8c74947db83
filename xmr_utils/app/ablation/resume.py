"""Continuing a cell's unfinished run folder after its Dask worker died mid-cell.

The cluster runner calls :func:`resume_cell` when a cell's task starts on a worker and finds
the run folder it was given already created — by the same task on a worker that was lost (a
killed process, a pre-empted SLURM job). The run continues in that folder from its first
unfinished notebook; notebooks that finished are not run again, and training inside notebooks
02/03 resumes from the run's ``models/*/last.pt`` where the trainer supports it.

This is the stand-in for :func:`xmr_utils.app.runner.resume_run` (the run-resumption API the
pipeline is gaining, with a per-run lock held by the executing process). Once it is on
``main`` the body of :func:`resume_cell` becomes the one line noted there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xmr_utils.app.runner import NotebookResult, run_notebooks


def resume_cell(
    run_dir: Path,
    paths: Sequence[Path],
    params: Mapping[str, Any],
    *,
    notebook_dir: Path,
    log_output: bool = False,
) -> list[NotebookResult]:
    """Run the notebooks of ``paths`` that have not finished in ``run_dir``, in order; returns
    the results of those run now (an empty list when every notebook had finished)."""
    # switch: return runner.resume_run(run_dir, notebook_dir=notebook_dir, log_output=log_output)
    del notebook_dir  # the stand-in is given the notebooks and parameters directly
    todo = [p for p in paths if not notebook_finished(run_dir / "executed" / p.name)]
    return run_notebooks(todo, run_dir, params, log_output=log_output) if todo else []


def notebook_finished(executed: Path) -> bool:
    """Whether papermill ran the executed copy ``executed`` to its end without an error (its
    metadata has an end time and no exception; a copy still running or killed has neither)."""
    meta = _papermill_metadata(executed)
    return bool(meta.get("end_time")) and not meta.get("exception")


def executed_seconds(run_dir: Path, paths: Sequence[Path]) -> dict[str, float]:
    """Notebook stem -> seconds papermill recorded, for the finished notebooks of ``paths``
    (what a resumed cell's ``finished.json`` reports for notebooks run before the loss)."""
    found = {}
    for path in paths:
        meta = _papermill_metadata(run_dir / "executed" / path.name)
        if meta.get("end_time") and not meta.get("exception") and "duration" in meta:
            found[path.stem] = float(meta["duration"])
    return found


def _papermill_metadata(executed: Path) -> dict[str, Any]:
    try:
        book = json.loads(executed.read_text())
    except (OSError, ValueError):  # not written yet, or cut short by the lost worker
        return {}
    meta = book.get("metadata", {}).get("papermill", {})
    return meta if isinstance(meta, dict) else {}
