"""Run folders: created once, found again, never overwritten once finished."""

from pathlib import Path

import pytest

from xmr_utils.app import runs
from xmr_utils.core.errors import XmrError


def test_create_run_writes_params_status_and_latest_for_a_notebook_run(tmp_path: Path) -> None:
    folder = runs.create_run({"dataset": "synthetic"}, runs_root=tmp_path, created_by="notebook")
    assert runs.read_params(folder) == {"dataset": "synthetic"}
    assert runs.read_status(folder)["created_by"] == "notebook"
    assert runs.latest_run(tmp_path) == folder
    assert {p.name for p in folder.iterdir()} >= {"executed", "figures", "models", "params.json"}


def test_a_pipeline_run_becomes_latest_only_when_finished(tmp_path: Path) -> None:
    interactive = runs.create_run({}, runs_root=tmp_path, created_by="notebook")
    pipeline = runs.create_run({}, runs_root=tmp_path)
    assert runs.latest_run(tmp_path) == interactive  # a run being built is never LATEST
    runs.record_notebook(pipeline, "02_train_img2txt", 3.0, error="XmrError: boom")
    assert runs.run_state(pipeline) == "failed"
    assert runs.latest_run(tmp_path) == interactive  # nor is a failed one
    runs.mark_finished(pipeline, {}, runs_root=tmp_path)
    assert runs.latest_run(tmp_path) == pipeline
    assert runs.run_state(pipeline) == "finished"


def test_create_run_refuses_an_existing_run(tmp_path: Path) -> None:
    folder = runs.create_run({"a": 1}, runs_root=tmp_path, run_dir=tmp_path / "r1")
    with pytest.raises(XmrError, match="already holds a run; nothing was overwritten"):
        runs.create_run({"a": 2}, runs_root=tmp_path, run_dir=folder)
    assert runs.read_params(folder) == {"a": 1}


def test_empty_run_dir_follows_latest_and_never_creates_a_run(tmp_path: Path) -> None:
    with pytest.raises(XmrError, match="no run to continue.*run notebook 00"):
        runs.open_for_writing("", runs_root=tmp_path)
    first = runs.create_run({}, runs_root=tmp_path, created_by="notebook")
    assert runs.open_for_writing("", runs_root=tmp_path) == first
    runs.mark_finished(first, {}, runs_root=tmp_path)
    with pytest.raises(XmrError, match="finished run and is never overwritten; run notebook 00"):
        runs.open_for_writing("", runs_root=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [first.name]


def test_finished_run_is_never_reopened_for_writing(tmp_path: Path) -> None:
    folder = runs.create_run({}, runs_root=tmp_path)
    runs.mark_finished(folder, {"ok": True})
    with pytest.raises(XmrError, match="finished run and is never overwritten"):
        runs.open_for_writing(folder, runs_root=tmp_path)
    with pytest.raises(XmrError, match="already holds a finished run"):
        runs.create_run({}, runs_root=tmp_path, run_dir=folder)


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_a_finished_run_is_viewed_read_only_and_views_write_beside_it(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    folder = runs.create_run({"dataset": "synthetic"}, runs_root=root)
    runs.mark_finished(folder, {}, runs_root=root)
    before = _listing(folder)
    view = runs.open_view("", runs_root=root)
    assert view.run == folder and view.read_only
    assert view.out == tmp_path / "views" / folder.name
    assert runs.read_json(view.out / "view.json")["run"] == str(folder)
    assert _listing(folder) == before  # nothing written into the sealed run
    assert runs.open_view(folder, runs_root=root) == view  # explicit run_dir: the same view


def test_views_of_two_runs_with_one_name_do_not_collide(tmp_path: Path) -> None:
    a = runs.create_run({}, run_dir=tmp_path / "runs" / "cell")  # views: tmp/views/cell
    b = runs.create_run({}, run_dir=tmp_path / "cell")  # would be tmp/views/cell too
    assert runs.view_folder(a) == tmp_path / "views" / "cell"
    assert runs.view_folder(b) == tmp_path / "views" / "cell-2"
    assert runs.view_folder(a) == tmp_path / "views" / "cell"  # stable on reopening


def test_without_latest_a_view_takes_the_newest_finished_run(tmp_path: Path) -> None:
    with pytest.raises(XmrError, match="no run under .* yet; run make demo"):
        runs.open_view("", runs_root=tmp_path)
    old = runs.create_run({}, runs_root=tmp_path, run_dir=tmp_path / "old")
    runs.mark_finished(old, {})
    assert runs.open_view("", runs_root=tmp_path).run == old


def test_an_unfinished_notebook_run_is_continued_not_viewed(tmp_path: Path) -> None:
    folder = runs.create_run({}, runs_root=tmp_path, created_by="notebook")
    view = runs.open_view("", runs_root=tmp_path)
    assert view == runs.RunView(folder, folder, read_only=False)


def test_a_pipeline_run_keeps_its_recorded_parameters(tmp_path: Path) -> None:
    folder = runs.create_run({"epochs": 10, "recipes": "vsepp"}, runs_root=tmp_path)
    runs.record_params(folder, {"epochs": 10})  # the pipeline's own kernel: same values
    with pytest.raises(XmrError, match=r"epochs=10.*epochs=0.*--resume"):
        runs.record_params(folder, {"epochs": 0})
    assert runs.read_params(folder)["epochs"] == 10
    mine = runs.create_run({"epochs": 10}, runs_root=tmp_path, created_by="notebook")
    assert runs.record_params(mine, {"epochs": 3})["epochs"] == 3  # a JupyterLab run iterates


def test_open_missing_run_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(XmrError, match="does not exist"):
        runs.open_for_writing(tmp_path / "nope", runs_root=tmp_path)


def test_record_params_merges(tmp_path: Path) -> None:
    folder = runs.create_run({"dataset": "synthetic"}, runs_root=tmp_path)
    merged = runs.record_params(folder, {"text_encoder": "glove:mean"})  # a new name: recorded
    assert merged == {"dataset": "synthetic", "text_encoder": "glove:mean"}
    assert runs.read_params(folder) == merged


def test_update_json_nested_and_read_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    runs.update_json(path, ("models", "vsepp", "img2txt"), {"rsum": 1.5})
    runs.update_json(path, ("models", "seed", "img2txt"), {"rsum": 0.5})
    assert runs.read_json(path)["models"] == {
        "vsepp": {"img2txt": {"rsum": 1.5}},
        "seed": {"img2txt": {"rsum": 0.5}},
    }
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(XmrError, match="bad.json is not valid JSON"):
        runs.read_json(tmp_path / "bad.json")


def test_resolve_path_uses_project_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XMR_HOME", str(tmp_path))
    assert runs.resolve_path("data") == tmp_path / "data"
    assert runs.resolve_path(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("XMR_HOME")
    monkeypatch.chdir(Path(__file__).parent)  # tests/app/ -> the root is two levels up
    assert runs.project_root() == Path(__file__).resolve().parents[2]
