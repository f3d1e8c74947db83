"""What runs on a Dask worker for one grid cell: placement, thread caps, and the console.

:func:`run_cell_task` is the task the cluster runner submits per cell. It caps the torch/BLAS
threads of the cell's notebook kernels to the worker's share of the cores, resolves relative
paths against the client's project folder (``$XMR_HOME``), tells the client where the cell
runs, sends the lines the cell prints to the client's console labelled with the cell, and
runs the cell exactly as the sequential runner does (:func:`.cells.run_cell`).
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from xmr_utils.app.ablation.cells import CellJob, CellOutcome, run_cell

#: The event topic on which tasks report; the client prints each event.
TOPIC = "xmr-grid"
#: Set per worker by the local cluster: torch threads for each of its cells.
CELL_THREADS_ENV = "XMR_CELL_THREADS"
THREAD_ENV_VARS: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cell_resources(params: Mapping[str, Any]) -> dict[str, float]:
    """The worker resources a cell asks for: one GPU when it sets ``device=cuda``."""
    return {"GPU": 1} if str(params.get("device", "")).startswith("cuda") else {}


def cell_threads(slots: int, cores: int, override: str = "") -> int:
    """Torch threads for one cell: ``override`` (``$XMR_CELL_THREADS``, set per worker by the
    local cluster) when given, else the worker's ``cores`` shared among its ``slots`` (the
    cells it may run at once)."""
    if override.strip():
        return max(1, int(override))
    return max(1, cores // max(1, slots))


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps a notebook kernel's torch/BLAS threads at ``threads``."""
    return {name: str(threads) for name in THREAD_ENV_VARS}


def usable_cores() -> int:
    """Cores this process may run on (the job's share under SLURM's CPU binding)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_sees(project: str) -> bool:
    """On a worker: whether the client's project folder is there (shared storage)."""
    return (Path(project) / "xmr_utils").is_dir()


def run_cell_task(job: CellJob, project: str) -> CellOutcome:
    """The Dask task of one cell (see the module docstring); returns its outcome."""
    from distributed import get_worker

    worker = get_worker()
    threads = cell_threads(
        worker.state.nthreads, usable_cores(), os.environ.get(CELL_THREADS_ENV, "")
    )
    os.environ.update(thread_env(threads))  # inherited by the kernels papermill starts
    os.environ["XMR_HOME"] = project
    resumed = (job.run_dir / "params.json").exists()
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "") if cell_resources(job.cell.params) else ""
    cell = job.cell.cell_id
    worker.log_event(
        TOPIC,
        {
            "cell": cell,
            "event": "resume" if resumed else "start",
            "worker": worker.address,
            "pid": os.getpid(),
            "threads": threads,
            "gpu": gpu,
        },
    )

    def emit(line: str) -> None:
        worker.log_event(TOPIC, {"cell": cell, "event": "print", "line": line})

    with cell_prints(emit):
        return run_cell(job)


class _CellPrints(io.TextIOBase):
    """A worker's ``sys.stdout`` while cells run on it: whole lines written by a thread that
    runs a cell go to that cell's ``emit``; other threads write to the original stream."""

    def __init__(self, original: TextIO) -> None:
        super().__init__()
        self.original = original
        self.cells: dict[int, tuple[Callable[[str], None], list[str]]] = {}

    def write(self, text: str) -> int:
        entry = self.cells.get(threading.get_ident())
        if entry is None:
            return self.original.write(text)
        emit, pending = entry
        *lines, rest = ("".join(pending) + text).split("\n")
        pending[:] = [rest]
        for line in lines:
            if line.strip():
                emit(line)
        return len(text)

    def flush(self) -> None:
        self.original.flush()


_PRINTS_LOCK = threading.Lock()


@contextmanager
def cell_prints(emit: Callable[[str], None]) -> Iterator[None]:
    """Route what this thread prints, line by line, to ``emit`` until the block ends."""
    ident = threading.get_ident()
    with _PRINTS_LOCK:
        if not isinstance(sys.stdout, _CellPrints):
            sys.stdout = _CellPrints(sys.stdout)
        router = sys.stdout
        router.cells[ident] = (emit, [""])
    try:
        yield
    finally:
        with _PRINTS_LOCK:
            router.cells.pop(ident, None)
            if not router.cells and sys.stdout is router:
                sys.stdout = router.original
