"""The `flickr8k` preset end to end on real Flickr8k, features cached: wall time per notebook
and validation's share of training.

    python -m benchmarks.bench_preset [--data DIR] [--out benchmarks/RESULTS.md]

Runs ``python -m xmr_utils.pipeline --preset flickr8k -p dataset DIR`` (every notebook, each
recipe's own schedule) into ``outputs/bench-preset/runs/<id>`` -- apart from the study's own
runs, so ``LATEST`` does not move -- with the default feature cache (``data/features``), and
writes its block into RESULTS.md (``make bench-preset``; not part of ``make bench``, which
must stay within 20 minutes). The target is 15 minutes with the features cached: the first
run on a machine extracts them (notebook 01, the row says how long it took) and is not the
measurement. The validation rows read the run's model histories
(:mod:`benchmarks.val_share`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_quality import find_flickr8k, shown_path
from benchmarks.common import (
    Row,
    block_marks,
    machine_line,
    markdown_table,
    matmul_gflops,
    results_block,
    write_marked,
)
from benchmarks.val_share import share_rows

ROOT = Path(__file__).resolve().parents[1]
SECTION = "preset"
START_MARK, END_MARK = block_marks("preset")
TARGET_S = 900.0
RUNS_ROOT = ROOT / "outputs" / "bench-preset" / "runs"


def run_preset(data: Path, runs_root: Path = RUNS_ROOT) -> tuple[float, Path]:
    """Seconds of one pipeline run of the ``flickr8k`` preset on ``data``, and its run folder.
    The pipeline's console goes to this process's stderr as it comes."""
    before = set(runs_root.glob("*")) if runs_root.is_dir() else set()
    cmd = [sys.executable, "-m", "xmr_utils.pipeline", "--preset", "flickr8k",
           "--runs-root", str(runs_root), "-p", "dataset", str(data)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the flickr8k preset failed (exit {done.returncode}); see above")
    new = sorted(p for p in set(runs_root.glob("*")) - before if p.is_dir())
    if len(new) != 1:
        raise RuntimeError(f"expected one new run folder under {runs_root}, found {new}")
    return seconds, new[0]


def host_speed() -> tuple[float, float]:
    """This host's fp32 and bf16 matmul GFLOP/s now (:func:`benchmarks.common.matmul_gflops`,
    best of 7): its speed drifts by up to ~30% over minutes, so the row states it before and
    after the run."""
    return matmul_gflops("fp32")[0], matmul_gflops("bf16")[0]


def speed_note(before: tuple[float, float], after: tuple[float, float]) -> str:
    """``"host matmul 181 / 183 GFLOP/s fp32, 806 / 790 bf16 before / after"``."""

    def gflops(x: float) -> str:
        return f"{x:.0f}" if x >= 10 else f"{x:.1f}"  # emulated bf16 can run below 1

    return (
        f"host matmul {gflops(before[0])} / {gflops(after[0])} GFLOP/s fp32, "
        f"{gflops(before[1])} / {gflops(after[1])} bf16 before / after"
    )


def preset_rows(seconds: float, run_dir: Path, speed: str = "") -> list[Row]:
    """The total against :data:`TARGET_S`, one row per notebook, and the validation shares;
    ``speed`` (:func:`speed_note`) joins the total's description."""
    per_notebook = json.loads((run_dir / "finished.json").read_text())["notebook_seconds"]
    extract_s = per_notebook.get("01_features", 0.0)
    cached = extract_s < 120  # more: notebook 01 extracted the features in this run
    rows = [
        Row(
            SECTION,
            f"`flickr8k` preset, all {len(per_notebook)} notebooks, run "
            f"`{shown_path(run_dir)}` "
            f"(features {'cached' if cached else 'EXTRACTED in this run'}: 01 took "
            f"{extract_s:.0f} s); load average after {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs{'; ' + speed if speed else ''}",
            f"{seconds / 60:.1f} min",
            target=f"≤ {TARGET_S / 60:.0f} min",
            met="yes" if seconds <= TARGET_S and cached else "no",
        )
    ]
    rows += [Row(SECTION, f"  {name}", f"{s:.0f} s") for name, s in per_notebook.items()]
    return rows + share_rows(run_dir)


def preset_block(rows: list[Row], data: Path) -> str:
    """The ``make bench-preset`` block of RESULTS.md."""
    intro = (
        "Written by `python -m benchmarks.bench_preset` (`make bench-preset`) on "
        f"{time.strftime('%Y-%m-%d')}; {machine_line()}; data `{shown_path(data)}`."
    )
    return results_block((START_MARK, END_MARK), "The `flickr8k` preset end to end", intro, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", default="", help="Flickr8k folder (default: as bench-quality)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = parser.parse_args(argv)
    data = find_flickr8k(args.data)
    if data is None:
        parser.exit(
            2,
            "error: no Flickr8k folder found (looked at $XMR_FLICKR8K, data/flickr8k and "
            "../shared/datasets/flickr8k); pass --data DIR\n",
        )
    before = host_speed()
    seconds, run_dir = run_preset(data)
    rows = preset_rows(seconds, run_dir, speed_note(before, host_speed()))
    print(markdown_table(rows))
    write_marked(Path(args.out), preset_block(rows, data), START_MARK, END_MARK)
    print(f"[bench-preset] wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
