"""Notebook hygiene: committed without outputs, a typed parameters cell, no logic of their own."""

import ast
import json
from pathlib import Path

import pytest
from ipykernel.ipkernel import IPythonKernel
from jupyter_client.kernelspec import KernelSpecManager

from xmr_utils.app import runner

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_is_typed_literals_that_papermill_reads(path: Path) -> None:
    tagged = [c for c in _cells(path) if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse("".join(tagged[0]["source"]))
    names = []
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), "parameters are `name: type = literal` lines"
        ast.literal_eval(node.value)  # a literal, nothing derived
        names.append(node.target.id)
    # papermill silently skips lines it cannot parse; every line must be declared
    assert sorted(runner.declared_parameters(path)) == sorted(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_functions_or_classes_in_notebooks(path: Path) -> None:
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            for node in ast.walk(ast.parse("".join(cell["source"]))):
                assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_metadata_is_the_installed_kernels_so_lab_opens_them_unmodified(path: Path) -> None:
    """JupyterLab writes the kernel's kernelspec and language_info into a notebook when its
    kernel starts; a notebook holding other values opens "modified" and asks to be saved."""
    meta = json.loads(path.read_text())["metadata"]
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert meta["kernelspec"] == {
        "display_name": spec.display_name,
        "language": spec.language,
        "name": "python3",
    }
    expected = dict(IPythonKernel.language_info)
    # the patch release differs between machines with the pinned Python 3.11: compare X.Y only
    version = meta["language_info"].pop("version")
    assert version.split(".")[:2] == expected.pop("version").split(".")[:2]
    assert meta["language_info"] == expected


def test_the_notebooks_defaults_are_the_demo_a_quick_study() -> None:
    """Stepping through JupyterLab with the defaults does what `make demo` does (minutes); the
    full schedules are one parameter away (epochs = 0), as the flickr8k preset sets."""
    declared = {k: v for path in NOTEBOOKS for k, v in runner.declared_parameters(path).items()}
    assert {k: declared[k] for k in runner.PRESETS["demo"]} == dict(runner.PRESETS["demo"])
    assert runner.PRESETS["flickr8k"]["epochs"] == 0
