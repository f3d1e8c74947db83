"""Run the study's notebooks in order with papermill: ``python -m xmr_utils.pipeline``.

    python -m xmr_utils.pipeline --preset demo [-p name value ...] [--only 02,03] [--run-dir DIR]
    python -m xmr_utils.pipeline --resume outputs/runs/<run_id>
    python -m xmr_utils.pipeline --grid configs/ablation.yaml [-p name value ...]

Each notebook gets ``run_dir`` plus those of the run's parameters that its ``parameters`` cell
declares; the executed copies land in ``<run_dir>/executed/``. While it runs, the run belongs
to this process (:mod:`xmr_utils.app.run_lock`). A failure stops the run and exits non-zero
naming the notebook (its executed copy shows the failing cell); ``--resume RUN`` continues a
failed or killed run from its last finished notebook, with the run's own parameters.

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
from pathlib import Path

from xmr_utils.app.ablation import ClusterOptions, run_grid_command
from xmr_utils.app.runner import (
    NOTEBOOK_DIR,
    PRESETS,
    NotebookResult,
    declared_parameters,
    execute_run,
    notebook_paths,
    resolve_parameters,
    resume_run,
    select_notebooks,
    summary_table,
)
from xmr_utils.app.runs import (
    DEFAULT_RUNS_ROOT,
    RunLayout,
    RunPlan,
    create_run,
    read_json,
    read_status,
    resolve_path,
)
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
    parser.add_argument(
        "--resume",
        default="",
        metavar="RUN",
        help="continue an unfinished run (killed, or a notebook failed) from its last finished "
        "notebook and its models' last checkpoints, with the run's own parameters",
    )
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
        if args.run_dir or args.only or args.resume or args.runs_root != DEFAULT_RUNS_ROOT:
            parser.error(
                "--grid picks each cell's run folder and notebooks itself; drop "
                "--run-dir/--only/--resume/--runs-root (set notebooks in the grid file)"
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
    if args.resume:
        if args.run_dir or args.only or args.param or args.preset:
            parser.error(
                "--resume continues a run with its own recorded parameters and notebooks; "
                "drop --preset/-p/--only/--run-dir"
            )
        return _resume(args)
    return _new_run(args)


def _new_run(args: argparse.Namespace) -> int:
    """A fresh run: the preset and ``-p`` values checked, the run created, its notebooks run."""
    preset = args.preset or "demo"
    try:
        paths = notebook_paths(args.notebooks)
        declared = {p.name: declared_parameters(p) for p in paths}
        params = resolve_parameters(preset, args.param, declared)
        selected = select_notebooks(paths, args.only)
        names = [p.name for p in selected]
        run_dir = create_run(
            {"preset": preset, **params, "notebooks": names},
            runs_root=args.runs_root,
            run_dir=args.run_dir,
            plan=RunPlan(tuple(names), seal=len(selected) == len(paths)),
        )
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[xmr] run folder: {run_dir}", flush=True)
    results = execute_run(
        run_dir, selected, params, log_output=args.log_output, runs_root=args.runs_root
    )
    return _report(run_dir, results)


def _resume(args: argparse.Namespace) -> int:
    """``--resume RUN``: the run's remaining notebooks, from its last finished one."""
    try:
        results = resume_run(
            args.resume,
            notebook_dir=args.notebooks,
            log_output=args.log_output,
            runs_root=args.runs_root,
        )
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return _report(resolve_path(args.resume), results)


def _report(run_dir: Path, results: Sequence[NotebookResult]) -> int:
    """Print the failure (exit 1) or the summary table (exit 0) of a run."""
    failed = [r for r in results if r.error]
    if failed:
        bad = failed[0]
        print(
            f"error: notebook {bad.name} failed after {bad.seconds:.0f} s — {bad.error}\n"
            f"       its executed copy with the failing cell: "
            f"{RunLayout(run_dir).executed_notebook(bad.name)}\n"
            f"       after fixing the cause: python -m xmr_utils.pipeline --resume {run_dir}",
            file=sys.stderr,
        )
        return 1
    layout = RunLayout(run_dir)
    if layout.metrics.exists():
        print(summary_table(read_json(layout.metrics)))
    seconds = sum(read_status(run_dir)["done"].values())
    state = "finished" if layout.is_finished() else "ran (not sealed: a subset of notebooks)"
    print(f"[xmr] {state} in {seconds:.0f} s: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
