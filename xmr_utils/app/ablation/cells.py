"""One grid cell's run folders and the execution of one cell — shared by the sequential
runner and the Dask tasks, so both follow the same rules.

A cell's attempts live under ``<grid>/runs/``: ``<cell-id>``, then ``<cell-id>.try2``,
``.try3`` ... A finished attempt holds ``finished.json`` and is never written again; a failed
or interrupted one is kept for reading, and the next invocation of the grid starts a fresh
attempt. Within one invocation on a cluster, a task that lost its worker is run again by Dask
with the same :class:`CellJob` and continues that attempt
(:func:`xmr_utils.app.runner.resume_run`).

A cell's kernels run with MKL's strict numerical reproducibility (:data:`REPRODUCIBLE_ENV`):
on the CPU a matrix product then has the same bits on any number of threads, so a cell gives
the same numbers in turn (all cores) and on a cluster worker (its share of them). Without it,
MKL splits the inner dimension of some training products ([128, 1280] @ [1280, 256]) across
threads: the demo grid's tables differed between the two runners, and one demo cell run on 1
and on 2 threads gave i2t R@1 71.7 and 73.3.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmr_utils.app.ablation.grid import GridCell, GridSpec
from xmr_utils.app.runner import NotebookResult, execute_run, resume_run
from xmr_utils.app.runs import (
    FINISHED_FILE,
    RunLayout,
    RunPlan,
    create_run,
    read_json,
    resolve_path,
)
from xmr_utils.core.errors import XmrError

#: Set for a cell's kernels unless the environment sets it already: MKL's conditional
#: numerical reproducibility, strict (matrix products independent of the thread count), on
#: the best code path of the CPU.
REPRODUCIBLE_ENV: Mapping[str, str] = {"MKL_CBWR": "AUTO,STRICT"}


@contextmanager
def reproducible_kernels() -> Iterator[None]:
    """Within: :data:`REPRODUCIBLE_ENV` in ``os.environ`` (what is set already is kept), so
    the kernels started meanwhile inherit it; restored afterwards."""
    added = [key for key in REPRODUCIBLE_ENV if key not in os.environ]
    os.environ.update({key: REPRODUCIBLE_ENV[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell: ``ran``, ``skipped`` (finished before) or ``failed``.

    ``error`` and ``notebook`` (the executed copy showing the failing cell) are set when failed.
    """

    cell: GridCell
    run_dir: Path
    status: str
    seconds: float = 0.0
    error: str = ""
    notebook: Path | None = None


@dataclass(frozen=True)
class CellJob:
    """Everything needed to run one cell, as plain data a Dask task can carry: the cell, its
    attempt folder, the notebooks to run (absolute paths), the ``params.json`` record to create
    and the grid's name."""

    cell: GridCell
    run_dir: Path
    notebooks: tuple[Path, ...]
    record: Mapping[str, Any]
    grid_name: str
    log_output: bool = False


def cell_attempts(runs_dir: Path, cid: str) -> list[Path]:
    """Existing run folders of a cell: ``<cid>``, then ``<cid>.try2``, ``.try3`` ... in order."""
    pattern = re.compile(re.escape(cid) + r"(?:\.try(\d+))?$")
    found = []
    if runs_dir.is_dir():
        for path in runs_dir.iterdir():
            match = pattern.match(path.name)
            if path.is_dir() and match:
                found.append((int(match.group(1) or 1), path))
    return [path for _, path in sorted(found)]


def finished_attempt(runs_dir: Path, cid: str) -> Path | None:
    """The cell's sealed run folder, if one exists."""
    done = [p for p in cell_attempts(runs_dir, cid) if (p / FINISHED_FILE).exists()]
    return done[-1] if done else None


def next_attempt(runs_dir: Path, cid: str) -> Path:
    """A fresh folder for the cell's next attempt; earlier attempts are never reused."""
    n = 1
    while (runs_dir / (cid if n == 1 else f"{cid}.try{n}")).exists():
        n += 1
    return runs_dir / (cid if n == 1 else f"{cid}.try{n}")


def run_record(spec: GridSpec, cell: GridCell, paths: Sequence[Path]) -> dict[str, Any]:
    """What a cell's ``params.json`` starts with: what ``python -m xmr_utils.pipeline`` writes
    (preset, every parameter, the notebooks) plus the grid and cell it belongs to."""
    return {
        "preset": spec.preset,
        **cell.params,
        "notebooks": [p.name for p in paths],
        "grid": {"name": spec.name, "cell": cell.cell_id, "file": str(spec.path)},
    }


