"""Grid files: reading, validating every name and value, and expanding the cells.

A grid file (YAML) names a ``preset`` (one of :data:`xmr_utils.app.runner.PRESETS`), optional
fixed ``params`` applied to every cell, ``axes`` (parameter -> list of values; the cells are
their cartesian product, first axis slowest), optional ``notebooks`` and an optional ``name``
(see :mod:`xmr_utils.app.ablation`). Every name must be a parameter some notebook declares,
every value a string, number or boolean of the type that notebook declares; recipes and
encoders are checked against their registries. A bad file raises
:class:`~xmr_utils.core.errors.XmrError` naming the file and key.

A name with a dot is a recipe field (``loss.margin``, ``image_head.l2_normalize``; see
:mod:`xmr_utils.core.overrides`), usable in ``params`` and as an axis::

    axes:
      loss.margin: [0.1, 0.2, 0.5]
      image_head.l2_normalize: [true, false]

Each cell folds its recipe fields into the notebooks' ``recipe_overrides`` parameter (after
any fixed ``recipe_overrides`` text), and the folded overrides are checked against every recipe
the cell trains before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmr_utils.app.parameters import check_name
from xmr_utils.app.runner import PRESETS, parse_value, resolve_parameters
from xmr_utils.core import encoders
from xmr_utils.core.config import parse_recipes
from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.overrides import check_key, check_overrides, format_overrides

DEFAULT_NOTEBOOKS = "00,01,02,03,04"
#: The file beside the grid folders naming the last grid whose results were written.
LATEST_FILE = "LATEST"
GRID_KEYS: tuple[str, ...] = ("name", "preset", "params", "axes", "notebooks")
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_ID = 150
#: The notebook parameter that recipe-field names (``loss.margin``) are folded into.
OVERRIDES_PARAMETER = "recipe_overrides"


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
    fixed = _fixed_params(path, data.get("params") or {}, overrides, preset, declared)
    axes = _axes(path, data, fixed, preset, declared)
    if "notebooks" in data:
        notebooks = _notebook_prefixes(path, data["notebooks"], declared)
    else:  # those of the default that exist (a folder of test notebooks may hold fewer)
        present = {notebook[:2] for notebook in declared}
        notebooks = tuple(p for p in DEFAULT_NOTEBOOKS.split(",") if p in present)
    try:
        cells = expand_cells(preset, fixed, axes, declared)
    except XmrError as err:  # a cell's folded recipe fields that do not fit its recipes
        raise XmrError(f"{path}: {err}") from None
    return GridSpec(path, name, preset, fixed, axes, notebooks, cells)


def _fixed_params(
    path: Path,
    params_in: Any,
    overrides: Sequence[tuple[str, str]],
    preset: str,
    declared: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The file's ``params``, then the ``-p`` overrides, each name and value checked."""
    if not isinstance(params_in, dict):
        raise XmrError(f"{path}: params must be a mapping of parameter: value")
    fixed: dict[str, Any] = {}
    for key, value in params_in.items():
        fixed[str(key)] = _checked_value(path, f"params.{key}", str(key), value, preset, declared)
    for key, text in overrides:
        where = f"-p {key}"
        fixed[key] = _checked_value(path, where, key, parse_value(text), preset, declared)
    return fixed


def _axes(
    path: Path,
    data: Mapping[str, Any],
    fixed: Mapping[str, Any],
    preset: str,
    declared: Mapping[str, Mapping[str, Any]],
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """The ``axes`` as ``(name, values)`` pairs: declared names, checked values, none also
    fixed, no two values of an axis giving the same cell."""
    axes_in = data.get("axes")
    if not isinstance(axes_in, dict) or not axes_in:
        raise XmrError(f"{path}: axes must map at least one parameter to a list of values")
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for key, values in axes_in.items():
        key = str(key)
        _check_name(path, f"axes.{key}", key, preset, declared)
        if key in fixed:
            source = "params" if key in (data.get("params") or {}) else f"-p {key}"
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
    return tuple(axes)


def _checked_value(
    path: Path,
    where: str,
    name: str,
    value: Any,
    preset: str,
    declared: Mapping[str, Mapping[str, Any]],
) -> Any:
    """``value`` if ``name`` is a declared parameter and ``value`` fits its declared type, or
    ``name`` is a recipe field and ``value`` fits some preset's field."""
    _check_name(path, where.split("[")[0], name, preset, declared)
    if is_recipe_field(name):
        try:
            check_overrides(format_overrides({name: value}))
        except XmrError as err:
            raise XmrError(f"{path}: {where}: {err}") from None
        return value
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
    """Refuse a name no notebook declares (nor a recipe field, when a notebook declares
    ``recipe_overrides``), with the pipeline's message and the key at fault."""
    try:
        if is_recipe_field(name) and any(OVERRIDES_PARAMETER in d for d in declared.values()):
            check_key(name)
            return
        check_name(name, declared)
    except XmrError as err:
        raise XmrError(f"{path}: {where}: {err}") from None


def is_recipe_field(name: str) -> bool:
    """Whether a grid name is a recipe field (``section.field``) rather than a parameter."""
    return "." in name


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
    its full parameters: notebook defaults, then ``preset``, ``fixed`` and the cell's values,
    recipe fields folded into ``recipe_overrides`` (:func:`fold_recipe_fields`)."""

    base = resolve_parameters(preset, [], declared)
    names = [name for name, _ in axes]
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        values = tuple(zip(names, combo, strict=True))
        cid = cell_id(values)
        params = fold_recipe_fields({**base, **fixed, **dict(values)}, f"cell {cid}")
        cells.append(GridCell(cid, values, params))
    return tuple(cells)


def fold_recipe_fields(params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``params`` with its recipe fields (``loss.margin: 0.2``) moved into the
    ``recipe_overrides`` text (after what it held), checked against every recipe of
    ``params["recipes"]``; params without recipe fields are returned as they are."""
    fields = {k: v for k, v in params.items() if is_recipe_field(k)}
    if not fields:
        return dict(params)
    folded = {k: v for k, v in params.items() if k not in fields}
    text = ",".join(
        t for t in (str(folded.get(OVERRIDES_PARAMETER, "")), format_overrides(fields)) if t
    )
    try:
        check_overrides(text, parse_recipes(str(folded.get("recipes", ""))))
    except XmrError as err:
        raise XmrError(f"{where}: {err}") from None
    folded[OVERRIDES_PARAMETER] = text
    return folded
