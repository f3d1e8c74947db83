"""Run folders: ``outputs/runs/<run_id>/`` — their layout, creation, lookup, states and views.

A run folder (:class:`RunLayout`) holds ``params.json``, ``status.json``, ``executed/NN_*.ipynb``,
``corpus.json``, ``metrics.json``, ``models/<direction>-<recipe>/``, ``figures/*.png`` and, once
its notebooks have all run, ``finished.json``. Its states (:func:`run_state`):

* ``running`` — a live process executes it (:mod:`xmr_utils.app.run_lock`); nobody else may
  write into it, and ``LATEST`` never points into it;
* ``failed`` / ``unfinished`` — a notebook failed, or it was interrupted; ``python -m
  xmr_utils.pipeline --resume RUN`` continues it;
* ``finished`` — sealed: never written again. Notebooks 04–06 *view* it read-only
  (:func:`open_view`); what a view writes goes to ``views/<run_id>/`` beside ``runs/``.

``LATEST`` (in the runs root) names the run that ``run_dir = ""`` follows: the newest run a
notebook 00 started in JupyterLab, or the newest run a pipeline *finished* — never a run being
executed and never a failed pipeline run. Outside notebook 00, ``run_dir = ""`` never creates a
run.

Relative paths in notebook parameters are resolved against the project root (the folder
holding ``pyproject.toml`` and ``xmr_utils/``), so a notebook behaves the same whether papermill
runs it from the root or JupyterLab runs it from ``notebooks/``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmr_utils.app.run_lock import check_not_taken, live_owner
from xmr_utils.core.config import DIRECTIONS
from xmr_utils.core.errors import XmrError, unknown_choice

DEFAULT_RUNS_ROOT = "outputs/runs"
LATEST_FILE = "LATEST"
FINISHED_FILE = "finished.json"
STATUS_FILE = "status.json"
VIEW_RECORD = "view.json"
#: Who made a run (recorded in ``status.json``): the pipeline, or notebook 00 in JupyterLab.
CREATED_BY = ("pipeline", "notebook")


def project_root() -> Path:
    """The xmr project folder: ``$XMR_HOME`` if set, else the nearest parent of the working
    directory holding both ``pyproject.toml`` and ``xmr_utils/``, else the working directory."""
    if os.environ.get("XMR_HOME"):
        return Path(os.environ["XMR_HOME"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "xmr_utils").is_dir():
            return folder
    return here


def resolve_path(path: str | Path) -> Path:
    """``path`` if absolute, else relative to :func:`project_root`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-xxxx``: sortable by time, unique within a second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class RunLayout:
    """Where each file of one run folder lives; every reader and writer goes through it."""

    root: Path

    @property
    def params(self) -> Path:
        return self.root / "params.json"

    @property
    def status(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def finished(self) -> Path:
        return self.root / FINISHED_FILE

    @property
    def executed(self) -> Path:
        return self.root / "executed"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def executed_notebook(self, stem: str) -> Path:
        """The executed copy of notebook ``stem`` (e.g. ``"02_train_img2txt"``)."""
        return self.executed / f"{stem}.ipynb"

    def model_folder(self, direction: str, recipe: str) -> Path:
        """``models/<direction>-<recipe>/``: one trained model."""
        if direction not in DIRECTIONS:
            raise unknown_choice("direction", direction, DIRECTIONS)
        return self.models / f"{direction}-{recipe}"

    def model_folders(self, direction: str | None = None) -> dict[tuple[str, str], Path]:
        """``(recipe, direction) -> folder`` of every model folder (one ``direction`` only when
        given), in name order."""
        found = {}
        for folder in sorted(self.models.glob("*-*")) if self.models.is_dir() else []:
            head, _, recipe = folder.name.partition("-")
            if folder.is_dir() and head in DIRECTIONS and (direction in (None, head)):
                found[(recipe, head)] = folder
        return found

    def is_finished(self) -> bool:
        return self.finished.exists()


def create_run(
    params: dict[str, Any],
    *,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    run_dir: str | Path = "",
    created_by: str = "pipeline",
    plan: RunPlan | None = None,
) -> Path:
    """Create a new run folder with ``params.json`` and ``status.json``.

    ``run_dir`` names the folder explicitly; it must not hold a run already. A run made by
    notebook 00 (``created_by="notebook"``) becomes ``LATEST`` at once; a pipeline's run only
    when it finishes (:func:`mark_finished`). ``plan`` records which notebooks the run is for
    and whether it is sealed when they are done (what ``--resume`` continues).
    """
    if created_by not in CREATED_BY:
        raise XmrError(f"created_by must be one of {CREATED_BY}, got {created_by!r}")
    root = resolve_path(runs_root)
    folder = resolve_path(run_dir) if run_dir else root / new_run_id()
    layout = RunLayout(folder)
    if layout.params.exists():
        state = "a finished run" if layout.is_finished() else "a run"
        raise XmrError(
            f"run folder {folder} already holds {state}; nothing was overwritten — "
            "pass a new --run-dir or leave it empty for a fresh run id"
        )
    for sub in (layout.executed, layout.figures, layout.models):
        sub.mkdir(parents=True, exist_ok=True)
    plan = plan or RunPlan((), seal=False)
    status = {
        "created_by": created_by,
        "plan": list(plan.notebooks),
        "seal": plan.seal,
        "done": {},
        "failed": None,
    }
    write_json(layout.status, status)
    write_json(layout.params, params)
    if created_by == "notebook":
        set_latest(folder, root)
    return folder


@dataclass(frozen=True)
class RunPlan:
    """The notebooks (file names, in order) a pipeline run is for, and whether the run is
    sealed (``finished.json``) once they are all done — a run of a subset (``--only``) is not."""

    notebooks: tuple[str, ...]
    seal: bool = True


def read_plan(run_dir: Path) -> RunPlan:
    """The run's :class:`RunPlan` (from ``status.json``)."""
    status = read_status(run_dir)
    return RunPlan(tuple(status.get("plan") or ()), bool(status.get("seal", False)))


def set_latest(folder: Path, runs_root: str | Path = DEFAULT_RUNS_ROOT) -> None:
    """Point ``<runs_root>/LATEST`` at ``folder``."""
    root = resolve_path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (LATEST_FILE + ".tmp")
    tmp.write_text(str(folder) + "\n")
    tmp.replace(root / LATEST_FILE)


def latest_run(runs_root: str | Path = DEFAULT_RUNS_ROOT) -> Path | None:
    """The run ``LATEST`` names (None when there is none or it was removed)."""
    pointer = resolve_path(runs_root) / LATEST_FILE
    if not pointer.exists():
        return None
    folder = Path(pointer.read_text().strip())
    return folder if (folder / "params.json").exists() else None


def read_status(run_dir: Path) -> dict[str, Any]:
    """``status.json``: who made the run, the notebooks done (name -> seconds), the failure."""
    path = RunLayout(Path(run_dir)).status
    if not path.exists():  # a run from before status.json: made by the pipeline
        return {"created_by": "pipeline", "done": {}, "failed": None}
    return read_json(path)


def record_notebook(run_dir: Path, stem: str, seconds: float, error: str = "") -> None:
    """Record in ``status.json`` that notebook ``stem`` finished (or failed with ``error``)."""
    status = read_status(run_dir)
    if error:
        status["failed"] = {"notebook": stem, "error": error, "seconds": round(seconds, 1)}
    else:
        status["done"][stem] = round(seconds, 1)
        status["failed"] = None
    write_json(RunLayout(Path(run_dir)).status, status)


def run_state(run_dir: str | Path) -> str:
    """``finished``, ``running`` (a live process owns it), ``failed`` or ``unfinished``."""
    layout = RunLayout(Path(run_dir))
    if layout.is_finished():
        return "finished"
    if live_owner(layout.root) is not None:
        return "running"
    return "failed" if read_status(layout.root).get("failed") else "unfinished"


def mark_finished(
    run_dir: Path, summary: dict[str, Any], *, runs_root: str | Path | None = None
) -> None:
    """Seal ``run_dir`` (later writers are refused) and, with ``runs_root``, make it LATEST."""
    write_json(RunLayout(Path(run_dir)).finished, summary)
    if runs_root is not None:
        set_latest(Path(run_dir), runs_root)


def _existing_run(run_dir: str | Path) -> Path:
    folder = resolve_path(run_dir)
    if not RunLayout(folder).params.exists():
        raise XmrError(
            f"run folder {folder} does not exist or has no params.json; run notebook 00 "
            "first (or make demo), or leave run_dir empty"
        )
    return folder


def open_for_writing(
    run_dir: str | Path = "", *, runs_root: str | Path = DEFAULT_RUNS_ROOT
) -> Path:
    """The run a notebook 01–03 writes into: ``run_dir``, or for ``""`` the ``LATEST`` run.

    Refused: a finished run (sealed), a run another live process executes, and ``""`` when
    there is no latest run or it is finished — a run is never created here (notebook 00 does).
    """
    if run_dir:
        folder = _existing_run(run_dir)
    else:
        latest = latest_run(runs_root)
        if latest is None:
            raise XmrError(
                f"there is no run to continue under {resolve_path(runs_root)}; run notebook 00 "
                "first (it starts a run), or set run_dir"
            )
        folder = latest
    if RunLayout(folder).is_finished():
        raise XmrError(
            f"run folder {folder} holds a finished run and is never overwritten; run notebook "
            "00 to start a new run (notebooks 04-06 can view this one read-only)"
        )
    check_not_taken(folder)
    return folder


@dataclass(frozen=True)
class RunView:
    """What notebooks 04–06 read and where they write.

    ``run`` is the run folder read; ``out`` receives this notebook's own outputs (``figures/``,
    ``metrics.json``): the run itself while it is being built, else ``views/<run_id>/`` beside
    the runs folder, so a finished run is never written; ``read_only`` says which.
    """

    run: Path
    out: Path
    read_only: bool


def newest_finished_run(runs_root: str | Path = DEFAULT_RUNS_ROOT) -> Path | None:
    """The finished run under ``runs_root`` with the newest ``finished.json``."""
    root = resolve_path(runs_root)
    done = [f.parent for f in root.glob(f"*/{FINISHED_FILE}")] if root.is_dir() else []
    return max(done, key=lambda r: (r / FINISHED_FILE).stat().st_mtime, default=None)


def view_folder(run: Path) -> Path:
    """Where a read-only view of ``run`` writes: ``<runs>/../views/<run_id>/`` (suffixed when
    another run of that name already has a view there)."""
    base = run.parent.parent if run.parent.name == "runs" else run.parent
    folder = base / "views" / run.name
    for n in range(2, 1000):
        record = folder / VIEW_RECORD
        if not record.exists() or read_json(record).get("run") == str(run):
            break
        folder = base / "views" / f"{run.name}-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / VIEW_RECORD, {"run": str(run), "note": "read-only view of a finished run"})
    return folder


def open_view(run_dir: str | Path = "", *, runs_root: str | Path = DEFAULT_RUNS_ROOT) -> RunView:
    """The run notebooks 04–06 read: ``run_dir``, or for ``""`` the ``LATEST`` run (else the
    newest finished one). A finished run is viewed read-only; an unfinished one that nobody
    executes is continued; one that another live process executes is refused."""
    if run_dir:
        folder = _existing_run(run_dir)
    else:
        found = latest_run(runs_root) or newest_finished_run(runs_root)
        if found is None:
            raise XmrError(
                f"there is no run under {resolve_path(runs_root)} yet; run make demo (or "
                "notebooks 00-03) first, or set run_dir"
            )
        folder = found
    if RunLayout(folder).is_finished():
        return RunView(folder, view_folder(folder), read_only=True)
    check_not_taken(folder)
    return RunView(folder, folder, read_only=False)


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path) -> Any:
    """Read JSON, with a clear error naming the file when it is missing or malformed."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise XmrError(f"{path} does not exist; run the notebook that writes it first") from None
    except json.JSONDecodeError as err:
        raise XmrError(f"{path} is not valid JSON (line {err.lineno}): {err.msg}") from None


def update_json(path: Path, keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    """Set ``obj[keys[0]][keys[1]]... = value`` in the JSON file at ``path`` (created if absent)."""
    obj: dict[str, Any] = read_json(path) if path.exists() else {}
    node = obj
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    write_json(path, obj)
    return obj


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def record_params(run_dir: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge one notebook's parameters into ``params.json`` and return the whole record, so
    later notebooks read the dataset and encoders chosen earlier from a single source.

    A pipeline's run recorded every parameter when it started; a notebook opened on it with
    other values is refused (it would silently retrain or re-extract with them), naming the
    parameter, both values and the two ways on.
    """
    path = RunLayout(Path(run_dir)).params
    params: dict[str, Any] = read_json(path) if path.exists() else {}
    if read_status(Path(run_dir)).get("created_by") == "pipeline":
        for name, value in values.items():
            if name in params and params[name] != value and params[name] != _jsonable(value):
                raise XmrError(
                    f"run {run_dir} was made by the pipeline with {name}={params[name]!r}; this "
                    f"notebook has {name}={value!r}. Set {name} = {params[name]!r} to continue "
                    f"it here, resume it with python -m xmr_utils.pipeline --resume {run_dir}, "
                    "or run notebook 00 to start a new run"
                )
    params.update(values)
    write_json(path, params)
    return params


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def read_params(run_dir: Path) -> dict[str, Any]:
    """The run's recorded parameters (``params.json``)."""
    return read_json(Path(run_dir) / "params.json")
