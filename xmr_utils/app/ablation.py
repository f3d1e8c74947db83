"""Ablation grids: one pipeline run per cell of a parameter grid, and their combined table.

    python -m xmr_utils.pipeline --grid configs/ablation.yaml

A grid file (YAML) names a ``preset`` (one of :data:`xmr_utils.app.runner.PRESETS`), optional
fixed ``params`` applied to every cell, ``axes`` (parameter -> list of values; the cells are
their cartesian product, first axis slowest), optional ``notebooks`` and an optional ``name``::

    name: recipes-x-text          # default: the file name without .yaml
    preset: demo
    params: {epochs: 8}
    axes:
      recipes: [seed, vsepp]      # a value may list several recipes: "vsepp,seed"
      text_encoder: [minilm:mean, glove:mean]
    notebooks: "00,01,02,03,04"   # the default

Every name must be a parameter some notebook declares, every value a string, number or
boolean of the type that notebook declares; recipes and encoders are checked against their
registries. A bad file raises :class:`~xmr_utils.core.errors.XmrError` naming the file and key.

The default ``notebooks`` are 00-04: 04 writes ``metrics.json``, everything the table needs.
05 (UMAP and collapse curves, about 25 s per cell on the demo set) and 06 (the widget
browser) write nothing the table reads; add them to ``notebooks`` to keep their figures.

What a grid writes, under ``outputs/ablations/<name>/``::

    grid.yaml        the grid as used (with any -p overrides folded into params)
    runs/<cell-id>/  one ordinary run folder per cell (params.json, executed/, metrics.json ...)
    results.csv      one row per (cell, recipe, model), with the cell's axis values as columns
    results.md       the same as a markdown table
    comparison.png   rsum per cell and recipe, one bar per model

A cell's run is sealed (``finished.json``) once its notebooks ran, and never written again:
running the grid again skips finished cells, so an interrupted grid resumes and a grid with
a value added runs only the new cells. A failed or interrupted attempt is kept for reading
and the cell is retried in a fresh folder ``runs/<cell-id>.try2`` (``.try3`` ...). A finished
cell whose recorded parameters differ from what the grid now asks for is refused (exit 2):
give the changed grid a new ``name``. Features are cached in ``features_dir`` (default
``data/features``), so cells sharing encoders extract them once.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr_utils.app import viz
from xmr_utils.app.runner import (
    PRESETS,
    declared_parameters,
    notebook_paths,
    parse_value,
    resolve_parameters,
    run_notebooks,
)
from xmr_utils.app.runs import (
    FINISHED_FILE,
    create_run,
    mark_finished,
    read_json,
    resolve_path,
)
from xmr_utils.core import encoders
from xmr_utils.core.config import parse_recipes
from xmr_utils.core.errors import XmrError, unknown_choice

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd

DEFAULT_ABLATIONS_ROOT = "outputs/ablations"
DEFAULT_NOTEBOOKS = "00,01,02,03,04"
LATEST_FILE = "LATEST"
GRID_KEYS: tuple[str, ...] = ("name", "preset", "params", "axes", "notebooks")
MODELS: tuple[str, ...] = ("img2txt", "txt2img", "fused")
#: Columns taken from each run's metrics.json, after the cell's axis values.
RUN_COLUMNS: tuple[str, ...] = ("dataset", "split", "image_encoder", "text_encoder")
_METRIC = re.compile(r"^(i2t|t2i)_(R|mAP)@(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_ID = 150


@dataclass(frozen=True)
class GridCell:
    """One cell of a grid: its axis values and every notebook parameter of its run.

    ``values`` are ``(axis, value)`` pairs in axis order; ``params`` is the full parameter set
    (notebook defaults, then the preset, the fixed params and the cell's values).
    """

    cell_id: str
    values: tuple[tuple[str, Any], ...]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class GridSpec:
    """A validated grid file: the runs to make and where they go.

    ``params`` are the fixed overrides as written (file, then command line); ``axes`` the
    ``(name, values)`` pairs in file order; ``notebooks`` the two-digit prefixes to run.
    """

    path: Path
    name: str
    preset: str
    params: Mapping[str, Any]
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    notebooks: tuple[str, ...]
    cells: tuple[GridCell, ...]

    def as_dict(self) -> dict[str, Any]:
        """The grid as plain data, the shape of the YAML file (what ``grid.yaml`` holds)."""
        return {
            "name": self.name,
            "preset": self.preset,
            "params": dict(self.params),
            "axes": {name: list(values) for name, values in self.axes},
            "notebooks": ",".join(self.notebooks),
        }


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one cell: ``ran``, ``skipped`` (finished before) or ``failed``.

    ``error`` and ``notebook`` (the executed copy showing the failing cell) are set when failed.
    """

    cell: GridCell
    run_dir: Path
    status: str
    seconds: float = 0.0
    error: str = ""
    notebook: Path | None = None


@dataclass(frozen=True)
class AblationResults:
    """A grid's combined results as read back for display (notebook 04)."""

    folder: Path
    table: pd.DataFrame
    markdown: str
    figure: Path | None


# ---------------------------------------------------------------- reading a grid file


def read_grid_file(path: str | Path) -> dict[str, Any]:
    """The grid file's YAML as a mapping; missing files and syntax errors name the line."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise XmrError(f"grid file {path} does not exist") from None
    except OSError as err:
        raise XmrError(f"grid file {path} cannot be read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise XmrError(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise XmrError(
            f"{path} must be a YAML mapping with the keys {', '.join(GRID_KEYS)}; "
            f"it holds {type(data).__name__}"
        )
    return data


def load_grid(
    path: str | Path,
    declared: Mapping[str, Mapping[str, Any]],
    *,
    overrides: Sequence[tuple[str, str]] = (),
) -> GridSpec:
    """Read and validate the grid file at ``path`` and expand its cells.

    ``declared`` maps each notebook file name to its parameters' defaults (as from
    :func:`xmr_utils.app.runner.declared_parameters`); ``overrides`` are command-line
    ``-p NAME VALUE`` pairs, applied to every cell after the file's ``params``.
    """

    path = Path(path)
    data = read_grid_file(path)
    unknown = sorted(str(k) for k in data if k not in GRID_KEYS)
    if unknown:
        raise XmrError(
            f"{path}: unknown key {unknown[0]!r}; a grid has the keys {', '.join(GRID_KEYS)}"
        )

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name) or name == LATEST_FILE:
        raise XmrError(
            f"{path}: name {name!r} must be a folder name of letters, digits, '.', '_', '-'"
        )
    if "preset" not in data:
        raise XmrError(f"{path}: no preset; set preset to one of {', '.join(PRESETS)}")
    preset = data["preset"]
    if not isinstance(preset, str) or preset not in PRESETS:
        raise XmrError(
            f"{path}: preset: unknown preset {preset!r}; accepted: {', '.join(sorted(PRESETS))}"
        )

    params_in = data.get("params") or {}
    if not isinstance(params_in, dict):
        raise XmrError(f"{path}: params must be a mapping of parameter: value")
    fixed: dict[str, Any] = {}
    for key, value in params_in.items():
        fixed[str(key)] = _checked_value(path, f"params.{key}", str(key), value, preset, declared)
    for key, text in overrides:
        where = f"-p {key}"
        fixed[key] = _checked_value(path, where, key, parse_value(text), preset, declared)

    axes_in = data.get("axes")
    if not isinstance(axes_in, dict) or not axes_in:
        raise XmrError(f"{path}: axes must map at least one parameter to a list of values")
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for key, values in axes_in.items():
        key = str(key)
        _check_name(path, f"axes.{key}", key, preset, declared)
        if key in fixed:
            source = "params" if key in params_in else f"-p {key}"
            raise XmrError(f"{path}: axes.{key} is also fixed by {source}; keep one of them")
        if not isinstance(values, list):
            raise XmrError(
                f"{path}: axes.{key} must be a list of values, e.g. [{values!r}]; "
                f"got {type(values).__name__}"
            )
        if not values:
            raise XmrError(f"{path}: axes.{key} is empty; list at least one value")
        checked = tuple(
            _checked_value(path, f"axes.{key}[{i}]", key, value, preset, declared)
            for i, value in enumerate(values)
        )
        seen: dict[str, Any] = {}
        for value in checked:
            token = safe_token(value)
            if token in seen:
                raise XmrError(
                    f"{path}: axes.{key} lists {seen[token]!r} and {value!r}, which give the "
                    "same cell; every value of an axis must differ"
                )
            seen[token] = value
        axes.append((key, checked))

    if "notebooks" in data:
        notebooks = _notebook_prefixes(path, data["notebooks"], declared)
    else:  # those of the default that exist (a folder of test notebooks may hold fewer)
        present = {notebook[:2] for notebook in declared}
        notebooks = tuple(p for p in DEFAULT_NOTEBOOKS.split(",") if p in present)
    cells = expand_cells(preset, fixed, tuple(axes), declared)
    return GridSpec(path, name, preset, fixed, tuple(axes), notebooks, cells)


def _checked_value(
    path: Path,
    where: str,
    name: str,
    value: Any,
    preset: str,
    declared: Mapping[str, Mapping[str, Any]],
) -> Any:
    """``value`` if ``name`` is a declared parameter and ``value`` fits its declared type."""
    _check_name(path, where.split("[")[0], name, preset, declared)
    if not isinstance(value, str | int | float | bool):
        raise XmrError(f"{path}: {where} is {value!r}; a value must be a string, number or boolean")
    for notebook, defaults in declared.items():
        if name in defaults:
            expected = type(defaults[name])
            if not _fits(value, expected):
                raise XmrError(
                    f"{path}: {where} is {value!r} ({type(value).__name__}) but {notebook} "
                    f"declares {name} as {expected.__name__}"
                )
    _check_registry(path, where, name, value)
    return value


def _check_name(
    path: Path, where: str, name: str, preset: str, declared: Mapping[str, Mapping[str, Any]]
) -> None:
    """Refuse a name no notebook declares, with the pipeline's message and the key at fault."""

    try:
        resolve_parameters(preset, [(name, "None")], declared)
    except XmrError as err:
        raise XmrError(f"{path}: {where}: {err}") from None


