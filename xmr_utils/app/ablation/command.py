"""``python -m xmr_utils.pipeline --grid FILE [--workers N | --scheduler ADDRESS|FILE]``."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from xmr_utils.app.ablation.cells import CellOutcome
from xmr_utils.app.ablation.cluster import ClusterOptions, check_options, run_grid_on_cluster
from xmr_utils.app.ablation.grid import load_grid
from xmr_utils.app.ablation.results import DEFAULT_ABLATIONS_ROOT
from xmr_utils.app.ablation.sequential import run_grid
from xmr_utils.app.runner import declared_parameters, notebook_paths
from xmr_utils.app.runs import resolve_path
from xmr_utils.core.errors import XmrError


def run_grid_command(
    grid: str,
    *,
    preset: str | None = None,
    overrides: Sequence[tuple[str, str]] = (),
    notebook_dir: str | Path = "notebooks",
    root: str | Path = DEFAULT_ABLATIONS_ROOT,
    log_output: bool = False,
    cluster: ClusterOptions | None = None,
) -> int:
    """``python -m xmr_utils.pipeline --grid FILE``: 0 when every cell has finished, 1 when a
    cell failed, 2 for a bad grid file or cluster option (one sentence on stderr, no
    traceback). ``cluster`` runs the cells as Dask tasks; without it they run here in turn
    and Dask is never imported."""

    try:
        if cluster is not None:
            check_options(cluster)
        paths = notebook_paths(notebook_dir)
        declared = {p.name: declared_parameters(p) for p in paths}
        spec = load_grid(resolve_path(grid), declared, overrides=overrides)
        if preset is not None and preset != spec.preset:
            print(
                f"note: the grid's preset {spec.preset!r} is used, not --preset {preset}",
                file=sys.stderr,
            )
        selected = [p for p in paths if p.name[:2] in spec.notebooks]
        where = "" if cluster is None else " on Dask"
        print(
            f"[xmr] grid {spec.name}: {len(spec.cells)} cells{where}, notebooks "
            f"{','.join(spec.notebooks)}",
            flush=True,
        )
        start = time.perf_counter()
        if cluster is None:
            folder, outcomes = run_grid(spec, selected, root=root, log_output=log_output)
        else:
            folder, outcomes = run_grid_on_cluster(
                spec, selected, cluster, root=root, log_output=log_output
            )
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(outcomes, folder, time.perf_counter() - start))
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        where = f"\n       its executed copy: {o.notebook}" if o.notebook else ""
        print(f"error: cell {o.cell.cell_id} failed — {o.error}{where}", file=sys.stderr)
    return 1 if failed else 0


def summary(outcomes: Sequence[CellOutcome], folder: Path, seconds: float) -> str:
    """Plain-text lines: each cell's status and seconds, then where the results are."""
    width = max((len(o.cell.cell_id) for o in outcomes), default=4)
    lines = [f"{'cell':<{width}}  {'status':<8} {'seconds':>8}"]
    lines += [f"{o.cell.cell_id:<{width}}  {o.status:<8} {o.seconds:>8.0f}" for o in outcomes]
    lines.append(
        f"[xmr] grid finished in {seconds:.0f} s: {folder}/results.md, results.csv, comparison.png"
    )
    return "\n".join(lines)
