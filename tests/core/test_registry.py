"""xmr_utils.core.registry: name -> component lookups that fail with a clear XmrError."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xmr_utils.core.errors import XmrError
from xmr_utils.core.registry import Registry


def _colours() -> Registry[int]:
    return Registry("colour", {"red": 1, "green": 2})


def test_lookup_returns_the_registered_component_and_iterates_in_insertion_order() -> None:
    reg = _colours()
    assert reg["green"] == 2
    assert list(reg) == ["red", "green"]
    assert len(reg) == 2
    assert dict(reg.items()) == {"red": 1, "green": 2}
    assert "red" in reg and "blue" not in reg


def test_a_miss_names_the_kind_the_value_and_every_accepted_name() -> None:
    with pytest.raises(XmrError) as err:
        _colours()["blue"]
    assert str(err.value) == "unknown colour 'blue'; accepted: green, red"
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no KeyError chain


def test_get_on_a_miss_gives_the_default_instead_of_raising() -> None:
    assert _colours().get("blue", 0) == 0


def test_register_adds_under_the_name_and_returns_the_object_unchanged() -> None:
    reg: Registry[Callable[[int], int]] = Registry("function")

    @reg.register("square")
    def square(x: int) -> int:
        return x * x

    assert reg["square"] is square and square(3) == 9


def test_a_name_cannot_be_registered_twice() -> None:
    reg = _colours()
    with pytest.raises(KeyError, match="colour 'red' registered twice"):
        reg.register("red")(3)
    assert reg["red"] == 1


def test_the_mapping_is_read_only_and_independent_of_its_source() -> None:
    source = {"red": 1}
    reg = Registry("colour", source)
    source["blue"] = 3
    assert list(reg) == ["red"]
    with pytest.raises(TypeError):
        reg["green"] = 2  # type: ignore[index]
    assert repr(reg) == "Registry('colour', ['red'])"