def _fits(value: Any, expected: type) -> bool:
    """Whether ``value`` may stand for a parameter declared with a default of type
    ``expected`` (an int may stand for a float; a bool is not an int here)."""
    if expected is bool or isinstance(value, bool):
        return isinstance(value, bool) and expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _check_registry(path: Path, where: str, name: str, value: Any) -> None:
    """Recipes and encoders are checked now rather than minutes into a cell."""
    try:
        if name == "recipes":
            parse_recipes(value)
        elif name in ("image_encoder", "text_encoder"):
            build = (
                encoders.build_image_encoders
                if name == "image_encoder"
                else encoders.build_text_encoders
            )
            build(value)  # no weights are read here
    except XmrError as err:
        raise XmrError(f"{path}: {where}: {err}") from None


def _notebook_prefixes(
    path: Path, value: Any, declared: Mapping[str, Mapping[str, Any]]
) -> tuple[str, ...]:
    """``"00,01,04"`` (or a list) -> ``("00", "01", "04")``, each a known notebook."""

    if isinstance(value, str):
        items = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        items = [p.strip() for p in value]
    else:
        raise XmrError(
            f'{path}: notebooks must be a quoted comma list such as "00,01,02,03,04"; got {value!r}'
        )
    known = sorted({name[:2] for name in declared})
    if not items:
        raise XmrError(f"{path}: notebooks names no notebook; accepted: {', '.join(known)}")
    for prefix in items:
        if prefix not in known:
            raise XmrError(f"{path}: notebooks: {unknown_choice('notebook', prefix, known)}")
    return tuple(sorted(set(items)))


