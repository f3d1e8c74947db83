"""The notebook runner: presets, the notebooks' declared parameters, and papermill execution.

:func:`run_notebooks` executes the study notebooks ``NN_*.ipynb`` in order into a run folder's
``executed/``; each notebook gets ``run_dir`` plus those of the run's parameters that its
``parameters`` cell declares. The command line on top of it is :mod:`xmr_utils.app.cli`.
"""

from __future__ import annotations

import ast
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmr_utils.app.env import apply_defaults as apply_env_defaults
from xmr_utils.app.interrupt import interrupt_kernel_on_sigint
from xmr_utils.app.parameters import check_parameter, parse_parameter
from xmr_utils.app.run_lock import own_run
from xmr_utils.app.runs import (
    RunLayout,
    mark_finished,
    read_json,
    read_params,
    read_plan,
    read_status,
    record_notebook,
    resolve_path,
    run_state,
)
from xmr_utils.core import hardware
from xmr_utils.core.errors import XmrError, unknown_choice

NOTEBOOK_DIR = "notebooks"

#: Parameter presets. Values not named here keep the notebooks' own defaults, which are a quick
#: study on the synthetic set (12 epochs per recipe): what stepping through JupyterLab runs.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    # `make demo`: the whole study on the offline synthetic dataset in a few minutes.
    "demo": {
        "dataset": "synthetic",
        "synthetic_images": 600,
        "image_encoder": "efficientnet_lite0",
        "text_encoder": "minilm:mean",
        "recipes": "vsepp,seed",
        # 12 epochs for every recipe keeps the demo within minutes on 2 cores; the seed
        # recipe's caption embeddings have already collapsed by then (notebook 05).
        "epochs": 12,
    },
    # The end-to-end test: tens of images, 2 epochs — checks the plumbing, not the science.
    "smoke": {
        "dataset": "synthetic",
        "synthetic_images": 40,
        "image_encoder": "efficientnet_lite0",
        "text_encoder": "glove:mean",
        "recipes": "vsepp,seed",
        "epochs": 2,
        "umap_points": 60,
    },
    # Real images: Flickr8k under data/flickr8k (or pass -p dataset PATH), with the features
    # and recipes of the quality benchmark (benchmarks/bench_quality.py): its best, infonce_sqrt
    # on MiniLM + TF-IDF captions (case infonce_linear+sqrt+tfidf), beside vsepp and the seed.
    "flickr8k": {
        "dataset": "flickr8k",
        "image_encoder": "efficientnet_lite0:tta+efficientnet_lite2:tta",
        "text_encoder": "minilm:mean+tfidf",
        "recipes": "infonce_sqrt,vsepp,seed",
        # each recipe's own schedule (the notebooks' default, 12 epochs, is the quick study)
        "epochs": 0,
    },
}

#: Preset values that pay only where bfloat16 matrix products are native
#: (:func:`xmr_utils.core.hardware.native_bf16`): :func:`preset_parameters` adds them there.
#: The seed's 4096-wide heads are ~95% of the ``flickr8k`` preset's arithmetic: under bf16
#: autocast a seed epoch trained in ~4.2 s (5.7 s in float32) on a CPU with AMX and collapsed
#: just the same (README, make bench-preset); on a CPU without native bf16 (AVX2 only) the
#: same products run 10x to 300x slower than float32, so there the seed stays float32, like the
#: other recipes everywhere.
NATIVE_BF16_PRESETS: Mapping[str, Mapping[str, Any]] = {
    "flickr8k": {"recipe_overrides": "seed:train.precision=bf16"},
}


def preset_parameters(preset: str) -> dict[str, Any]:
    """The values ``preset`` sets on this machine: :data:`PRESETS`, plus
    :data:`NATIVE_BF16_PRESETS` where bfloat16 products are native (the run's ``params.json``
    records what was chosen, so a resumed run keeps it)."""
    if preset not in PRESETS:
        raise unknown_choice("preset", preset, PRESETS)
    params = dict(PRESETS[preset])
    if preset in NATIVE_BF16_PRESETS and hardware.native_bf16("cpu"):
        params.update(NATIVE_BF16_PRESETS[preset])
    return params


@dataclass(frozen=True)
class NotebookResult:
    """One executed notebook: its name, seconds, and the error line when it failed."""

    name: str
    seconds: float
    error: str = ""


