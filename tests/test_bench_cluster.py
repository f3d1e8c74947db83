"""``benchmarks/bench_cluster.py`` on tiny inputs: the schedule arithmetic, the row assembly
from fake grid runs, one timed training step, and the scheduler overhead on a real (small)
LocalCluster. The grid runs themselves take minutes and are not run here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is not an installed package: import it from the repo
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_cluster  # noqa: E402
from benchmarks.common import markdown_table  # noqa: E402


def test_makespan_places_the_longest_cells_first() -> None:
    assert bench_cluster.makespan([5, 4, 3, 3, 3], 2) == 10  # {5, 3}, {4, 3, 3}
    assert bench_cluster.makespan([1.0] * 20, 20) == 1.0
    assert bench_cluster.makespan([7, 1, 1], 1) == 9
    assert bench_cluster.makespan([7, 1, 1], 4) == 7


def test_a_cell_is_both_directions_of_the_full_schedule_plus_the_fixed_cost() -> None:
    # vsepp: 30 epochs of ceil(145,000 / 128) = 1133 steps, twice
    assert bench_cluster.recipe_cell_seconds("vsepp", 0.01, 5.0) == pytest.approx(
        2 * 30 * 1133 * 0.01 + 5.0
    )
    # seed: one caption per image, 50 epochs of ceil(29,000 / 1024) = 29 steps
    assert bench_cluster.recipe_cell_seconds("seed", 1.0, 0.0) == 2 * 50 * 29


def test_grid_rows_from_fake_runs() -> None:
    seq = {"wall": 100.0, "ready": 0.0, "ends": [50.0, 100.0],
           "cells": [{"00_data": 10.0, "02_train": 40.0}] * 2}  # fmt: skip
    par = {"wall": 70.0, "ready": 8.0, "ends": [60.0, 66.0],
           "cells": [{"00_data": 14.0, "02_train": 46.0}] * 2}  # fmt: skip
    rows = bench_cluster._grid_rows(seq, par, 2, "fake grid", equal=True)
    assert rows[0].ratio == "1.43×" and "tables equal: yes" in rows[0].what
    assert rows[1].ours == "8.0 s" and rows[2].ratio == "1.20× slower"
    assert rows[3].ours == "68 s" and rows[4].ours == "6 s"
    assert markdown_table(rows).count("\n") == len(rows) + 1


def test_one_training_step_is_timed() -> None:
    seconds = bench_cluster.step_seconds("infonce_linear", "cpu", n_steps=1)
    assert 0 < seconds < 30


@pytest.mark.slow
def test_scheduler_overhead_on_a_small_local_cluster() -> None:
    startup, per_task, trip = bench_cluster.scheduler_overhead(20)
    assert startup > 0 and 0 < per_task < 1000 and 0 < trip < 5000


def test_main_writes_its_own_block_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from benchmarks.common import Row

    monkeypatch.setattr(bench_cluster, "run", lambda quick: [Row("cluster", "grid", "9 s")])
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\nspeed rows\n")
    assert bench_cluster.main(["--out", str(out)]) == 0
    assert bench_cluster.main(["--out", str(out)]) == 0  # replaced, not appended twice
    text = out.read_text()
    assert text.startswith("# Benchmark results\n\nspeed rows\n")
    assert text.count(bench_cluster.START_MARK) == 1 and "| grid | 9 s |" in text
    assert "## Grids on Dask" in text and text.rstrip().endswith(bench_cluster.END_MARK)
    before = out.read_text()
    assert bench_cluster.main(["--quick"]) == 0  # --quick writes nothing by default
    assert out.read_text() == before
