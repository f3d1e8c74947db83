"""The seed's configuration in one command, as on a machine with network, against a local mirror:

    python -m xmr_utils.pipeline --preset demo -p dataset flickr30k -p image_encoder vgg16 \\
        -p text_encoder fasttext:mean -p download_weights True

The dataset is a tiny generated set in the Flickr30k (Kaggle) layout under ``data_dir``; VGG16's
weights (a few-hundred-kB fake with VGG16's keys and shapes) come from a file server on
127.0.0.1, through torchvision's download into a fresh torch hub cache. The notebook kernels
are separate processes, so the weights URL is pointed at the server by a ``sitecustomize``
on their ``PYTHONPATH`` (the test's stand-in for download.pytorch.org).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_servers import serve_files, url_of
from test_encoders_downloads import fake_vgg16

from xmr_utils.core.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[3]
SITECUSTOMIZE = """
import os
if os.environ.get("XMR_TEST_VGG16_URL"):
    from torchvision.models import VGG16_Weights
    VGG16_Weights.IMAGENET1K_V1.value.url = os.environ["XMR_TEST_VGG16_URL"]
"""


@pytest.mark.slow
def test_seed_configuration_is_one_command(tmp_path: Path) -> None:
    generate(tmp_path / "data" / "flickr30k", 40)
    served = fake_vgg16(tmp_path / "mirror")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    run_dir = tmp_path / "runs" / "seed"
    cmd = [sys.executable, "-m", "xmr_utils.pipeline", "--preset", "demo"]
    for name, value in (
        ("dataset", "flickr30k"),
        ("image_encoder", "vgg16"),
        ("text_encoder", "fasttext:mean"),
        ("download_weights", "True"),
        ("data_dir", str(tmp_path / "data")),
        ("features_dir", str(tmp_path / "features")),
        ("recipes", "seed,vsepp"),
        ("epochs", "1"),
    ):
        cmd += ["-p", name, value]
    cmd += ["--run-dir", str(run_dir), "--runs-root", str(tmp_path / "runs")]
    cmd += ["--only", "00,01,02,03,04"]
    with serve_files(served.parent) as server:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
            "TORCH_HOME": str(tmp_path / "torch"),
            "XMR_TEST_VGG16_URL": f"{url_of(server)}/{served.name}",
        }
        env.pop("XMR_DOWNLOAD_WEIGHTS", None)
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert server.requests == [f"GET /{served.name}"]  # downloaded once, by notebook 01
    cached = tmp_path / "torch" / "hub" / "checkpoints" / served.name
    assert cached.read_bytes() == served.read_bytes()
    (folder,) = [p for p in (tmp_path / "features").iterdir() if p.is_dir()]  # one corpus
    manifest = json.loads((folder / "vgg16__fc7.manifest.json").read_text())
    assert manifest["weights_id"].startswith(served.name + ":")
    assert manifest["shape"] == [40, 4096] and manifest["run"]["device"] == "cpu"
    text = json.loads((folder / "fasttext__mean.manifest.json").read_text())
    assert text["shape"][1] == 100 and text["dataset"]["splits"]  # fitted on train only
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["image_encoder"] == "vgg16" and metrics["text_encoder"] == "fasttext:mean"
    assert set(metrics["models"]) == {"seed", "vsepp"}