def safe_token(value: Any) -> str:
    """``value`` as a cell-id token: anything but letters, digits and ``._,=+-`` becomes ``-``
    (``"glove:mean"`` -> ``"glove-mean"``)."""
    return _UNSAFE.sub("-", str(value)).strip("-") or "x"


def cell_id(values: Sequence[tuple[str, Any]]) -> str:
    """``axis=value`` pairs joined by ``__``, filesystem-safe; very long ids end in a hash."""
    text = "__".join(f"{name}={safe_token(value)}" for name, value in values)
    if len(text) > _MAX_ID:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        text = f"{text[: _MAX_ID - 9]}-{digest}"
    return text


def expand_cells(
    preset: str,
    fixed: Mapping[str, Any],
    axes: Sequence[tuple[str, Sequence[Any]]],
    declared: Mapping[str, Mapping[str, Any]],
) -> tuple[GridCell, ...]:
    """The cartesian product of ``axes`` in stated order (first axis slowest), each cell with
    its full parameters: notebook defaults, then ``preset``, ``fixed`` and the cell's values."""

    base = resolve_parameters(preset, [], declared)
    names = [name for name, _ in axes]
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        values = tuple(zip(names, combo, strict=True))
        cells.append(GridCell(cell_id(values), values, {**base, **fixed, **dict(values)}))
    return tuple(cells)


