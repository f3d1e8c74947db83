"""Search at scale: exact top-10 of 5,000 queries over 158,915 items (1024-d).

    python -m benchmarks.bench_search [--quick]

Our exact search (:func:`xmr_utils.core.retrieval.topk`: tiled matrix products, each tile
scanned by the fused top-k kernel, the tie rule kept), and, when ``import faiss`` works,
faiss ``IndexFlatIP`` (exact: the target is to be at least as fast) and ``IndexHNSWFlat``
(approximate, with its recall@10 against the exact top-10), timed in turn in this process.
Without faiss the faiss rows say so. One warm-up search (200 queries) loads the compiled
kernels first.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from benchmarks.bench_eval import DIM, random_unit
from benchmarks.common import (
    Row,
    Timing,
    bench_main,
    limit_around,
    peak_rss_mb,
    time_repeats,
)

SECTION = "search"
K = 10
NOT_INSTALLED = "faiss-cpu not installed (pip install -e .[faiss])"


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` ``[Q, k]`` that ``found`` ``[Q, k]`` also holds."""
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits)) / exact.shape[1]


def faiss_rows(
    q: np.ndarray, items: np.ndarray, exact: np.ndarray, size: str, torch_time: Timing
) -> tuple[list[Row], Timing]:
    """faiss flat (exact) and HNSW (approximate) rows, baseline = the exact torch search; and
    the flat index's timing."""
    import faiss

    flops = 2 * q.shape[0] * items.shape[0] * items.shape[1]

    def row(what: str, t: Timing, found: np.ndarray, exact_search: bool) -> Row:
        return Row(
            SECTION,
            f"{what}, {size}; recall@{K} vs exact {recall_at_k(found, exact):.4f}",
            t.cell(),
            f"{torch_time.cell()} exact torch",
            f"{torch_time.median_s / t.median_s:.1f}x",
            limit=limit.share(flops / t.median_s / 1e9) if exact_search else "—",
        )

    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(items)
    t_flat, limit = limit_around(
        lambda: time_repeats(lambda: flat.search(q, K), repeats=3, warmup=0)
    )
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(items.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 128
    hnsw.add(items)
    build = time.perf_counter() - start
    t_hnsw = time_repeats(lambda: hnsw.search(q, K), repeats=3, warmup=0)
    rows = [
        row(f"faiss IndexFlatIP top-{K}", t_flat, flat.search(q, K)[1], True),
        row(
            f"faiss IndexHNSWFlat(M=32, efSearch=128, build {build:.0f} s) top-{K}",
            t_hnsw,
            hnsw.search(q, K)[1],
            False,
        ),
    ]
    return rows, t_flat


def run(quick: bool = False, sizes: tuple[int, int] | None = None) -> list[Row]:
    """Search rows (``quick``: 500 queries over 20,000 items; ``sizes``: ``(queries, items)``
    instead, for the tests)."""
    from xmr_utils.core.retrieval import faiss_available, topk

    n_q, n_items = sizes or ((500, 20_000) if quick else (5_000, 158_915))
    q, items = random_unit(n_q, DIM, 5), random_unit(n_items, DIM, 6)
    size = f"{n_q:,} queries x {n_items:,} items x {DIM}-d"
    topk(q[:200], items, K, backend="torch")  # loads the compiled scan kernels
    t, limit = limit_around(
        lambda: time_repeats(lambda: topk(q, items, K, backend="torch"), repeats=3, warmup=0)
    )
    _, exact = topk(q, items, K, backend="torch")
    gflops = 2 * n_q * n_items * DIM / t.median_s / 1e9
    ours = Row(
        SECTION,
        f"exact top-{K}, ours (tiles + fused scan, stable ties), {size}; peak RSS "
        f"{peak_rss_mb():,.0f} MB; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs",
        t.cell(),
        limit=limit.share(gflops),
    )
    if not faiss_available():
        return [ours, Row(SECTION, f"faiss IndexFlatIP / IndexHNSWFlat, {size}", NOT_INSTALLED)]
    faiss_found, flat = faiss_rows(q.numpy(), items.numpy(), exact.numpy(), size, t)
    ours = dataclasses.replace(
        ours,
        baseline=f"{flat.cell()} faiss IndexFlatIP",
        ratio=f"{flat.median_s / t.median_s:.2f}x",
        target="≤ faiss flat",
        met="yes" if t.median_s <= flat.median_s else "no",
    )
    return [ours, *faiss_found]


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
