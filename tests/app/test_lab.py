"""`make lab` and JupyterLab: finished runs are read-only there; executed copies are signed."""

import asyncio
import json
import sqlite3
from pathlib import Path

import nbformat
import pytest
from nbformat.sign import NotebookNotary
from tornado import web

from xmr_utils.app import runner
from xmr_utils.app.lab import SealedRunsContentsManager, sealed_run_of
from xmr_utils.app.runs import FINISHED_FILE


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for run, finished in (("done", True), ("open", False)):
        executed = tmp_path / "outputs" / "runs" / run / "executed"
        executed.mkdir(parents=True)
        nbformat.write(nbformat.v4.new_notebook(), executed / "06_query_browser.ipynb")
        if finished:
            (executed.parent / FINISHED_FILE).write_text(json.dumps({"notebook_seconds": {}}))
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "06_query_browser.ipynb")
    return tmp_path


def test_sealed_run_of_finds_the_finished_run_above_a_path(project: Path) -> None:
    done = project / "outputs" / "runs" / "done"
    assert sealed_run_of(done / "executed" / "06_query_browser.ipynb", project) == done
    assert sealed_run_of(done, project) == done  # nothing is created in it either
    assert sealed_run_of(project / "outputs" / "runs" / "open" / "executed", project) is None
    assert sealed_run_of(project / "notebooks" / "06_query_browser.ipynb", project) is None
    assert sealed_run_of(project, project) is None
    assert sealed_run_of(project.parent, project) is None  # outside the root


def test_finished_runs_open_read_only_and_refuse_saves(project: Path) -> None:
    manager = SealedRunsContentsManager(root_dir=str(project))
    sealed = "outputs/runs/done/executed/06_query_browser.ipynb"
    model = asyncio.run(manager.get(sealed))
    assert model["writable"] is False
    for path in (
        "notebooks/06_query_browser.ipynb",
        "outputs/runs/open/executed/06_query_browser.ipynb",
    ):
        assert asyncio.run(manager.get(path))["writable"] is True
    before = (project / sealed).read_bytes()
    with pytest.raises(web.HTTPError, match="finished run done, which is read-only") as err:
        asyncio.run(manager.save(model, sealed))
    assert err.value.status_code == 403 and (project / sealed).read_bytes() == before
    with pytest.raises(web.HTTPError, match="read-only"):
        asyncio.run(manager.create_checkpoint(sealed))
    assert asyncio.run(manager.list_checkpoints(sealed)) == []
    assert sorted(p.name for p in (project / sealed).parent.iterdir()) == [
        "06_query_browser.ipynb"  # no .ipynb_checkpoints/ in the sealed run
    ]
    saved = asyncio.run(manager.save(model, "notebooks/copy.ipynb"))  # Save As elsewhere works
    assert saved["writable"] is True and (project / "notebooks" / "copy.ipynb").is_file()
    assert asyncio.run(manager.create_checkpoint("notebooks/copy.ipynb"))["id"]


def test_executed_copies_are_signed_so_lab_renders_their_widgets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1")
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/html": "<b>1</b>"})]
    nb.cells = [cell]
    path = tmp_path / "06.ipynb"
    nbformat.write(nb, path)
    assert not NotebookNotary().check_signature(nbformat.read(path, as_version=4))
    runner.trust_notebook(path)
    assert NotebookNotary().check_signature(nbformat.read(path, as_version=4))

    def locked(*_: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(NotebookNotary, "sign", locked)
    runner.trust_notebook(path)  # a store that cannot be written costs the trust, not the run
    assert "06.ipynb is not signed (database is locked)" in capsys.readouterr().err


@pytest.mark.parametrize("has_browser", [True, False])
def test_make_lab_config_needs_no_flag_as_root_and_opens_a_browser_only_where_one_is(
    has_browser: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/jupyter_lab_config.py, read as `jupyter lab --config=...` reads it: project
    root, root user allowed, loopback only, sealed runs; no "No web browser found" warning in
    a container (Python finds no browser there, so the server does not try one)."""
    import webbrowser

    from traitlets.config.loader import PyFileConfigLoader

    def get(using: str | None = None) -> object:
        if not has_browser:
            raise webbrowser.Error("could not locate runnable browser")
        return object()

    monkeypatch.setattr(webbrowser, "get", get)
    root = Path(__file__).resolve().parents[2]
    config = PyFileConfigLoader("jupyter_lab_config.py", path=str(root / "configs")).load_config()
    server = config.ServerApp
    assert Path(server.root_dir) == root and server.allow_root is True
    assert server.ip == "127.0.0.1"
    assert server.contents_manager_class == "xmr_utils.app.lab.SealedRunsContentsManager"
    assert ("open_browser" in server) is not has_browser
    assert has_browser or server.open_browser is False