# ---------------------------------------------------------------- running a grid


def cell_attempts(runs_dir: Path, cid: str) -> list[Path]:
    """Existing run folders of a cell: ``<cid>``, then ``<cid>.try2``, ``.try3`` ... in order."""
    pattern = re.compile(re.escape(cid) + r"(?:\.try(\d+))?$")
    found = []
    if runs_dir.is_dir():
        for path in runs_dir.iterdir():
            match = pattern.match(path.name)
            if path.is_dir() and match:
                found.append((int(match.group(1) or 1), path))
    return [path for _, path in sorted(found)]


def finished_attempt(runs_dir: Path, cid: str) -> Path | None:
    """The cell's sealed run folder, if one exists."""
    done = [p for p in cell_attempts(runs_dir, cid) if (p / FINISHED_FILE).exists()]
    return done[-1] if done else None


def next_attempt(runs_dir: Path, cid: str) -> Path:
    """A fresh folder for the cell's next attempt; earlier attempts are never reused."""
    n = 1
    while (runs_dir / (cid if n == 1 else f"{cid}.try{n}")).exists():
        n += 1
    return runs_dir / (cid if n == 1 else f"{cid}.try{n}")


def run_record(spec: GridSpec, cell: GridCell, paths: Sequence[Path]) -> dict[str, Any]:
    """What a cell's ``params.json`` starts with: what ``python -m xmr_utils.pipeline`` writes
    (preset, every parameter, the notebooks) plus the grid and cell it belongs to."""
    return {
        "preset": spec.preset,
        **cell.params,
        "notebooks": [p.name for p in paths],
        "grid": {"name": spec.name, "cell": cell.cell_id, "file": str(spec.path)},
    }


def check_finished_cells(spec: GridSpec, folder: Path, paths: Sequence[Path]) -> None:
    """Refuse when a finished cell's recorded parameters differ from what the grid asks for:
    skipping it would put another experiment's numbers in the table."""
    for cell in spec.cells:
        done = finished_attempt(folder / "runs", cell.cell_id)
        if done is None:
            continue
        recorded = read_json(done / "params.json")
        wanted = run_record(spec, cell, paths)
        wanted.pop("grid")
        changed = [k for k, v in wanted.items() if k in recorded and recorded[k] != v]
        changed += [k for k in ("preset", "notebooks") if k not in recorded]
        if changed:
            key = changed[0]
            raise XmrError(
                f"{done} finished with {key}={recorded.get(key)!r} but {spec.path} now asks "
                f"for {key}={wanted[key]!r}; runs are never overwritten — give the changed grid "
                f"a new name (or move {folder} away)"
            )