def notebook_paths(notebook_dir: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The study notebooks ``NN_*.ipynb`` in order."""
    folder = resolve_path(notebook_dir)
    paths = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise XmrError(f"no notebooks NN_*.ipynb found in {folder}")
    return paths


def declared_parameters(path: Path) -> dict[str, Any]:
    """Name -> default value of the notebook's ``parameters`` cell (papermill's inspection gives
    the source text of each default; the cell holds literals only, so it evaluates safely).

    The default has the declared type (``epochs: int = 0``), so the type of the default is the
    type every value of that parameter is checked against (:mod:`xmr_utils.app.parameters`).
    """
    import papermill

    declared = papermill.inspect_notebook(str(path))
    defaults = {}
    for name, info in declared.items():
        default = ast.literal_eval(info["default"])
        kind = info.get("inferred_type_name") or "None"
        if kind in _TYPES and not isinstance(default, _TYPES[kind]):
            raise XmrError(
                f"{path.name}: parameter {name} is declared {kind} but defaults to "
                f"{default!r}; make the default a {kind}"
            )
        defaults[name] = default
    return defaults


#: papermill's inferred type name -> the types a default of that declaration may have
_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
}


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal when it parses as one (``3``, ``0.5``, ``True``), else
    the string itself (``flickr8k``, ``vsepp,seed``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def resolve_parameters(
    preset: str, overrides: Sequence[tuple[str, str]], declared: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Every notebook parameter's effective value: the notebooks' defaults, then the preset
    (:func:`preset_parameters`), then the ``-p`` overrides (each name must be declared by
    some notebook).

    Every value is checked against the type its notebook declares and its domain before
    anything runs (:func:`xmr_utils.app.parameters.check_parameter`): a bad one raises
    XmrError in one sentence naming the parameter, the value and what is accepted.
    """
    defaults = {k: v for nb in declared.values() for k, v in nb.items() if k != "run_dir"}
    params = {**defaults, **preset_parameters(preset)}
    for name, text in overrides:
        params[name] = parse_parameter(name, text, declared)
    for name, value in params.items():
        check_parameter(name, value, declared)
    return params


def select_notebooks(paths: Sequence[Path], only: str) -> list[Path]:
    """The notebooks whose two-digit prefix is in the comma list ``only`` (all when empty)."""
    if not only:
        return list(paths)
    wanted = [p.strip() for p in only.split(",") if p.strip()]
    by_prefix = {p.name[:2]: p for p in paths}
    for prefix in wanted:
        if prefix not in by_prefix:
            raise unknown_choice("notebook", prefix, by_prefix)
    return [by_prefix[prefix] for prefix in sorted(wanted)]


def _kernel_config() -> Any:
    """The kernels' traitlets config: CurveZMQ keys for each kernel whose kernelspec declares
    support (ipykernel's does), so its loopback traffic is encrypted and ipykernel no longer
    warns at every start that it is not (``configs/jupyter_lab_config.py`` does the same)."""
    import zmq
    from traitlets.config import Config

    encryption = "auto" if zmq.has("curve") else "disabled"
    return Config({"KernelManager": {"transport_encryption": encryption}})


def trust_notebook(path: Path) -> None:
    """Sign an executed copy as the user's own output, as ``jupyter trust`` does (the
    signature goes to the user's Jupyter data folder, the file is unchanged). JupyterLab shows
    an untrusted notebook's widgets and HTML as plain text, so unsigned the query browser of an
    executed 06 reopened as ``VBox(children=...)``. A signature store that cannot be written
    (read-only home, a database locked for too long) costs the trust, never the run: it is
    said on stderr."""
    import sqlite3

    import nbformat
    from nbformat.sign import NotebookNotary

    try:
        NotebookNotary().sign(nbformat.read(path, as_version=4))
    except (OSError, sqlite3.Error) as err:
        print(
            f"[xmr] note: {path.name} is not signed ({err}); JupyterLab will show its widgets "
            f"as text until you run `jupyter trust {path}`",
            file=sys.stderr,
            flush=True,
        )


