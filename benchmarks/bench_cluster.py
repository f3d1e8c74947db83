"""Grids on Dask: the demo grid on a 2-worker LocalCluster against the sequential runner, the
scheduler's overhead per task, and the Flickr30k grid's wall time on N workers, estimated.

    python -m benchmarks.bench_cluster [--quick]

Both grid runs use the same grid file, a fresh ablation folder each and one feature cache
filled beforehand (a run of notebooks 00-01 for every cell), so they time the cells' own
work, not extraction; each runs as ``python -m xmr_utils.pipeline --grid ...`` in its own
process, the sequential one first. The rows say what the ceiling is — two workers on a
machine with C cores finish at most min(2, C)x sooner — and what eats the rest: the
cluster's start-up, the tail (one worker idle while the last cell runs), and how much slower
each cell runs beside another one than alone (the sequential run's cells use every core).
``--quick``: a 4-cell smoke-preset grid instead of ``configs/ablation.yaml`` (12 cells),
fewer empty tasks and 5 timed training steps per recipe instead of 20.

The Flickr30k estimate takes each recipe of ``configs/ablation-flickr8k.yaml``'s grid (5
recipes x 2 text encoders x 2 image feature sets = 20 cells) at Flickr30k's training size:
seconds per training step measured here on this machine's device (``cuda`` when visible) on
Flickr30k-shaped random features (4096-d images, 768-d captions, as ``bench_train``), times
its full schedule (no early stop, so an upper bound) and both directions, plus the per-cell
fixed cost measured in the demo grid (kernels, data, cached features, evaluation). Cells are
placed longest first on N workers; features are assumed cached (extraction is separate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import (
    Row,
    block_marks,
    machine_line,
    markdown_table,
    results_block,
    write_marked,
)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "cluster"
START_MARK, END_MARK = block_marks("cluster")
FLICKR30K_TRAIN_IMAGES = 29_000
FLICKR30K_CAPTIONS = 5
FLICKR30K_GRID = ROOT / "configs" / "ablation-flickr8k.yaml"
QUICK_GRID = {
    "name": "bench-quick",
    "preset": "smoke",
    "axes": {"recipes": ["vsepp", "seed", "semihard", "infonce"]},
}


def _noop(x: int) -> int:
    return x


def run_pipeline(grid: Path, root: Path, params: dict[str, str], workers: int) -> dict:
    """Run a grid in a fresh process; wall seconds, the seconds at which the dashboard line
    and each cell's end were printed, and the cells' notebook seconds (finished.json)."""
    cmd = [sys.executable, "-m", "xmr_utils.pipeline", "--grid", str(grid),
           "--ablations-root", str(root)]  # fmt: skip
    for name, value in params.items():
        cmd += ["-p", name, value]
    if workers:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ready, ends, lines = 0.0, [], []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        now = time.perf_counter() - start
        if "Dask dashboard:" in line:
            ready = now
        elif " done in " in line and line.startswith("[xmr] cell ") and ".ipynb" not in line:
            ends.append(now)
    if proc.wait() != 0:
        raise RuntimeError(f"grid run failed:\n{''.join(lines[-30:])}")
    wall = time.perf_counter() - start
    runs = sorted(root.glob("*/runs/*/finished.json"))
    cells = [json.loads(p.read_text())["notebook_seconds"] for p in runs]
    return {"wall": wall, "ready": ready, "ends": sorted(ends), "cells": cells}


def warm_features(grid: Path, root: Path, params: dict[str, str]) -> None:
    """Fill the feature cache the timed runs read: notebooks 00-01 of every cell, in turn."""
    data = yaml.safe_load(grid.read_text())
    data.update(name="warm", notebooks="00,01")
    warm = root / "warm.yaml"
    warm.write_text(yaml.safe_dump(data))
    run_pipeline(warm, root / "warm", params, workers=0)


def scheduler_overhead(n_tasks: int) -> tuple[float, float, float]:
    """Seconds to start a 2-worker LocalCluster, ms per task over ``n_tasks`` empty tasks
    submitted at once, and the ms of one submit-and-wait round trip (median of 20)."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            startup = time.perf_counter() - start
            client.gather(client.map(_noop, range(50), pure=False))  # warm-up
            start = time.perf_counter()
            client.gather(client.map(_noop, range(n_tasks), pure=False))
            per_task = (time.perf_counter() - start) / n_tasks * 1000
            trips = []
            for i in range(20):
                start = time.perf_counter()
                client.submit(_noop, i, pure=False).result()
                trips.append((time.perf_counter() - start) * 1000)
    return startup, per_task, statistics.median(trips)


