"""The benchmark code runs on tiny inputs and writes well-formed rows (no timed assertions).

Each ``benchmarks/bench_<name>.py`` is exercised through its inner measuring functions with
tens of items and one repeat, so that a typo in a row or a broken helper shows up here rather
than twenty minutes into ``make bench``. What is not run, and why:

* ``bench_extract.run`` builds and runs a random-weight VGG16 (138M parameters, a 528 MB
  checkpoint written to disk) — its helpers are tested instead;
* ``bench_train.run`` times the seed recipe's 4096-d heads at batch 1024 and ``torch.compile``
  — the step, batching and epoch helpers are tested instead;
* ``bench_e2e`` runs the whole notebook pipeline and cold numba compiles (minutes) — its
  subprocess calls are replaced by fakes and the row assembly is tested;
* ``bench_quality.main`` trains every recipe on real Flickr8k (about 20 minutes) — one case
  is trained on tiny synthetic features, and the split, table and RESULTS.md merging are
  tested.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is not an installed package: import it from the repo
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    bench_data,
    bench_e2e,
    bench_eval,
    bench_limit,
    bench_quality,
    bench_search,
    bench_train,
    common,
    val_share,
)
from benchmarks import run as bench_run  # noqa: E402
from benchmarks.common import (  # noqa: E402
    LIMIT_ENV,
    Limit,
    Row,
    Timing,
    count_flops,
    cpu_name,
    machine_limit,
    machine_line,
    markdown_table,
    peak_rss_mb,
    time_repeats,
)
from xmr_utils.core.hardware import native_bf16  # noqa: E402
from xmr_utils.core.train import ModelDir  # noqa: E402

CELL = re.compile(r"^(\d+\.\d{3}) s \((\d+\.\d{3})–(\d+\.\d{3})\)")


def check_rows(rows: list[Row], section: str) -> None:
    """Rows of ``section`` with text in every cell and a markdown table of one line each."""
    assert rows and all(isinstance(r, Row) for r in rows)
    for r in rows:
        assert r.section == section
        assert all(isinstance(v, str) and v.strip() for v in r.as_dict().values()), r
        assert "\n" not in "".join(r.as_dict().values()), r
    lines = markdown_table(rows).splitlines()
    assert len(lines) == len(rows) + 2
    for line, r in zip(lines[2:], rows, strict=True):
        # a "|" inside a cell would shift the columns of RESULTS.md
        assert line.count("|") == 8, line
        assert line.startswith(f"| {r.what} | {r.ours} |")


def cell_seconds(cell: str) -> tuple[float, float, float]:
    """``(median, min, max)`` of a :meth:`Timing.cell` string, each finite and ordered."""
    m = CELL.match(cell)
    assert m, cell
    med, lo, hi = (float(x) for x in m.groups())
    assert all(math.isfinite(x) and x >= 0 for x in (med, lo, hi))
    assert lo <= med <= hi
    return med, lo, hi


def share_of_limit(cell: str) -> float:
    """The percentage of a :meth:`Limit.share` cell, checked against the GFLOP/s it states."""
    m = re.fullmatch(r"(\d+)% \((\d+) of (\d+) GFLOP/s (fp32|bf16)(, the faster of .*)?\)", cell)
    assert m, cell
    pct, got, limit = (int(x) for x in m.groups()[:3])
    assert limit > 0 and abs(pct - 100 * got / limit) <= 100 / limit + 1
    return float(pct)


def ratio_value(ratio: str) -> float:
    """The number of a ``2.50×`` / ``12x`` ratio cell, finite and non-negative."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)[×x]", ratio)
    assert m, ratio
    value = float(m.group(1))
    assert math.isfinite(value) and value >= 0
    return value


# --- common -------------------------------------------------------------------------------


def test_time_repeats_counts_calls_and_orders_times() -> None:
    calls = []
    t = time_repeats(lambda: calls.append(sum(range(1000))), repeats=3, warmup=2)
    assert len(calls) == 5
    assert t.repeats == 3
    assert 0 < t.min_s <= t.median_s <= t.max_s and math.isfinite(t.max_s)
    assert cell_seconds(t.cell()) == tuple(
        float(f"{x:.3f}") for x in (t.median_s, t.min_s, t.max_s)
    )
    assert time_repeats(lambda: None, repeats=1, warmup=0).repeats == 1


