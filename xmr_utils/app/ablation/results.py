"""A grid's combined results: one table across its finished cells, as CSV, markdown and a
figure, and reading them back for display (notebook 04).

``results.csv`` has one row per (cell, recipe, model) with the cell's axis values as columns;
it depends only on the cells' ``metrics.json`` records, so a grid run cell by cell and the
same grid run on a Dask cluster write the same table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr_utils.app import viz
from xmr_utils.app.ablation.cells import cell_attempts, finished_attempt
from xmr_utils.app.ablation.grid import LATEST_FILE, GridCell, GridSpec
from xmr_utils.app.runs import read_json, resolve_path
from xmr_utils.core.errors import XmrError

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd

DEFAULT_ABLATIONS_ROOT = "outputs/ablations"
MODELS: tuple[str, ...] = ("img2txt", "txt2img", "fused")
#: Columns taken from each run's metrics.json, after the cell's axis values.
RUN_COLUMNS: tuple[str, ...] = ("dataset", "split", "image_encoder", "text_encoder")
_METRIC = re.compile(r"^(i2t|t2i)_(R|mAP)@(\d+)$")


@dataclass(frozen=True)
class AblationResults:
    """A grid's combined results as read back for display (notebook 04)."""

    folder: Path
    table: pd.DataFrame
    markdown: str
    figure: Path | None


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
    ``text_encoder`` (those not already axes), ``recipe``, ``overrides`` (the recipe's
    ``recipe_overrides`` as its checkpoints record them; only when some recipe has any),
    ``model``, the metrics of :func:`metric_columns`, and ``run`` (the run folder's name
    under ``runs/``).
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
                        "overrides": (record.get("recipe_overrides") or {}).get(recipe, ""),
                        "model": model,
                        **{k: float(v) for k, v in by_model[model].items() if _is_metric(k)},
                        "run": Path(run_dir).name,
                    }
                )
    shown = ["overrides"] if any(row["overrides"] for row in rows) else []
    columns = ["cell", *axis_names, *run_cols, "recipe", *shown, "model"]
    return pd.DataFrame(rows, columns=[*columns, *metric_columns(rows), "run"])


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
