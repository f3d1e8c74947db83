"""A run that a live process executes belongs to it alone; its death frees the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xmr_utils.app import run_lock, runs
from xmr_utils.core.errors import XmrError

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from xmr_utils.app.run_lock import own_run\n"
    "with own_run(Path(sys.argv[1])):\n"
    "    print('owned', flush=True)\n"
    "    time.sleep(60)\n"
)


def _hold(run: Path) -> subprocess.Popen:
    """A separate process that owns ``run`` until it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "owned"
    return proc


def test_a_run_owned_by_another_live_process_is_untouchable(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = runs.create_run({"epochs": 10}, runs_root=root, created_by="notebook")
    proc = _hold(run)
    try:
        owner = run_lock.live_owner(run)
        assert owner is not None and owner.pid == proc.pid
        assert runs.run_state(run) == "running"
        with pytest.raises(XmrError, match=rf"being executed by process {proc.pid}"):
            runs.open_for_writing("", runs_root=root)  # LATEST points at it: still refused
        with pytest.raises(XmrError, match="being executed"):
            runs.open_view(run)
        with pytest.raises(XmrError, match="being executed"), run_lock.own_run(run):
            pass
        assert runs.read_params(run) == {"epochs": 10}  # nothing was rewritten
    finally:
        proc.kill()
        proc.wait()
    assert run_lock.live_owner(run) is None  # the OS released the lock with its process
    assert runs.run_state(run) == "unfinished"
    assert runs.open_for_writing(run) == run


def test_the_owner_and_its_kernels_may_write(tmp_path: Path) -> None:
    run = runs.create_run({}, runs_root=tmp_path)
    with run_lock.own_run(run) as owner:
        assert os.environ[run_lock.TOKEN_ENV] == owner.token
        assert run_lock.owned_by_me(run)
        assert runs.open_for_writing(run) == run  # what the pipeline's kernels do
        child = subprocess.run(  # a kernel inherits the token through the environment
            [
                sys.executable,
                "-c",
                "import sys; from xmr_utils.app import runs; "
                "print(runs.open_for_writing(sys.argv[1]))",
                str(run),
            ],
            capture_output=True,
            text=True,
        )
        assert child.returncode == 0, child.stderr
    assert run_lock.TOKEN_ENV not in os.environ
    assert not (run / run_lock.OWNER_FILE).exists()


def test_a_stale_owner_file_of_a_killed_process_is_recognised(tmp_path: Path) -> None:
    run = runs.create_run({}, runs_root=tmp_path)
    proc = _hold(run)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert (run / run_lock.OWNER_FILE).exists()  # left behind by the killed process
    assert run_lock.live_owner(run) is None
    with run_lock.own_run(run):  # the run can be taken over (--resume does)
        pass
