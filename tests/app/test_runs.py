"""Run folders: created once, found again, never overwritten once finished."""

from pathlib import Path

import pytest

from xmr_utils.app import runs
from xmr_utils.core.errors import XmrError


def test_create_run_writes_params_and_latest(tmp_path: Path) -> None:
    folder = runs.create_run({"dataset": "synthetic"}, runs_root=tmp_path)
    assert runs.read_params(folder) == {"dataset": "synthetic"}
    assert (tmp_path / runs.LATEST_FILE).read_text().strip() == str(folder)
    assert {p.name for p in folder.iterdir()} >= {"executed", "figures", "models", "params.json"}


def test_create_run_refuses_an_existing_run(tmp_path: Path) -> None:
    folder = runs.create_run({"a": 1}, runs_root=tmp_path, run_dir=tmp_path / "r1")
    with pytest.raises(XmrError, match="already holds a run; nothing was overwritten"):
        runs.create_run({"a": 2}, runs_root=tmp_path, run_dir=folder)
    assert runs.read_params(folder) == {"a": 1}


def test_open_run_empty_uses_latest_unfinished_then_new(tmp_path: Path) -> None:
    first = runs.create_run({}, runs_root=tmp_path)
    assert runs.open_run("", runs_root=tmp_path) == first
    runs.mark_finished(first, {})
    second = runs.open_run("", runs_root=tmp_path)
    assert second != first and (second / "params.json").exists()


def test_finished_run_is_never_reopened(tmp_path: Path) -> None:
    folder = runs.create_run({}, runs_root=tmp_path)
    runs.mark_finished(folder, {"ok": True})
    with pytest.raises(XmrError, match="finished run and is never overwritten"):
        runs.open_run(folder, runs_root=tmp_path)
    with pytest.raises(XmrError, match="already holds a finished run"):
        runs.create_run({}, runs_root=tmp_path, run_dir=folder)


def test_open_missing_run_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(XmrError, match="does not exist"):
        runs.open_run(tmp_path / "nope", runs_root=tmp_path)


def test_record_params_merges(tmp_path: Path) -> None:
    folder = runs.create_run({"dataset": "synthetic"}, runs_root=tmp_path)
    merged = runs.record_params(folder, {"text_encoder": "glove:mean"})
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
