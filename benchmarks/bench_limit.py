"""The machine's limit: torch matrix-product speed in float32 and bfloat16, for the other rows.

    python -m benchmarks.bench_limit [--quick]

The best (and median) of 7 ``[4096, 1024] @ [1024, 4096]`` products -- the 1024-d shape of
evaluation and search -- on torch's default threads. ``make bench`` runs this section first
and hands the two numbers to every later section (:data:`benchmarks.common.LIMIT_ENV`), whose
compute-bound rows say what share of them they reach.
"""

from __future__ import annotations

import re

from benchmarks.common import (
    EMULATED_SHAPE,
    Limit,
    Row,
    bench_main,
    limit_shape,
    matmul_gflops,
)

SECTION = "limit"
_WHAT = re.compile(r"^torch\.matmul .* (fp32|bf16), (\d+) threads")


def run(quick: bool = False) -> list[Row]:
    """Two rows, float32 then bfloat16 (``quick``: 3 repeats instead of 7)."""
    import torch

    repeats = 3 if quick else 7
    rows = []
    for dtype in ("fp32", "bf16"):
        m, k, n = limit_shape(dtype)
        best, median = matmul_gflops(dtype, repeats)
        emulated = (m, k, n) == EMULATED_SHAPE
        rows.append(
            Row(
                SECTION,
                f"torch.matmul [{m}, {k}] @ [{k}, {n}] {dtype}, {torch.get_num_threads()} "
                f"threads, best of {repeats}"
                + (" (emulated: this CPU has no AMX or AVX512-BF16)" if emulated else ""),
                f"{best:.1f} GFLOP/s (median {median:.1f})",
                limit="the limit" if dtype == "fp32" else "—",
            )
        )
    return rows


def limit_from_rows(rows: list[Row]) -> Limit | None:
    """The :class:`~benchmarks.common.Limit` that :func:`run`'s rows state (None if they do
    not, e.g. the section failed)."""
    found: dict[str, float] = {}
    threads = 0
    for row in rows:
        m = _WHAT.match(row.what)
        if m:
            found[m.group(1)] = float(row.ours.split()[0])
            threads = int(m.group(2))
    if set(found) != {"fp32", "bf16"}:
        return None
    return Limit(found["fp32"], found["bf16"], threads)


if __name__ == "__main__":
    raise SystemExit(bench_main(run, __doc__))
