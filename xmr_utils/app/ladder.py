"""The collapse ladder: which of the seed's choices makes its triplet models collapse?

A ladder file (YAML, ``configs/collapse-ladder*.yaml``) names the features, the seeds, the
models and a shortened ``schedule``, and two *directions* of cells, each a base preset and
one change per cell, written as recipe overrides (:mod:`xmr_utils.core.overrides`, the same
words as the notebooks' ``recipe_overrides`` parameter)::

    name: collapse-study
    image_encoder: efficientnet_lite0:tta+efficientnet_lite2:tta
    text_encoder: minilm:mean
    seeds: [0, 1, 2]
    models: [img2txt, txt2img]
    schedule: train.epochs=8,train.patience=null     # applied to every cell, before its change
    mechanism: [seed_to_fix/seed, seed_to_fix/l2]     # cells whose epoch curves are compared
    directions:
      seed_to_fix:                                    # from the seed, one factor toward vsepp
        base: seed
        cells:
          seed: {overrides: "", note: the seed recipe as it is}
          l2: {overrides: "image_head.l2_normalize=true,text_head.l2_normalize=true", note: ...}
      fix_to_seed:                                    # from vsepp, one factor toward the seed
        base: vsepp
        cells: ...

``benchmarks/bench_collapse.py`` trains every (cell, seed, model) with the quality
benchmark's protocol and writes one :class:`ModelResult` per model (``result.json`` beside the
model's ``history.jsonl``) under ``outputs/collapse/<name>/``; :func:`summarise` turns them
into the ladder table (collapsed in k of n seeds, rsum mean ± std, for the best-val epoch and
for the last epoch) and notebook 07 reads it back (:func:`read_ladder`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmr_utils.app.runs import read_json, resolve_path, write_json
from xmr_utils.core import encoders
from xmr_utils.core.config import DIRECTIONS, RECIPES, Recipe, recipe_with
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.overrides import apply_overrides, field_of, parse_overrides

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import pandas as pd

DEFAULT_LADDER_ROOT = "outputs/collapse"
LATEST_FILE = "LATEST"
LADDER_KEYS: tuple[str, ...] = (
    "name",
    "image_encoder",
    "text_encoder",
    "seeds",
    "models",
    "schedule",
    "mechanism",
    "directions",
)
#: The two ways through the factors: from the seed toward the fix, and back.
LADDER_DIRECTIONS: tuple[str, ...] = ("seed_to_fix", "fix_to_seed")
#: How a model's epoch is picked: the best val rsum (``best.pt``), or the last epoch trained
#: (what the seed kept: it overwrote its checkpoint every epoch).
SELECTIONS: tuple[str, ...] = ("best", "last")
RESULT_FILE = "result.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class LadderCell:
    """One change from a direction's base preset: ``overrides`` (``section.field=value``
    text, empty for the base itself) and a ``note`` saying what it changes."""

    direction: str
    name: str
    base: str
    overrides: str
    note: str = ""

    @property
    def key(self) -> str:
        """``direction/name``, unique within a ladder."""
        return f"{self.direction}/{self.name}"


@dataclass(frozen=True)
class Ladder:
    """A validated ladder file: what to train, on which features, with which seeds."""

    path: Path
    name: str
    image_encoder: str
    text_encoder: str
    seeds: tuple[int, ...]
    models: tuple[str, ...]
    schedule: str
    cells: tuple[LadderCell, ...]
    #: Cell keys (``direction/name``) whose per-epoch mechanism statistics are plotted together.
    mechanism: tuple[str, ...] = ()

    def recipe(self, cell: LadderCell, seed: int) -> Recipe:
        """The recipe of ``cell`` for ``seed``: its base preset with the ``schedule``, then the
        cell's change (both recorded in ``Recipe.overrides``), then ``train.seed``."""
        recipe = apply_overrides(apply_overrides(RECIPES[cell.base], self.schedule), cell.overrides)
        return recipe_with(recipe, **{"train.seed": seed})

    def select(
        self,
        *,
        directions: Sequence[str] = (),
        cells: Sequence[str] = (),
        seeds: Sequence[int] = (),
        models: Sequence[str] = (),
        schedule: str | None = None,
        name: str | None = None,
    ) -> Ladder:
        """A part of the ladder (empty: all), another ``schedule`` or another ``name``; every
        name is checked."""
        for d in directions:
            if d not in {c.direction for c in self.cells}:
                raise unknown_choice("ladder direction", d, {c.direction for c in self.cells})
        known = {c.name for c in self.cells} | {c.key for c in self.cells}
        for c in cells:
            if c not in known:
                raise unknown_choice("ladder cell", c, sorted(known))
        for m in models:
            if m not in DIRECTIONS:
                raise unknown_choice("model", m, DIRECTIONS)
        kept = tuple(
            c
            for c in self.cells
            if (not directions or c.direction in directions)
            and (not cells or c.name in cells or c.key in cells)
        )
        picked = replace(
            self,
            cells=kept,
            mechanism=tuple(k for k in self.mechanism if k in {c.key for c in kept}),
            seeds=tuple(seeds) or self.seeds,
            models=tuple(m for m in DIRECTIONS if m in models) or self.models,
            schedule=self.schedule if schedule is None else schedule,
            name=self.name if name is None else name,
        )
        _check_ladder(picked, str(self.path))
        return picked