def run_notebooks(
    paths: Sequence[Path], run_dir: Path, params: Mapping[str, Any], *, log_output: bool = False
) -> list[NotebookResult]:
    """Execute ``paths`` in order into ``run_dir/executed``; stop at the first failure.

    Each finished (or failed) notebook is recorded in the run's ``status.json``, so
    :func:`resume_run` knows where to continue. The caller owns the run
    (:func:`execute_run` holds its lock). After each notebook, the data-quality findings it
    recorded (:func:`data_findings`) are printed, one ``[xmr] data: ...`` line each; Ctrl-C
    stops the running cell (:mod:`xmr_utils.app.interrupt`) and raises ``KeyboardInterrupt``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    kernel_config = _kernel_config()
    apply_env_defaults()  # inherited by the kernels papermill starts
    results = []
    shown: list[str] = []  # findings already printed
    for path in paths:
        declared = declared_parameters(path)
        nb_params = {k: v for k, v in params.items() if k in declared}
        nb_params["run_dir"] = str(run_dir)
        start = time.perf_counter()
        print(f"[xmr] {path.name} ...", flush=True)
        executed = RunLayout(run_dir).executed_notebook(path.stem)
        try:
            with interrupt_kernel_on_sigint() as interrupts:
                papermill.execute_notebook(
                    str(path),
                    str(executed),
                    parameters=nb_params,
                    kernel_name="python3",
                    progress_bar=False,
                    log_output=log_output,
                    cwd=str(resolve_path(".")),
                    kernel_manager_class=interrupts.manager_class,
                    config=kernel_config,
                )
        except PapermillExecutionError as err:
            trust_notebook(executed)
            if interrupts.pressed:  # Ctrl-C stopped the cell: the caller says so in one line
                seconds = time.perf_counter() - start
                record_notebook(run_dir, path.stem, seconds, error="interrupted (Ctrl-C)")
                raise KeyboardInterrupt from None
            line = f"{err.ename}: {err.evalue}".strip()
            results.append(NotebookResult(path.stem, time.perf_counter() - start, line))
            record_notebook(run_dir, path.stem, results[-1].seconds, error=line)
            break
        trust_notebook(executed)
        results.append(NotebookResult(path.stem, time.perf_counter() - start))
        record_notebook(run_dir, path.stem, results[-1].seconds)
        print(f"[xmr] {path.name} done in {results[-1].seconds:.1f} s", flush=True)
        for line in data_findings(run_dir):
            if line not in shown:
                shown.append(line)
                print(f"[xmr] data: {line}", flush=True)
    return results


def data_findings(run_dir: Path) -> list[str]:
    """The data-quality findings recorded in the run's validation report (``corpus.json``,
    written by notebook 00, text-encoding counts added by 01): one short line each."""
    path = RunLayout(Path(run_dir)).corpus
    if not path.exists():
        return []
    validation = read_json(path).get("validation", {})
    return [
        *validation.get("findings", []),
        *validation.get("text_encoding", {}).get("findings", []),
    ]


def execute_run(
    run_dir: Path,
    paths: Sequence[Path],
    params: Mapping[str, Any],
    *,
    log_output: bool = False,
    runs_root: str | Path | None = None,
) -> list[NotebookResult]:
    """Run ``paths`` into ``run_dir`` while owning it (:func:`xmr_utils.app.run_lock.own_run`:
    nobody else can write into it, its kernels can). When every notebook of the run's plan is
    done and the plan seals, seal the run and, with ``runs_root``, make it ``LATEST`` there. A
    failed or interrupted run stays unsealed and never becomes LATEST."""
    with own_run(run_dir):
        results = run_notebooks(paths, run_dir, params, log_output=log_output)
        plan, done = read_plan(run_dir), read_status(run_dir)["done"]
        complete = all(Path(name).stem in done for name in plan.notebooks)
        if plan.seal and complete and not any(r.error for r in results):
            summary = {"notebook_seconds": dict(done), "notebooks": list(plan.notebooks)}
            mark_finished(run_dir, summary, runs_root=runs_root)
    return results


def resume_run(
    run_dir: str | Path,
    *,
    notebook_dir: str | Path = NOTEBOOK_DIR,
    log_output: bool = False,
    runs_root: str | Path | None = None,
) -> list[NotebookResult]:
    """Continue an unfinished run with its own recorded parameters: the notebooks of its plan
    that are not done yet, in order. Training inside notebooks 02/03 resumes from each
    model's ``last.pt``, so the result equals an uninterrupted run. Refused for a finished run
    and for a run that a live process owns."""
    run = resolve_path(run_dir)
    if not RunLayout(run).params.exists():
        raise XmrError(f"{run} holds no run (no params.json); nothing to resume")
    state = run_state(run)
    if state == "finished":
        raise XmrError(f"run {run} is finished; there is nothing to resume")
    if state == "running":
        raise XmrError(f"run {run} is being executed by another process; it cannot be resumed")
    by_name = {p.name: p for p in notebook_paths(notebook_dir)}
    plan = read_plan(run).notebooks or tuple(read_params(run).get("notebooks") or by_name)
    missing = [name for name in plan if name not in by_name]
    if missing:
        raise XmrError(f"run {run} planned notebook(s) {missing} that are not in {notebook_dir}")
    done = read_status(run)["done"]
    todo = [by_name[name] for name in plan if Path(name).stem not in done]
    print(f"[xmr] resuming {run}: {len(done)} notebook(s) done, {len(todo)} to run", flush=True)
    return execute_run(run, todo, read_params(run), log_output=log_output, runs_root=runs_root)


def summary_table(metrics: Mapping[str, Any]) -> str:
    """Plain-text table of the test metrics: one row per recipe × model."""
    cols = (
        "i2t_R@1",
        "i2t_R@5",
        "i2t_R@10",
        "t2i_R@1",
        "t2i_R@5",
        "t2i_R@10",
        "rsum",
        "i2t_mAP@10",
        "t2i_mAP@10",
    )
    head = f"{'recipe':<10} {'model':<8} " + " ".join(f"{c:>10}" for c in cols)
    lines = [head, "-" * len(head)]
    for recipe, models in metrics.get("models", {}).items():
        for model, values in models.items():
            cells = " ".join(f"{float(values.get(c, float('nan'))):>10.2f}" for c in cols)
            lines.append(f"{recipe:<10} {model:<8} {cells}")
    split = metrics.get("split", "?")
    caveat = f"\nnote: {metrics['caveat']}" if metrics.get("caveat") else ""
    return f"{metrics.get('dataset', '?')}, {split} split\n" + "\n".join(lines) + caveat
