"""The notebooks' parameters, checked before anything runs: the declared type, then the domain.

Every value a run gets — a notebook default, a preset, ``-p NAME VALUE`` on the command line or
a grid cell's value (:mod:`xmr_utils.app.ablation`) — goes through :func:`check_parameter`
before notebook 00 starts. A bad value raises :class:`~xmr_utils.core.errors.XmrError` with
one sentence naming the parameter, the value and what is accepted:

    parameter epochs is -3, but it must be a whole number >= 0 (0 keeps each recipe's schedule)

The type is the one the notebook's ``parameters`` cell declares (``epochs: int = 0``); the
domain rules are the table :data:`PARAMETER_RULES`, one entry per parameter, and nowhere else.
``-p`` text is read for the declared type by :func:`parse_parameter`: a ``str`` parameter
takes the text as it is (``-p dataset 123`` is the folder name ``"123"``), an ``int`` one a
whole number, a ``bool`` one ``True`` or ``False`` (``false`` is refused, not read as a
non-empty and therefore true string).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from xmr_utils.app.runs import resolve_path
from xmr_utils.core import encoders
from xmr_utils.core.config import parse_recipes
from xmr_utils.core.data.assemble import ON_MISSING, SPLIT_OVERLAP
from xmr_utils.core.data.corpus import SPLIT_NAMES
from xmr_utils.core.data.load import DATASET_NAMES
from xmr_utils.core.data.splits import seeded_split_sizes
from xmr_utils.core.errors import XmrError, unknown_choice

#: Declared defaults per notebook: notebook file name -> parameter name -> default value.
Declared = Mapping[str, Mapping[str, Any]]

_TYPE_WORDS: dict[type, str] = {
    int: "a whole number",
    float: "a number",
    bool: "True or False",
    str: "a text",
}
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class ParameterRule:
    """The domain of one parameter.

    Attributes:
        accepted: what is accepted, in words, completing "it must be ...".
        check: value (already of the declared type) -> whether it is accepted; may instead
            raise XmrError with its own reason (registries: an unknown recipe or encoder).
    """

    accepted: str
    check: Callable[[Any], bool]


def _at_least(low: int, note: str = "") -> ParameterRule:
    return ParameterRule(f"a whole number >= {low}{note}", lambda v: v >= low)


def _one_of(choices: tuple[str, ...]) -> ParameterRule:
    return ParameterRule(f"one of {', '.join(choices)}", lambda v: v in choices)


def _is_dataset(value: str) -> bool:
    if value in DATASET_NAMES:
        return True
    folder = resolve_path(value) if value else None
    if folder is None or not folder.is_dir():
        raise XmrError(
            f"it is neither one of {', '.join(DATASET_NAMES)} nor a dataset folder"
            + (f" (there is no folder {folder})" if folder is not None else "")
        )
    return True


def _is_device(value: str) -> bool:
    if not _DEVICE.fullmatch(value):
        return False
    if value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise XmrError("no CUDA GPU is visible on this machine; use auto or cpu")
    return True


def _registry(check: Callable[[str], object]) -> Callable[[str], bool]:
    def run(value: str) -> bool:
        check(value)  # raises XmrError naming what the registry accepts
        return True

    return run


def _min_synthetic_images() -> int:
    """The fewest synthetic images whose seeded split has the 2 val images training needs."""
    n = 1
    while seeded_split_sizes(n)["val"] < 2:
        n += 1
    return n


MIN_SYNTHETIC_IMAGES = _min_synthetic_images()

#: Parameter name -> its domain. Parameters not listed accept any value of their type.
PARAMETER_RULES: Mapping[str, ParameterRule] = {
    "dataset": ParameterRule(
        f"one of {', '.join(DATASET_NAMES)} or an existing dataset folder", _is_dataset
    ),
    "synthetic_images": _at_least(
        MIN_SYNTHETIC_IMAGES, " (the seeded split then has the 2 val images training needs)"
    ),
    "split_seed": _at_least(0),
    "on_missing": _one_of(ON_MISSING),
    "split_overlap": _one_of(SPLIT_OVERLAP),
    "image_encoder": ParameterRule(
        "a known image encoder", _registry(encoders.build_image_encoders)
    ),
    "text_encoder": ParameterRule("a known text encoder", _registry(encoders.build_text_encoders)),
    "batch_size": _at_least(0, " (0: 32 images per batch on a CPU, 128 on a GPU)"),
    "device": ParameterRule("auto, cpu, or cuda / cuda:N on a machine with a CUDA GPU", _is_device),
    "recipes": ParameterRule("a comma list of known recipes", _registry(parse_recipes)),
    "epochs": _at_least(0, " (0 keeps each recipe's schedule)"),
    "seed": _at_least(0),
    "split": _one_of(("auto", *SPLIT_NAMES)),
    "queries": _at_least(1),
    "k": _at_least(1),
    "umap_points": _at_least(2),
}


def check_name(name: str, declared: Declared) -> None:
    """Raise XmrError unless some notebook declares ``name`` (``run_dir`` is the pipeline's)."""
    names = {k for nb in declared.values() for k in nb if k != "run_dir"}
    if name not in names:
        raise unknown_choice("parameter", name, names)


def declared_type(name: str, declared: Declared) -> tuple[type, str] | None:
    """``(type of the default, notebook)`` of the first notebook declaring ``name``."""
    for notebook, defaults in declared.items():
        if name in defaults:
            return type(defaults[name]), notebook
    return None


def _fits(value: Any, expected: type) -> bool:
    """A bool is not a number here; a whole number may stand for a float."""
    if expected is bool or isinstance(value, bool):
        return isinstance(value, bool) and expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _refuse(name: str, value: Any, accepted: str) -> XmrError:
    return XmrError(f"parameter {name} is {value!r}, but it must be {accepted}")


def check_parameter(name: str, value: Any, declared: Declared) -> Any:
    """``value`` if it has the type the notebooks declare for ``name`` and is in its domain
    (:data:`PARAMETER_RULES`); else XmrError in one sentence. Grids call this for every value."""
    found = declared_type(name, declared)
    if found is not None and not _fits(value, found[0]):
        kind, notebook = found
        raise _refuse(
            name,
            value,
            f"{_TYPE_WORDS.get(kind, kind.__name__)} ({notebook} declares {name}: {kind.__name__})",
        )
    rule = PARAMETER_RULES.get(name)
    if rule is None:
        return value
    try:
        ok = rule.check(value)
    except XmrError as err:
        raise XmrError(f"parameter {name} is {value!r}: {err}") from None
    if not ok:
        raise _refuse(name, value, rule.accepted)
    return value


def parse_parameter(name: str, text: str, declared: Declared) -> Any:
    """The ``-p NAME TEXT`` value for the type the notebooks declare, checked
    (:func:`check_parameter`): a ``str`` parameter takes ``text`` as it is, others a Python
    literal (``3``, ``0.5``, ``True``)."""
    check_name(name, declared)
    found = declared_type(name, declared)
    if found is not None and found[0] is str:
        value: Any = text
    else:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
    return check_parameter(name, value, declared)