# ---------------------------------------------------------------- reading a ladder file


def load_ladder(path: str | Path) -> Ladder:
    """Read and validate the ladder file at ``path`` (see the module docstring): unknown
    keys, recipes, encoders, models and every cell's overrides raise XmrError naming the file
    and the key."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise XmrError(f"ladder file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise XmrError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise XmrError(f"{path} must be a YAML mapping with the keys {', '.join(LADDER_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in LADDER_KEYS)
    if unknown:
        raise XmrError(f"{path}: unknown key {unknown[0]!r}; a ladder has {', '.join(LADDER_KEYS)}")
    missing = [k for k in LADDER_KEYS if k not in data and k not in ("schedule", "mechanism")]
    if missing:
        raise XmrError(f"{path}: no {missing[0]!r}; a ladder has {', '.join(LADDER_KEYS)}")
    seeds, models = data["seeds"], data["models"]
    if not isinstance(seeds, list) or not seeds or not all(_is_seed(s) for s in seeds):
        raise XmrError(f"{path}: seeds must be a list of whole numbers >= 0, got {seeds!r}")
    if not isinstance(models, list) or not models:
        raise XmrError(f"{path}: models must list img2txt and/or txt2img, got {models!r}")
    ladder = Ladder(
        path=path,
        name=str(data["name"]),
        image_encoder=str(data["image_encoder"]),
        text_encoder=str(data["text_encoder"]),
        seeds=tuple(seeds),
        models=tuple(str(m) for m in models),
        schedule=str(data.get("schedule") or ""),
        cells=_read_cells(path, data["directions"]),
        mechanism=tuple(str(k) for k in data.get("mechanism") or ()),
    )
    _check_ladder(ladder, str(path))
    return ladder


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_cells(path: Path, directions: Any) -> tuple[LadderCell, ...]:
    if not isinstance(directions, dict) or not directions:
        raise XmrError(f"{path}: directions must map {' and/or '.join(LADDER_DIRECTIONS)} to cells")
    cells = []
    for direction, spec in directions.items():
        where = f"{path}: directions.{direction}"
        if direction not in LADDER_DIRECTIONS:
            raise XmrError(f"{where}: {unknown_choice('direction', direction, LADDER_DIRECTIONS)}")
        if not isinstance(spec, dict) or set(spec) != {"base", "cells"}:
            raise XmrError(f"{where} must have exactly the keys base and cells")
        if not isinstance(spec["cells"], dict) or not spec["cells"]:
            raise XmrError(f"{where}.cells must map cell names to their overrides")
        for name, cell in spec["cells"].items():
            if isinstance(cell, str | None):
                cell = {"overrides": cell or ""}
            if not isinstance(cell, dict) or not set(cell) <= {"overrides", "note"}:
                raise XmrError(
                    f"{where}.cells.{name} must be overrides text or {{overrides, note}}"
                )
            overrides = cell.get("overrides") or ""
            cells.append(
                LadderCell(
                    str(direction),
                    str(name),
                    str(spec["base"]),
                    str(overrides),
                    str(cell.get("note") or ""),
                )
            )
    return tuple(cells)


def _check_ladder(ladder: Ladder, where: str) -> None:
    """Every name and every cell's recipe, checked now rather than an hour into the run."""
    if not _NAME.match(ladder.name):
        raise XmrError(
            f"{where}: name {ladder.name!r} must be a folder name (letters, digits, ._+-)"
        )
    for name in ladder.models:
        if name not in DIRECTIONS:
            raise XmrError(f"{where}: models: {unknown_choice('model', name, DIRECTIONS)}")
    try:
        encoders.build_image_encoders(ladder.image_encoder)
        encoders.build_text_encoder(ladder.text_encoder)
        parse_overrides(ladder.schedule)
    except XmrError as err:
        raise XmrError(f"{where}: {err}") from None
    keys = {c.key for c in ladder.cells}
    for key in ladder.mechanism:
        if key not in keys:
            raise XmrError(f"{where}: mechanism: {unknown_choice('cell', key, keys)}")
    seen = set()
    for cell in ladder.cells:
        if cell.key in seen:
            raise XmrError(f"{where}: cell {cell.key} is listed twice")
        seen.add(cell.key)
        if not _NAME.match(cell.name):
            raise XmrError(f"{where}: cell name {cell.name!r} must use letters, digits and ._+-")
        overrides = parse_overrides(cell.overrides) | parse_overrides(ladder.schedule)
        if "train.seed" in {field_of(key) for key in overrides}:
            raise XmrError(f"{where}: {cell.key} sets train.seed; the ladder's seeds set it")
        try:
            RECIPES[cell.base]
            ladder.recipe(cell, ladder.seeds[0])
        except XmrError as err:
            raise XmrError(f"{where}: cell {cell.key}: {err}") from None


