"""A JupyterLab server and headless Chromium for the real-browser tests.

Chromium is Debian's (``apt-get install -y chromium``), driven by Playwright for Python pointed
at that binary: nothing is downloaded. :func:`skip_reason` says why the tests cannot run here
(no Chromium, no Playwright), so ``make test`` skips them with that reason instead of failing —
except in CI (:func:`in_ci`), where they fail with it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmr_utils.app.env import tool_defaults

ROOT = Path(__file__).resolve().parents[2]
LAB_CONFIG = ROOT / "configs" / "jupyter_lab_config.py"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Lab settings for the test only: render every cell (JupyterLab 4 otherwise keeps cells far
#: outside the viewport out of the page, and their prompts could not be read).
TEST_USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def chromium_path() -> str | None:
    """``$XMR_CHROMIUM``, else ``chromium`` on the PATH (Debian: /usr/bin/chromium)."""
    return os.environ.get("XMR_CHROMIUM") or shutil.which("chromium")


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set, as CI services and ``.ci/run`` callers set it):
    there the browser tests must run, so a missing Chromium or Playwright fails them."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_reason() -> str:
    """Empty when the browser tests can run; else what is missing and how to get it."""
    if chromium_path() is None:
        return "no Chromium: apt-get install -y chromium (or set XMR_CHROMIUM to its binary)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no Playwright for Python: pip install -e '.[dev]' (playwright==1.65.2)"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SmokeProject:
    """A project home (``XMR_HOME``) holding a copy of the notebooks and one finished run of
    the `smoke` preset, with the environment it was made in (Jupyter's own folders under
    ``state``, shared by the servers the browser tests start)."""

    home: Path
    state: Path
    env: dict[str, str]
    run: Path
    cmd: tuple[str, ...]
    stdout: str
    stderr: str


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab (or Voilà): its base URL, token and log file."""

    url: str
    token: str
    log: Path

    def page_url(self, path: str) -> str:
        """The URL that opens ``path`` (relative to the server root) in a fresh workspace."""
        return f"{self.url}/lab/tree/{path}?reset&token={self.token}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def lab_env(home: Path, state: Path) -> dict[str, str]:
    """Environment of the server and its kernels: the project home ``home`` (``XMR_HOME``) and
    Jupyter's config, settings, workspaces and runtime under ``state``, so the test neither
    reads nor changes the user's Jupyter set-up. ``JUPYTER_DATA_DIR`` is shared with the
    pipeline that made the run (it holds the signatures that make executed copies trusted)."""
    settings = state / "user-settings"
    for name, value in TEST_USER_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return {
        **os.environ,
        "XMR_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_DATA_DIR": str(state / "data"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
        **tool_defaults(ROOT),  # as `make lab` starts it (xmr_utils.app.env)
    }


@contextmanager
def lab_server(home: Path, env: Mapping[str, str], log: Path) -> Iterator[LabServer]:
    """``jupyter lab`` as ``make lab`` starts it (its config file), rooted at ``home``."""
    token, port = secrets.token_hex(16), free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--config={LAB_CONFIG}",
        f"--ServerApp.root_dir={home}",
        f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
    ]
    server = LabServer(f"http://127.0.0.1:{port}", token, log)
    with _serving(cmd, env, server, "/api/status"):
        yield server


@contextmanager
def voila_server(notebook: Path, env: Mapping[str, str], log: Path) -> Iterator[LabServer]:
    """``voila NOTEBOOK`` as ``make browse`` starts it (``configs/voila.py``)."""
    token, port = secrets.token_hex(16), free_port()
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--Voila.config_file_paths={LAB_CONFIG.parent}",
        f"--port={port}",
        f"--token={token}",
    ]
    with _serving(cmd, env, LabServer(f"http://127.0.0.1:{port}", token, log), "/") as server:
        yield server


@contextmanager
def _serving(
    cmd: list[str], env: Mapping[str, str], server: LabServer, probe: str
) -> Iterator[LabServer]:
    """Run ``cmd`` (its output to ``server.log``) until ``probe`` answers; stop it after."""
    with server.log.open("w") as out:
        proc = subprocess.Popen(cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(server, proc, probe=f"{server.url}{probe}?token={server.token}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(server: LabServer, proc: subprocess.Popen, probe: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{server.log_text()}")
        try:
            urllib.request.urlopen(probe, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer in {timeout} s:\n{server.log_text()}")


@contextmanager
def chromium_page(profile: Path, width: int = 1400, height: int = 1100) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_path(),
            args=list(CHROMIUM_FLAGS),
            viewport={"width": width, "height": height},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(120_000)
            yield page
        finally:
            context.close()


# ---------------------------------------------------------------- JupyterLab actions

#: The prompts of the current notebook's code cells once nothing is queued any more (None while
#: a cell is queued or running): "[3]:" ran, "[ ]:" did not (a cell above it failed).
SETTLED_PROMPTS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const idle = [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(e => /\\| Idle/.test(e.textContent));
  if (!nb || !idle) return null;
  const prompts = [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  return prompts.some(p => p.includes('*')) ? null : prompts;
}"""


def open_notebook(page: Any, server: LabServer, path: str) -> Any:
    """Open ``path`` in a fresh workspace; wait until its kernel is idle; return the panel."""
    page.goto(server.page_url(path))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-Notebook .jp-Cell").first.wait_for()
    wait_kernel_idle(page)
    return panel


def wait_kernel_idle(page: Any) -> None:
    """Wait until the status bar says the notebook's kernel is connected and idle (the
    toolbar's execution indicator reads "idle" while there is no kernel yet)."""
    page.locator(
        ".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle")
    ).first.wait_for()


def opens_unmodified(page: Any, timeout_s: float = 20) -> bool:
    """Whether the open document's tab loses JupyterLab's "modified" mark within
    ``timeout_s`` of its kernel turning idle (while the kernel connects, Lab writes its
    kernelspec and language_info into the notebook and marks it modified for a moment; a
    notebook whose metadata already equals them is clean again once that settles)."""
    dirty = page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dirty.count() == 0:
            return True
        time.sleep(0.25)
    return False


def run_all_cells(page: Any, timeout_s: float = 240) -> None:
    """Run > Run All Cells; wait until nothing is queued; fail with the error shown when a
    cell failed (the cells after it do not run)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_timeout(500)  # the first cell is queued
    prompts = page.wait_for_function(SETTLED_PROMPTS, timeout=timeout_s * 1000).json_value()
    if not all(re.search(r"\[\d+\]", p) for p in prompts):
        errors = page.locator(".jp-OutputArea-output[data-mime-type*='stderr']").all_inner_texts()
        raise AssertionError(f"a cell failed; prompts {prompts}; errors: {errors[-1:]}")
