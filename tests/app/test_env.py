"""xmr_utils.app.env: the one table of environment defaults, and the wrapper make runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xmr_utils.app import env

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("NUMBA_CACHE_DIR", "MPLCONFIGDIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def test_tool_defaults_put_the_caches_under_the_project_and_the_hubs_offline(
    tmp_path: Path,
) -> None:
    values = env.tool_defaults(tmp_path)
    assert values["NUMBA_CACHE_DIR"] == str(tmp_path / "data" / "cache" / "numba")
    assert values["MPLCONFIGDIR"] == str(tmp_path / "data" / "cache" / "matplotlib")
    assert values["HF_HUB_OFFLINE"] == values["TRANSFORMERS_OFFLINE"] == "1"
    assert values["TOKENIZERS_PARALLELISM"] == "false"
    assert set(env.defaults()) == {*values, "XMR_HOME"}


def test_apply_defaults_keeps_what_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XMR_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for name in ("NUMBA_CACHE_DIR", "MPLCONFIGDIR"):
        monkeypatch.delenv(name, raising=False)
    applied = env.apply_defaults()
    assert applied["HF_HUB_OFFLINE"] == "0"  # the user's choice wins
    assert applied["NUMBA_CACHE_DIR"] == str(tmp_path.resolve() / "data" / "cache" / "numba")
    assert os.environ["MPLCONFIGDIR"] == applied["MPLCONFIGDIR"]


def _run(args: list[str], **environ: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (*NAMES, "XMR_HOME")}
    return subprocess.run(
        [sys.executable, "-m", "xmr_utils.app.env", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_wrapper_runs_the_command_with_the_defaults_and_leaves_xmr_home_alone() -> None:
    names = [*NAMES, "XMR_HOME"]
    show = f"import json, os; print(json.dumps([os.environ.get(k) for k in {names!r}]))"
    done = _run([sys.executable, "-c", show], HF_HUB_OFFLINE="0")
    assert done.returncode == 0, done.stderr
    numba, mpl, hub, transformers, home = json.loads(done.stdout)
    assert numba == str(ROOT / "data" / "cache" / "numba")
    assert mpl == str(ROOT / "data" / "cache" / "matplotlib")
    assert (hub, transformers, home) == ("0", "1", None)


def test_the_wrapper_alone_prints_the_values_and_refuses_a_missing_command() -> None:
    done = _run([])
    assert done.returncode == 0
    assert f"NUMBA_CACHE_DIR={ROOT / 'data' / 'cache' / 'numba'}" in done.stdout.splitlines()
    missing = _run(["no-such-command-xmr"])
    assert missing.returncode == 127
    assert "cannot run 'no-such-command-xmr'" in missing.stderr
