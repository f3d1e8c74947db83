"""The feature cache: what verifying a load costs, and sharded against one-process extraction.

- a cached ``N x 4096`` float32 array loaded through the cache (one read, then sha256 and
  a finiteness check in memory) against a bare ``np.load`` of the same file, page cache warm;
- ``efficientnet_lite0`` features of the same Flickr-sized JPEGs (500x375) extracted by
  ``image_features`` into a fresh cache: on a 2-worker Dask ``LocalCluster`` (processes,
  one thread each) against this one process (default torch threads), same chunks and
  batches; the cluster's start and first call (each worker builds the model) on their own
  row; and whether the sharded array equals the one-process array at one torch thread.

    python -m benchmarks.bench_cache [--quick]
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_extract import write_jpegs
from benchmarks.common import Row, Timing, bench_main, time_repeats

SECTION = "cache"
CHUNK = 16  # images per chunk (and per shard); also the batch size


def verify_cost(folder: Path, rows: int, dim: int = 4096, repeats: int = 3) -> tuple[Timing, ...]:
    """``(bare np.load, verified load)`` timings of one ``rows x dim`` float32 cache entry."""
    from xmr_utils.core.features import CachePaths, extract_chunks, load_verified, read_manifest

    paths = CachePaths(folder, "bench__rows")
    expected = {
        "format": 1,
        "kind": "image",
        "spec": "bench:rows",
        "dataset": {"name": "bench"},
        "dtype": "float32",
        "shape": [rows, dim],
        "extras": {},
    }
    rng = np.random.default_rng(0)

    def encode(start: int, stop: int):
        return rng.standard_normal((stop - start, dim), dtype=np.float32), {}, 0

    extract_chunks(paths, expected, encode, chunk_size=1024, progress=False, desc="bench")
    manifest = read_manifest(paths.manifest)
    arr, why = load_verified(paths, manifest)
    assert arr is not None, why
    bare = time_repeats(lambda: np.load(paths.features), repeats=repeats, warmup=1)
    verified = time_repeats(lambda: load_verified(paths, manifest), repeats=repeats, warmup=1)
    return bare, verified


def corpus_of(folder: Path, n: int):
    """A caption corpus over ``n`` generated JPEGs (one caption each)."""
    from xmr_utils.core.data.corpus import CaptionCorpus

    files = tuple(write_jpegs(folder, n))
    caps = tuple(f"image {i}" for i in range(n))
    return CaptionCorpus("bench", folder, files, caps, np.arange(n), {"train": np.arange(n)})


def extraction(corpus, cache: Path, client=None, encoder=None) -> np.ndarray:
    """``efficientnet_lite0`` features of ``corpus`` into the fresh cache ``cache`` (with a
    client each worker builds the encoder once; without one, ``encoder`` is used)."""
    from xmr_utils.core.features import image_features

    shutil.rmtree(cache, ignore_errors=True)
    return image_features(
        corpus,
        "efficientnet_lite0",
        cache,
        client=client,
        encoder=encoder,
        chunk_size=CHUNK,
        batch_size=CHUNK,
        progress=False,
    )


def at_one_thread(corpus, cache: Path, encoder) -> np.ndarray:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return extraction(corpus, cache, encoder=encoder)
    finally:
        torch.set_num_threads(threads)


def shard_rows(tmp: Path, n: int, repeats: int, q: str) -> list[Row]:
    """The sharded-against-one-process rows on ``n`` generated JPEGs."""
    import distributed

    from xmr_utils.core.encoders import build_image_encoder

    corpus = corpus_of(tmp / "jpg", n)
    lite0 = build_image_encoder("efficientnet_lite0")  # built once, as each worker does
    single = time_repeats(
        lambda: extraction(corpus, tmp / "one", encoder=lite0), repeats=repeats, warmup=1
    )
    start = time.perf_counter()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        sharded_first = extraction(corpus, tmp / "many", client)  # each worker builds the model
        cold = time.perf_counter() - start
        sharded = time_repeats(
            lambda: extraction(corpus, tmp / "many", client), repeats=repeats, warmup=0
        )
    same = np.array_equal(sharded_first, at_one_thread(corpus, tmp / "one1", lite0))
    ratio = single.median_s / sharded.median_s
    what = f"efficientnet_lite0, {n} JPEGs 500x375, chunk = batch = {CHUNK}"
    return [
        Row(
            SECTION,
            f"sharded extraction, 2-worker LocalCluster (processes, 1 thread each), {what}{q}",
            f"{sharded.cell()} ({n / sharded.median_s:.1f}/s)",
            f"{single.cell()} ({n / single.median_s:.1f}/s) one process, default threads",
            f"{ratio:.2f}×",
            "ceiling 2× on 2 cores",
        ),
        Row(
            SECTION,
            f"LocalCluster start + first sharded call (workers build the model), {n} JPEGs{q}",
            f"{cold:.3f} s",
        ),
        Row(
            SECTION,
            "sharded array equals the one-process array at 1 torch thread (bit for bit)",
            "yes" if same else "no",
            target="yes",
            met="yes" if same else "no",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    """Measure and return the rows (``quick``: smaller sizes, one repeat)."""
    rows_n, n_img, repeats = (4096, 32, 1) if quick else (16_384, 128, 3)
    q = " (quick)" if quick else ""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bare, verified = verify_cost(tmp / "verify", rows_n, repeats=repeats)
        mb = rows_n * 4096 * 4 / 2**20
        cost = verified.median_s - bare.median_s
        rows = [
            Row(
                SECTION,
                f"cache load, {rows_n:,} × 4096 float32 ({mb:.0f} MB), page cache warm: one read "
                f"+ sha256 + finite check{q}",
                verified.cell(),
                f"{bare.cell()} bare np.load",
                f"{bare.median_s / verified.median_s:.2f}×",
            ),
            Row(
                SECTION,
                "verification cost per GB of cache (from the row above)",
                f"{cost / (mb / 1024):.2f} s/GB",
            ),
        ]
        rows += shard_rows(tmp, n_img, repeats, q)
    return rows


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
