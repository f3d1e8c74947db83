"""``make bench``: every speed benchmark in one run, written to ``benchmarks/RESULTS.md``.

    python -m benchmarks.run [--quick] [--only eval,train] [--out benchmarks/RESULTS.md]

Each ``benchmarks/bench_<name>.py`` exposes ``run(quick: bool) -> list[Row]``; this runner
calls them in turn, each in its own process so that one's peak memory and threads do not
colour the next, and writes one table per section with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import (
    LIMIT_ENV,
    Row,
    block_marks,
    machine_line,
    markdown_table,
    marked_block,
)

SECTIONS: tuple[tuple[str, str], ...] = (
    ("limit", "Machine limit (torch matrix products)"),
    ("data", "Dataset parsing and validation"),
    ("extract", "Feature extraction"),
    ("cache", "Feature cache: verified loads, sharded extraction"),
    ("train", "Training epoch"),
    ("eval", "Evaluation"),
    ("search", "Search at scale"),
    ("e2e", "End to end"),
)
#: Sections a --quick run skips unless named with --only: the end-to-end section runs the
#: notebooks (over a minute even on the smoke preset), which `make test` already covers.
SLOW_SECTIONS: frozenset[str] = frozenset({"e2e"})
#: The blocks that other commands own in RESULTS.md (``make bench-quality``, ``-collapse``,
#: ``-cluster``, ``-preset``: each longer than ``make bench`` may take), kept as they are when
#: this runner rewrites the file.
KEPT_BLOCKS: tuple[tuple[str, str], ...] = tuple(
    block_marks(owner) for owner in ("quality", "collapse", "cluster", "preset")
)
ROOT = Path(__file__).resolve().parents[1]


def quality_block(text: str) -> str:
    """The ``make bench-quality`` section of a RESULTS.md text, markers included ("" if none)."""
    return marked_block(text, *KEPT_BLOCKS[0])


def kept_blocks(text: str) -> str:
    """Every block of :data:`KEPT_BLOCKS` that ``text`` holds, in that order."""
    return "\n".join(b for b in (marked_block(text, *marks) for marks in KEPT_BLOCKS) if b)


def run_section(name: str, quick: bool) -> list[Row]:
    """Run ``benchmarks.bench_<name>.run(quick)`` in a subprocess and return its rows."""
    code = (
        "import json, sys; from dataclasses import asdict; "
        f"from benchmarks.bench_{name} import run; "
        f"print('@@ROWS@@' + json.dumps([asdict(r) for r in run(quick={quick})]))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    sys.stderr.write(done.stderr[-2000:])
    if done.returncode != 0:
        return [
            Row(
                name,
                f"bench_{name} failed (exit {done.returncode})",
                done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "",
            )
        ]
    payload = next(line for line in done.stdout.splitlines() if line.startswith("@@ROWS@@"))
    return [Row(**row) for row in json.loads(payload[len("@@ROWS@@") :])]


def run_sections(wanted: list[str], quick: bool) -> list[str]:
    """The markdown of every section asked for (all if ``wanted`` is empty), in order. The
    machine limit, once measured, is handed to the later sections (:data:`LIMIT_ENV`)."""
    from benchmarks.bench_limit import limit_from_rows

    previous = os.environ.get(LIMIT_ENV)
    parts = []
    try:
        for name, title in SECTIONS:
            if wanted and name not in wanted:
                continue
            if quick and name in SLOW_SECTIONS and name not in wanted:
                parts.append(f"## {title}\n\nSkipped by --quick (run it with --only {name}).\n")
                continue
            print(f"[bench] {name} ...", flush=True)
            section_start = time.perf_counter()
            rows = run_section(name, quick)
            seconds = time.perf_counter() - section_start
            print(f"[bench] {name}: {seconds:.0f} s", flush=True)
            parts.append(
                f"## {title}\n\n{markdown_table(rows)}\n\nThis section: {seconds:.0f} s.\n"
            )
            print(markdown_table(rows), flush=True)
            limit = limit_from_rows(rows) if name == "limit" else None
            if limit is not None:
                os.environ[LIMIT_ENV] = json.dumps(asdict(limit))
    finally:
        if previous is None:
            os.environ.pop(LIMIT_ENV, None)
        else:
            os.environ[LIMIT_ENV] = previous
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument(
        "--only",
        default="",
        help="comma list of sections: " + ", ".join(name for name, _ in SECTIONS),
    )
    parser.add_argument(
        "--out",
        default="",
        help="default: benchmarks/RESULTS.md; with "
        "--quick outputs/RESULTS-quick.md, so a quick run never replaces the "
        "committed full results",
    )
    args = parser.parse_args(argv)
    if not args.out:
        args.out = str(
            ROOT / ("outputs/RESULTS-quick.md" if args.quick else "benchmarks/RESULTS.md")
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - {name for name, _ in SECTIONS}
    if unknown:
        parser.error(
            f"unknown section(s) {sorted(unknown)}; accepted: "
            + ", ".join(name for name, _ in SECTIONS)
        )
    start = time.perf_counter()
    parts = run_sections(wanted, args.quick)
    command = (
        "python -m benchmarks.run"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only else "")
    )
    text = (
        "# Benchmark results\n\n"
        f"Written by `{command}` (`make bench`) on {time.strftime('%Y-%m-%d')}; "
        f"{machine_line()}; {time.perf_counter() - start:.0f} s in all. Times are the median "
        "(min–max) of the stated repeats; ratios are baseline ÷ ours; *of limit* is a row's "
        "matrix-product FLOP/s as a share of the machine limit measured in this run (the "
        "first section, or the section itself when run alone; a row that names two numbers "
        "was held against the limit measured right before and after it).\n\n" + "\n".join(parts)
    )
    out = Path(args.out)
    previous = out.read_text() if out.exists() else ""
    kept = kept_blocks(previous)
    out.write_text(text + ("\n" + kept if kept else ""))  # other commands own those
    print(f"[bench] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
