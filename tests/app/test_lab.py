"""JupyterLab's contents manager of `make lab`: files inside a finished run are read-only."""

import asyncio
import json
from pathlib import Path

import nbformat
import pytest
from tornado import web

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
