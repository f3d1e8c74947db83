"""``benchmarks/bench_cache.py`` on tiny inputs (no timed assertions).

``shard_rows`` is not run here: it starts a LocalCluster whose workers each build
efficientnet_lite0 (tens of seconds on a busy machine); the sharded path itself is tested in
``tests/core/features/test_sharded.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is not an installed package: import it from the repo
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_cache  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402


def test_verify_cost_times_a_bare_and_a_verified_load(tmp_path: Path) -> None:
    bare, verified = bench_cache.verify_cost(tmp_path, rows=64, dim=32, repeats=1)
    assert bare.repeats == verified.repeats == 1
    assert 0 < bare.median_s and 0 < verified.median_s
    assert (tmp_path / "bench__rows.npy").is_file()


def test_corpus_of_generated_jpegs(tmp_path: Path) -> None:
    corpus = bench_cache.corpus_of(tmp_path / "jpg", 3)
    assert corpus.n_images == 3 and all(p.is_file() for p in corpus.image_files)
    np.testing.assert_array_equal(corpus.owner, [0, 1, 2])


def test_cache_section_is_part_of_make_bench() -> None:
    assert ("cache", "Feature cache: verified loads, sharded extraction") in bench_run.SECTIONS
