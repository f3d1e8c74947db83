"""The command line under a read-only ``outputs/`` and Ctrl-C: one line each, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xmr_utils.app import cli

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _write_notebooks(folder: Path, sources: dict[str, str]) -> Path:
    import nbformat

    folder.mkdir(parents=True)
    for name, source in sources.items():
        params = nbformat.v4.new_code_cell('run_dir: str = ""  # set by the pipeline')
        params.metadata["tags"] = ["parameters"]
        book = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(source)])
        book.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(book, folder / f"{name}.ipynb")
    return folder


def _make_unwritable(folder: Path) -> bool:
    """Make ``folder`` unwritable for this process (chmod, or chattr +i as root); False when
    neither works here."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.mkdir()
    except PermissionError:
        return True
    probe.rmdir()
    result = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    return result.returncode == 0


def _make_writable(folder: Path) -> None:
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
    folder.chmod(0o755)


def test_a_read_only_outputs_folder_gives_one_sentence_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    if not _make_unwritable(outputs):
        pytest.skip("cannot make a folder read-only for this user here")
    try:
        argv = ["--preset", "smoke", "--runs-root", str(outputs / "runs")]
        code = cli.main([*argv, "--notebooks", str(NOTEBOOKS)])
    finally:
        _make_writable(outputs)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: cannot write {outputs / 'runs'} (")
    assert f"{outputs} is not a folder this user can write" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_outputs_being_a_file_gives_one_sentence_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = tmp_path / "outputs"
    outputs.write_text("not a folder")
    code = cli.main(
        ["--preset", "smoke", "--runs-root", str(outputs / "runs"), "--notebooks", str(NOTEBOOKS)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: cannot write {outputs / 'runs'}")
    assert f"(Not a directory): {outputs} is a file, not a folder;" in err
    assert err.count("\n") == 1


def test_ctrl_c_gives_one_line_and_leaves_the_run_to_resume(tmp_path: Path) -> None:
    """A real SIGINT to the pipeline's process group, as a terminal's Ctrl-C sends it."""
    notebooks = _write_notebooks(
        tmp_path / "notebooks",
        {
            "00_ok": "x = 1",
            "01_slow": "import time\ntime.sleep(120)",
            "02_never": "open('never-ran', 'w')",
        },
    )
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "xmr_utils.pipeline", "--preset", "smoke"]
    command += ["--notebooks", str(notebooks), "--runs-root", str(runs)]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out = ""
        while "01_slow.ipynb ..." not in out:
            line = process.stdout.readline()
            assert line, f"the pipeline ended early: {out}{process.stderr.read()}"
            out += line
        time.sleep(3)  # let the kernel start and enter the cell
        os.killpg(process.pid, signal.SIGINT)
        rest, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    # the kernel's own log lines ("[IPKernelApp] ...") are not the pipeline's output
    ours = [line for line in err.splitlines() if not line.startswith("[IPKernelApp]")]
    assert process.returncode == 130, err
    assert ours == [
        f"interrupted: the run in {run} is unfinished; continue it with "
        f"python -m xmr_utils.pipeline --resume {run}"
    ]
    assert "Traceback" not in err
    assert (run / "executed" / "01_slow.ipynb").exists()  # saved with the interrupted cell
    assert not (run / "executed" / "02_never.ipynb").exists()
    assert not (run / "finished.json").exists()
    assert not (tmp_path / "never-ran").exists()


def test_the_interrupt_line_for_a_grid_says_how_to_continue() -> None:
    line = cli.interrupted_message({"grid": Path("configs/ablation.yaml")})
    assert line == (
        "interrupted: rerun python -m xmr_utils.pipeline --grid configs/ablation.yaml to "
        "continue the grid (finished cells are skipped)"
    )
