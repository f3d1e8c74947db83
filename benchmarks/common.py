"""Shared timing helpers for the benchmarks: median and min-max of repeats, peak memory."""

from __future__ import annotations

import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


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

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_line() -> str:
    import torch

    return (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def markdown_table(rows: list[Row]) -> str:
    head = "| what | ours | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n"
    return head + "\n".join(
        f"| {r.what} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} | {r.met} |" for r in rows
    )


def bench_main(
    run: Callable[[bool], list[Row]], doc: str | None, argv: list[str] | None = None
) -> int:
    """The command line every ``benchmarks/bench_<name>.py`` shares: ``[--quick]``, then the
    machine, load average and elapsed time, and the rows as a markdown table."""
    import argparse
    import os

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
