"""Recipe overrides as one line of text: every recipe field reachable without writing Python.

The notebooks' ``recipe_overrides`` parameter, a grid axis and a collapse-ladder cell all say
how a run departs from a preset in the same words, a comma list of ``section.field=value``::

    loss.margin=0.2,image_head.l2_normalize=true,optim.grad_clip=none,image_head.hidden=[512]

An item may be scoped to one recipe by its name and a colon: ``seed:train.precision=bf16``
sets the field for the ``seed`` recipe only and is ignored by the others (the ``flickr8k``
preset runs the seed's 4096-wide heads in bf16 this way); an unscoped item applies to every
recipe. A scope must name a registered recipe.

Sections are those of :class:`~xmr_utils.core.config.Recipe` (``image_head``, ``text_head``,
``loss``, ``optim``, ``train``). A value is read as JSON where it parses (numbers, ``true`` /
``false``, ``null``, ``[lists]``, ``"quoted strings"``; ``True``, ``False`` and ``none`` are
accepted too), else as the bare string (``loss.miner=semihard``). Commas inside brackets or
quotes do not split. The keys and values are then checked by
:func:`~xmr_utils.core.config.recipe_with`, whose errors name the field: an unknown field lists
the accepted ones, a wrong type names the field and the value.

:func:`apply_overrides` derives the recipe and records the overrides in it
(:attr:`Recipe.overrides <xmr_utils.core.config.Recipe>`), so every checkpoint says how it
departs from its preset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from xmr_utils.core.config import DEFAULT_RECIPE, RECIPES, Recipe, recipe_with
from xmr_utils.core.errors import XmrError, unknown_choice

#: The recipe sections an override may name (its ``section`` before the dot).
SECTIONS: tuple[str, ...] = ("image_head", "text_head", "loss", "optim", "train")
_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None, "null": None}
_CLOSING = {"[": "]", "{": "}"}


def _split_items(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and double quotes (items stripped)."""
    items: list[str] = []
    current: list[str] = []
    stack: list[str] = []
    quoted = False
    for char in text:
        if quoted:
            quoted = char != '"' or (bool(current) and current[-1] == "\\")
        elif char == '"':
            quoted = True
        elif char in _CLOSING:
            stack.append(_CLOSING[char])
        elif stack and char == stack[-1]:
            stack.pop()
        elif char == "," and not stack:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quoted or stack:
        raise XmrError(
            f"recipe_overrides {text!r} has an unclosed {'quote' if quoted else stack[-1]!r}"
        )
    items.append("".join(current).strip())
    return [item for item in items if item]


def parse_value(text: str) -> Any:
    """One override value: JSON when it parses (``0.2``, ``true``, ``[512]``, ``"a,b"``),
    ``True`` / ``False`` / ``none`` in any case, else the text itself (``semihard``)."""
    text = text.strip()
    if text.lower() in _WORDS:
        return _WORDS[text.lower()]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_overrides(text: str) -> dict[str, Any]:
    """``"loss.margin=0.2,train.epoch_pairs=all"`` -> ``{"loss.margin": 0.2, ...}`` in order.

    Only the syntax is checked here (``key=value`` items, ``section.field`` keys of the
    known sections, no key twice); :func:`apply_overrides` checks fields and types.

    >>> parse_overrides("loss.margin=0.2, image_head.hidden=[512, 256], optim.grad_clip=none")
    {'loss.margin': 0.2, 'image_head.hidden': [512, 256], 'optim.grad_clip': None}
    """
    overrides: dict[str, Any] = {}
    for item in _split_items(text):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise XmrError(
                f"recipe_overrides item {item!r} is not section.field=value, e.g. loss.margin=0.2"
            )
        check_key(key)
        scope, field_key = split_scope(key)
        key = f"{scope}:{field_key}" if scope else field_key
        if key in overrides:
            raise XmrError(f"recipe_overrides sets {key} twice; keep one of them")
        overrides[key] = parse_value(value)
    return overrides


def split_scope(key: str) -> tuple[str, str]:
    """``"seed:train.precision"`` -> ``("seed", "train.precision")``; an unscoped key gives
    ``("", key)``."""
    scope, colon, field_key = key.partition(":")
    return (scope.strip(), field_key.strip()) if colon else ("", key)


