"""End to end: wall time of the demo pipeline per notebook, and what the numba cache saves UMAP.

    python -m benchmarks.bench_e2e [--quick]

The pipeline runs cold — a fresh data folder and feature cache in a temporary directory —
so the figure is what `make demo` costs after the install. ``--quick`` runs the `smoke`
preset instead of `demo` and skips the UMAP cache measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row, bench_main

ROOT = Path(__file__).resolve().parents[1]
DEMO_TARGET_S = 360.0

UMAP_SNIPPET = """
import time, numpy as np
start = time.perf_counter()
from xmr_utils.app.viz import umap_2d
umap_2d(np.random.default_rng(0).normal(size=(600, 64)).astype("float32"))
print(time.perf_counter() - start)
"""


def time_pipeline(preset: str) -> tuple[float, dict[str, float]]:
    """Seconds of one cold pipeline run and its per-notebook seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "runs" / "bench"
        cmd = [
            sys.executable,
            "-m",
            "xmr_utils.pipeline",
            "--preset",
            preset,
            "--run-dir",
            str(run_dir),
            "--runs-root",
            str(Path(tmp) / "runs"),
            "-p",
            "data_dir",
            str(Path(tmp) / "data"),
            "-p",
            "features_dir",
            str(Path(tmp) / "features"),
        ]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"pipeline failed: {done.stderr[-1000:]}")
        finished = json.loads((run_dir / "finished.json").read_text())
    return seconds, finished["notebook_seconds"]


def time_umap(cache_dir: Path) -> float:
    """Seconds of a first UMAP call in a fresh process with ``cache_dir`` as numba's cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    done = subprocess.run(
        [sys.executable, "-c", UMAP_SNIPPET],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Row]:
    preset = "smoke" if quick else "demo"
    total, per_notebook = time_pipeline(preset)
    rows = [
        Row(
            "e2e",
            f"`{preset}` pipeline, cold caches, {len(per_notebook)} notebooks",
            f"{total:.0f} s",
            target=f"≤ {DEMO_TARGET_S:.0f} s" if preset == "demo" else "—",
            met=("yes" if total <= DEMO_TARGET_S else "no") if preset == "demo" else "—",
        )
    ]
    rows += [Row("e2e", f"  {name}", f"{seconds:.1f} s") for name, seconds in per_notebook.items()]
    if quick:  # the cold/warm UMAP pair costs ~35 s; `--quick` must stay under 2 minutes
        return rows
    with tempfile.TemporaryDirectory() as tmp:
        cold = time_umap(Path(tmp))
        warm = time_umap(Path(tmp))
    rows.append(
        Row(
            "e2e",
            "first UMAP call in a process (600 × 64), numba cache warm vs cold",
            f"{warm:.1f} s",
            baseline=f"{cold:.1f} s (cold cache)",
            ratio=f"{cold / warm:.1f}×",
        )
    )
    return rows


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