# ---------------------------------------------------------------- what one model gives


@dataclass(frozen=True)
class Scored:
    """One model's val numbers for one selection mode: the 1-based ``epoch`` it was taken
    at, ``metrics`` (R@K, rsum, mAP@10), the collapse ``reasons`` (empty: not collapsed) and
    the collapse statistics ``stats``."""

    epoch: int
    metrics: Mapping[str, float]
    reasons: tuple[str, ...]
    stats: Mapping[str, float | bool] = field(default_factory=dict)

    @property
    def collapsed(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class ModelResult:
    """One trained model of a ladder cell: where it ran, its recipe, and its val numbers at
    the best-val epoch and at the last epoch (``selections``: ``best``, ``last``)."""

    direction: str
    cell: str
    seed: int
    model: str
    recipe: Mapping[str, Any]
    selections: Mapping[str, Scored]
    epochs_run: int
    train_seconds: float
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelResult:
        selections = {
            mode: Scored(
                int(s["epoch"]), dict(s["metrics"]), tuple(s["reasons"]), dict(s.get("stats", {}))
            )
            for mode, s in data["selections"].items()
        }
        kept = {k: data[k] for k in ("direction", "cell", "seed", "model", "recipe")}
        return cls(
            **kept,
            selections=selections,
            epochs_run=int(data["epochs_run"]),
            train_seconds=float(data["train_seconds"]),
            cpu_seconds=float(data.get("cpu_seconds", 0.0)),
        )


def ladder_folder(ladder: Ladder, root: str | Path = DEFAULT_LADDER_ROOT) -> Path:
    """Where a ladder's models and tables go: ``<root>/<name>/``."""
    return resolve_path(root) / ladder.name


def model_folder(folder: Path, cell: LadderCell, seed: int, model: str) -> Path:
    """``<ladder folder>/cells/<direction>/<cell>/seed<k>/<model>/``."""
    return folder / "cells" / cell.direction / cell.name / f"seed{seed}" / model


def saved_result(path: Path, recipe: Recipe) -> ModelResult | None:
    """The ``result.json`` in model folder ``path`` when it was trained with ``recipe``; None
    when there is none. A result of another recipe raises XmrError (a ladder folder never
    mixes two experiments: give the changed ladder another name)."""
    file = path / RESULT_FILE
    if not file.exists():
        return None
    result = ModelResult.from_dict(read_json(file))
    if Recipe.from_dict(dict(result.recipe)) != recipe:
        raise XmrError(
            f"{file} was trained with another recipe than the ladder now asks for; rerun "
            f"with another --name (or move {path.parents[3]} away)"
        )
    return result


def save_result(path: Path, result: ModelResult) -> Path:
    return write_json(path / RESULT_FILE, result.to_dict())


def read_results(folder: Path) -> list[ModelResult]:
    """Every ``result.json`` under a ladder folder, in file order."""
    return [
        ModelResult.from_dict(read_json(p)) for p in sorted(folder.glob(f"cells/**/{RESULT_FILE}"))
    ]


# ---------------------------------------------------------------- the ladder table


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarise(results: Iterable[ModelResult], order: Sequence[LadderCell] = ()) -> pd.DataFrame:
    """The ladder table: one row per (direction, cell, model) with, per selection mode,
    ``<mode>_collapsed`` (k), ``<mode>_rsum`` (mean over seeds), ``<mode>_rsum_std`` (sample
    std; 0 for one seed) and ``<mode>_epoch`` (mean epoch picked); ``seeds`` is n. Rows follow
    ``order`` (the ladder's cells), then any other cells found."""
    import pandas as pd

    groups: dict[tuple[str, str, str], list[ModelResult]] = {}
    for r in results:
        groups.setdefault((r.direction, r.cell, r.model), []).append(r)
    rank = {(c.direction, c.name): i for i, c in enumerate(order)}
    keys = sorted(groups, key=lambda k: (rank.get(k[:2], len(rank)), k[0], k[1], k[2]))
    notes = {(c.direction, c.name): c for c in order}
    rows = []
    for direction, cell, model in keys:
        group = groups[(direction, cell, model)]
        known = notes.get((direction, cell))
        row: dict[str, Any] = {
            "direction": direction,
            "cell": cell,
            "overrides": known.overrides if known else "",
            "model": model,
            "seeds": len(group),
        }
        for mode in SELECTIONS:
            scored = [r.selections[mode] for r in group if mode in r.selections]
            mean, std = _mean_std([s.metrics["rsum"] for s in scored])
            row[f"{mode}_collapsed"] = sum(s.collapsed for s in scored)
            row[f"{mode}_rsum"], row[f"{mode}_rsum_std"] = mean, std
            row[f"{mode}_epoch"] = sum(s.epoch for s in scored) / len(scored)
        rows.append(row)
    return pd.DataFrame(rows)


def ladder_markdown(table: pd.DataFrame) -> str:
    """The ladder table as markdown: per cell and model, collapsed k/n and rsum mean ± std for
    the best-val and the last epoch."""
    lines = [
        "| direction | cell | change | model | collapsed (best) | rsum (best) | collapsed (last) "
        "| rsum (last) | epoch (best) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        n = r.seeds
        lines.append(
            f"| {r.direction} | {r.cell} | {r.overrides or '(base)'} | {r.model} "
            f"| {r.best_collapsed}/{n} | {r.best_rsum:.1f} ± {r.best_rsum_std:.1f} "
            f"| {r.last_collapsed}/{n} | {r.last_rsum:.1f} ± {r.last_rsum_std:.1f} "
            f"| {r.best_epoch:.1f} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reading results back


@dataclass(frozen=True)
class LadderResults:
    """A ladder folder read back for notebook 07: the ladder as run (``ladder.json``), its
    table, the per-model results and the paths of its figures (None when not written)."""

    folder: Path
    ladder: Mapping[str, Any]
    table: pd.DataFrame
    results: tuple[ModelResult, ...]
    markdown: str


def write_manifest(ladder: Ladder, folder: Path, command: str) -> Path:
    """``ladder.json``: the ladder as run (cells in order) and the command that ran it."""
    data = {
        "name": ladder.name,
        "file": str(ladder.path),
        "image_encoder": ladder.image_encoder,
        "text_encoder": ladder.text_encoder,
        "seeds": list(ladder.seeds),
        "models": list(ladder.models),
        "schedule": ladder.schedule,
        "cells": [asdict(c) for c in ladder.cells],
        "mechanism": list(ladder.mechanism),
        "command": command,
    }
    return write_json(folder / "ladder.json", data)


def set_latest(folder: Path, root: str | Path = DEFAULT_LADDER_ROOT) -> None:
    resolve_path(root).mkdir(parents=True, exist_ok=True)
    (resolve_path(root) / LATEST_FILE).write_text(str(folder) + "\n")


def find_ladder(ref: str = "latest", root: str | Path = DEFAULT_LADDER_ROOT) -> Path | None:
    """The ladder folder ``ref`` names (``latest``: the last one written under ``root``; else a
    path); None when ``latest`` names none yet."""
    if ref == "latest":
        pointer = resolve_path(root) / LATEST_FILE
        return Path(pointer.read_text().strip()) if pointer.exists() else None
    folder = resolve_path(ref)
    if not (folder / "ladder.json").is_file():
        raise XmrError(f"{folder} holds no ladder.json; pass latest or a folder under {root}/")
    return folder


def read_ladder(folder: Path) -> LadderResults:
    """The manifest, the table and every model result of a ladder folder."""
    manifest = read_json(folder / "ladder.json")
    order = [LadderCell(**c) for c in manifest["cells"]]
    results = tuple(read_results(folder))
    table = summarise(results, order)
    return LadderResults(
        folder, manifest, table, results, ladder_markdown(table) if results else ""
    )


def histories(
    folder: Path, cells: Sequence[str], model: str = "img2txt"
) -> dict[str, list[list[dict[str, Any]]]]:
    """``direction/cell`` -> the per-epoch history rows of each seed's ``model`` (the curves of
    the mechanism figure)."""
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for key in cells:
        runs = sorted((folder / "cells" / key).glob(f"seed*/{model}/history.jsonl"))
        if not runs:
            raise XmrError(f"no {model} history for cell {key} under {folder / 'cells'}")
        out[key] = [[json.loads(line) for line in p.read_text().splitlines() if line] for p in runs]
    return out