def field_of(key: str) -> str:
    """The ``section.field`` a key sets, without its recipe scope."""
    return split_scope(key)[1]


def check_key(key: str) -> None:
    """Raise XmrError unless ``key`` reads ``section.field`` with a known section, optionally
    scoped ``recipe:section.field`` to a registered recipe."""
    if ":" in key:
        given = key
        scope, key = split_scope(key)
        if not scope or ":" in key:
            raise XmrError(
                f"recipe override {given!r} must read recipe:section.field, e.g. "
                "seed:train.precision"
            )
        if scope not in RECIPES:
            raise XmrError(
                f"recipe override {scope}:{key}: {unknown_choice('recipe', scope, RECIPES)}"
            )
    section, dot, name = key.partition(".")
    if not dot or not name or "." in name:
        raise XmrError(
            f"recipe override {key!r} must name one field as section.field, e.g. loss.margin "
            f"(sections: {', '.join(SECTIONS)})"
        )
    if section not in SECTIONS:
        raise XmrError(
            f"recipe override {key!r}: unknown section {section!r}; accepted: {', '.join(SECTIONS)}"
        )


def format_value(value: Any) -> str:
    """The override text of ``value``: bare for a plain string, JSON otherwise
    (``0.2``, ``true``, ``null``, ``[512]``); the inverse of :func:`parse_value`."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, str) and parse_value(value) == value and not set(value) & set(',=[]{}"'):
        return value
    return json.dumps(value)


def format_overrides(overrides: Mapping[str, Any]) -> str:
    """``{"loss.margin": 0.2}`` -> ``"loss.margin=0.2"`` (inverse of :func:`parse_overrides`)."""
    return ",".join(f"{key}={format_value(value)}" for key, value in overrides.items())


def as_overrides(overrides: str | Mapping[str, Any]) -> dict[str, Any]:
    """Overrides given as text (parsed) or as a mapping (keys checked), as a dict."""
    if isinstance(overrides, str):
        return parse_overrides(overrides)
    for key in overrides:
        check_key(key)
    return dict(overrides)


def for_recipe(overrides: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The ``section.field`` overrides that apply to recipe ``name``: the unscoped ones, then
    those scoped ``name:`` (a scoped item wins over an unscoped one of the same field), in
    order; items scoped to other recipes are left out."""
    shared = {key: value for key, value in overrides.items() if not split_scope(key)[0]}
    own = {field_of(key): value for key, value in overrides.items() if split_scope(key)[0] == name}
    return {**shared, **own}


def apply_overrides(recipe: Recipe, overrides: str | Mapping[str, Any]) -> Recipe:
    """``recipe`` with ``overrides`` applied (:func:`~xmr_utils.core.config.recipe_with`) and
    recorded in its ``overrides`` (after any it already had); no overrides -> ``recipe``.

    Raises:
        XmrError: bad syntax, an unknown section or field (the accepted ones are listed),
            or a value of the wrong type (the field and the value are named).
    """
    parsed = for_recipe(as_overrides(overrides), recipe.name)
    if not parsed:
        return recipe
    try:
        derived = recipe_with(recipe, **parsed)
    except XmrError as err:
        raise XmrError(f"recipe_overrides on recipe {recipe.name!r}: {err}") from None
    recorded = tuple(f"{key}={format_value(value)}" for key, value in parsed.items())
    return replace(derived, overrides=recipe.overrides + recorded)


def check_overrides(text: str, recipes: Sequence[str] = ()) -> dict[str, Any]:
    """Parse ``text`` and apply it to each preset named in ``recipes``, so a typo fails
    before anything trains; with no ``recipes`` it must fit at least one preset (else the
    default recipe's error is raised)."""
    parsed = parse_overrides(text)
    if not parsed:
        return parsed
    names = list(recipes) or [DEFAULT_RECIPE, *sorted(set(RECIPES) - {DEFAULT_RECIPE})]
    errors = []
    for name in names:
        try:
            apply_overrides(RECIPES[name], parsed)
        except XmrError as err:
            if recipes:
                raise
            errors.append(err)
    if len(errors) == len(names):
        raise errors[0]
    return parsed
