"""Who owns a run folder while a pipeline executes it: a file lock plus an ``owner.json``.

The process that executes a run (``python -m xmr_utils.pipeline``, a grid cell, a Dask worker)
holds ``<run>/.run.lock`` for as long as it runs the notebooks and records itself in
``<run>/owner.json`` (pid, host, start time, a random token). The kernels it starts inherit the
token through the environment variable :data:`TOKEN_ENV`; anyone else (a notebook in
JupyterLab following ``LATEST``, a second pipeline) is refused while the lock is held.

The lock is an OS file lock (``filelock``): it is released when its process ends, however it
ends, so a run whose owner was killed can be taken over and resumed (``--resume``), and an
``owner.json`` left behind by a dead process is recognised as stale.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from xmr_utils.core.errors import XmrError

LOCK_FILE = ".run.lock"
OWNER_FILE = "owner.json"
#: Environment variable carrying the owner's token to the notebooks' kernels.
TOKEN_ENV = "XMR_RUN_TOKEN"


@dataclass(frozen=True)
class RunOwner:
    """The live process executing a run: what ``owner.json`` records."""

    pid: int
    host: str
    started: str
    token: str

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} (since {self.started})"


def _read_owner(run: Path) -> RunOwner | None:
    try:
        data = json.loads((run / OWNER_FILE).read_text())
        return RunOwner(
            int(data["pid"]), str(data["host"]), str(data["started"]), str(data["token"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def live_owner(run: str | Path) -> RunOwner | None:
    """The process holding ``run``'s lock, or None when nobody does (never executed, finished,
    or its owner died: the OS released the lock)."""
    run = Path(run)
    if not (run / LOCK_FILE).exists():
        return None
    probe = FileLock(str(run / LOCK_FILE), timeout=0)
    try:
        probe.acquire()
    except Timeout:
        return _read_owner(run) or RunOwner(-1, "?", "?", "")
    probe.release()
    return None


def owned_by_me(run: str | Path) -> bool:
    """True when this process (or the pipeline that started this kernel) owns ``run``."""
    owner = _read_owner(Path(run))
    return owner is not None and bool(owner.token) and os.environ.get(TOKEN_ENV) == owner.token


def check_not_taken(run: str | Path) -> None:
    """Raise :class:`XmrError` when another live process executes ``run``."""
    owner = live_owner(run)
    if owner is not None and not owned_by_me(run):
        raise XmrError(
            f"run folder {run} is being executed by {owner.describe()}; it belongs to that "
            "process until it ends — wait for it to finish and open the finished run, or "
            "choose another run_dir"
        )


@contextmanager
def own_run(run: str | Path) -> Iterator[RunOwner]:
    """Hold ``run``'s lock for the duration, with ``owner.json`` written and the token exported
    to child processes (:data:`TOKEN_ENV`); refuse when another live process holds it."""
    run = Path(run)
    lock = FileLock(str(run / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _read_owner(run)
        who = holder.describe() if holder else "another process"
        raise XmrError(
            f"run folder {run} is being executed by {who}; wait for it to finish"
        ) from None
    owner = RunOwner(
        os.getpid(),
        socket.gethostname(),
        time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        secrets.token_hex(8),
    )
    previous = os.environ.get(TOKEN_ENV)
    try:
        (run / OWNER_FILE).write_text(json.dumps(owner.__dict__) + "\n")
        os.environ[TOKEN_ENV] = owner.token
        yield owner
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        (run / OWNER_FILE).unlink(missing_ok=True)
        lock.release()
