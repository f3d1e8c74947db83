"""Run the study's notebooks in order with papermill: ``python -m xmr_utils.pipeline``.

    python -m xmr_utils.pipeline --preset demo [-p name value ...] [--only 02,03] [--run-dir DIR]
    python -m xmr_utils.pipeline --grid configs/ablation.yaml [-p name value ...]

Each notebook gets ``run_dir`` plus those of the run's parameters that its ``parameters`` cell
declares; the executed copies land in ``<run_dir>/executed/``. A failure stops the run and
exits non-zero naming the notebook (its executed copy shows the failing cell).

``--grid FILE`` runs an ablation instead: one run per cell of the grid (the file names its
preset, parameters, axes and notebooks; ``-p`` adds fixed parameters to every cell) under
``outputs/ablations/<name>/``, then one table and figure across them (see
:mod:`xmr_utils.app.ablation`). Exit status 1 when a cell failed (the others still run), 2 for a
bad grid file. ``--workers N`` runs the cells as Dask tasks on a local cluster of N workers,
``--scheduler ADDRESS|FILE`` on a running Dask scheduler (README: Running on a cluster).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xmr_utils.app.ablation import ClusterOptions, run_grid_command
from xmr_utils.app.runner import (
    NOTEBOOK_DIR,
    PRESETS,
    declared_parameters,
    notebook_paths,
    resolve_parameters,
    run_notebooks,
    select_notebooks,
    summary_table,
)
from xmr_utils.app.runs import DEFAULT_RUNS_ROOT, create_run, mark_finished, read_json
from xmr_utils.core.errors import XmrError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m xmr_utils.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        default=None,
        help=f"one of: {', '.join(PRESETS)} (default demo; with --grid the grid file names it)",
    )
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a notebook parameter",
    )
    parser.add_argument("--only", default="", help="comma list of notebook numbers, e.g. 02,03")
    parser.add_argument("--run-dir", default="", help="run folder (default: a new run id)")
    parser.add_argument("--runs-root", default=DEFAULT_RUNS_ROOT)
    parser.add_argument("--notebooks", default=NOTEBOOK_DIR, help="folder of NN_*.ipynb")
    parser.add_argument("--log-output", action="store_true", help="stream notebook output")
    parser.add_argument(
        "--grid",
        default="",
        metavar="YAML",
        help="run an ablation grid (one run per cell) instead of one run",
    )
    parser.add_argument(
        "--ablations-root",
        default="outputs/ablations",
        help="where --grid writes <name>/ (default outputs/ablations)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="with --grid: run the cells as Dask tasks on a local cluster of N workers",
    )
    parser.add_argument(
        "--scheduler",
        default="",
        metavar="ADDRESS|FILE",
        help="with --grid: run the cells on a running Dask scheduler (tcp://host:8786 or a "
        "scheduler file)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cluster = args.workers or args.scheduler
    if cluster and not args.grid:
        parser.error("--workers/--scheduler run the cells of a grid; they need --grid FILE")
    if args.grid:
        if args.run_dir or args.only or args.runs_root != DEFAULT_RUNS_ROOT:
            parser.error(
                "--grid picks each cell's run folder and notebooks itself; drop "
                "--run-dir/--only/--runs-root (set notebooks in the grid file)"
            )

        return run_grid_command(
            args.grid,
            preset=args.preset,
            overrides=args.param,
            notebook_dir=args.notebooks,
            root=args.ablations_root,
            log_output=args.log_output,
            cluster=ClusterOptions(args.workers, args.scheduler) if cluster else None,
        )
    args.preset = args.preset or "demo"
    try:
        paths = notebook_paths(args.notebooks)
        declared = {p.name: declared_parameters(p) for p in paths}
        params = resolve_parameters(args.preset, args.param, declared)
        selected = select_notebooks(paths, args.only)
        run_dir = create_run(
            {"preset": args.preset, **params, "notebooks": [p.name for p in selected]},
            runs_root=args.runs_root,
            run_dir=args.run_dir,
        )
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[xmr] run folder: {run_dir}", flush=True)
    results = run_notebooks(selected, run_dir, params, log_output=args.log_output)
    timings = {r.name: round(r.seconds, 1) for r in results}
    failed = [r for r in results if r.error]
    if failed:
        bad = failed[0]
        print(
            f"error: notebook {bad.name} failed after {bad.seconds:.0f} s — {bad.error}\n"
            f"       its executed copy with the failing cell: {run_dir / 'executed' / bad.name}"
            ".ipynb",
            file=sys.stderr,
        )
        return 1
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        print(summary_table(read_json(metrics_path)))
    if len(selected) == len(paths):
        mark_finished(run_dir, {"notebook_seconds": timings})
    print(f"[xmr] finished in {sum(timings.values()):.0f} s: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
