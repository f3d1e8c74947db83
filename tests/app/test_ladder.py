"""The collapse ladder's file, table, verdict and notebook view (training: test_bench_collapse)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from xmr_utils.app import ladder as ladders
from xmr_utils.app import why_collapse
from xmr_utils.app.ladder import LadderCell, ModelResult, Scored
from xmr_utils.core.config import RECIPES
from xmr_utils.core.errors import XmrError

ROOT = Path(__file__).resolve().parents[2]
LADDER = """
name: t
image_encoder: efficientnet_lite0
text_encoder: minilm:mean
seeds: [0, 1, 2]
models: [img2txt]
schedule: train.epochs=2,train.patience=null
mechanism: [seed_to_fix/seed, seed_to_fix/l2]
directions:
  seed_to_fix:
    base: seed
    cells:
      seed: ""
      l2: {overrides: "image_head.l2_normalize=true,text_head.l2_normalize=true", note: L2}
  fix_to_seed:
    base: vsepp
    cells:
      vsepp: ""
      no_l2: >-
        image_head.l2_normalize=false,text_head.l2_normalize=false,
        loss.similarity=neg_sqeuclidean
"""


def write(tmp_path: Path, text: str = LADDER) -> Path:
    path = tmp_path / "ladder.yaml"
    path.write_text(text)
    return path


def test_committed_ladder_files_load_and_every_cell_builds() -> None:
    for path in sorted((ROOT / "configs").glob("collapse-ladder*.yaml")):
        ladder = ladders.load_ladder(path)
        assert {c.direction for c in ladder.cells} == set(ladders.LADDER_DIRECTIONS)
        assert len(ladder.seeds) >= 3 and ladder.mechanism
        for cell in ladder.cells:
            recipe = ladder.recipe(cell, 1)
            assert recipe.name == cell.base and recipe.train.seed == 1
            base = ladder.recipe(
                next(
                    c for c in ladder.cells if c.overrides == "" and c.direction == cell.direction
                ),
                1,
            )
            assert (recipe == base) == (cell.overrides == ""), cell.key


def test_a_cell_is_its_base_with_the_schedule_then_its_change(tmp_path: Path) -> None:
    ladder = ladders.load_ladder(write(tmp_path))
    l2 = ladder.recipe(ladder.cells[1], 2)
    seed = RECIPES["seed"]
    assert l2.image_head.l2_normalize and l2.text_head.l2_normalize
    assert (l2.train.epochs, l2.train.patience, l2.train.seed) == (2, None, 2)
    assert l2.loss == seed.loss and l2.optim == seed.optim and l2.image_head.out_dim == 4096
    assert l2.overrides == (
        "train.epochs=2",
        "train.patience=null",
        "image_head.l2_normalize=true",
        "text_head.l2_normalize=true",
    )
    no_l2 = ladder.recipe(ladder.cells[3], 0)
    assert no_l2.loss.similarity == "neg_sqeuclidean" and no_l2.loss.margin == 0.2


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("seeds: [0, 1, 2]", "seeds: [0, -1]"), "seeds must be a list of whole numbers"),
        (("models: [img2txt]", "models: [i2t]"), "unknown model 'i2t'"),
        (("base: seed", "base: sed"), "unknown recipe 'sed'"),
        (("note: L2}", "note: L2, x: 1}"), "must be overrides text or {overrides, note}"),
        (('seed: ""', 'seed: "loss.marg=1"'), "cell seed_to_fix/seed: recipe_overrides"),
        (('seed: ""', 'seed: "train.seed=3"'), "the ladder's seeds set it"),
        (("seed_to_fix:\n", "seed_to_fox:\n"), "unknown direction 'seed_to_fox'"),
        (("[seed_to_fix/seed,", "[seed_to_fix/sed,"), "mechanism: unknown cell"),
        (("name: t", "name: t/x"), "must be a folder name"),
        (("text_encoder: minilm:mean", "text_encoder: minilm:max"), "accepted: cls, mean"),
        (("name: t\n", "name: t\nepochs: 3\n"), "unknown key 'epochs'"),
    ],
)
def test_a_bad_ladder_file_is_one_sentence_naming_the_file(
    tmp_path: Path, change: tuple[str, str], needle: str
) -> None:
    assert change[0] in LADDER
    path = write(tmp_path, LADDER.replace(*change))
    with pytest.raises(XmrError) as err:
        ladders.load_ladder(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def fake_result(
    cell: str,
    seed: int,
    rsum: float,
    collapsed: bool,
    direction: str = "seed_to_fix",
    epoch: int = 2,
) -> ModelResult:
    reasons = ("distinct_top1_t2i < 0.05",) if collapsed else ()
    best = Scored(epoch, {"rsum": rsum, "i2t_R@1": rsum / 6}, reasons, {"collapsed": collapsed})
    last = Scored(2, {"rsum": rsum - 1.0, "i2t_R@1": 0.0}, reasons, {"collapsed": collapsed})
    recipe = RECIPES["seed"].to_dict()
    return ModelResult(
        direction, cell, seed, "img2txt", recipe, {"best": best, "last": last}, 2, 1.0
    )


def test_summarise_is_the_per_cell_count_mean_and_sample_std() -> None:
    values = {("seed", 0): (20.0, True), ("seed", 1): (30.0, True), ("seed", 2): (40.0, False)}
    values |= {("l2", s): (300.0 + s, False) for s in range(3)}
    results = [fake_result(c, s, r, k) for (c, s), (r, k) in values.items()]
    order = [
        LadderCell("seed_to_fix", "l2", "seed", "x"),
        LadderCell("seed_to_fix", "seed", "seed", ""),
    ]
    table = ladders.summarise(results, order).set_index("cell")
    assert list(table.index) == ["l2", "seed"]  # the ladder's order
    assert table.loc["seed", "best_collapsed"] == 2 and table.loc["l2", "best_collapsed"] == 0
    assert table.loc["seed", "best_rsum"] == pytest.approx(30.0)
    assert table.loc["seed", "best_rsum_std"] == pytest.approx(statistics.stdev([20, 30, 40]))
    assert table.loc["seed", "last_rsum"] == pytest.approx(29.0)
    assert table.loc["l2", "overrides"] == "x" and table.loc["seed", "seeds"] == 3
    one = ladders.summarise(results[:1]).iloc[0]
    assert one["best_rsum_std"] == 0.0 and one["seeds"] == 1
    md = ladders.ladder_markdown(table.reset_index())
    assert "| seed_to_fix | seed | (base) | img2txt | 2/3 | 30.0 ± 10.0 | 2/3 | 29.0 ± 10.0 |" in md


def test_a_result_round_trips_through_json() -> None:
    result = fake_result("l2", 1, 123.0, True)
    text = json.dumps(result.to_dict())
    again = ModelResult.from_dict(json.loads(text))
    assert again.selections == result.selections and again.selections["best"].collapsed
    assert json.dumps(again.to_dict()) == text


def fake_ladder_folder(tmp_path: Path) -> Path:
    """A ladder folder as bench_collapse writes it, with made-up numbers and histories."""
    ladder = ladders.load_ladder(write(tmp_path))
    folder = ladders.ladder_folder(ladder, tmp_path / "collapse")
    rows = {
        "seed": (20.0, True),
        "l2": (300.0, False),
        "vsepp": (420.0, False),
        "no_l2": (30.0, True),
    }
    for cell in ladder.cells:
        for seed in ladder.seeds:
            rsum, collapsed = rows[cell.name]
            path = ladders.model_folder(folder, cell, seed, "img2txt")
            ladders.save_result(
                path, fake_result(cell.name, seed, rsum + seed, collapsed, cell.direction)
            )
            history = [
                {
                    "epoch": e,
                    "val_rsum": rsum * e / 2,
                    "active_triplets": 0.5 / e,
                    "img_norm": 10.0 * e,
                    "pos_distance": 100.0,
                    "val_t2i_norm_share": 0.9 if collapsed else 0.0,
                }
                for e in (1, 2)
            ]
            (path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    ladders.write_manifest(ladder, folder, "python -m benchmarks.bench_collapse --ladder x")
    ladders.set_latest(folder, tmp_path / "collapse")
    return folder


def test_the_notebook_view_without_results_says_how_to_make_them(tmp_path: Path) -> None:
    view = why_collapse.open_ladder("latest", tmp_path / "nothing")
    assert "make bench-collapse" in view.note
    assert view.table is None and view.ladder_figure is None and view.mechanism_figure is None


def test_the_notebook_view_reads_the_latest_ladder(tmp_path: Path) -> None:
    folder = fake_ladder_folder(tmp_path)
    view = why_collapse.open_ladder("latest", tmp_path / "collapse")
    assert view.results is not None and view.results.folder == folder
    assert "python -m benchmarks.bench_collapse --ladder x" in view.note
    assert "| fix_to_seed | no_l2 |" in (view.table or "")
    verdict = view.verdict or ""
    assert "prevent the collapse" in verdict and "`l2`/img2txt (0/3, rsum 301.0 ± 1.0)" in verdict
    assert "`no_l2`/img2txt (3/3" in verdict and "`seed`/img2txt" not in verdict
    assert view.ladder_figure is not None and view.mechanism_figure is not None
    titles = [ax.get_title() for ax in view.mechanism_figure.axes if ax.get_visible()]
    assert any("active triplets" in t for t in titles) and any("norm share" in t for t in titles)
    # the ladder figure rings the collapsed cells: seed (3/3) and no_l2 (3/3), twice each
    texts = [t.get_text() for ax in view.ladder_figure.axes for t in ax.texts]
    assert texts.count("3/3") == 4
    assert why_collapse.open_ladder(str(folder)).results.folder == folder
    with pytest.raises(XmrError, match="holds no ladder.json"):
        why_collapse.open_ladder(str(tmp_path))
