"""Grid cells as Dask tasks: placement and thread caps, the options' checks, the sequential
path never importing Dask, and a worker killed mid-cell whose cell resumes elsewhere.

The 2-cell smoke grid on a 2-worker LocalCluster, compared with the sequential table, is in
``test_ablation.py`` beside the sequential run it is compared with.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from xmr_utils.app import cli
from xmr_utils.app.ablation import cluster, tasks
from xmr_utils.core.errors import XmrError

ROOT = Path(__file__).resolve().parents[2]


def _notebook(folder: Path, name: str, params: str, body: str) -> None:
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    book = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body)])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}  # fmt: skip
    nbformat.write(book, folder / name)


#: Notebook 01 of the kill test: a loop of ``steps`` "epochs" that checkpoints after each one
#: and starts from the checkpoint it finds; on a fresh start of the vsepp cell it asks to be
#: killed at epoch 2 (writes its worker's pid and its own into ``gate/kill``) and waits.
TRAIN = """\
import json, os, pathlib, time
run = pathlib.Path(run_dir)
ckpt = run / "models" / "last.json"
start = json.loads(ckpt.read_text())["epoch"] if ckpt.exists() else 0
def log(line):
    with open(run / "log.txt", "a") as f:
        f.write(line + "\\n")
log(f"01 start={start} worker={os.getppid()} threads={os.environ.get('OMP_NUM_THREADS')}")
for epoch in range(start, steps):
    if recipes == "vsepp" and start == 0 and epoch == 2:
        pathlib.Path(gate, "kill").write_text(f"{os.getppid()} {os.getpid()}")
        time.sleep(300)
    ckpt.parent.mkdir(exist_ok=True)
    ckpt.write_text(json.dumps({"epoch": epoch + 1}))
    log(f"01 epoch {epoch}")
m = {"i2t_R@1": 10.0, "t2i_R@1": 5.0, "rsum": 60.0 + steps}
rec = {"dataset": "tiny", "split": "test", "image_encoder": "x", "text_encoder": "y",
       "models": {recipes: {"img2txt": m, "fused": m}}}