def step_seconds(recipe_name: str, device: str, n_steps: int) -> float:
    """Seconds per img2txt training step of ``recipe_name`` on Flickr30k-shaped features."""
    import torch

    from benchmarks.bench_train import _parts, _step_fn, make_features, tensor_batches
    from xmr_utils.core.config import RECIPES

    recipe = RECIPES[recipe_name]
    model, loss_fn, optimizer, _ = _parts(recipe_name)
    model.to(device)
    batch = recipe.train.batch_size
    image, text, owner = make_features(max(2048, 2 * batch))
    batches = (tuple(t.to(device) for t in b) for b in tensor_batches(image, text, owner, batch))
    step = _step_fn(model, loss_fn, optimizer, recipe.optim.grad_clip)
    for _ in range(3):
        step(*next(batches))
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n_steps):
        step(*next(batches))
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n_steps


def recipe_cell_seconds(recipe_name: str, step_s: float, fixed_s: float) -> float:
    """One Flickr30k cell of ``recipe_name``: both directions' full schedule plus ``fixed_s``."""
    from xmr_utils.core.config import RECIPES

    train = RECIPES[recipe_name].train
    pairs = FLICKR30K_TRAIN_IMAGES * (
        1 if train.epoch_pairs == "one_per_image" else FLICKR30K_CAPTIONS
    )
    return 2 * train.epochs * math.ceil(pairs / train.batch_size) * step_s + fixed_s


def makespan(costs: list[float], workers: int) -> float:
    """Wall seconds of ``costs`` placed longest first on ``workers`` (each cell whole)."""
    loads = [0.0] * workers
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