def check_finished_cells(spec: GridSpec, folder: Path, paths: Sequence[Path]) -> None:
    """Refuse when a finished cell's recorded parameters differ from what the grid asks for:
    skipping it would put another experiment's numbers in the table."""
    for cell in spec.cells:
        done = finished_attempt(folder / "runs", cell.cell_id)
        if done is None:
            continue
        recorded = read_json(done / "params.json")
        wanted = run_record(spec, cell, paths)
        wanted.pop("grid")
        changed = [k for k, v in wanted.items() if k in recorded and recorded[k] != v]
        changed += [k for k in ("preset", "notebooks") if k not in recorded]
        if changed:
            key = changed[0]
            raise XmrError(
                f"{done} finished with {key}={recorded.get(key)!r} but {spec.path} now asks "
                f"for {key}={wanted[key]!r}; runs are never overwritten — give the changed grid "
                f"a new name (or move {folder} away)"
            )


def grid_folder(spec: GridSpec, root: str | Path) -> Path:
    """``<root>/<name>``: where the grid's runs, table and figure go."""
    return resolve_path(root) / spec.name


def write_grid_file(spec: GridSpec, folder: Path) -> None:
    """``grid.yaml``: the grid as used (with any ``-p`` overrides folded into ``params``)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    header = f"# grid {spec.name!r} as used, from {spec.path}\n"
    (folder / "grid.yaml").write_text(
        header + yaml.safe_dump(spec.as_dict(), sort_keys=False, allow_unicode=True)
    )


def cell_job(
    spec: GridSpec, cell: GridCell, paths: Sequence[Path], runs_dir: Path, log_output: bool
) -> CellJob:
    """The job for the cell's next attempt (a folder that does not exist yet)."""
    notebooks = tuple(p.resolve() for p in paths)
    return CellJob(
        cell,
        next_attempt(runs_dir, cell.cell_id).resolve(),
        notebooks,
        run_record(spec, cell, paths),
        spec.name,
        log_output,
    )


def _execute(job: CellJob, layout: RunLayout) -> list[NotebookResult]:
    """Start the cell's attempt, or continue it when its ``params.json`` is there."""
    if layout.params.exists():
        notebook_dir = job.notebooks[0].parent
        return resume_run(job.run_dir, notebook_dir=notebook_dir, log_output=job.log_output)
    plan = RunPlan(tuple(p.name for p in job.notebooks), seal=True)
    create_run(dict(job.record), runs_root=job.run_dir.parent, run_dir=job.run_dir, plan=plan)
    return execute_run(job.run_dir, job.notebooks, job.cell.params, log_output=job.log_output)


def run_cell(job: CellJob) -> CellOutcome:
    """Run one cell into ``job.run_dir`` while owning that run, and seal it when every
    notebook is done; never raises for a broken cell.

    A folder that already holds the attempt's ``params.json`` is one this job started on a
    worker that was lost: the run continues from its first unfinished notebook
    (:func:`xmr_utils.app.runner.resume_run`; training resumes from ``models/*/last.pt``), and
    is refused while a live process still owns it. A folder already sealed (the job ran to
    the end but its result did not reach the client) is left exactly as it is.
    """
    start = time.perf_counter()
    layout = RunLayout(job.run_dir)
    if layout.is_finished():
        recorded = read_json(layout.finished).get("notebook_seconds", {})
        return CellOutcome(job.cell, job.run_dir, "ran", float(sum(recorded.values())))
    try:
        with reproducible_kernels():
            results = _execute(job, layout)
    except Exception as err:  # noqa: BLE001 — one broken cell must not stop the grid
        error = f"{type(err).__name__}: {err}"
        return CellOutcome(job.cell, job.run_dir, "failed", time.perf_counter() - start, error)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.error]
    if failed:
        notebook = layout.executed_notebook(failed[0].name)
        error = f"notebook {failed[0].name} failed — {failed[0].error}"
        return CellOutcome(job.cell, job.run_dir, "failed", seconds, error, notebook)
    if not layout.is_finished():  # every notebook ran, yet the run was not sealed
        error = f"the run in {job.run_dir} ended without finished.json; see its status.json"
        return CellOutcome(job.cell, job.run_dir, "failed", seconds, error)
    return CellOutcome(job.cell, job.run_dir, "ran", seconds)


def progress_line(index: int, total: int, outcome: CellOutcome, where: str = "") -> str:
    """``[xmr] cell 3/12 <id> done in 41 s`` (or ``failed: ...``), ``where`` appended."""
    head = f"[xmr] cell {index}/{total} {outcome.cell.cell_id}"
    if outcome.status == "failed":
        return f"{head} failed: {outcome.error}{where}"
    return f"{head} done in {outcome.seconds:.0f} s{where}"


def failure_note(outcome: CellOutcome) -> str:
    """What ``results.md`` says about a cell that failed in this invocation."""
    where = outcome.notebook or outcome.run_dir
    return f"failed: {outcome.error} (see {where})"
