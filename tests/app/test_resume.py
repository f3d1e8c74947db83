"""``python -m xmr_utils.pipeline --resume RUN``: a failed or killed run continues from its last
finished notebook and its models' last checkpoints, with the run's own parameters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from xmr_utils.app import cli, runs

ROOT = Path(__file__).resolve().parents[2]

# 00 counts its executions; 01 fails while a marker file exists; 02 writes a result.
BODIES = {
    "00_first": "from pathlib import Path\n"
    "p = Path(run_dir) / 'count.txt'\n"
    "p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))",
    "01_flaky": "from pathlib import Path\n"
    "assert not (Path(run_dir).parent / 'FAIL').exists(), 'the marker says fail'",
    "02_last": "from pathlib import Path\n(Path(run_dir) / 'result.txt').write_text(str(epochs))",
}


def _notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, body in BODIES.items():
        params = nbformat.v4.new_code_cell('run_dir: str = ""\nepochs: int = 0')
        params.metadata["tags"] = ["parameters"]
        book = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
        book.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(book, folder / f"{name}.ipynb")
    return folder


def test_resume_continues_a_failed_run_from_its_last_finished_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebooks = _notebooks(tmp_path / "nbs")
    root = tmp_path / "runs"
    run = root / "r1"
    (root).mkdir()
    (root / "FAIL").write_text("")
    common = ["--notebooks", str(notebooks), "--runs-root", str(root)]
    assert cli.main(["--run-dir", str(run), "-p", "epochs", "7", *common]) == 1
    err = capsys.readouterr().err
    assert "01_flaky failed" in err and f"--resume {run}" in err
    assert runs.run_state(run) == "failed" and runs.latest_run(root) is None

    assert cli.main(["--resume", str(run), *common]) == 1  # still failing: nothing lost
    (root / "FAIL").unlink()
    assert cli.main(["--resume", str(run), *common]) == 0
    assert (run / "count.txt").read_text() == "1"  # 00 ran once, before the failures
    assert (run / "result.txt").read_text() == "7"  # the run's own recorded epochs
    assert runs.run_state(run) == "finished" and runs.latest_run(root) == run
    assert cli.main(["--resume", str(run), *common]) == 2
    assert "is finished; there is nothing to resume" in capsys.readouterr().err


def test_resume_refuses_options_that_would_change_the_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--resume", str(tmp_path), "-p", "epochs", "3"])


def _pipeline(run: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "xmr_utils.pipeline",
        *extra,
        "--runs-root",
        str(run.parent),
    ]


def _history(run: Path) -> dict[str, list[dict]]:
    rows = {}
    for path in sorted((run / "models").glob("*/history.jsonl")):
        rows[path.parent.name] = [
            {k: v for k, v in json.loads(line).items() if "seconds" not in k}
            for line in path.read_text().splitlines()
        ]
    return rows


@pytest.mark.slow
def test_a_killed_pipeline_resumes_bit_exact(tmp_path: Path) -> None:
    """Kill the whole pipeline (SIGKILL, kernels included) while notebook 02 trains the seed
    model, resume it, and compare with the same run uninterrupted."""
    setup = [
        "--preset",
        "smoke",
        "--only",
        "00,01,02,03,04",
        "-p",
        "epochs",
        "6",
        "-p",
        "data_dir",
        str(tmp_path / "data"),
        "-p",
        "features_dir",
        str(tmp_path / "features"),
    ]
    whole = tmp_path / "runs" / "whole"
    done = subprocess.run(
        [*_pipeline(whole, tmp_path, *setup), "--run-dir", str(whole)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    cut = tmp_path / "runs" / "cut"
    proc = subprocess.Popen(
        [*_pipeline(cut, tmp_path, *setup), "--run-dir", str(cut)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    target = cut / "models" / "img2txt-seed" / "last.pt"
    deadline = time.monotonic() + 300
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists(), "the pipeline ended before the seed model started training"
    assert "02_train_img2txt" not in runs.read_status(cut)["done"]  # killed inside 02
    assert runs.run_state(cut) == "unfinished"

    resumed = subprocess.run(
        [*_pipeline(cut, tmp_path), "--resume", str(cut)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert (cut / "metrics.json").read_bytes() == (whole / "metrics.json").read_bytes()
    assert _history(cut) == _history(whole)
