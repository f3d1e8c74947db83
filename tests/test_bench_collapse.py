"""The collapse ladder end to end on tiny synthetic data: a 2-cell ladder trains, scores at the
best and the last epoch, writes its table and figures, resumes without retraining, and refuses
a changed recipe in the same folder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is not an installed package: import it from the repo
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_cluster, bench_collapse, bench_preset, bench_quality  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402
from benchmarks.common import Row  # noqa: E402
from xmr_utils.app import ladder as ladders  # noqa: E402
from xmr_utils.core.errors import XmrError  # noqa: E402

LADDER = """
name: tiny
image_encoder: efficientnet_lite0
text_encoder: minilm:mean
seeds: [0, 1]
models: [img2txt]
schedule: >-
  train.epochs=2,train.patience=null,train.snapshot_epochs=[],train.batch_size=32,
  image_head.hidden=[16],text_head.hidden=[16],image_head.out_dim=8,text_head.out_dim=8
mechanism: [seed_to_fix/seed, seed_to_fix/l2]
directions:
  seed_to_fix:
    base: seed
    cells:
      seed: {overrides: "", note: "the seed, small"}
      l2: "image_head.l2_normalize=true,text_head.l2_normalize=true"
"""


def tiny_data(images: int = 700, dim: int = 12) -> bench_collapse.LadderData:
    """600 train and 100 val images with 2 captions each, captions near their image."""
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(images), 2)
    image_feats = rng.normal(size=(images, dim)).astype(np.float32)
    text_feats = (image_feats[owner] + 0.3 * rng.normal(size=(len(owner), dim))).astype(np.float32)
    return bench_collapse.LadderData.of(
        image_feats, text_feats, owner, np.arange(600), np.arange(600, images)
    )


def test_a_two_cell_ladder_on_tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(LADDER)
    ladder = ladders.load_ladder(path)
    data = tiny_data()
    assert len(data.select) == 500 and len(data.fit) == 100  # the protocol's 500 held out
    folder = ladders.ladder_folder(ladder, tmp_path / "out")
    loads = bench_collapse.run_ladder(ladder, data, folder)
    assert len(loads) == 4  # 2 cells x 2 seeds x 1 model, all trained now
    results = ladders.read_results(folder)
    assert {(r.cell, r.seed) for r in results} == {(c, s) for c in ("seed", "l2") for s in (0, 1)}
    for r in results:
        assert r.selections["last"].epoch == 2 and 1 <= r.selections["best"].epoch <= 2
        assert r.selections["best"].metrics["rsum"] >= r.selections["last"].metrics["rsum"] - 1e-9
        history = ladders.model_folder(folder, ladder.cells[0], 0, "img2txt") / "history.jsonl"
        assert history.exists()
    seed_model = ladders.model_folder(folder, ladder.cells[0], 0, "img2txt")
    assert not (seed_model / "best.pt").exists() and not (seed_model / "last.pt").exists()
    read = bench_collapse.write_outputs(ladder, folder, "python -m benchmarks.bench_collapse")
    assert list(read.table["cell"]) == ["seed", "l2"] and set(read.table["seeds"]) == {2}
    for name in ("results.md", "summary.csv", "ladder.png", "mechanism.png", "ladder.json"):
        assert (folder / name).is_file(), name
    assert ladders.find_ladder("latest", tmp_path / "out") == folder
    # the best-epoch numbers are those of the per-model results
    l2 = [r.selections["best"].metrics["rsum"] for r in results if r.cell == "l2"]
    assert read.table.set_index("cell").loc["l2", "best_rsum"] == pytest.approx(np.mean(l2))
    # a rerun trains nothing; a changed recipe in the same folder is refused
    assert bench_collapse.run_ladder(ladder, data, folder) == []
    changed = ladder.select(schedule=ladder.schedule.replace("epochs=2", "epochs=3"))
    with pytest.raises(XmrError, match="another recipe.*--name"):
        bench_collapse.run_ladder(changed, data, folder)
    block = bench_collapse.report(read, seconds=60.0, cpu_seconds=90.0, load="1.0")
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\nkept\n")
    bench_collapse.write_section(out, block)
    bench_collapse.write_section(out, block)  # replaced, not appended twice
    text = out.read_text()
    assert text.count(bench_collapse.START_MARK) == 1 and "kept" in text
    assert "| seed_to_fix | l2 |" in text


def test_options_select_a_part_of_the_ladder(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(LADDER)
    args = bench_collapse.parse_args(
        ["--ladder", str(path), "--cells", "l2", "--seeds", "3", "--name", "other"]
    )
    ladder = bench_collapse.selected_ladder(args)
    assert [c.name for c in ladder.cells] == ["l2"] and ladder.seeds == (3,)
    assert ladder.name == "other" and ladder.mechanism == ("seed_to_fix/l2",)
    with pytest.raises(XmrError, match="unknown ladder cell 'l3'"):
        bench_collapse.selected_ladder(
            bench_collapse.parse_args(["--ladder", str(path), "--cells", "l3"])
        )
    assert "--schedule" in bench_collapse.command_line(["--schedule", "train.epochs=50"])


def test_make_bench_keeps_the_blocks_other_commands_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bench_run, "SECTIONS", (("alpha", "Alpha things"),))
    monkeypatch.setattr(
        bench_run, "run_section", lambda name, quick: [Row(name, "x", "1.000 s (1.000–1.000)")]
    )
    quality = f"{bench_quality.START_MARK}\nrsum 321\n{bench_quality.END_MARK}\n"
    collapse = f"{bench_collapse.START_MARK}\nladder\n{bench_collapse.END_MARK}\n"
    cluster = f"{bench_cluster.START_MARK}\ndask\n{bench_cluster.END_MARK}\n"
    out = tmp_path / "RESULTS.md"
    out.write_text(
        "# Benchmark results\n\nold speed table\n\n" + quality + "\n" + cluster + collapse
    )
    assert bench_run.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "old speed table" not in text and quality in text and collapse in text
    assert text.endswith(cluster)  # in the order of bench_run.KEPT_BLOCKS
    owners = (bench_quality, bench_collapse, bench_cluster, bench_preset)
    assert bench_run.KEPT_BLOCKS == tuple((m.START_MARK, m.END_MARK) for m in owners)


def test_without_flickr8k_it_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_collapse.main(["--data", str(tmp_path / "missing")]) == 2
    assert "no Flickr8k folder found" in capsys.readouterr().err
