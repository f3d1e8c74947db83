"""Running a grid's cells as Dask tasks: ``--workers N`` starts a local cluster of N worker
processes, ``--scheduler ADDRESS`` (or a scheduler file) uses one that is already running —
for example the workers of a dask-jobqueue ``SLURMCluster`` (README, "Running on a cluster").

One task per unfinished cell runs that cell's ordinary papermill run (:func:`.cells.run_cell`)
into its attempt folder under the grid folder, which the workers must see at the same path
(shared storage). The rules are the sequential runner's: every name and value is validated
before anything is submitted, finished cells are skipped, a failed cell is retried in a fresh
``.tryN`` folder by the next invocation, a finished cell is never rewritten, and the one
results table written at the end equals the sequential one. A worker lost mid-cell (killed,
pre-empted, out of memory) has its task run again by the scheduler on another worker, where
the run continues from its first unfinished notebook (:func:`xmr_utils.app.runner.resume_run`).

Placement: a cell with ``device=cuda`` asks for the worker resource ``{"GPU": 1}``, so a worker
started with ``--resources GPU=1`` (one per GPU) runs one such cell at a time; the local
cluster gives the resource to one worker per visible GPU and pins each to its own device.
Every cell caps its torch threads (``OMP_NUM_THREADS`` in the notebook kernels' environment)
to its worker's share of the cores.

Nothing here imports Dask until a cluster is asked for: the sequential path never loads it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr_utils.app.ablation.cells import (
    CellJob,
    CellOutcome,
    cell_job,
    check_finished_cells,
    failure_note,
    finished_attempt,
    grid_folder,
    progress_line,
    write_grid_file,
)
from xmr_utils.app.ablation.grid import GridSpec
from xmr_utils.app.ablation.results import DEFAULT_ABLATIONS_ROOT, write_results
from xmr_utils.app.ablation.tasks import (
    CELL_THREADS_ENV,
    TOPIC,
    cell_resources,
    run_cell_task,
    usable_cores,
    worker_sees,
)
from xmr_utils.app.runs import project_root
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:  # Dask stays out of module import time
    from distributed import Client


@dataclass(frozen=True)
class ClusterOptions:
    """Where the cells run: ``workers`` > 0 starts a local cluster of that many single-cell
    workers; ``scheduler`` is a scheduler address (``tcp://host:8786``) or a scheduler file
    (JSON, as ``dask scheduler --scheduler-file`` writes). ``dashboard`` is the local
    cluster's dashboard address; ``timeout`` the seconds to wait for a scheduler to answer."""

    workers: int = 0
    scheduler: str = ""
    dashboard: str = ":8787"
    timeout: float = 30.0


def check_options(options: ClusterOptions) -> None:
    """Refuse ``--workers`` with ``--scheduler``, and a worker count below one."""
    if options.workers and options.scheduler:
        raise XmrError(
            "--workers starts a local cluster and --scheduler uses a running one; pass one"
        )
    if options.workers < 0 or (not options.scheduler and options.workers == 0):
        raise XmrError(f"--workers {options.workers}: pass a number of workers of 1 or more")


def local_worker_options(n_workers: int, cores: int, gpus: Sequence[str]) -> list[dict[str, Any]]:
    """Per-worker options of the local cluster: one cell at a time each; the cores shared
    evenly; worker ``i < len(gpus)`` offers ``{"GPU": 1}`` and sees only ``gpus[i]``, the
    others see no GPU (so a ``device=auto`` cell there does not crowd a GPU cell)."""
    share = max(1, cores // n_workers)
    options = []
    for i in range(n_workers):
        env = {CELL_THREADS_ENV: str(share)}
        resources: dict[str, float] = {}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i] if i < len(gpus) else ""
            resources = {"GPU": 1} if i < len(gpus) else {}
        options.append({"nthreads": 1, "env": env, "resources": resources})
    return options


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` entries."""
    import torch

    count = torch.cuda.device_count()
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        return [str(i) for i in range(count)]
    listed = [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
    return [d for d in listed if d][:count]


# ---------------------------------------------------------------- on the client


@contextmanager
def connect(options: ClusterOptions, spec: GridSpec) -> Iterator[Client]:
    """A client on the cluster ``options`` names, closed (and a local cluster stopped) on exit."""
    try:
        from distributed import Client
    except ImportError:
        raise XmrError(
            "--workers/--scheduler run the grid on Dask, which is not installed here; "
            "install the cluster extra: pip install -e '.[cluster]'"
        ) from None
    with _nanny_environ_restored():
        cluster = start_local_cluster(options, spec) if options.workers else None
        client = Client(cluster) if cluster is not None else open_client(options)
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


@contextmanager
def _nanny_environ_restored() -> Iterator[None]:
    """Undo what starting local workers does to this process's environment: a Nanny sets
    ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS=1`` ...) in its own process
    before spawning a worker, so without this the caller would keep one torch thread."""
    import dask

    keys = {*dask.config.get("distributed.nanny.pre-spawn-environ", {}), "PYTHONHASHSEED"}
    saved = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_local_cluster(options: ClusterOptions, spec: GridSpec) -> Any:
    """A cluster of ``options.workers`` single-cell worker processes on this machine."""
    import logging

    from distributed import Nanny, Scheduler, SpecCluster

    gpus = visible_gpus()
    wants_gpu = [c.cell_id for c in spec.cells if cell_resources(c.params)]
    if wants_gpu and not gpus:
        raise XmrError(
            f"{spec.path}: cell {wants_gpu[0]} sets device=cuda but this machine shows no CUDA "
            "device, so it could never be placed; use device cpu or auto, or --scheduler with "
            "GPU workers (dask worker ... --resources GPU=1)"
        )
    common = {"host": "127.0.0.1", "dashboard": False, "silence_logs": logging.WARNING}
    workers = {
        i: {"cls": Nanny, "options": {**common, **extra}}
        for i, extra in enumerate(local_worker_options(options.workers, usable_cores(), gpus))
    }
    scheduler = {
        "cls": Scheduler,
        "options": {"host": "127.0.0.1", "dashboard_address": options.dashboard},
    }
    return SpecCluster(
        workers=workers, scheduler=scheduler, silence_logs=logging.WARNING, name="xmr-grid"
    )


def open_client(options: ClusterOptions) -> Client:
    """A client on the running scheduler at ``options.scheduler`` (an address or a file)."""
    from distributed import Client

    target = options.scheduler
    as_file = target.endswith(".json") or ("://" not in target and Path(target).exists())
    try:
        if as_file:
            if not Path(target).is_file():
                raise XmrError(
                    f"--scheduler {target}: no such scheduler file; start the scheduler with "
                    f"dask scheduler --scheduler-file {target} (on storage this machine sees)"
                )
            return Client(scheduler_file=target, timeout=options.timeout)
        return Client(target, timeout=options.timeout)
    except (OSError, TimeoutError, ValueError) as err:
        raise XmrError(
            f"--scheduler {target}: no Dask scheduler answered within {options.timeout:.0f} s "
            f"({type(err).__name__}: {err}); check the address or file, or pass --workers N "
            "for a local cluster"
        ) from None


def check_workers(client: Client, spec: GridSpec, project: str) -> None:
    """Refuse before submitting when a connected worker runs several tasks at once, cannot
    import xmr_utils or cannot see the project folder; warn when GPU cells find no GPU worker
    yet (more may join later)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    shared = sorted(a for a, w in workers.items() if w.get("nthreads", 1) > 1)
    if shared:
        raise XmrError(
            f"worker {shared[0]} runs {workers[shared[0]]['nthreads']} tasks at once; a grid "
            "cell owns its worker process (the run lock's token and the thread caps live in "
            "its environment), so start workers with --nthreads 1 (dask-jobqueue: cores=1 and "
            "job_cpu=N for N torch threads per cell)"
        )
    if not workers:
        where = client.scheduler.address if client.scheduler is not None else "the scheduler"
        print(f"[xmr] no worker has joined {where} yet; cells wait for one")
    else:
        try:
            seen = client.run(worker_sees, project)
        except Exception as err:  # noqa: BLE001 — a worker that cannot load the task's code
            raise XmrError(
                f"the workers cannot run the grid's tasks ({type(err).__name__}: {err}); "
                "install this project on them: pip install -e '.[cluster]'"
            ) from None
        blind = sorted(address for address, ok in seen.items() if not ok)
        if blind:
            raise XmrError(
                f"worker {blind[0]} does not see the project folder {project}; the grid's "
                "runs are written there, so the workers need it at the same path (shared "
                "storage)"
            )
    gpu_cells = [c.cell_id for c in spec.cells if cell_resources(c.params)]
    has_gpu = any(w.get("resources", {}).get("GPU") for w in workers.values())
    if gpu_cells and not has_gpu:
        print(
            f"[xmr] {len(gpu_cells)} cells set device=cuda but no worker offers the GPU "
            "resource yet; they wait for one started with --resources GPU=1"
        )


def run_grid_on_cluster(
    spec: GridSpec,
    paths: Sequence[Path],
    options: ClusterOptions,
    *,
    root: str | Path = DEFAULT_ABLATIONS_ROOT,
    log_output: bool = False,
) -> tuple[Path, list[CellOutcome]]:
    """:func:`~xmr_utils.app.ablation.sequential.run_grid` with one Dask task per unfinished
    cell on the cluster ``options`` names; the same folder, outcomes and table. With every
    cell finished before, nothing is submitted and no cluster is started."""
    check_options(options)
    folder = grid_folder(spec, root)
    check_finished_cells(spec, folder, paths)
    outcomes, jobs = plan_cells(spec, paths, folder / "runs", log_output)
    if jobs:
        project = str(project_root())
        with connect(options, spec) as client:
            print(f"[xmr] Dask dashboard: {client.dashboard_link}", flush=True)
            check_workers(client, spec, project)
            write_grid_file(spec, folder)
            outcomes.update(_run_cells(client, jobs, len(spec.cells), project))
    else:
        write_grid_file(spec, folder)
        print("[xmr] every cell finished before; nothing to submit", flush=True)
    ordered = [outcomes[i] for i in sorted(outcomes)]
    errors = {o.cell.cell_id: failure_note(o) for o in ordered if o.status == "failed"}
    write_results(spec, folder, errors)
    return folder, ordered


def plan_cells(
    spec: GridSpec, paths: Sequence[Path], runs_dir: Path, log_output: bool
) -> tuple[dict[int, CellOutcome], dict[int, CellJob]]:
    """Cell number -> outcome of each cell finished before (printed as skipped), and cell
    number -> the job of each cell still to run, in its next attempt folder."""
    total = len(spec.cells)
    skipped, jobs = {}, {}
    for i, cell in enumerate(spec.cells, start=1):
        done = finished_attempt(runs_dir, cell.cell_id)
        if done is None:
            jobs[i] = cell_job(spec, cell, paths, runs_dir, log_output)
            continue
        print(f"[xmr] cell {i}/{total} {cell.cell_id}: finished before, skipped ({done})")
        skipped[i] = CellOutcome(cell, done, "skipped")
    return skipped, jobs


def _run_cells(
    client: Client, jobs: Mapping[int, CellJob], total: int, project: str
) -> dict[int, CellOutcome]:
    """Submit one task per job, print each cell as it starts, prints and ends; returns cell
    number -> outcome."""
    from distributed import as_completed

    by_cell = {job.cell.cell_id: (i, job) for i, job in jobs.items()}
    client.subscribe_topic(TOPIC, lambda event: print(_event_line(event[1], by_cell, total)))
    token = secrets.token_hex(4)  # keys unique to this invocation on a shared scheduler
    futures = {
        client.submit(
            run_cell_task,
            job,
            project,
            key=f"xmr-cell-{job.cell.cell_id}-{token}",
            resources=cell_resources(job.cell.params) or None,
            pure=False,
        ): i
        for i, job in jobs.items()
    }
    start = time.perf_counter()
    outcomes = {}
    for future in as_completed(list(futures)):
        i = futures[future]
        outcomes[i] = _outcome(future, jobs[i], time.perf_counter() - start)
        print(progress_line(i, total, outcomes[i]), flush=True)
    client.unsubscribe_topic(TOPIC)
    return outcomes


def _outcome(future: Any, job: CellJob, seconds: float) -> CellOutcome:
    """The task's own outcome, or a failed one when the task itself could not finish."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        error = (
            "KilledWorker: every worker that ran it died (distributed.scheduler.allowed-failures);"
            f" its attempt is kept in {job.run_dir}, the next run of the grid retries it"
        )
    except Exception as err:  # noqa: BLE001 — one lost cell must not stop the grid
        error = f"{type(err).__name__}: {err}"
    return CellOutcome(job.cell, job.run_dir, "failed", seconds, error)


def _event_line(
    message: Mapping[str, Any], jobs: Mapping[str, tuple[int, CellJob]], total: int
) -> str:
    """``[xmr] cell 2/12 <id>: running on tcp://... (1 thread) in <run_dir>``."""
    i, job = jobs.get(message.get("cell", ""), (0, None))
    if job is None:
        return f"[xmr] {message}"
    if message.get("event") == "print":
        line = message["line"].removeprefix("[xmr] ")
        return f"[xmr] cell {i}/{total} {job.cell.cell_id}: {line}"
    gpu = f", GPU {message['gpu']}" if message.get("gpu") else ""
    threads = f"{message['threads']} thread" + ("s" if message["threads"] != 1 else "")
    place = f"{message['worker']} ({threads}{gpu})"
    if message.get("event") == "resume":
        return (
            f"[xmr] cell {i}/{total} {job.cell.cell_id}: its worker was lost; resuming on "
            f"{place} from its first unfinished notebook in {job.run_dir}"
        )
    return f"[xmr] cell {i}/{total} {job.cell.cell_id}: running on {place} in {job.run_dir}"
