"""Search at scale: exact top-10 of 5,000 queries over 158,915 items (1024-d).

    python -m benchmarks.bench_search [--quick]

Exact torch search (:func:`xmr_utils.core.retrieval.topk`, chunked matmul + stable top-k), and,
when ``import faiss`` works, faiss ``IndexFlatIP`` (exact) and ``IndexHNSWFlat`` (approximate,
with its recall@10 against the exact top-10). Without faiss the faiss rows say so.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.bench_eval import DIM, random_unit
from benchmarks.common import (
    Row,
    Timing,
    bench_main,
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
) -> list[Row]:
    """faiss flat (exact) and HNSW (approximate) rows; baseline = the exact torch search."""
    import faiss

    def row(what: str, t: Timing, found: np.ndarray) -> Row:
        return Row(
            SECTION,
            f"{what}, {size}; recall@{K} vs exact {recall_at_k(found, exact):.4f}",
            t.cell(),
            f"{torch_time.cell()} exact torch",
            f"{torch_time.median_s / t.median_s:.1f}x",
        )

    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(items)
    t_flat = time_repeats(lambda: flat.search(q, K), repeats=3, warmup=0)
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(items.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 128
    hnsw.add(items)
    build = time.perf_counter() - start
    t_hnsw = time_repeats(lambda: hnsw.search(q, K), repeats=3, warmup=0)
    return [
        row(f"faiss IndexFlatIP top-{K}", t_flat, flat.search(q, K)[1]),
        row(
            f"faiss IndexHNSWFlat(M=32, efSearch=128, build {build:.0f} s) top-{K}",
            t_hnsw,
            hnsw.search(q, K)[1],
        ),
    ]


def run(quick: bool = False, sizes: tuple[int, int] | None = None) -> list[Row]:
    """Search rows (``quick``: 500 queries over 20,000 items; ``sizes``: ``(queries, items)``
    instead, for the tests)."""
    from xmr_utils.core.retrieval import faiss_available, topk

    n_q, n_items = sizes or ((500, 20_000) if quick else (5_000, 158_915))
    q, items = random_unit(n_q, DIM, 5), random_unit(n_items, DIM, 6)
    size = f"{n_q:,} queries x {n_items:,} items x {DIM}-d"
    t = time_repeats(lambda: topk(q, items, K, backend="torch"), repeats=3, warmup=0)
    _, exact = topk(q, items, K, backend="torch")
    rows = [
        Row(
            SECTION,
            f"exact torch top-{K} (stable ties), {size}; peak RSS "
            f"{peak_rss_mb():,.0f} MB; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs",
            t.cell(),
        )
    ]
    if not faiss_available():
        return rows + [Row(SECTION, f"faiss IndexFlatIP / IndexHNSWFlat, {size}", NOT_INSTALLED)]
    return rows + faiss_rows(q.numpy(), items.numpy(), exact.numpy(), size, t)


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