(run / "metrics.json").write_text(json.dumps(rec))
"""


def _two_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _notebook(
        folder,
        "00_data.ipynb",
        'run_dir: str = ""\nrecipes: str = "vsepp"',
        "import os, pathlib\n"
        "with open(pathlib.Path(run_dir, 'log.txt'), 'a') as f:\n"
        "    f.write(f'00 worker={os.getppid()}\\n')",
    )
    _notebook(
        folder,
        "01_train.ipynb",
        'run_dir: str = ""\nrecipes: str = "vsepp"\nsteps: int = 4\ngate: str = ""',
        TRAIN,
    )
    return folder


# ---------------------------------------------------------------- placement and threads


def test_cuda_cells_ask_for_one_gpu_and_others_for_nothing() -> None:
    assert tasks.cell_resources({"device": "cuda"}) == {"GPU": 1}
    assert tasks.cell_resources({"device": "cuda:1"}) == {"GPU": 1}
    assert tasks.cell_resources({"device": "auto"}) == {}
    assert tasks.cell_resources({"device": "cpu"}) == {}
    assert tasks.cell_resources({}) == {}


def test_cell_threads_are_the_workers_share() -> None:
    assert tasks.cell_threads(slots=1, cores=8) == 8
    assert tasks.cell_threads(slots=3, cores=8) == 2
    assert tasks.cell_threads(slots=4, cores=2) == 1  # never 0
    assert tasks.cell_threads(slots=1, cores=8, override="3") == 3
    assert tasks.thread_env(2) == {
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
    }


def test_local_workers_split_the_cores_and_pin_one_gpu_each() -> None:
    cpu_only = cluster.local_worker_options(2, cores=2, gpus=[])
    assert cpu_only == [
        {"nthreads": 1, "env": {"XMR_CELL_THREADS": "1"}, "resources": {}},
        {"nthreads": 1, "env": {"XMR_CELL_THREADS": "1"}, "resources": {}},
    ]
    mixed = cluster.local_worker_options(3, cores=16, gpus=["2", "5"])
    assert [o["resources"] for o in mixed] == [{"GPU": 1}, {"GPU": 1}, {}]
    assert [o["env"]["CUDA_VISIBLE_DEVICES"] for o in mixed] == ["2", "5", ""]
    assert {o["env"]["XMR_CELL_THREADS"] for o in mixed} == {"5"}


def test_a_cells_prints_reach_its_emitter_and_other_threads_print_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = io.StringIO()
    monkeypatch.setattr(sys, "stdout", original)
    lines: list[str] = []
    other_done = threading.Event()

    def other() -> None:
        print("not a cell")
        other_done.set()

    with tasks.cell_prints(lines.append):
        print("[xmr] 00_data.ipynb ...", flush=True)
        sys.stdout.write("[xmr] 00_data.ipynb done")
        sys.stdout.write(" in 1.0 s\n\n")
        threading.Thread(target=other).start()
        other_done.wait(5)
    print("after")
    assert lines == ["[xmr] 00_data.ipynb ...", "[xmr] 00_data.ipynb done in 1.0 s"]
    assert original.getvalue() == "not a cell\nafter\n"
    assert sys.stdout is original


# ---------------------------------------------------------------- options and validation


def test_cluster_options_are_checked_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebooks = _two_notebooks(tmp_path / "nbs")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\npreset: smoke\naxes: {recipes: [vsepp]}\n")
    base = ["--grid", str(grid), "--notebooks", str(notebooks),
            "--ablations-root", str(tmp_path / "out")]  # fmt: skip
    cases = {
        ("--workers", "2", "--scheduler", "tcp://127.0.0.1:1"): "pass one",
        ("--workers", "-1"): "--workers -1: pass a number of workers of 1 or more",
        ("--scheduler", str(tmp_path / "nope.json")): "no such scheduler file",
    }
    for extra, expected in cases.items():
        assert cli.main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and "Traceback" not in err, err
    grid.write_text("name: g\npreset: smoke\naxes: {recipes: [vsepp, nope]}\n")
    assert cli.main([*base, "--workers", "2"]) == 2  # the grid is checked before any cluster
    assert "axes.recipes[1]: unknown recipe 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--workers", "2"])
    assert exit_.value.code == 2
    assert "need --grid FILE" in capsys.readouterr().err


def test_a_scheduler_that_does_not_answer_is_one_clear_error() -> None:
    options = cluster.ClusterOptions(scheduler="tcp://127.0.0.1:9", timeout=2)
    with pytest.raises(XmrError, match=r"--scheduler tcp://127.0.0.1:9: no Dask scheduler"):
        cluster.open_client(options)


def test_cuda_cells_on_a_machine_without_a_gpu_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "visible_gpus", lambda: [])
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    _notebook(notebooks, "00_data.ipynb", 'run_dir: str = ""\ndevice: str = "auto"', "pass")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\npreset: smoke\naxes: {device: [cpu, cuda]}\n")
    argv = ["--grid", str(grid), "--notebooks", str(notebooks),
            "--ablations-root", str(tmp_path / "out"), "--workers", "2"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "cell device=cuda sets device=cuda but this machine shows no CUDA device" in err


# ---------------------------------------------------------------- running


def test_without_workers_or_scheduler_dask_is_never_imported(tmp_path: Path) -> None:
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    _notebook(notebooks, "00_data.ipynb", 'run_dir: str = ""\nepochs: int = 0', "pass")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\npreset: smoke\naxes: {epochs: [1]}\n")
    code = (
        "import sys; from xmr_utils.app import cli; "
        f"code = cli.main(['--grid', {str(grid)!r}, '--notebooks', {str(notebooks)!r}, "
        f"'--ablations-root', {str(tmp_path / 'out')!r}]); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')); "
        "print('@@', code, loaded)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert "@@ 0 []" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "out" / "g" / "runs" / "epochs=1" / "finished.json").exists()


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_a_worker_killed_mid_cell_has_the_cell_resumed_elsewhere(tmp_path: Path) -> None:
    notebooks = _two_notebooks(tmp_path / "nbs")
    gate = tmp_path / "gate"
    gate.mkdir()
    grid = tmp_path / "g.yaml"
    grid.write_text(
        f"name: g\npreset: smoke\nparams: {{gate: {str(gate)!r}}}\n"
        "axes: {recipes: [vsepp, seed]}\n"
    )
    argv = [sys.executable, "-m", "xmr_utils.pipeline", "--grid", str(grid),
            "--notebooks", str(notebooks), "--ablations-root", str(tmp_path / "out"),
            "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while not (gate / "kill").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the vsepp cell never reached epoch 2"
            time.sleep(0.2)
        assert (gate / "kill").exists(), proc.communicate()[0].decode()
        worker, kernel = (int(p) for p in (gate / "kill").read_text().split())
        os.kill(worker, signal.SIGKILL)
        out, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.decode()
    assert proc.returncode == 0, text
    run = tmp_path / "out" / "g" / "runs" / "recipes=vsepp"
    log = (run / "log.txt").read_text().splitlines()
    threads = str(max(1, tasks.usable_cores() // 2))
    assert [line.split(" worker=")[0] for line in log] == [
        "00", "01 start=0", "01 epoch 0", "01 epoch 1", "01 start=2", "01 epoch 2", "01 epoch 3",
    ], log  # fmt: skip
    assert log[1].endswith(f"worker={worker} threads={threads}")
    resumed_on = int(log[4].split("worker=")[1].split()[0])
    assert resumed_on != worker and log[4].endswith(f"threads={threads}")
    assert "recipes=vsepp: its worker was lost; resuming on" in text
    assert "Dask dashboard: http" in text
    assert not _alive(kernel), "the killed worker's kernel outlived it"
    assert json.loads((run / "finished.json").read_text())["notebooks"] == [
        "00_data.ipynb",
        "01_train.ipynb",
    ]
    assert sorted(p.name for p in run.parent.iterdir()) == ["recipes=seed", "recipes=vsepp"]
    assert not (run / "owner.json").exists()  # the run's lock was released at the end
    table = pd.read_csv(tmp_path / "out" / "g" / "results.csv")
    assert table["recipes"].tolist() == ["vsepp", "vsepp", "seed", "seed"]
    assert set(table["rsum"]) == {64.0}


def test_cells_run_with_strict_reproducibility_and_leave_the_environment_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xmr_utils.app.ablation import cells

    monkeypatch.delenv("MKL_CBWR", raising=False)
    with cells.reproducible_kernels():
        assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    assert "MKL_CBWR" not in os.environ
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")  # the user's choice wins
    with cells.reproducible_kernels():
        assert os.environ["MKL_CBWR"] == "COMPATIBLE"
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"


PRODUCT_BITS = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
x, w = torch.randn(128, 1280, generator=g), torch.randn(1280, 256, generator=g)
print(hashlib.sha256((x @ w).numpy().tobytes()).hexdigest())
"""


def test_under_that_setting_a_product_has_the_same_bits_on_one_and_two_threads() -> None:
    """The shape MKL splits over threads in training (K = 1280): what made the demo grid's
    table differ between the sequential runner and a 2-worker cluster."""
    from xmr_utils.app.ablation import cells

    env = {**os.environ, **cells.REPRODUCIBLE_ENV}
    bits = [
        subprocess.run(
            [sys.executable, "-c", PRODUCT_BITS, str(threads)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        for threads in (1, 2)
    ]  # fmt: skip
    assert bits[0] == bits[1] and len(bits[0]) == 64