def test_timing_reports_median_min_and_max_of_the_timed_runs_only(monkeypatch) -> None:
    from types import SimpleNamespace

    import benchmarks.common as common

    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # runs of 3, 1 and 2 s
    monkeypatch.setattr(common, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    calls: list[int] = []
    t = time_repeats(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5  # the warm-ups ran, untimed: the clock was read 6 times
    assert (t.median_s, t.min_s, t.max_s, t.repeats) == (2.0, 1.0, 3.0, 3)
    assert t.cell() == "2.000 s (1.000–3.000)"
    assert Timing(0.01234, 0.0016, 12.3456, 3).cell() == "0.012 s (0.002–12.346)"  # ms digits


def test_markdown_table_and_machine_line() -> None:
    rows = [
        Row("s", "a", "1 s"),
        Row("s", "b", "2 s", "3 s", "1.50×", "≤ 4 s", "yes", limit="50% (1 of 2 GFLOP/s fp32)"),
    ]
    assert markdown_table(rows).splitlines() == [
        "| what | ours | baseline | ratio | of limit | target | met |",
        "|---|---|---|---|---|---|---|",
        "| a | 1 s | — | — | — | — | — |",
        "| b | 2 s | 3 s | 1.50× | 50% (1 of 2 GFLOP/s fp32) | ≤ 4 s | yes |",
    ]
    assert rows[1].as_dict()["ratio"] == "1.50×"
    line = machine_line()
    assert f"torch {torch.__version__}" in line
    # the CPU and whether its bf16 is native: the speeds of two hosts differed ~2x in fp32
    assert line.startswith(cpu_name()) and torch.backends.cpu.get_cpu_capability() in line
    assert ("bf16 native" in line) is native_bf16("cpu") and ("bf16 emulated" in line) is (
        not native_bf16("cpu")
    )
    assert peak_rss_mb() > 10  # this process has imported torch


def test_limit_share_names_the_dtype_and_the_numbers() -> None:
    limit = Limit(200.0, 800.0, 2)
    assert limit.share(150.0) == "75% (150 of 200 GFLOP/s fp32)"
    assert limit.share(200.0, "bf16") == "25% (200 of 800 GFLOP/s bf16)"


def test_machine_limit_is_handed_on_or_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIMIT_ENV, json.dumps({"fp32": 1.5, "bf16": 6.0, "threads": 2}))
    machine_limit.cache_clear()
    try:
        assert machine_limit() == Limit(1.5, 6.0, 2)
        monkeypatch.delenv(LIMIT_ENV)
        machine_limit.cache_clear()
        measured = machine_limit()
        assert (
            measured.fp32 > 1 and measured.bf16 > 0 and measured.threads == torch.get_num_threads()
        )
    finally:
        machine_limit.cache_clear()


def test_count_flops_counts_matrix_products() -> None:
    a, b = torch.ones(8, 16), torch.ones(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    assert count_flops(lambda: (a + 1).sum()) == 0  # elementwise work is not counted


def test_bench_limit_rows_round_trip() -> None:
    rows = bench_limit.run(quick=True)
    check_rows(rows, bench_limit.SECTION)
    dtypes = [m.group(1) for r in rows if (m := bench_limit._WHAT.match(r.what))]
    assert dtypes == ["fp32", "bf16"]
    # an AVX2-only CPU emulates bf16: its row times a small product and says so
    assert ("emulated" in rows[1].what) is not native_bf16("cpu")
    limit = bench_limit.limit_from_rows(rows)
    assert limit is not None and limit.threads == torch.get_num_threads()
    assert limit.fp32 == float(rows[0].ours.split()[0]) and limit.bf16 > 0
    assert bench_limit.limit_from_rows([Row("limit", "failed", "")]) is None


def test_runner_hands_the_limit_to_later_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_section(name: str, quick: bool) -> list[Row]:
        seen.append((name, os.environ.get(LIMIT_ENV)))
        if name == "limit":
            what = "torch.matmul [4096, 1024] @ [1024, 4096] {}, 2 threads, best of 3"
            return [
                Row("limit", what.format("fp32"), "190.0 GFLOP/s (median 180.0)"),
                Row("limit", what.format("bf16"), "700.0 GFLOP/s (median 650.0)"),
            ]
        return [Row(name, "x", "1 s")]

    monkeypatch.delenv(LIMIT_ENV, raising=False)
    monkeypatch.setattr(bench_run, "SECTIONS", (("limit", "Limit"), ("eval", "Evaluation")))
    monkeypatch.setattr(bench_run, "run_section", fake_section)
    bench_run.run_sections([], quick=False)
    assert seen[0] == ("limit", None)
    assert json.loads(seen[1][1]) == {"fp32": 190.0, "bf16": 700.0, "threads": 2, "where": ""}
    assert LIMIT_ENV not in os.environ  # restored afterwards


# --- data ---------------------------------------------------------------------------------


def test_write_flickr30k_like_has_the_malformed_row(tmp_path: Path) -> None:
    root = bench_data.write_flickr30k_like(tmp_path / "f30k", 6)
    assert len(list((root / "flickr30k_images").iterdir())) == 6
    lines = (root / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 5 * 6
    assert "2199200615.jpg| 4   A dog runs across the grass ." in lines


def test_bench_data_runs_on_tiny_sizes() -> None:
    rows = bench_data.run(quick=True, sizes=(20, 2))
    check_rows(rows, bench_data.SECTION)
    parse, synthetic = rows
    assert "100 rows" in parse.what and "2 images" in synthetic.what
    cell_seconds(parse.ours)
    cell_seconds(parse.baseline)
    assert parse.baseline.endswith("pandas.read_csv parse only")
    ratio_value(parse.ratio)
    assert parse.target == "— (quick)" and parse.met == "—"
    cell_seconds(synthetic.ours)


# --- extract ------------------------------------------------------------------------------


def test_extract_helpers_on_tiny_inputs(tmp_path: Path) -> None:
    from PIL import Image

    from benchmarks import bench_extract
    from xmr_utils.core.encoders import build_image_encoder

    paths = bench_extract.write_jpegs(tmp_path / "jpg", 2, size=(96, 72))
    assert [p.name for p in paths] == ["00000.jpg", "00001.jpg"]
    with Image.open(paths[0]) as img:
        assert img.size == (96, 72)

    texts = bench_extract.captions(5)
    assert texts == bench_extract.captions(5)  # seeded
    assert all(6 <= len(t.split()) - 1 <= 18 and t.endswith(" .") for t in texts)

    calls = []
    rate, cell = bench_extract.timed(lambda: calls.append(sum(range(10_000))), 50, 1)
    assert len(calls) == 2  # warm-up + one repeat
    assert rate > 0 and math.isfinite(rate)
    assert cell.startswith(f"{rate:.1f}/s (") and cell.endswith(" for 50)")
    cell_seconds(cell.split("(", 1)[1])

    # what ``run`` times, once each (the model load dominates: ~1.5 s apiece)
    lite0 = build_image_encoder("efficientnet_lite0")
    feats = lite0.encode_images(paths, batch_size=2, num_workers=0, progress=False)
    assert np.asarray(feats).shape == (2, 1280)
    bench_extract.naive_lite0(paths[:1])()


def test_extract_cache_writer_streams(tmp_path: Path) -> None:
    from benchmarks import bench_extract

    peak, size = bench_extract.writer_peak_mb(tmp_path, n=4096, dim=256)
    assert size == pytest.approx(4096 * 256 * 4 / 2**20, rel=0.01)  # + the .npy header
    assert 0 < peak < size / 2  # chunks of 512 rows, not the whole 4 MB table


# --- train --------------------------------------------------------------------------------


def test_train_features_and_batches_agree() -> None:
    image, text, owner = bench_train.make_features(12)
    assert image.shape == (12, bench_train.IMAGE_DIM) and image.dtype == np.float32
    assert text.shape == (60, bench_train.TEXT_DIM) and owner.tolist()[:6] == [0] * 5 + [1]
    for batches in (
        bench_train.tensor_batches(image, text, owner, 16),
        bench_train.dataloader_batches(image, text, owner, 16),
    ):
        for _ in range(5):  # more than the 3 batches of one epoch: both are endless
            image_x, text_x, ids = next(batches)
            assert image_x.shape == (16, bench_train.IMAGE_DIM)
            assert text_x.shape == (16, bench_train.TEXT_DIM) and ids.shape == (16,)
            assert torch.equal(image_x, torch.from_numpy(image)[ids])
            # every caption belongs to the image it is paired with
            k = [int(np.flatnonzero((text == row.numpy()).all(axis=1))[0]) for row in text_x]
            assert owner[k].tolist() == ids.tolist()


def test_train_step_epoch_and_interleaving_run() -> None:
    from xmr_utils.core.config import DEFAULT_RECIPE, RECIPES

    recipe = RECIPES[DEFAULT_RECIPE]
    image, text, owner = bench_train.make_features(40)  # 200 pairs: 1 full batch + 72
    seconds, steps, trained = bench_train.time_our_epoch(image, text, owner)
    assert steps == 2 and 0 < seconds < 60
    row = bench_train.val_share_row(DEFAULT_RECIPE, seconds, trained, n_val=8, quick=True)
    ours, before = (float(cell.split("%")[0]) for cell in (row.ours, row.baseline))
    assert 0 < ours < before < 100  # fewer collapse statistics, a smaller share
    assert f"of {recipe.train.epochs} epochs" in row.what

    model, loss_fn, optimizer, _ = bench_train._parts(DEFAULT_RECIPE)
    step = bench_train._step_fn(model, loss_fn, optimizer, recipe.optim.grad_clip)
    before = [p.detach().clone() for p in model.parameters()]
    per_step = bench_train.time_steps(
        bench_train.tensor_batches(image, text, owner, 32), step, n_steps=1, warmup=1
    )
    assert 0 < per_step < 60
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    def fresh() -> object:
        m, lf, opt, _ = bench_train._parts(DEFAULT_RECIPE)
        return bench_train._step_fn(m, lf, opt, recipe.optim.grad_clip)

    times = bench_train.interleaved_step_times(
        {
            "tensor": (bench_train.tensor_batches(image, text, owner, 32), fresh()),
            "dataloader": (bench_train.dataloader_batches(image, text, owner, 32), fresh()),
        },
        rounds=1,
        steps=1,
    )
    assert set(times) == {"tensor", "dataloader"}
    assert all(0 < t < 60 for t in times.values())


def test_val_share_reads_the_histories_of_a_run(tmp_path: Path, capsys) -> None:
    for name, rows in {
        "img2txt-seed": [{"epoch": 1, "seconds": 3.0, "val_seconds": 1.0, "val_collapsed": False}],
        "img2txt-vsepp": [{"epoch": 1, "seconds": 9.0, "val_seconds": 1.0}, {"epoch": 2}],
    }.items():
        folder = ModelDir(tmp_path / "run" / "models" / name)
        folder.create()
        folder.write_history(rows)
    assert val_share.main([str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "run/img2txt-seed: 1 epochs, collapse statistics on 1 | 25% (val 1 s of 4 s)" in out
    assert "run/img2txt-vsepp: 2 epochs, collapse statistics on 0 | 10% (val 1 s of 10 s)" in out
    assert "run: all models: 3 epochs, collapse statistics on 1 | 14% (val 2 s of 14 s)" in out
    with pytest.raises(SystemExit):
        val_share.main([str(tmp_path / "nothing")])
    assert "no history.jsonl" in capsys.readouterr().err


# --- eval ---------------------------------------------------------------------------------


def test_random_unit_is_seeded_and_normalised() -> None:
    x = bench_eval.random_unit(10, 8, seed=1, chunk=4)
    assert x.shape == (10, 8) and x.dtype == torch.float32
    assert torch.allclose(x.norm(dim=1), torch.ones(10))
    assert torch.equal(x, bench_eval.random_unit(10, 8, seed=1, chunk=4))
    assert not torch.equal(x, bench_eval.random_unit(10, 8, seed=2, chunk=4))


def test_seed_style_metrics_equal_ours_on_a_tiny_case() -> None:
    from xmr_utils.core.metrics import evaluate_embeddings

    n = 12
    img = bench_eval.random_unit(n, 16, 1)
    # captions near their image, so that the ranks are not all the same
    txt = torch.nn.functional.normalize(
        img.repeat_interleave(5, 0) + 3.0 * bench_eval.random_unit(5 * n, 16, 2), dim=1
    )
    owner = np.repeat(np.arange(n), 5)
    want = bench_eval.seed_style_metrics(img.numpy(), txt.numpy(), owner)
    got = evaluate_embeddings(img, txt, owner)
    assert len(want) == 2 * (3 + 3 + 2)
    assert 0 < want["i2t_R@1"] < 100 and 0 < want["t2i_R@1"] < 100  # not a degenerate case
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_bench_eval_small_and_scale_on_tiny_sizes() -> None:
    rows = bench_eval.bench_small(quick=True, n_img=20)
    check_rows(rows, bench_eval.SECTION)
    (row,) = rows
    assert "20 x 100 x 1024-d" in row.what
    assert "seed-style numbers agree (float64): yes" in row.what
    cell_seconds(row.ours)
    cell_seconds(row.baseline)
    ratio_value(row.ratio)
    assert row.met in ("yes", "no")

    rows = bench_eval.bench_scale(quick=True, n_img=20)  # a child process, as in `make bench`
    check_rows(rows, bench_eval.SECTION)
    m = re.fullmatch(r"(\d+\.\d) s \((\d+) CPU-s\), peak RSS ([\d,]+) MB", rows[0].ours)
    assert m, rows[0].ours
    assert float(m.group(1)) < 60 and int(m.group(3).replace(",", "")) > 0
    assert "20 x 100 x 1024-d" in rows[0].what and rows[0].met in ("yes", "no")
    assert re.fullmatch(r"\d+\.\d s at the fp32 limit", rows[0].baseline)
    assert rows[0].target == "≤ 60 s, ≤ 4 GB, ≥ 85% of fp32"
    share_of_limit(rows[0].limit)
    share_of_limit(bench_eval.bench_small(quick=True, n_img=20)[0].limit)


def test_eval_child_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    bench_eval._child(10, None)
    bench_eval._child(10, 3)
    whole, chunked = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert set(whole) == {"seconds", "cpu_s", "peak_mb", "rsum", "warmup_s"}
    assert whole["seconds"] > 0 and whole["peak_mb"] > 0
    assert 0 < whole["rsum"] <= 600
    assert chunked["rsum"] == whole["rsum"]


# --- search -------------------------------------------------------------------------------


def test_recall_at_k() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert bench_search.recall_at_k(exact, exact) == 1.0
    assert bench_search.recall_at_k(exact[:, ::-1], exact) == 1.0  # order does not matter
    assert bench_search.recall_at_k(np.array([[1, 2, 9, 9], [0, 0, 0, 0]]), exact) == 0.25


def test_bench_search_runs_on_tiny_sizes() -> None:
    from xmr_utils.core.retrieval import faiss_available

    rows = bench_search.run(quick=True, sizes=(16, 300))
    check_rows(rows, bench_search.SECTION)
    assert "16 queries x 300 items x 1024-d" in rows[0].what
    cell_seconds(rows[0].ours)
    share_of_limit(rows[0].limit)
    if not faiss_available():
        assert rows[1].ours == bench_search.NOT_INSTALLED
        return
    assert rows[0].baseline.endswith(" faiss IndexFlatIP") and rows[0].target == "≤ faiss flat"
    flat_s = cell_seconds(rows[0].baseline)[0]
    ours_s = cell_seconds(rows[0].ours)[0]
    # met is decided on the unrounded times; the cells are rounded, so a tie there says nothing
    if ours_s != flat_s:
        assert rows[0].met == ("yes" if ours_s < flat_s else "no")
    assert rows[0].met in ("yes", "no")
    flat, hnsw = rows[1:]
    share_of_limit(flat.limit)
    assert hnsw.limit == "—"  # not a dense product
    recalls = [
        float(re.search(r"recall@10 vs exact (\d\.\d{4})", r.what).group(1)) for r in (flat, hnsw)
    ]
    assert recalls[0] == 1.0  # both exact
    assert 0.9 <= recalls[1] <= 1.0
    for r in (flat, hnsw):
        cell_seconds(r.ours)
        assert r.baseline.endswith(" exact torch")
        ratio_value(r.ratio)


def test_bench_search_without_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    import xmr_utils.core.retrieval

    monkeypatch.setattr(xmr_utils.core.retrieval, "faiss_available", lambda: False)
    rows = bench_search.run(quick=True, sizes=(4, 50))
    check_rows(rows, bench_search.SECTION)
    assert [r.ours for r in rows[1:]] == [bench_search.NOT_INSTALLED]


# --- e2e (subprocesses faked: the real pipeline takes minutes) ---------------------------


def test_e2e_time_pipeline_reads_finished_json(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        run_dir = Path(cmd[cmd.index("--run-dir") + 1])
        run_dir.mkdir(parents=True)
        (run_dir / "finished.json").write_text(
            json.dumps({"notebook_seconds": {"01_data.ipynb": 1.5, "02_features.ipynb": 2.0}})
        )
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(bench_e2e.subprocess, "run", fake_run)
    seconds, per_notebook = bench_e2e.time_pipeline("smoke")
    assert seen[0][1:5] == ["-m", "xmr_utils.pipeline", "--preset", "smoke"]
    assert 0 <= seconds < 10
    assert per_notebook == {"01_data.ipynb": 1.5, "02_features.ipynb": 2.0}

    monkeypatch.setattr(
        bench_e2e.subprocess,
        "run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "boom"),
    )
    with pytest.raises(RuntimeError, match="pipeline failed: boom"):
        bench_e2e.time_pipeline("smoke")


def test_e2e_time_umap_uses_the_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compile(bench_e2e.UMAP_SNIPPET, "<umap snippet>", "exec")  # at least valid Python

    def fake_run(cmd, env, **kwargs):
        assert env["NUMBA_CACHE_DIR"] == str(tmp_path)
        assert cmd[-1] == bench_e2e.UMAP_SNIPPET
        return subprocess.CompletedProcess(cmd, 0, "a warning\n2.5\n", "")

    monkeypatch.setattr(bench_e2e.subprocess, "run", fake_run)
    assert bench_e2e.time_umap(tmp_path) == 2.5


@pytest.mark.parametrize(
    ("quick", "total", "met"), [(False, 300.0, "yes"), (False, 400.0, "no"), (True, 30.0, "—")]
)
def test_e2e_rows(monkeypatch: pytest.MonkeyPatch, quick: bool, total: float, met: str) -> None:
    presets = []

    def fake_pipeline(preset: str) -> tuple[float, dict[str, float]]:
        presets.append(preset)
        return total, {"01_data.ipynb": 1.25, "02_features.ipynb": 3.0}

    umap_seconds = iter([8.0, 2.0])  # cold, then warm
    monkeypatch.setattr(bench_e2e, "time_pipeline", fake_pipeline)
    monkeypatch.setattr(bench_e2e, "time_umap", lambda cache_dir: next(umap_seconds))
    rows = bench_e2e.run(quick=quick)
    check_rows(rows, "e2e")
    preset = "smoke" if quick else "demo"
    assert presets == [preset]
    assert rows[0].what.startswith(f"`{preset}` pipeline") and rows[0].ours == f"{total:.0f} s"
    assert rows[0].met == met
    assert [(r.what, r.ours) for r in rows[1:3]] == [
        ("  01_data.ipynb", "1.2 s"),
        ("  02_features.ipynb", "3.0 s"),
    ]
    if quick:  # the UMAP cache pair is skipped to keep --quick under 2 minutes
        assert len(rows) == 3
    else:
        assert (rows[3].ours, rows[3].baseline, rows[3].ratio) == (
            "2.0 s",
            "8.0 s (cold cache)",
            "4.0×",
        )


# --- runner -------------------------------------------------------------------------------


def test_runner_main_writes_results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def fake_section(name: str, quick: bool) -> list[Row]:
        calls.append((name, quick))
        return [Row(name, f"{name} thing", "0.123 s (0.100–0.200)", "0.5 s", "4.07×")]

    monkeypatch.setattr(bench_run, "SECTIONS", (("alpha", "Alpha things"), ("beta", "Beta things")))
    monkeypatch.setattr(bench_run, "run_section", fake_section)
    out = tmp_path / "RESULTS.md"
    assert bench_run.main(["--quick", "--out", str(out)]) == 0
    assert calls == [("alpha", True), ("beta", True)]
    text = out.read_text()
    assert text.startswith("# Benchmark results\n")
    assert "`python -m benchmarks.run --quick`" in text
    assert machine_line() in text
    assert "## Alpha things\n\n| what |" in text and "## Beta things\n\n| what |" in text
    assert "| alpha thing | 0.123 s (0.100–0.200) | 0.5 s | 4.07× | — | — | — |" in text
    assert text.index("## Alpha things") < text.index("## Beta things")

    calls.clear()
    assert bench_run.main(["--only", "beta", "--out", str(out)]) == 0
    assert calls == [("beta", False)]
    text = out.read_text()
    assert "`python -m benchmarks.run --only beta`" in text
    assert "## Beta things" in text and "Alpha" not in text

    with pytest.raises(SystemExit) as exc:
        bench_run.main(["--only", "gamma", "--out", str(out)])
    assert exc.value.code == 2


def test_run_section_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real subprocess protocol, on a stand-in ``benchmarks`` package that imports fast."""
    package = tmp_path / "benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "common.py").write_text((ROOT / "benchmarks" / "common.py").read_text())
    (package / "bench_fake.py").write_text(
        "from benchmarks.common import Row\n"
        "def run(quick):\n"
        "    print('noise before the rows')\n"
        "    return [Row('fake', f'quick={quick}', '1.000 s (1.000–1.000)', ratio='2.0×')]\n"
    )
    (package / "bench_broken.py").write_text("def run(quick):\n    raise ValueError('no luck')\n")
    monkeypatch.setattr(bench_run, "ROOT", tmp_path)

    assert bench_run.run_section("fake", True) == [
        Row("fake", "quick=True", "1.000 s (1.000–1.000)", ratio="2.0×")
    ]
    (failed,) = bench_run.run_section("broken", False)
    assert failed.section == "broken"
    assert failed.what == "bench_broken failed (exit 1)"
    assert failed.ours == "ValueError: no luck"


# ------------------------------------------------------------------ bench_quality


def test_selection_split_holds_out_train_images_only() -> None:
    train = np.arange(100, 160)
    fit, select = bench_quality.selection_split(train, 10, seed=0)
    assert len(fit) == 50 and len(select) == 10
    assert set(fit) | set(select) == set(train) and not set(fit) & set(select)
    again = bench_quality.selection_split(train[::-1], 10, seed=0)
    assert np.array_equal(again[1], select)  # seeded, independent of input order
    assert not np.array_equal(bench_quality.selection_split(train, 10, seed=1)[1], select)
    with pytest.raises(ValueError, match="cannot hold out 60 of 60"):
        bench_quality.selection_split(train, 60, seed=0)


def tiny_study(n_images: int = 60) -> bench_quality.StudyData:
    """Captions are noisy linear maps of their image's features; 40 fit / 8 select / 12 val."""
    rng = np.random.default_rng(0)
    img = rng.standard_normal((n_images, 24)).astype(np.float32)
    owner = np.repeat(np.arange(n_images), 5)
    w = rng.standard_normal((24, 12)).astype(np.float32)
    txt = (img[owner] @ w + 0.3 * rng.standard_normal((len(owner), 12))).astype(np.float32)
    return bench_quality.StudyData(
        img, txt, owner, np.arange(40), np.arange(40, 48), np.arange(48, n_images)
    )


def test_score_case_trains_both_models_and_fuses(tmp_path: Path) -> None:
    case = bench_quality.QualityCase(
        "lin",
        "infonce_linear",
        image_encoder="a",
        overrides={"train.epochs": 3, "train.batch_size": 32, "optim.lr": 1e-2},
    )
    rows = bench_quality.score_case(case, tiny_study(), tmp_path)
    assert [r.model for r in rows] == ["img2txt", "txt2img", "fused"]
    for r in rows:
        assert r.metrics["n_images"] == 12 and r.metrics["n_captions"] == 60
        assert 0 <= r.metrics["rsum"] <= 600
    assert rows[0].metrics["rsum"] > 450  # chance on 12 images × 5 captions: about 238
    assert rows[0].collapsed == "no" and rows[2].collapsed == "—"
    assert rows[0].best_epoch is not None and rows[0].epochs_run == 3
    assert rows[2].best_epoch is None and rows[2].train_seconds is None
    assert (tmp_path / "img2txt" / "best.pt").exists() and (tmp_path / "txt2img").is_dir()
    table = bench_quality.results_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + 3 and all(line.count("|") == 15 for line in lines)
    assert "| lin | fused |" in table and "| — | — |" in table


def test_seed_ensembles_fuse_every_model_and_tuning_rows_train_one(tmp_path: Path) -> None:
    from xmr_utils.app.study import fuse_scores

    fast = {"train.epochs": 2, "train.batch_size": 32, "optim.lr": 1e-2}
    case = bench_quality.QualityCase("ens", "infonce_linear", overrides=fast, seeds=(0, 3))
    rows = bench_quality.score_case(case, tiny_study(), tmp_path)
    assert [r.model for r in rows] == [
        "img2txt@seed0",
        "txt2img@seed0",
        "img2txt@seed3",
        "txt2img@seed3",
        "fused",
    ]
    assert (tmp_path / "txt2img@seed3" / "best.pt").exists()
    one = bench_quality.QualityCase(
        "one", "infonce_linear", overrides=fast, directions=("img2txt",)
    )
    single = bench_quality.score_case(one, tiny_study(), tmp_path / "one")
    assert [r.model for r in single] == ["img2txt"]  # one model: nothing to fuse
    assert single[0].metrics == rows[0].metrics  # seed 0 is the recipe's own seed
    # the fusion rule: z-score each matrix, average; for two it is study.fuse_scores
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal((4, 6)) * k + k for k in (1.0, 3.0, 0.5))
    np.testing.assert_array_equal(bench_quality.fuse_all([a, b]), fuse_scores(a, b))
    z = [(m - m.mean()) / m.std() for m in (a, b, c)]
    np.testing.assert_allclose(bench_quality.fuse_all([a, b, c]), (z[0] + z[1] + z[2]) / 3)


def test_tuning_table_shows_the_gain_over_the_base_row() -> None:
    base, sqrt = bench_quality.TUNING[0], bench_quality.TUNING[-3]
    rows = [
        fake_score(base.name, "infonce_linear", "img2txt", 300.0, bench_quality.TUNE_IMAGE),
        fake_score(sqrt.name, "infonce_linear", "img2txt", 306.5, bench_quality.TUNE_IMAGE),
    ]
    table = bench_quality.tuning_table(rows, [base, sqrt])
    assert f"| {sqrt.name} | signed sqrt + L2 image inputs |" in table
    assert "| **306.5** | +6.5 | 2 / 5 |" in table and "| +0.0 |" in table
    assert bench_quality.tuning_table(rows, []) == ""
    names = [c.name for c in bench_quality.ALL_CASES]
    assert len(names) == len(set(names))  # each case trains into its own folder


def fake_score(
    case: str, recipe: str, model: str, rsum: float, encoder: str, collapsed: str = "no"
) -> bench_quality.ModelScore:
    metrics = {c: rsum / 6 for c in bench_quality.COLUMNS}
    metrics.update({"rsum": rsum, "i2t_mAP@10": 0.1, "t2i_mAP@10": 0.2})
    return bench_quality.ModelScore(case, recipe, model, encoder, metrics, collapsed, 2, 5, 10.0)


def test_report_names_the_best_and_the_seed_and_merges_into_results(tmp_path: Path) -> None:
    study = bench_quality.STUDY_IMAGE
    rows = [
        fake_score("seed", "seed", "img2txt", 40.0, study, "yes (txt_effective_rank < 2.0)"),
        fake_score("seed", "seed", "txt2img", 30.0, study, "no"),
        fake_score("good", "vsepp", "fused", 310.0, study, "—"),
        fake_score("ref", "vsepp", "fused", 400.0, "other"),
    ]  # not on the study features
    cases = [bench_quality.QualityCase("seed", "seed", note="16 of 50 epochs")]
    block = bench_quality.report(
        rows,
        cases,
        data=Path("/data/f8k"),
        n_fit=5500,
        n_select=500,
        n_val=1000,
        feature_seconds={"minilm:mean": 0.0},
        train_seconds=600.0,
        command="cmd",
    )
    assert block.startswith(bench_quality.START_MARK) and block.endswith(
        bench_quality.END_MARK + "\n"
    )
    assert "`good`, fused model (the scores of its models fused): rsum **310.0**" in block
    assert "target ≥ 335: not met" in block and "10.0 min" in block
    assert "img2txt: rsum 40.0, collapsed yes (txt_effective_rank < 2.0)" in block
    assert "- `seed`: 16 of 50 epochs" in block

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Speed\n\n| a |\n")
    bench_quality.write_section(results, block)
    bench_quality.write_section(results, block.replace("310.0", "320.0"))  # replaced, once
    text = results.read_text()
    assert text.count(bench_quality.START_MARK) == 1 and "320.0" in text and "310.0" not in text
    assert text.startswith("# Benchmark results\n\n## Speed\n\n| a |\n")
    # `make bench` rewrites the speed sections and keeps the quality block
    assert bench_run.quality_block(text) == block.replace("310.0", "320.0")
    assert bench_run.quality_block("# nothing here") == ""


def test_runner_keeps_the_quality_block(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench_run, "SECTIONS", (("alpha", "Alpha things"),))
    monkeypatch.setattr(
        bench_run, "run_section", lambda name, quick: [Row(name, "x", "1.000 s (1.000–1.000)")]
    )
    out = tmp_path / "RESULTS.md"
    block = f"{bench_quality.START_MARK}\n## Quality\n\nrsum 321\n{bench_quality.END_MARK}\n"
    out.write_text("# Benchmark results\n\nold speed table\n\n" + block)
    assert bench_run.main(["--out", str(out)]) == 0
    text = out.read_text()
    assert "old speed table" not in text and "## Alpha things" in text
    assert text.endswith(block)


def test_bench_quality_without_data_says_where_it_looked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert bench_quality.main(["--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "no Flickr8k folder found" in err and "--data DIR" in err
    with pytest.raises(SystemExit):
        bench_quality.main(["--cases", "nope"])


def test_bench_gpu_says_it_needs_a_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from benchmarks import bench_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        bench_gpu.run(quick=True)
    assert stop.value.code == 2 and "needs a CUDA GPU" in capsys.readouterr().err
    assert [spec for spec, _ in bench_gpu.ENCODERS] == [
        "vgg16",
        "clip:ViT-B-32?pretrained=none",
        "efficientnet_lite0",
    ]


def test_keep_reads_back_the_rows_of_cases_not_rerun() -> None:
    study = bench_quality.STUDY_IMAGE
    earlier = [
        fake_score("seed", "seed", "img2txt", 40.0, study, "yes (txt_effective_rank < 2.0)"),
        fake_score("vsepp", "vsepp", "fused", 288.5, study, "—"),
        fake_score("gone", "vsepp", "fused", 1.0, study, "—"),  # no longer a case: dropped
    ]
    block = f"{bench_quality.START_MARK}\n{bench_quality.results_table(earlier)}\n"
    block += bench_quality.END_MARK
    back = bench_quality.rows_from_block("# Results\n\n" + block)
    assert [(r.case, r.model) for r in back] == [("seed", "img2txt"), ("vsepp", "fused")]
    assert back[0].metrics["rsum"] == 40.0 and back[0].metrics["i2t_R@1"] == pytest.approx(6.7)
    assert back[0].collapsed == "yes (txt_effective_rank < 2.0)"
    assert (back[0].best_epoch, back[0].epochs_run, back[0].train_seconds) == (2, 5, 10.0)
    assert back[1].recipe == "vsepp" and back[1].image_encoder == study
    assert bench_quality.rows_from_block("no block here") == []

    by_name = {c.name: c for c in bench_quality.ALL_CASES}
    now = [fake_score("infonce", "infonce", "fused", 300.0, study, "—")]
    rows, cases, kept = bench_quality.merge_kept(now, [by_name["infonce"]], block)
    assert kept == ["seed", "vsepp"]  # in the order of the cases, the rerun one replaced
    assert [r.case for r in rows] == ["seed", "vsepp", "infonce"]
    assert [c.name for c in cases] == ["seed", "vsepp", "infonce"]
    assert bench_quality.merge_kept(now, [by_name["infonce"]], "") == (
        now,
        [by_name["infonce"]],
        [],
    )


def test_limit_around_takes_the_faster_measurement_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    speeds = iter([(200.0, 190.0), (250.0, 240.0)])
    monkeypatch.setattr(common, "matmul_gflops", lambda dtype: next(speeds))
    monkeypatch.setattr(common, "machine_limit", lambda: common.Limit(210.0, 800.0, 2))
    result, limit = common.limit_around(lambda: "ran")
    assert result == "ran" and (limit.fp32, limit.bf16, limit.threads) == (250.0, 800.0, 2)
    assert limit.share(225.0) == (
        "90% (225 of 250 GFLOP/s fp32, the faster of 200 before and 250 after this row)"
    )


# --- preset -------------------------------------------------------------------------------


def test_bench_preset_rows_and_block(tmp_path: Path) -> None:
    from benchmarks import bench_preset

    run_dir = tmp_path / "runs" / "20261201-000000-abcd"
    folder = ModelDir(run_dir / "models" / "img2txt-seed")
    folder.create()
    folder.write_history([{"epoch": 1, "seconds": 9.0, "val_seconds": 1.0}])
    seconds = {"00_data": 30.0, "01_features": 20.0, "02_train_img2txt": 400.0}
    (run_dir / "finished.json").write_text(json.dumps({"notebook_seconds": seconds}))
    speed = bench_preset.speed_note((181.4, 806.0), (190.0, 799.5))
    assert speed == "host matmul 181 / 190 GFLOP/s fp32, 806 / 800 bf16 before / after"
    emulated = bench_preset.speed_note((122.0, 0.41), (119.6, 0.38))  # an AVX2-only CPU
    assert emulated == "host matmul 122 / 120 GFLOP/s fp32, 0.4 / 0.4 bf16 before / after"
    rows = bench_preset.preset_rows(800.0, run_dir, speed)
    assert rows[0].ours == "13.3 min" and rows[0].met == "yes" and "features cached" in rows[0].what
    assert rows[0].what.endswith(speed)
    assert [r.what.strip() for r in rows[1:4]] == list(seconds)
    assert rows[-1].ours.startswith("10% (val 1 s of 10 s)")
    seconds["01_features"] = 600.0  # extraction in this run: not the measurement
    (run_dir / "finished.json").write_text(json.dumps({"notebook_seconds": seconds}))
    slow = bench_preset.preset_rows(800.0, run_dir)[0]
    assert slow.met == "no" and "EXTRACTED in this run" in slow.what
    block = bench_preset.preset_block(rows, tmp_path)
    assert block.startswith(bench_preset.START_MARK) and block.rstrip().endswith(
        bench_preset.END_MARK
    )


def test_bench_preset_run_finds_its_new_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import bench_preset

    root = tmp_path / "runs"
    (root / "older").mkdir(parents=True)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        (root / "newer").mkdir()
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(bench_preset.subprocess, "run", fake_run)
    seconds, run_dir = bench_preset.run_preset(tmp_path / "flickr8k", root)
    assert run_dir == root / "newer" and seconds >= 0
    assert calls[0][3:] == ["--preset", "flickr8k", "--runs-root", str(root), "-p", "dataset",
                            str(tmp_path / "flickr8k")]  # fmt: skip
    monkeypatch.setattr(
        bench_preset.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 3)
    )
    with pytest.raises(RuntimeError, match="exit 3"):
        bench_preset.run_preset(tmp_path / "flickr8k", root)


def test_bench_preset_without_flickr8k_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import bench_preset

    with pytest.raises(SystemExit) as exc:
        bench_preset.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "R.md")])
    assert exc.value.code == 2 and "no Flickr8k folder found" in capsys.readouterr().err
