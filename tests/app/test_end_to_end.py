"""All eight notebooks through papermill on a tiny synthetic set (the `smoke` preset, run once
per session by the ``smoke_project`` fixture of conftest.py, which the browser tests share).

Checks the plumbing end to end — every notebook runs, the run folder holds what the README
promises — not the science (that is benchmarks/ and the demo)."""

import json
import subprocess

import pytest
from lab_harness import SmokeProject


@pytest.mark.slow
def test_pipeline_runs_every_notebook(smoke_project: SmokeProject) -> None:
    run_dir, done = smoke_project.run, smoke_project
    assert run_dir.parent == smoke_project.home / "outputs" / "runs"

    executed = sorted(p.name for p in (run_dir / "executed").glob("*.ipynb"))
    assert [name[:2] for name in executed] == ["00", "01", "02", "03", "04", "05", "06", "07"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test"
    for recipe in ("vsepp", "seed"):
        assert set(metrics["models"][recipe]) == {"img2txt", "txt2img", "fused"}
        for values in metrics["models"][recipe].values():
            for key in ("i2t_R@1", "t2i_R@10", "i2t_mAP@10", "t2i_mAP@1", "i2t_mAPcap@5", "rsum"):
                assert 0 <= values[key] <= (600 if key == "rsum" else 100)
    for model in ("img2txt-vsepp", "txt2img-seed"):
        folder = run_dir / "models" / model
        assert (folder / "best.pt").is_file() and (folder / "last.pt").is_file()
        assert len((folder / "history.jsonl").read_text().splitlines()) == 2  # smoke: 2 epochs
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {
        "00_caption_lengths",
        "00_samples",
        "04_rsum",
        "05_umap_img2txt",
        "05_collapse_curves",
        "04_grid_t2i_vsepp_img2txt",
        "05_snapshots_img2txt",
        "05_snapshots_txt2img",
    } <= figures
    assert metrics["caveat"] == ""  # reported on test, not on the selection split
    assert json.loads((run_dir / "finished.json").read_text())["notebook_seconds"]
    assert "rsum" in done.stdout  # the summary table
    assert "without encryption" not in done.stdout + done.stderr  # Curve-keyed kernels

    # the executed 06 keeps the query browser's widget state, so it reopens drawn, not with
    # "Error displaying widget: model not found"
    book = json.loads((run_dir / "executed" / "06_query_browser.ipynb").read_text())
    state = book["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    views = [
        out["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for cell in book["cells"]
        for out in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]
    assert views and set(views) <= set(state)

    # a finished run is never overwritten: a second pipeline into it is refused
    cmd = [*smoke_project.cmd, "--run-dir", str(run_dir)]
    again = subprocess.run(
        cmd,
        cwd=smoke_project.home,
        env=smoke_project.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 2 and "already holds a finished run" in again.stderr
