"""CLIP zero-shot beside the trained recipes, through all seven notebooks: ``clip:ViT-B-32`` as
both encoders (random weights, ``pretrained=none``: offline; the numbers mean nothing) on the
smoke set, recipes ``zeroshot``, ``clip_linear`` and ``vsepp``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIP = "clip:ViT-B-32?pretrained=none"


@pytest.mark.slow
def test_zeroshot_runs_through_every_notebook_beside_trained_recipes(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "clip"
    cmd = [sys.executable, "-m", "xmr_utils.pipeline", "--preset", "smoke"]
    for name, value in (
        ("image_encoder", CLIP),
        ("text_encoder", CLIP),
        ("recipes", "zeroshot,clip_linear,vsepp"),
        ("data_dir", str(tmp_path / "data")),
        ("features_dir", str(tmp_path / "features")),
    ):
        cmd += ["-p", name, value]
    cmd += ["--run-dir", str(run_dir), "--runs-root", str(tmp_path / "runs")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == {"zeroshot", "clip_linear", "vsepp"}
    zeroshot = metrics["models"]["zeroshot"]
    assert set(zeroshot) == {"img2txt", "txt2img", "fused"}
    assert zeroshot["img2txt"] == zeroshot["txt2img"]  # one space, two identical models
    assert metrics["image_encoder"] == metrics["text_encoder"] == CLIP
    for direction in ("img2txt", "txt2img"):
        folder = run_dir / "models" / f"{direction}-zeroshot"
        (row,) = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
        assert row["epoch"] == 0 and "val_rsum" in row
        assert (folder / "snapshots" / "epoch_000.npz").is_file()
    figures = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"04_rsum", "04_grid_t2i_zeroshot_img2txt", "05_snapshots_img2txt"} <= figures

    def outputs(name: str) -> str:
        notebook = json.loads((run_dir / "executed" / name).read_text())
        return json.dumps([c.get("outputs", []) for c in notebook["cells"]])

    assert "zeroshot" in outputs("04_evaluate.ipynb")  # the results table lists it
    browser = outputs("06_query_browser.ipynb")
    assert "zeroshot" in browser and "clip_linear" in browser  # each model answers the query
    feature_folder = tmp_path / "features"
    manifests = sorted(p.name for p in feature_folder.rglob("clip__*.manifest.json"))
    assert manifests == [
        "clip__ViT-B-32+pretrained=none+tower=image.manifest.json",
        "clip__ViT-B-32+pretrained=none+tower=text.manifest.json",
    ]
