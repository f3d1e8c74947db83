"""One finished smoke run per test session, shared by the end-to-end and the browser tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lab_harness import ROOT, SmokeProject, lab_env


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory: pytest.TempPathFactory) -> SmokeProject:
    """``python -m xmr_utils.pipeline --preset smoke`` in a fresh project home: data, feature
    cache, runs and views all inside it."""
    home = tmp_path_factory.mktemp("home")
    state = tmp_path_factory.mktemp("jupyter")
    shutil.copytree(ROOT / "notebooks", home / "notebooks")
    env = lab_env(home, state)
    cmd = (sys.executable, "-m", "xmr_utils.pipeline", "--preset", "smoke")
    cmd += ("--notebooks", str(home / "notebooks"))
    done = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = Path((home / "outputs" / "runs" / "LATEST").read_text().strip())
    return SmokeProject(home, state, env, run, cmd, done.stdout, done.stderr)
