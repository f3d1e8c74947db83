"""The papermill runner's argument handling (the notebooks themselves run in test_end_to_end)."""

from pathlib import Path

import pytest

from xmr_utils.app import cli, runner
from xmr_utils.core.errors import XmrError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_notebooks_are_ordered_and_declare_run_dir() -> None:
    paths = runner.notebook_paths(NOTEBOOKS)
    assert [p.name[:2] for p in paths] == ["00", "01", "02", "03", "04", "05", "06", "07"]
    for path in paths:
        declared = runner.declared_parameters(path)
        assert declared["run_dir"] == "", path.name


def test_shared_parameter_names_have_one_default() -> None:
    """A name declared by several notebooks must default alike, or a run would disagree."""
    seen: dict[str, tuple[object, str]] = {}
    for path in runner.notebook_paths(NOTEBOOKS):
        for name, default in runner.declared_parameters(path).items():
            if name in seen and name not in ("split",):
                assert seen[name][0] == default, f"{name}: {seen[name][1]} vs {path.name}"
            seen.setdefault(name, (default, path.name))


def test_resolve_parameters_merges_defaults_preset_and_overrides() -> None:
    declared = {p.name: runner.declared_parameters(p) for p in runner.notebook_paths(NOTEBOOKS)}
    params = runner.resolve_parameters(
        "smoke", [("epochs", "3"), ("dataset", "flickr8k")], declared
    )
    assert params["epochs"] == 3 and params["dataset"] == "flickr8k"
    assert params["synthetic_images"] == runner.PRESETS["smoke"]["synthetic_images"]
    assert params["features_dir"] == "data/features"  # a notebook default
    assert "run_dir" not in params


def test_unknown_names_give_one_clear_sentence() -> None:
    declared = {"00_data.ipynb": {"run_dir": "", "dataset": "synthetic"}}
    with pytest.raises(XmrError, match="unknown preset 'fast'; accepted: demo"):
        runner.resolve_parameters("fast", [], declared)
    with pytest.raises(XmrError, match="unknown parameter 'epoch'; accepted: dataset"):
        runner.resolve_parameters("demo", [("epoch", "2")], declared)
    with pytest.raises(XmrError, match="unknown notebook '09'"):
        runner.select_notebooks(runner.notebook_paths(NOTEBOOKS), "02,09")


def test_parse_value_literals_and_strings() -> None:
    assert runner.parse_value("3") == 3
    assert runner.parse_value("0.5") == 0.5
    assert runner.parse_value("True") is True
    assert runner.parse_value("vsepp,seed") == "vsepp,seed"
    assert runner.parse_value("flickr8k") == "flickr8k"


def test_main_refuses_a_finished_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "params.json").write_text("{}")
    (run / "finished.json").write_text("{}")
    code = cli.main(["--preset", "smoke", "--run-dir", str(run), "--notebooks", str(NOTEBOOKS)])
    assert code == 2
    err = capsys.readouterr().err
    assert "already holds a finished run; nothing was overwritten" in err
    assert "Traceback" not in err
    assert (run / "params.json").read_text() == "{}"


def test_summary_table_lists_every_model() -> None:
    text = runner.summary_table(
        {
            "dataset": "d",
            "split": "test",
            "models": {"vsepp": {"img2txt": {"rsum": 100.0}, "fused": {"rsum": 120.0}}},
        }
    )
    assert "vsepp" in text and "fused" in text and "120.00" in text


@pytest.mark.slow
def test_main_names_the_notebook_that_failed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, source in (
        ("00_ok", "x = 1"),
        (
            "01_bad",
            "from xmr_utils.core.errors import XmrError\n"
            "raise XmrError('dataset folder data/x does not exist')",
        ),
        ("02_never", "open('never-ran', 'w')"),
    ):
        params = nbformat.v4.new_code_cell('run_dir: str = ""  # set by the pipeline')
        params.metadata["tags"] = ["parameters"]
        book = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(source)])
        book.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(book, folder / f"{name}.ipynb")
    run = tmp_path / "run"
    code = cli.main(
        [
            "--preset",
            "smoke",
            "--notebooks",
            str(folder),
            "--run-dir",
            str(run),
            "--runs-root",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "notebook 01_bad failed" in err and "dataset folder data/x does not exist" in err
    assert (run / "executed" / "01_bad.ipynb").exists()
    assert not (run / "executed" / "02_never.ipynb").exists()
    assert not (run / "finished.json").exists()
