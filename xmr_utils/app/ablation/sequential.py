"""Running a grid's cells one after another in this process (the default)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xmr_utils.app.ablation.cells import (
    CellOutcome,
    cell_job,
    check_finished_cells,
    failure_note,
    finished_attempt,
    grid_folder,
    progress_line,
    run_cell,
    write_grid_file,
)
from xmr_utils.app.ablation.grid import GridSpec
from xmr_utils.app.ablation.results import DEFAULT_ABLATIONS_ROOT, write_results


def run_grid(
    spec: GridSpec,
    paths: Sequence[Path],
    *,
    root: str | Path = DEFAULT_ABLATIONS_ROOT,
    log_output: bool = False,
) -> tuple[Path, list[CellOutcome]]:
    """Run every unfinished cell of ``spec`` (notebooks ``paths``) and write the combined
    results; returns the grid folder and one outcome per cell. A failing cell is recorded and
    the next one runs."""
    folder = grid_folder(spec, root)
    check_finished_cells(spec, folder, paths)
    write_grid_file(spec, folder)
    runs_dir = folder / "runs"
    outcomes = []
    total = len(spec.cells)
    for i, cell in enumerate(spec.cells, start=1):
        done = finished_attempt(runs_dir, cell.cell_id)
        if done is not None:
            print(
                f"[xmr] cell {i}/{total} {cell.cell_id}: finished before, skipped ({done})",
                flush=True,
            )
            outcomes.append(CellOutcome(cell, done, "skipped"))
            continue
        job = cell_job(spec, cell, paths, runs_dir, log_output)
        print(f"[xmr] cell {i}/{total} {cell.cell_id}: running in {job.run_dir}", flush=True)
        outcomes.append(run_cell(job))
        print(progress_line(i, total, outcomes[-1]), flush=True)
    errors = {o.cell.cell_id: failure_note(o) for o in outcomes if o.status == "failed"}
    write_results(spec, folder, errors)
    return folder, outcomes
