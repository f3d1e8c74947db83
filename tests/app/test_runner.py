"""The papermill runner's argument handling (the notebooks themselves run in test_end_to_end)."""

from pathlib import Path

import pytest

from xmr_utils.app import cli, parameters, runner
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


# ---------------------------------------------------------------- parameters checked up front

BAD_VALUES = [
    # (name, -p text, what the one sentence must say)
    ("epochs", "abc", "parameter epochs is 'abc', but it must be a whole number"),
    ("epochs", "-3", "parameter epochs is -3, but it must be a whole number >= 0"),
    ("epochs", "2.5", "parameter epochs is 2.5, but it must be a whole number"),
    ("check_images", "false", "parameter check_images is 'false', but it must be True or False"),
    ("check_images", "1", "parameter check_images is 1, but it must be True or False"),
    ("dataset", "123", "parameter dataset is '123': it is neither one of synthetic, flickr8k"),
    ("device", "tpu", "parameter device is 'tpu', but it must be auto, cpu, or cuda"),
    ("batch_size", "-1", "parameter batch_size is -1, but it must be a whole number >= 0 (0: 32"),
    ("text_encoder", "glove:mean+", "parameter text_encoder is 'glove:mean+': "),
    ("on_missing", "skip", "parameter on_missing is 'skip', but it must be one of error, drop"),
    ("split_overlap", "yes", "parameter split_overlap is 'yes', but it must be one of error, keep"),
    ("split", "dev", "parameter split is 'dev', but it must be one of auto, train, val, test"),
    ("recipes", "vsepp,nope", "parameter recipes is 'vsepp,nope': unknown recipe 'nope'"),
    ("text_encoder", "glove:max", "parameter text_encoder is 'glove:max': unknown variant"),
    (
        "synthetic_images",
        "4",
        "parameter synthetic_images is 4, but it must be a whole number >= 15",
    ),
]


@pytest.fixture(scope="module")
def declared() -> dict:
    return {p.name: runner.declared_parameters(p) for p in runner.notebook_paths(NOTEBOOKS)}


@pytest.mark.parametrize(
    ("name", "text", "sentence"), BAD_VALUES, ids=[f"{n}={t}" for n, t, _ in BAD_VALUES]
)
def test_bad_values_give_one_sentence_naming_parameter_value_and_domain(
    declared, name, text, sentence
) -> None:
    with pytest.raises(XmrError) as err:
        runner.resolve_parameters("demo", [(name, text)], declared)
    message = str(err.value)
    assert message.startswith(sentence)
    assert "\n" not in message


def test_good_values_are_read_for_their_declared_type(declared) -> None:
    params = runner.resolve_parameters(
        "demo",
        [
            ("epochs", "0"),
            ("check_images", "True"),
            ("dataset", "flickr30k"),
            ("device", "cpu"),
            ("split_overlap", "keep"),
            ("data_dir", "123"),  # a str parameter takes the text as it is
            ("batch_size", "0"),  # notebook 01: 0 picks one for the device
            ("text_encoder", "minilm:mean+tfidf"),  # features side by side
        ],
        declared,
    )
    assert params["epochs"] == 0 and params["check_images"] is True
    assert params["batch_size"] == 0 and params["text_encoder"] == "minilm:mean+tfidf"
    assert params["data_dir"] == "123" and params["split_overlap"] == "keep"


def test_a_dataset_folder_is_accepted_relative_to_the_project_root(declared) -> None:
    params = runner.resolve_parameters("demo", [("dataset", "notebooks")], declared)
    assert params["dataset"] == "notebooks"  # a folder; notebook 00 then reads its layout


def test_device_cuda_is_refused_without_a_gpu(declared) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(XmrError, match=r"parameter device is 'cuda': no CUDA GPU is visible"):
        runner.resolve_parameters("demo", [("device", "cuda")], declared)


def test_every_rule_names_a_declared_parameter(declared) -> None:
    """The domain table holds rules for real parameters only (a renamed one fails here)."""
    names = {k for nb in declared.values() for k in nb}
    assert set(parameters.PARAMETER_RULES) <= names


def test_every_preset_passes_the_checks(declared) -> None:
    for preset in runner.PRESETS:
        runner.resolve_parameters(preset, [], declared)


def test_every_notebook_default_passes_its_rule(declared) -> None:
    """The notebooks' own defaults are in their domains (01's batch_size 0 = auto was refused
    once, so the demo preset stopped before notebook 00)."""
    for defaults in declared.values():
        for name, value in defaults.items():
            assert parameters.check_parameter(name, value, declared) == value


def test_check_parameter_is_what_grids_call(declared) -> None:
    assert parameters.check_parameter("epochs", 3, declared) == 3
    with pytest.raises(XmrError, match=r"parameter epochs is True, but it must be a whole number"):
        parameters.check_parameter("epochs", True, declared)
    with pytest.raises(XmrError, match=r"parameter umap_points is 1, but"):
        parameters.check_parameter("umap_points", 1, declared)


def test_a_default_that_contradicts_its_declared_type_is_refused(tmp_path: Path) -> None:
    import nbformat

    cell = nbformat.v4.new_code_cell('epochs: int = "ten"  # wrong')
    cell.metadata["tags"] = ["parameters"]
    book = nbformat.v4.new_notebook(cells=[cell])
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(book, tmp_path / "00_x.ipynb")
    with pytest.raises(XmrError, match=r"00_x\.ipynb: parameter epochs is declared int but"):
        runner.declared_parameters(tmp_path / "00_x.ipynb")


@pytest.mark.parametrize(
    ("name", "text", "sentence"), BAD_VALUES[:6], ids=[f"{n}={t}" for n, t, _ in BAD_VALUES[:6]]
)
def test_the_command_line_refuses_bad_values_before_any_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture, name, text, sentence
) -> None:
    runs = tmp_path / "runs"
    argv = ["--preset", "smoke", "-p", name, text, "--runs-root", str(runs)]
    code = cli.main([*argv, "--notebooks", str(NOTEBOOKS)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {sentence}") and err.count("\n") == 1
    assert not runs.exists()  # nothing was created, notebook 00 never started


@pytest.mark.parametrize("native", [True, False])
def test_the_flickr8k_preset_asks_for_bf16_only_where_it_is_native(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """Emulated bf16 (an AVX2-only CPU) runs products 10x to 300x slower than float32."""
    from xmr_utils.core import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda device_type="cpu": native)
    params = runner.preset_parameters("flickr8k")
    assert (params.get("recipe_overrides") == "seed:train.precision=bf16") is native
    assert params["recipes"] == runner.PRESETS["flickr8k"]["recipes"]
    assert "recipe_overrides" not in runner.preset_parameters("demo")