def flickr30k_rows(fixed_s: float, quick: bool) -> list[Row]:
    """The estimate of the 20-cell Flickr30k grid on 1, 2, 4, 8 and 20 workers."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = yaml.safe_load(FLICKR30K_GRID.read_text())
    recipes = spec["axes"]["recipes"]
    per_recipe_cells = len(spec["axes"]["text_encoder"]) * len(spec["axes"]["image_encoder"])
    steps = 5 if quick else 20
    cell_s = {r: recipe_cell_seconds(r, step_seconds(r, device, steps), fixed_s) for r in recipes}
    costs = [s for s in cell_s.values() for _ in range(per_recipe_cells)]
    per_cell = ", ".join(f"{r} {s / 3600:.2f} h" for r, s in cell_s.items())
    rows = [
        Row(
            SECTION,
            f"Flickr30k grid estimate: {len(costs)} cells, per cell on one {device} worker "
            f"(full schedules, both directions, + {fixed_s:.0f} s fixed): {per_cell}",
            f"{sum(costs) / 3600:.1f} h on 1 worker",
        )
    ]
    for n in (2, 4, 8, 20):
        rows.append(
            Row(
                SECTION,
                f"  on {n} {device} workers (longest cell first; cached features)",
                f"{makespan(costs, n) / 3600:.1f} h",
            )
        )
    return rows


def _grid_rows(seq: dict, par: dict, n_cells: int, label: str, equal: bool) -> list[Row]:
    cores = os.cpu_count() or 1
    ceiling = min(2, cores)
    ratio = seq["wall"] / par["wall"]
    seq_cell = statistics.mean(sum(c.values()) for c in seq["cells"])
    par_cell = statistics.mean(sum(c.values()) for c in par["cells"])
    ideal = par["ready"] + sum(sum(c.values()) for c in par["cells"]) / 2
    tail = par["ends"][-1] - par["ends"][-2] if len(par["ends"]) > 1 else 0.0
    return [
        Row(
            SECTION,
            f"{label}: 2-worker LocalCluster vs sequential, same grid, warm feature cache; "
            f"tables equal: {'yes' if equal else 'NO'}",
            f"{par['wall']:.0f} s",
            f"{seq['wall']:.0f} s sequential",
            f"{ratio:.2f}×",
            f"≤ {ceiling}× ({cores} cores)",
        ),
        Row(
            SECTION,
            "  cluster start-up (2 worker processes) until the first submit",
            f"{par['ready']:.1f} s",
        ),
        Row(
            SECTION,
            "  mean cell seconds (notebooks only): beside another cell on the cluster vs alone",
            f"{par_cell:.1f} s",
            f"{seq_cell:.1f} s alone",
            f"{par_cell / seq_cell:.2f}× slower",
        ),
        Row(SECTION, "  ideal cluster wall: start-up + cell seconds / 2", f"{ideal:.0f} s"),
        Row(
            SECTION,
            "  tail: the last cell alone after the other worker ran out of cells",
            f"{tail:.0f} s",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if quick:
            grid = tmp / "quick.yaml"
            grid.write_text(yaml.safe_dump(QUICK_GRID))
        else:
            grid = ROOT / "configs" / "ablation.yaml"
        n_cells = math.prod(len(v) for v in yaml.safe_load(grid.read_text())["axes"].values())
        params = {"data_dir": str(tmp / "data"), "features_dir": str(tmp / "features")}
        warm_features(grid, tmp, params)
        seq = run_pipeline(grid, tmp / "seq", params, workers=0)
        par = run_pipeline(grid, tmp / "par", params, workers=2)
        tables = [next((tmp / r).glob("*/results.csv")).read_text() for r in ("seq", "par")]
    kept = ROOT / "outputs" / "bench-cluster" / ("quick" if quick else "")
    kept.mkdir(parents=True, exist_ok=True)
    for name, table in zip(("sequential", "cluster"), tables, strict=True):
        (kept / f"{name}-results.csv").write_text(table)  # to compare by eye after the run
    label = f"`{grid.name}` ({n_cells} cells)" if not quick else f"smoke grid ({n_cells} cells)"
    rows = _grid_rows(seq, par, n_cells, label, tables[0] == tables[1])
    where = f" (both in {kept.relative_to(ROOT)}/)"
    rows[0] = dataclasses.replace(rows[0], what=rows[0].what + where)
    fixed = statistics.mean(
        sum(v for k, v in c.items() if not k.startswith(("02", "03"))) for c in seq["cells"]
    )
    estimate = flickr30k_rows(fixed, quick)  # before a LocalCluster here sets OMP_NUM_THREADS=1
    startup, per_task, trip = scheduler_overhead(200 if quick else 1000)
    rows.append(
        Row(
            SECTION,
            f"scheduler overhead per task: empty tasks on a 2-worker LocalCluster (started in "
            f"{startup:.1f} s); one submit-and-wait round trip {trip:.1f} ms",
            f"{per_task:.2f} ms/task",
        )
    )
    return rows + estimate


def cluster_block(rows: list[Row], seconds: float) -> str:
    """The ``make bench-cluster`` block of RESULTS.md: its table between the markers."""
    intro = (
        "Written by `python -m benchmarks.bench_cluster` (`make bench-cluster`, not part of "
        f"`make bench`: it runs the demo grid twice) on {time.strftime('%Y-%m-%d')}; "
        f"{machine_line()}; {seconds:.0f} s in all."
    )
    return results_block((START_MARK, END_MARK), "Grids on Dask", intro, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke grid, for development")
    parser.add_argument(
        "--out",
        default="",
        help="RESULTS.md to write the block into (default benchmarks/RESULTS.md; with --quick "
        "nothing is written unless this is given)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(args.quick)
    seconds = time.perf_counter() - start
    print(machine_line(), f"load average {os.getloadavg()[0]:.1f}", f"({seconds:.0f} s)")
    print(markdown_table(rows))
    out = args.out or ("" if args.quick else str(ROOT / "benchmarks" / "RESULTS.md"))
    if out:
        write_marked(Path(out), cluster_block(rows, seconds), START_MARK, END_MARK)
        print(f"[bench-cluster] wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
