"""Shared helpers for the benchmarks: median and min-max of repeats, peak memory, and the
machine's limit -- torch's matrix-product speed -- that compute-bound rows are held against.

The limit is measured in the same ``make bench`` run (the ``limit`` section, passed to the
other sections through :data:`LIMIT_ENV`; a section run on its own measures it itself): the
best of several ``[4096, 1024] @ [1024, 4096]`` products -- the 1024-d shape of evaluation
and search -- in float32 and in bfloat16, on torch's default threads. A row's "of limit"
cell is its matrix-product FLOPs per second (:func:`count_flops` for models, ``2 N M D`` for
scores) over that limit.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

#: Environment variable through which ``benchmarks/run.py`` hands the measured limit on.
LIMIT_ENV = "XMR_BENCH_LIMIT"
#: ``(m, k, n)`` of the product that measures the limit.
LIMIT_SHAPE: tuple[int, int, int] = (4096, 1024, 4096)
#: The bf16 product where bf16 is emulated (no AMX or AVX512-BF16): ~0.3 GFLOP, ~1 s there.
EMULATED_SHAPE: tuple[int, int, int] = (512, 512, 512)
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """Seconds of ``repeats`` runs of one callable."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int

    def cell(self) -> str:
        """``median (min–max)`` in seconds, for a markdown table."""
        return f"{self.median_s:.3f} s ({self.min_s:.3f}–{self.max_s:.3f})"


def time_repeats(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times), repeats)


@dataclass(frozen=True)
class Row:
    """One line of RESULTS.md: what was measured, ours vs. the alternative, and the ratio."""

    section: str
    what: str
    ours: str
    baseline: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: str = "—"
    limit: str = "—"  # share of the machine's matrix-product speed (compute-bound rows)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Limit:
    """The machine's torch matrix-product speed, GFLOP/s, on ``threads`` threads."""

    fp32: float
    bf16: float
    threads: int
    #: Where it was measured, when not in the run's ``limit`` section (said in every share).
    where: str = ""

    def share(self, gflops: float, dtype: str = "fp32") -> str:
        """``"93% (183 of 197 GFLOP/s fp32)"``: ``gflops`` as a share of the ``dtype`` limit."""
        limit = getattr(self, dtype)
        where = f", {self.where}" if self.where else ""
        return f"{100 * gflops / limit:.0f}% ({gflops:.0f} of {limit:.0f} GFLOP/s {dtype}{where})"


def limit_shape(dtype_name: str) -> tuple[int, int, int]:
    """The product :func:`matmul_gflops` times: :data:`LIMIT_SHAPE`, except bf16 on a CPU
    without native bf16 products (:func:`xmr_utils.core.hardware.native_bf16`), which gets
    :data:`EMULATED_SHAPE`: emulated, one product of the full shape takes ~90 s."""
    from xmr_utils.core.hardware import native_bf16

    return LIMIT_SHAPE if dtype_name != "bf16" or native_bf16("cpu") else EMULATED_SHAPE


def matmul_gflops(dtype_name: str, repeats: int = 7) -> tuple[float, float]:
    """``(best, median)`` GFLOP/s of :func:`limit_shape` products in ``dtype_name``
    (``"fp32"`` or ``"bf16"``), after one warm-up."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    m, k, n = limit_shape(dtype_name)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(n, k, generator=gen).to(dtype)
    out = torch.empty(m, n, dtype=dtype)
    t = time_repeats(lambda: torch.matmul(a, b.T, out=out), repeats=repeats, warmup=1)
    flops = 2 * m * k * n / 1e9
    return flops / t.min_s, flops / t.median_s


@functools.cache
def machine_limit() -> Limit:
    """The limit handed on by ``benchmarks/run.py`` (:data:`LIMIT_ENV`), else measured now."""
    import torch

    if os.environ.get(LIMIT_ENV):
        return Limit(**json.loads(os.environ[LIMIT_ENV]))
    return Limit(matmul_gflops("fp32")[0], matmul_gflops("bf16")[0], torch.get_num_threads())


def limit_around(run: Callable[[], T]) -> tuple[T, Limit]:
    """``run()``'s result and the fp32 limit measured right before and right after it (the
    faster of the two; bf16 and threads from :func:`machine_limit`).

    This host's matrix-product speed drifts by up to ~30% over minutes (224 and 308 GFLOP/s
    in two runs half an hour apart), so a long row is held against the limit of its own
    minutes rather than the ``limit`` section's.
    """
    before = matmul_gflops("fp32")[0]
    result = run()
    after = matmul_gflops("fp32")[0]
    base = machine_limit()
    where = f"the faster of {before:.0f} before and {after:.0f} after this row"
    return result, Limit(max(before, after), base.bf16, base.threads, where)


def count_flops(fn: Callable[[], object]) -> float:
    """Matrix-product FLOPs (matmul, convolution, attention: torch's ``FlopCounterMode``)
    of one call of ``fn``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``; else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """E.g. ``"AMD EPYC (torch CPU kernels AVX2, bf16 emulated), x86_64, 2 torch threads,
    Python 3.11.7, torch 2.14.1+cu130"``: which CPU, and whether its bf16 products are native
    (every speed here depends on both: fp32 ran at ~230 GFLOP/s on the AMX host the first
    blocks were measured on, at ~120 on an AVX2 one)."""
    import torch

    from xmr_utils.core.hardware import native_bf16

    kernels = torch.backends.cpu.get_cpu_capability()
    bf16 = "native" if native_bf16("cpu") else "emulated"
    return (
        f"{cpu_name()} (torch CPU kernels {kernels}, bf16 {bf16}), {platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def markdown_table(rows: list[Row]) -> str:
    head = (
        "| what | ours | baseline | ratio | of limit | target | met |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(
        f"| {r.what} | {r.ours} | {r.baseline} | {r.ratio} | {r.limit} | {r.target} | {r.met} |"
        for r in rows
    )


def bench_main(
    run: Callable[[bool], list[Row]], doc: str | None, argv: list[str] | None = None
) -> int:
    """The command line every ``benchmarks/bench_<name>.py`` shares: ``[--quick]``, then the
    machine, load average and elapsed time, and the rows as a markdown table."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = run(args.quick)
    print(
        machine_line(),
        f"load average {os.getloadavg()[0]:.1f}",
        f"({time.perf_counter() - start:.0f} s)",
    )
    print(markdown_table(rows))
    return 0


def block_marks(owner: str) -> tuple[str, str]:
    """The markers around the RESULTS.md block that ``make bench-<owner>`` writes."""
    return f"<!-- bench-{owner}:start -->", f"<!-- bench-{owner}:end -->"


def results_block(marks: tuple[str, str], title: str, intro: str, rows: list[Row]) -> str:
    """A block of RESULTS.md that one command owns: ``## title``, ``intro`` (which command
    wrote it, when, on what machine), and the table, between the markers ``marks``."""
    start, end = marks
    return f"{start}\n## {title}\n\n{intro}\n\n{markdown_table(rows)}\n{end}\n"


def marked_block(text: str, start: str, end: str) -> str:
    """The block of ``text`` between the markers ``start`` and ``end``, markers included and
    one newline after ("" when either is missing)."""
    if start not in text or end not in text:
        return ""
    return start + text.split(start, 1)[1].split(end, 1)[0] + end + "\n"


def write_marked(path: Path, block: str, start: str, end: str) -> None:
    """Put ``block`` (which holds the markers) into ``path`` in place of an earlier block
    between ``start`` and ``end``, else at the end; the rest of the file is kept."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)