def run_grid(
    spec: GridSpec,
    paths: Sequence[Path],
    *,
    root: str | Path = DEFAULT_ABLATIONS_ROOT,
    log_output: bool = False,
) -> tuple[Path, list[CellOutcome]]:
    """Run every unfinished cell of ``spec`` (notebooks ``paths``) and write the combined
    results; returns the grid folder and one outcome per cell. A failing cell is recorded and
    the next one runs."""
    import yaml

    folder = resolve_path(root) / spec.name
    check_finished_cells(spec, folder, paths)
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# grid {spec.name!r} as used, from {spec.path}\n"
    (folder / "grid.yaml").write_text(
        header + yaml.safe_dump(spec.as_dict(), sort_keys=False, allow_unicode=True)
    )
    runs_dir = folder / "runs"
    outcomes = []
    total = len(spec.cells)
    for i, cell in enumerate(spec.cells, start=1):
        done = finished_attempt(runs_dir, cell.cell_id)
        if done is not None:
            print(
                f"[xmr] cell {i}/{total} {cell.cell_id}: finished before, skipped ({done})",
                flush=True,
            )
            outcomes.append(CellOutcome(cell, done, "skipped"))
            continue
        run_dir = next_attempt(runs_dir, cell.cell_id)
        print(f"[xmr] cell {i}/{total} {cell.cell_id}: running in {run_dir}", flush=True)
        record = run_record(spec, cell, paths)
        start = time.perf_counter()
        try:
            create_run(record, runs_root=runs_dir, run_dir=run_dir)
            results = run_notebooks(paths, run_dir, cell.params, log_output=log_output)
        except Exception as err:  # noqa: BLE001 — one broken cell must not stop the grid
            outcomes.append(
                CellOutcome(
                    cell,
                    run_dir,
                    "failed",
                    time.perf_counter() - start,
                    f"{type(err).__name__}: {err}",
                )
            )
            print(f"[xmr] cell {i}/{total} {cell.cell_id} failed: {outcomes[-1].error}", flush=True)
            continue
        seconds = time.perf_counter() - start
        failed = [r for r in results if r.error]
        if failed:
            notebook = run_dir / "executed" / f"{failed[0].name}.ipynb"
            error = f"notebook {failed[0].name} failed — {failed[0].error}"
            outcomes.append(CellOutcome(cell, run_dir, "failed", seconds, error, notebook))
            print(f"[xmr] cell {i}/{total} {cell.cell_id} failed: {error}", flush=True)
            continue
        mark_finished(
            run_dir,
            {
                "notebook_seconds": {r.name: round(r.seconds, 1) for r in results},
                "notebooks": [p.name for p in paths],
                "grid": spec.name,
            },
        )
        outcomes.append(CellOutcome(cell, run_dir, "ran", seconds))
        print(f"[xmr] cell {i}/{total} {cell.cell_id} done in {seconds:.0f} s", flush=True)
    errors = {o.cell.cell_id: _failure_note(o) for o in outcomes if o.status == "failed"}
    write_results(spec, folder, errors)
    return folder, outcomes


def _failure_note(outcome: CellOutcome) -> str:
    where = outcome.notebook or outcome.run_dir
    return f"failed: {outcome.error} (see {where})"


# ---------------------------------------------------------------- the combined table


def metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The metric columns present: i2t R@K, t2i R@K, rsum, i2t mAP@k, t2i mAP@k (K ascending)."""
    found: dict[tuple[str, str], set[int]] = {}
    for row in rows:
        for key in row:
            match = _METRIC.match(key)
            if match:
                found.setdefault((match.group(1), match.group(2)), set()).add(int(match.group(3)))
    cols = [f"{d}_R@{k}" for d in ("i2t", "t2i") for k in sorted(found.get((d, "R"), ()))]
    cols.append("rsum")
    cols += [f"{d}_mAP@{k}" for d in ("i2t", "t2i") for k in sorted(found.get((d, "mAP"), ()))]
    return cols


def results_table(
    spec: GridSpec, metrics: Sequence[tuple[GridCell, Path, Mapping[str, Any]]]
) -> pd.DataFrame:
    """One row per (cell, recipe, model) from each cell's ``metrics.json`` record.

    Columns: ``cell``, the axis values, ``dataset``, ``split``, ``image_encoder``,
    ``text_encoder`` (those not already axes), ``recipe``, ``model``, the metrics of
    :func:`metric_columns`, and ``run`` (the run folder's name under ``runs/``).
    """
    import pandas as pd

    axis_names = [name for name, _ in spec.axes]
    run_cols = [c for c in RUN_COLUMNS if c not in axis_names]
    rows = []
    for cell, run_dir, record in metrics:
        models = record.get("models", {})
        for recipe, by_model in models.items():
            order = sorted(by_model, key=lambda m: (MODELS.index(m) if m in MODELS else 99, m))
            for model in order:
                rows.append(
                    {
                        "cell": cell.cell_id,
                        **dict(cell.values),
                        **{c: record.get(c) for c in run_cols},
                        "recipe": recipe,
                        "model": model,
                        **{k: float(v) for k, v in by_model[model].items() if _is_metric(k)},
                        "run": Path(run_dir).name,
                    }
                )
    columns = ["cell", *axis_names, *run_cols, "recipe", "model", *metric_columns(rows), "run"]
    return pd.DataFrame(rows, columns=columns)


def _is_metric(key: str) -> bool:
    return key == "rsum" or bool(_METRIC.match(key))


def collect_metrics(
    spec: GridSpec, folder: Path, errors: Mapping[str, str] | None = None
) -> tuple[list[tuple[GridCell, Path, dict[str, Any]]], list[tuple[GridCell, str]]]:
    """``metrics.json`` of every finished cell, and ``(cell, why)`` for cells without one
    (``errors``: cell id -> what went wrong in this invocation)."""
    found, missing = [], []
    for cell in spec.cells:
        done = finished_attempt(folder / "runs", cell.cell_id)
        if done is None:
            attempts = cell_attempts(folder / "runs", cell.cell_id)
            why = f"not finished (see {attempts[-1]})" if attempts else "not run"
            missing.append((cell, (errors or {}).get(cell.cell_id, why)))
        elif not (done / "metrics.json").exists():
            missing.append((cell, f"no metrics.json in {done} (was 04 among its notebooks?)"))
        else:
            found.append((cell, done, read_json(done / "metrics.json")))
    return found, missing


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a GitHub markdown table: R@K and rsum with 1 decimal, mAP@k with 3, other
    values (axis values such as a learning rate) as they are; a missing metric is ``–``."""

    def cell(column: str, value: Any) -> str:
        if _is_metric(column) and isinstance(value, float):
            if math.isnan(value):
                return "–"
            return f"{value:.3f}" if "mAP" in column else f"{value:.1f}"
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    for row in frame.itertuples(index=False):
        lines.append(
            "| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row, strict=True)) + " |"
        )
    return "\n".join(lines) + "\n"


def results_markdown(
    spec: GridSpec, table: pd.DataFrame, missing: Sequence[tuple[GridCell, str]]
) -> str:
    """The whole ``results.md``: what the grid was, the table, and cells without results."""
    fixed = ", ".join(f"{k}={v}" for k, v in spec.params.items()) or "none"
    axes = " × ".join(f"{name} ({len(values)})" for name, values in spec.axes)
    split = ", ".join(sorted({str(s) for s in table.get("split", [])})) or "?"
    lines = [
        f"# Ablation `{spec.name}`",
        "",
        f"Grid `{spec.path}`: preset `{spec.preset}`, fixed params {fixed}; axes {axes} = "
        f"{len(spec.cells)} cells; notebooks {','.join(spec.notebooks)}. Metrics on the "
        f"{split} split. R@K in %, rsum = the six R@K summed (max 600), mAP@k as the seed "
        "defined it (reciprocal rank of the first correct result within k).",
        "",
    ]
    if len(table):
        lines.append(markdown_table(table.drop(columns=["cell", "run"])))
    else:
        lines.append("No cell has results yet.\n")
    if missing:
        lines.append("Cells without results:\n")
        lines += [f"- `{cell.cell_id}`: {why}" for cell, why in missing]
        lines.append("")
    return "\n".join(lines)


def plot_labels(spec: GridSpec, table: pd.DataFrame) -> list[str]:
    """Columns naming a bar group in the figure: the axes with more than one value (the
    recipe axis shows through the recipe column) and ``recipe``."""
    varying = [name for name, values in spec.axes if len(values) > 1 and name != "recipes"]
    return [c for c in varying if c in table.columns] + ["recipe"]


def write_results(
    spec: GridSpec, folder: Path, errors: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Write ``results.csv``, ``results.md`` and ``comparison.png`` from the finished cells
    and point ``<root>/LATEST`` at the grid folder; returns the table. ``errors`` (cell id ->
    failure) explain the cells without results in ``results.md``."""

    found, missing = collect_metrics(spec, folder, errors)
    table = results_table(spec, found)
    table.to_csv(folder / "results.csv", index=False)
    (folder / "results.md").write_text(results_markdown(spec, table, missing))
    figure = folder / "comparison.png"
    if len(table):
        split = ", ".join(sorted({str(s) for s in table["split"]}))
        title = f"{spec.name}: rsum on the {split} split per cell and recipe (max 600)"
        fig = viz.ablation_bars(table, plot_labels(spec, table), value="rsum", title=title)
        viz.save_as(fig, figure)
    elif figure.exists():
        figure.unlink()  # no stale figure beside an empty table
    (folder.parent / LATEST_FILE).write_text(str(folder) + "\n")
    return table


def find_ablation(ref: str, root: str | Path = DEFAULT_ABLATIONS_ROOT) -> Path:
    """The grid folder named by ``ref``: ``latest`` (the last grid whose results were written
    under ``root``) or a path to a grid folder."""
    if ref == "latest":
        pointer = resolve_path(root) / LATEST_FILE
        if not pointer.exists():
            raise XmrError(
                f"no ablation has been run under {resolve_path(root)}; run "
                "python -m xmr_utils.pipeline --grid configs/ablation.yaml first"
            )
        return Path(pointer.read_text().strip())
    folder = resolve_path(ref)
    if not (folder / "results.csv").is_file():
        raise XmrError(
            f"{folder} holds no results.csv; pass latest or an ablation folder such as "
            f"{DEFAULT_ABLATIONS_ROOT}/ablation"
        )
    return folder


def read_results(ref: str, root: str | Path = DEFAULT_ABLATIONS_ROOT) -> AblationResults:
    """A grid's ``results.csv``, ``results.md`` and figure path, for display."""
    import pandas as pd

    folder = find_ablation(ref, root)
    if not (folder / "results.csv").is_file():
        raise XmrError(f"{folder} holds no results.csv; run its grid again to write it")
    figure = folder / "comparison.png"
    markdown = (folder / "results.md").read_text() if (folder / "results.md").exists() else ""
    return AblationResults(
        folder, pd.read_csv(folder / "results.csv"), markdown, figure if figure.exists() else None
    )


# ---------------------------------------------------------------- command line


def run_grid_command(
    grid: str,
    *,
    preset: str | None = None,
    overrides: Sequence[tuple[str, str]] = (),
    notebook_dir: str | Path = "notebooks",
    root: str | Path = DEFAULT_ABLATIONS_ROOT,
    log_output: bool = False,
) -> int:
    """``python -m xmr_utils.pipeline --grid FILE``: 0 when every cell has finished, 1 when a
    cell failed, 2 for a bad grid file (one sentence on stderr, no traceback)."""

    try:
        paths = notebook_paths(notebook_dir)
        declared = {p.name: declared_parameters(p) for p in paths}
        spec = load_grid(resolve_path(grid), declared, overrides=overrides)
        if preset is not None and preset != spec.preset:
            print(
                f"note: the grid's preset {spec.preset!r} is used, not --preset {preset}",
                file=sys.stderr,
            )
        selected = [p for p in paths if p.name[:2] in spec.notebooks]
        print(
            f"[xmr] grid {spec.name}: {len(spec.cells)} cells, notebooks "
            f"{','.join(spec.notebooks)}",
            flush=True,
        )
        start = time.perf_counter()
        folder, outcomes = run_grid(spec, selected, root=root, log_output=log_output)
    except XmrError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(outcomes, folder, time.perf_counter() - start))
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        where = f"\n       its executed copy: {o.notebook}" if o.notebook else ""
        print(f"error: cell {o.cell.cell_id} failed — {o.error}{where}", file=sys.stderr)
    return 1 if failed else 0


def summary(outcomes: Sequence[CellOutcome], folder: Path, seconds: float) -> str:
    """Plain-text lines: each cell's status and seconds, then where the results are."""
    width = max((len(o.cell.cell_id) for o in outcomes), default=4)
    lines = [f"{'cell':<{width}}  {'status':<8} {'seconds':>8}"]
    lines += [f"{o.cell.cell_id:<{width}}  {o.status:<8} {o.seconds:>8.0f}" for o in outcomes]
    lines.append(
        f"[xmr] grid finished in {seconds:.0f} s: {folder}/results.md, results.csv, comparison.png"
    )
    return "\n".join(lines)
