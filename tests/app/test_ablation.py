"""Ablation grids: the grid file's validation, cell expansion, the combined table, and the
runner's skip / retry / keep-going behaviour (tiny notebooks), plus one real 2-cell grid."""

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from xmr_utils.app import ablation, cli, runner, study
from xmr_utils.app.runs import mark_finished, write_json
from xmr_utils.core.errors import XmrError

ROOT = Path(__file__).resolve().parents[2]

#: What the real notebooks declare, trimmed to what these tests use (fast: no papermill).
DECLARED = {
    "00_data.ipynb": {"run_dir": "", "dataset": "synthetic", "synthetic_images": 600},
    "01_features.ipynb": {
        "run_dir": "",
        "image_encoder": "efficientnet_lite0",
        "text_encoder": "minilm:mean",
        "features_dir": "data/features",
    },
    "02_train_img2txt.ipynb": {
        "run_dir": "",
        "recipes": "vsepp,seed",
        "epochs": 0,
        "seed": 0,
        "recipe_overrides": "",
    },
    "04_evaluate.ipynb": {"run_dir": "", "split": "test", "ablation": ""},
    "05_latent_space.ipynb": {"run_dir": "", "umap_points": 300},
}


def _grid(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_cells_expand_in_stated_order_with_readable_ids(tmp_path: Path) -> None:
    path = _grid(
        tmp_path,
        "preset: smoke\n"
        "params: {epochs: 3}\n"
        "axes:\n"
        '  recipes: [seed, "vsepp,seed"]\n'
        '  text_encoder: ["glove:mean", "minilm:mean"]\n',
    )
    spec = ablation.load_grid(path, DECLARED)
    assert spec.name == "grid" and spec.preset == "smoke"
    assert [c.cell_id for c in spec.cells] == [
        "recipes=seed__text_encoder=glove-mean",
        "recipes=seed__text_encoder=minilm-mean",
        "recipes=vsepp,seed__text_encoder=glove-mean",
        "recipes=vsepp,seed__text_encoder=minilm-mean",
    ]
    cell = spec.cells[2]
    assert cell.values == (("recipes", "vsepp,seed"), ("text_encoder", "glove:mean"))
    assert cell.params["recipes"] == "vsepp,seed" and cell.params["text_encoder"] == "glove:mean"
    assert cell.params["epochs"] == 3  # fixed params beat the preset (smoke: 2)
    assert cell.params["synthetic_images"] == runner.PRESETS["smoke"]["synthetic_images"]
    assert cell.params["features_dir"] == "data/features"  # a notebook default
    assert "run_dir" not in cell.params


def test_notebooks_default_skips_only_what_the_table_does_not_need(tmp_path: Path) -> None:
    spec = ablation.load_grid(_grid(tmp_path, "preset: smoke\naxes: {epochs: [1]}\n"), DECLARED)
    # DECLARED has 00, 01, 02, 04, 05: the default 00-04 keeps every one of them below 05
    assert spec.notebooks == ("00", "01", "02", "04")
    assert ablation.DEFAULT_NOTEBOOKS == "00,01,02,03,04"


def test_command_line_params_fold_into_every_cell(tmp_path: Path) -> None:
    path = _grid(tmp_path, "preset: smoke\naxes: {recipes: [seed, vsepp]}\n")
    spec = ablation.load_grid(path, DECLARED, overrides=[("epochs", "5")])
    assert dict(spec.params) == {"epochs": 5}
    assert {c.params["epochs"] for c in spec.cells} == {5}
    with pytest.raises(XmrError, match=r"axes.recipes is also fixed by -p recipes"):
        ablation.load_grid(path, DECLARED, overrides=[("recipes", "seed")])


def test_recipe_fields_are_axes_folded_into_recipe_overrides(tmp_path: Path) -> None:
    path = _grid(
        tmp_path,
        "preset: smoke\n"
        'params: {recipes: seed, recipe_overrides: "optim.lr=0.0002", loss.miner: hardest}\n'
        "axes:\n"
        "  loss.margin: [0.2, 1]\n"
        "  image_head.l2_normalize: [true, false]\n"
        "  image_head.hidden: [[512], []]\n",
    )
    spec = ablation.load_grid(path, DECLARED)
    assert len(spec.cells) == 8
    cell = spec.cells[1]
    assert cell.cell_id == "loss.margin=0.2__image_head.l2_normalize=True__image_head.hidden=x"
    assert cell.values == (
        ("loss.margin", 0.2),
        ("image_head.l2_normalize", True),
        ("image_head.hidden", []),
    )
    # the fixed text first, then the fixed field, then the cell's fields: one parameter
    assert cell.params["recipe_overrides"] == (
        "optim.lr=0.0002,loss.miner=hardest,loss.margin=0.2,image_head.l2_normalize=true,"
        "image_head.hidden=[]"
    )
    assert not any("." in name for name in cell.params)
    ids = {c.cell_id for c in spec.cells}
    assert len(ids) == 8  # [512] and [] give different ids


@pytest.mark.parametrize(
    ("axes", "needle"),
    [
        ("loss.marg: [0.2]", "unknown recipe field 'loss.marg'; accepted: loss.kind, loss.margin"),
        ("loss.margin: [abc]", "axes.loss.margin[0]: recipe_overrides on recipe 'vsepp': "),
        ("lose.margin: [0.2]", "unknown section 'lose'"),
        (
            "loss.temperature: [0.05]",
            "cell loss.temperature=0.05: recipe_overrides on recipe 'seed'",
        ),
    ],
)
def test_bad_recipe_field_axes_name_the_file_and_the_key(
    tmp_path: Path, axes: str, needle: str
) -> None:
    path = _grid(tmp_path, f"preset: smoke\nparams: {{recipes: seed}}\naxes:\n  {axes}\n")
    with pytest.raises(XmrError) as err:
        ablation.load_grid(path, DECLARED)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_recipe_fields_need_notebooks_that_take_recipe_overrides(tmp_path: Path) -> None:
    declared = {
        k: {n: v for n, v in d.items() if n != "recipe_overrides"} for k, d in DECLARED.items()
    }
    path = _grid(tmp_path, "preset: smoke\naxes: {loss.margin: [0.2]}\n")
    with pytest.raises(XmrError, match="unknown parameter 'loss.margin'"):
        ablation.load_grid(path, declared)


def test_long_ids_stay_short_and_distinct() -> None:
    a = ablation.cell_id([("dataset", "x" * 200 + "a")])
    b = ablation.cell_id([("dataset", "x" * 200 + "b")])
    assert len(a) <= 150 and a != b
    assert ablation.safe_token("../shared/datasets/flickr8k") == "..-shared-datasets-flickr8k"


BAD_GRIDS = {
    "unknown top-level key": ("preset: smoke\naxis: {epochs: [1]}\n", "unknown key 'axis'"),
    "unknown preset": ("preset: fast\naxes: {epochs: [1]}\n", "preset: unknown preset 'fast'"),
    "no preset": ("axes: {epochs: [1]}\n", "no preset"),
    "undeclared fixed param": (
        "preset: smoke\nparams: {lr: 0.1}\naxes: {epochs: [1]}\n",
        "params.lr: unknown parameter 'lr'",
    ),
    "undeclared axis": ("preset: smoke\naxes: {epoch: [1, 2]}\n", "axes.epoch: unknown parameter"),
    "empty axis": ("preset: smoke\naxes: {epochs: []}\n", "axes.epochs is empty"),
    "axis not a list": ("preset: smoke\naxes: {epochs: 3}\n", "axes.epochs must be a list"),
    "no axes": ("preset: smoke\n", "axes must map at least one parameter"),
    "duplicate cells": (
        "preset: smoke\naxes: {recipes: [vsepp, seed, vsepp]}\n",
        "axes.recipes lists 'vsepp' and 'vsepp'",
    ),
    "wrong type": (
        "preset: smoke\naxes: {epochs: [2, two]}\n",
        "axes.epochs[1] is 'two' (str) but 02_train_img2txt.ipynb declares epochs as int",
    ),
    "not a scalar": ("preset: smoke\naxes: {epochs: [[1, 2]]}\n", "axes.epochs[0] is [1, 2]"),
    "unknown recipe": (
        "preset: smoke\naxes: {recipes: [seed, vsep]}\n",
        "axes.recipes[1]: unknown recipe 'vsep'",
    ),
    "unknown encoder": (
        "preset: smoke\naxes: {text_encoder: [word2vec]}\n",
        "axes.text_encoder[0]: unknown text encoder 'word2vec'",
    ),
    "axis also fixed": (
        "preset: smoke\nparams: {epochs: 2}\naxes: {epochs: [1]}\n",
        "axes.epochs is also fixed by params",
    ),
    "unknown notebook": (
        'preset: smoke\naxes: {epochs: [1]}\nnotebooks: "00,09"\n',
        "notebooks: unknown notebook '09'",
    ),
    "bad name": ("name: ../up\npreset: smoke\naxes: {epochs: [1]}\n", "name '../up'"),
    "yaml syntax": ("preset: smoke\naxes:\n  epochs: [1, 2\n", "is not valid YAML (line 4"),
    "not a mapping": ("- preset\n- axes\n", "must be a YAML mapping"),
}


@pytest.mark.parametrize("case", BAD_GRIDS, ids=list(BAD_GRIDS))
def test_bad_grid_names_the_file_and_the_key(tmp_path: Path, case: str) -> None:
    text, expected = BAD_GRIDS[case]
    path = _grid(tmp_path, text, "bad-grid.yaml")
    with pytest.raises(XmrError) as err:
        ablation.load_grid(path, DECLARED)
    message = str(err.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message


def test_missing_grid_file(tmp_path: Path) -> None:
    with pytest.raises(XmrError, match=r"grid file .*nope.yaml does not exist"):
        ablation.load_grid(tmp_path / "nope.yaml", DECLARED)


def test_bad_grid_exits_2_with_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notebooks = _tiny_notebooks(tmp_path / "nbs")
    grid = _grid(tmp_path, "preset: smoke\naxes: {epochs: []}\n")
    code = cli.main(["--grid", str(grid), "--notebooks", str(notebooks)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "axes.epochs is empty" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--grid", str(grid), "--only", "00"])
    assert exit_.value.code == 2


# ---------------------------------------------------------------- the combined table


def _metrics(recipes: list[str], base: float) -> dict:
    """A metrics.json record whose values tell where they came from: rsum = base + offset."""
    models = {}
    for r, recipe in enumerate(recipes):
        models[recipe] = {}
        for m, model in enumerate(("fused", "img2txt", "txt2img")):  # stored out of order
            offset = 10 * r + m
            models[recipe][model] = {
                **{
                    f"{d}_R@{k}": base + offset + k / 100
                    for d in ("i2t", "t2i")
                    for k in (1, 5, 10)
                },
                "rsum": base + offset,
                **{
                    f"{d}_mAP@{k}": (base + offset) / 1000
                    for d in ("i2t", "t2i")
                    for k in (10, 1, 5)
                },
                "i2t_medr": 3.0,
                "i2t_mAPcap@5": 0.5,
            }
    return {
        "dataset": "synthetic_40_s0",
        "split": "test",
        "image_encoder": "efficientnet_lite0",
        "text_encoder": "glove:mean",
        "n_images": 4,
        "models": models,
    }


def _fake_grid(tmp_path: Path) -> tuple[ablation.GridSpec, Path]:
    """A 3-cell grid whose first two cells finished with hand-written metrics.json files."""
    path = _grid(
        tmp_path,
        'name: fake\npreset: smoke\naxes:\n  recipes: [seed, "vsepp,seed", infonce]\n'
        "  epochs: [4]\n",
    )
    spec = ablation.load_grid(path, DECLARED)
    folder = tmp_path / "ablations" / "fake"
    for cell, metrics in zip(
        spec.cells[:2],
        (_metrics(["seed"], 100.0), _metrics(["vsepp", "seed"], 200.0)),
        strict=False,
    ):
        run = folder / "runs" / cell.cell_id
        write_json(run / "params.json", {"preset": "smoke", **cell.params})
        write_json(run / "metrics.json", metrics)
        mark_finished(run, {})
    (folder / "runs" / spec.cells[2].cell_id).mkdir()  # an attempt that never finished
    return spec, folder


def test_results_table_puts_each_value_in_its_row_and_column(tmp_path: Path) -> None:
    spec, folder = _fake_grid(tmp_path)
    table = ablation.write_results(spec, folder)
    assert list(table.columns) == [
        "cell", "recipes", "epochs", "dataset", "split", "image_encoder", "text_encoder",
        "recipe", "model", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10",
        "rsum", "i2t_mAP@1", "i2t_mAP@5", "i2t_mAP@10", "t2i_mAP@1", "t2i_mAP@5", "t2i_mAP@10",
        "run",
    ]  # fmt: skip
    assert len(table) == 3 + 6  # (1 + 2 recipes) x 3 models; the unfinished cell has none
    assert list(table["model"][:3]) == ["img2txt", "txt2img", "fused"]
    row = table[(table["recipes"] == "vsepp,seed") & (table["recipe"] == "seed")]
    row = row.set_index("model")
    # second cell (base 200), second recipe (offset 10), txt2img stored third (offset 2)
    assert row.loc["txt2img", "rsum"] == 212.0
    assert row.loc["txt2img", "t2i_R@5"] == pytest.approx(212.05)
    assert row.loc["fused", "i2t_mAP@10"] == pytest.approx(0.210)
    assert set(table["epochs"]) == {4} and set(table["split"]) == {"test"}
    assert table.loc[0, "cell"] == "recipes=seed__epochs=4" and table.loc[0, "rsum"] == 101.0

    again = pd.read_csv(folder / "results.csv")
    assert again.shape == table.shape and again["rsum"].tolist() == table["rsum"].tolist()
    md = (folder / "results.md").read_text()
    assert "| recipes | epochs | dataset |" in md
    assert (
        "| vsepp,seed | 4 | synthetic_40_s0 | test | efficientnet_lite0 | glove:mean | seed |" in md
    )
    assert "| 212.0 |" in md and "| 0.212 |" in md
    assert "`recipes=infonce__epochs=4`: not finished" in md
    assert (folder / "comparison.png").stat().st_size > 5000
    assert (folder.parent / "LATEST").read_text().strip() == str(folder)


def test_results_table_shows_the_recipes_overrides_when_there_are_some(tmp_path: Path) -> None:
    spec, folder = _fake_grid(tmp_path)
    assert "overrides" not in ablation.write_results(spec, folder).columns  # none recorded
    run = folder / "runs" / spec.cells[1].cell_id
    record = json.loads((run / "metrics.json").read_text())
    record["recipe_overrides"] = {"vsepp": "loss.margin=0.5", "seed": ""}
    (run / "metrics.json").write_text(json.dumps(record))
    table = ablation.write_results(spec, folder)
    assert list(table.columns[7:10]) == ["recipe", "overrides", "model"]
    by_recipe = table[table["recipes"] == "vsepp,seed"].groupby("recipe")["overrides"].first()
    assert by_recipe.to_dict() == {"seed": "", "vsepp": "loss.margin=0.5"}
    assert "| loss.margin=0.5 |" in (folder / "results.md").read_text()


def test_markdown_table_formats_and_escapes() -> None:
    frame = pd.DataFrame(
        {
            "recipes": ["a|b"],
            "lr": [0.0002],
            "rsum": [123.456],
            "i2t_mAP@10": [0.12345],
            "t2i_R@1": [math.nan],
        }
    )
    lines = ablation.markdown_table(frame).splitlines()
    assert lines[0] == "| recipes | lr | rsum | i2t_mAP@10 | t2i_R@1 |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| a\\|b | 0.0002 | 123.5 | 0.123 | – |"


def test_notebook_04_shows_the_table_and_figure(tmp_path: Path) -> None:
    """Notebook 04's ablation cells, run in-process against a written grid folder."""
    import nbformat
    from IPython.display import Image

    spec, folder = _fake_grid(tmp_path)
    ablation.write_results(spec, folder)
    book = nbformat.read(ROOT / "notebooks" / "04_evaluate.ipynb", as_version=4)
    cells = [c.source for c in book.cells if "ablation" in c.source and c.cell_type == "code"]
    params, table_cell, figure_cell = cells[0], cells[-2], cells[-1]
    assert 'ablation: str = ""' in params
    for ref, rows in ((str(folder), 9), ("", None)):
        space = {"study": study, "Image": Image, "ablation": ref}
        exec(table_cell, space)  # the notebook's own cells
        exec(figure_cell, space)
        view = space["ablation_view"]
        if rows is None:
            assert view is None
        else:
            assert len(view.table) == rows and view.figure == folder / "comparison.png"
    assert study.ablation_results("") is None
    with pytest.raises(XmrError, match="holds no results.csv"):
        study.ablation_results(str(tmp_path))
    with pytest.raises(XmrError, match="no ablation has been run"):
        ablation.read_results("latest", root=tmp_path / "empty")
    assert ablation.read_results("latest", root=folder.parent).folder == folder


# ---------------------------------------------------------------- running grids


def _tiny_notebooks(folder: Path) -> Path:
    """One notebook 00 that writes a metrics.json (rsum = 60 + epochs) and fails for infonce
    while the file ``broken`` exists beside it."""
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    params = nbformat.v4.new_code_cell(
        'run_dir: str = ""\nrecipes: str = "vsepp"\nepochs: int = 0\n'
        'text_encoder: str = "glove:mean"'
    )
    params.metadata["tags"] = ["parameters"]
    body = (
        "import json, pathlib\n"
        f"if recipes == 'infonce' and pathlib.Path({str(folder / 'broken')!r}).exists():\n"
        "    raise RuntimeError('infonce diverged')\n"
        "m = {'i2t_R@1': 10.0, 't2i_R@1': 5.0, 'rsum': 60.0 + epochs, 'i2t_mAP@10': 0.5}\n"
        "rec = {'dataset': 'tiny', 'split': 'test', 'image_encoder': 'x', 'text_encoder': "
        "text_encoder, 'models': {r: {'img2txt': m, 'fused': m} for r in recipes.split(',')}}\n"
        "pathlib.Path(run_dir, 'metrics.json').write_text(json.dumps(rec))"
    )
    book = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}  # fmt: skip
    nbformat.write(book, folder / "00_data.ipynb")
    return folder


@pytest.mark.slow
def test_failing_cell_is_reported_others_run_and_reruns_skip_or_retry(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebooks = _tiny_notebooks(tmp_path / "nbs")
    (notebooks / "broken").touch()
    grid = _grid(tmp_path, "name: g\npreset: smoke\naxes: {recipes: [vsepp, infonce, seed]}\n")
    argv = ["--grid", str(grid), "--notebooks", str(notebooks),
            "--ablations-root", str(tmp_path / "out")]  # fmt: skip
    runs = tmp_path / "out" / "g" / "runs"

    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    bad = runs / "recipes=infonce"
    assert "cell recipes=infonce failed" in err and "RuntimeError: infonce diverged" in err
    assert str(bad / "executed" / "00_data.ipynb") in err
    assert not (bad / "finished.json").exists()
    for good in ("recipes=vsepp", "recipes=seed"):  # the cell after the failure ran too
        assert json.loads((runs / good / "finished.json").read_text())["notebooks"] == [
            "00_data.ipynb"
        ]
    table = pd.read_csv(tmp_path / "out" / "g" / "results.csv")
    assert table["recipes"].tolist() == ["vsepp", "vsepp", "seed", "seed"]
    assert (
        "`recipes=infonce`: failed: notebook 00_data failed"
        in (tmp_path / "out" / "g" / "results.md").read_text()
    )

    # again: finished cells are skipped untouched, the failed one is retried in a new folder
    sealed = (runs / "recipes=vsepp" / "finished.json").stat().st_mtime_ns
    assert cli.main(argv) == 1
    capsys.readouterr()
    assert (runs / "recipes=vsepp" / "finished.json").stat().st_mtime_ns == sealed
    assert (runs / "recipes=infonce.try2" / "executed" / "00_data.ipynb").exists()
    assert (bad / "executed" / "00_data.ipynb").exists()  # the first attempt is kept

    (notebooks / "broken").unlink()
    assert cli.main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert (runs / "recipes=infonce.try3" / "finished.json").exists()
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == [
        "recipes=infonce", "recipes=infonce.try2", "recipes=infonce.try3", "recipes=seed",
        "recipes=vsepp",
    ]  # fmt: skip
    table = pd.read_csv(tmp_path / "out" / "g" / "results.csv")
    assert table["recipes"].tolist() == ["vsepp", "vsepp", "infonce", "infonce", "seed", "seed"]
    assert set(table["run"]) == {"recipes=vsepp", "recipes=infonce.try3", "recipes=seed"}

    # a finished cell is never reused for a grid that now asks for something else
    grid.write_text("name: g\npreset: smoke\nparams: {epochs: 7}\naxes: {recipes: [vsepp]}\n")
    assert cli.main(argv) == 2
    assert "finished with epochs=2 but" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real notebooks 00-04 on the smoke preset, one recipe per cell, run in turn: the
    grid file and its folder."""
    tmp = tmp_path_factory.mktemp("smoke-grid")
    grid = _grid(
        tmp,
        "name: e2e\npreset: smoke\n"
        f"params: {{data_dir: {str(tmp / 'data')!r}, "
        f"features_dir: {str(tmp / 'features')!r}}}\n"
        "axes: {recipes: [vsepp, seed]}\n",
    )
    assert cli.main(["--grid", str(grid), "--ablations-root", str(tmp / "out")]) == 0
    return grid, tmp / "out" / "e2e"


@pytest.mark.slow
def test_two_cell_grid_end_to_end(smoke_grid: tuple[Path, Path]) -> None:
    _, folder = smoke_grid
    table = pd.read_csv(folder / "results.csv")
    assert list(zip(table["recipes"], table["recipe"], table["model"], strict=True)) == [
        (recipe, recipe, model)
        for recipe in ("vsepp", "seed")
        for model in ("img2txt", "txt2img", "fused")
    ]
    assert table["rsum"].between(0, 600).all() and table["rsum"].map(math.isfinite).all()
    assert set(table["text_encoder"]) == {"glove:mean"} and set(table["split"]) == {"test"}
    for run in table["run"].unique():
        executed = sorted(p.name[:2] for p in (folder / "runs" / run / "executed").iterdir())
        assert executed == ["00", "01", "02", "03", "04"]
    assert (folder / "comparison.png").stat().st_size > 5000
    assert "| vsepp | synthetic" in (folder / "results.md").read_text()
    assert "recipes" in (folder / "grid.yaml").read_text()


@pytest.mark.slow
def test_two_cell_grid_on_a_local_cluster_writes_the_sequential_table(
    smoke_grid: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The same grid file as one Dask task per cell on a 2-worker LocalCluster: the same
    results table and markdown (the table holds no timings), and the same run records."""
    grid, sequential = smoke_grid
    root = tmp_path / "out"
    capsys.readouterr()
    threads_before = os.environ.get("OMP_NUM_THREADS")
    assert cli.main(["--grid", str(grid), "--ablations-root", str(root), "--workers", "2"]) == 0
    assert os.environ.get("OMP_NUM_THREADS") == threads_before  # the Nanny's setting undone
    out = capsys.readouterr().out
    folder = root / "e2e"
    pd.testing.assert_frame_equal(
        pd.read_csv(folder / "results.csv"), pd.read_csv(sequential / "results.csv")
    )
    assert (folder / "results.md").read_text() == (sequential / "results.md").read_text()
    assert (folder / "grid.yaml").read_text() == (sequential / "grid.yaml").read_text()
    for cell in ("recipes=vsepp", "recipes=seed"):
        ours, theirs = (json.loads((f / "runs" / cell / "finished.json").read_text())
                        for f in (folder, sequential))  # fmt: skip
        assert ours.keys() == theirs.keys() and ours["notebooks"] == theirs["notebooks"]
    assert "cell 1/2 recipes=vsepp: running on tcp://" in out
    assert "Dask dashboard: http" in out and "cell 2/2 recipes=seed done in" in out
    assert "recipes=seed: 04_evaluate.ipynb done in" in out  # the cell's prints, labelled

    # again: every cell finished, nothing is submitted and no sealed file is touched
    sealed = (folder / "runs" / "recipes=vsepp" / "finished.json").stat().st_mtime_ns
    assert cli.main(["--grid", str(grid), "--ablations-root", str(root), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "nothing to submit" in out and "Dask dashboard" not in out
    assert (folder / "runs" / "recipes=vsepp" / "finished.json").stat().st_mtime_ns == sealed


@pytest.mark.parametrize("name, n_cells", [("ablation.yaml", 12), ("ablation-flickr8k.yaml", 20)])
def test_committed_grids_are_valid(name: str, n_cells: int) -> None:
    """Each committed grid loads, and its cells are exactly the product of the file's axes,
    each run with the file's fixed params and its own axis values."""
    import itertools

    import yaml

    from xmr_utils.app.runner import declared_parameters, notebook_paths

    declared = {p.name: declared_parameters(p) for p in notebook_paths()}
    path = Path(__file__).resolve().parents[2] / "configs" / name
    spec = ablation.load_grid(path, declared)
    written = yaml.safe_load(path.read_text())
    axes = written["axes"]
    assert spec.name == written["name"] and [a for a, _ in spec.axes] == list(axes)
    product = set(itertools.product(*axes.values()))
    assert len(product) == n_cells
    assert {tuple(v for _, v in cell.values) for cell in spec.cells} == product
    assert len({cell.cell_id for cell in spec.cells}) == n_cells  # one run folder per cell
    known = set().union(*declared.values())
    for cell in spec.cells:
        assert set(cell.params) <= known, set(cell.params) - known
        assert {k: cell.params[k] for k in written["params"]} == written["params"]
        assert all(cell.params[axis] == value for axis, value in cell.values)
