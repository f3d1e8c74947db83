"""The two encoder registries and the spec grammar ``name[:variant][?key=value,...]``.

Each registered entry says which variants and options it accepts, so a wrong spec or option
is refused with the accepted ones listed before any model is built. Options can be given as
keywords (``build_text_encoder("fasttext:mean", vectors="cc.en.300.bin")``) or, where only a
string reaches the encoder (a notebook parameter, a grid axis), after a ``?`` in the spec:
``fasttext:mean?vectors=data/vectors/cc.en.300.bin``,
``clip:ViT-B-32?pretrained=laion2b_s34b_b79k,view=tta``. Values are read as int, float,
true/false/none when they look like one, else kept as text; a value cannot contain ``,`` or
``+`` (``+`` joins image encoders).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.registry import Registry

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
OPTIONS_MARK = "?"


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder family.

    Attributes:
        factory: ``factory(variant, **options)`` -> encoder (cheap: loads no weights).
        variants: accepted variants; the first is the default.
        options: accepted keyword options.
        summary: one line for listings (dimension, where the weights come from).
        open_variants: any variant is passed to the factory, which checks it (``clip:<model>``
            names an open_clip architecture); ``variants`` then lists examples.
    """

    factory: Callable[..., Any]
    variants: tuple[str, ...]
    options: tuple[str, ...] = ()
    summary: str = ""
    open_variants: bool = False

    @property
    def default_variant(self) -> str:
        return self.variants[0]


IMAGE_ENCODERS: Registry[EncoderEntry] = Registry("image encoder")
TEXT_ENCODERS: Registry[EncoderEntry] = Registry("text encoder")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"name"`` or ``"name:variant"`` into ``(name, variant or None)``.

    Anything after a second colon belongs to canonical specs written by encoders and is
    rejected here (pass options as keywords, or after ``?``: :func:`split_options`).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise XmrError(
            f"encoder spec {spec!r} is empty; write 'name' or 'name:variant', e.g. 'minilm:mean'"
        )
    parts = spec.strip().split(":")
    if len(parts) > 2 or "+" in spec or OPTIONS_MARK in spec:
        raise XmrError(
            f"encoder spec {spec!r} is not 'name' or 'name:variant'; pass options "
            "as keywords, e.g. build_text_encoder('fasttext:mean', vectors='cc.bin'), or "
            "as 'fasttext:mean?vectors=cc.bin'"
        )
    return parts[0], (parts[1] if len(parts) == 2 and parts[1] else None)


def option_value(text: str) -> Any:
    """``"36"`` -> 36, ``"0.2"`` -> 0.2, ``"true"``/``"false"``/``"none"`` -> True/False/None,
    anything else stays text (paths, names)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    if _INT.fullmatch(text.strip()):
        return int(text)
    if _FLOAT.fullmatch(text.strip()):
        return float(text)
    return text.strip()


def split_options(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:variant?key=value,key=value"`` -> ``("name:variant", {key: value})``.

    >>> split_options("faster_rcnn:regions?max_regions=10,score_threshold=0.3")
    ('faster_rcnn:regions', {'max_regions': 10, 'score_threshold': 0.3})

    A spec without ``?`` gives no options; a malformed option raises XmrError.
    """
    if not isinstance(spec, str) or OPTIONS_MARK not in spec:
        return spec, {}
    base, _, text = spec.partition(OPTIONS_MARK)
    options: dict[str, Any] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or not value.strip():
            raise XmrError(
                f"encoder spec {spec!r}: option {item!r} is not key=value; write e.g. "
                "'fasttext:mean?vectors=cc.en.300.bin' or 'clip:ViT-B-32?view=tta'"
            )
        if key in options:
            raise XmrError(f"encoder spec {spec!r} sets option {key!r} twice")
        options[key] = option_value(value)
    return base.strip(), options


def safe_token(value: object) -> str:
    """``value`` as a filesystem-safe token (runs of other characters become ``-``)."""
    return _UNSAFE.sub("-", str(value)).strip("-") or "x"


_NO_EXTRAS: Mapping[str, object] = MappingProxyType({})


def canonical_spec(name: str, variant: str, extras: Mapping[str, object] = _NO_EXTRAS) -> str:
    """``name:variant`` plus ``+key=value`` for every option that changes the features.

    >>> canonical_spec("fasttext", "mean", {"dim": 300})
    'fasttext:mean+dim=300'
    """
    items = dict(extras)
    return f"{name}:{variant}" + "".join(f"+{k}={safe_token(items[k])}" for k in sorted(items))


def spec_file_stem(spec: str) -> str:
    """The cache file stem of a canonical spec: ``:`` -> ``__`` (safe on every filesystem)."""
    return spec.replace(":", "__")


def split_concatenated(spec: str) -> tuple[str, ...]:
    """``"a+b"`` -> ``("a", "b")``: image features of several encoders side by side.

    A single spec gives a 1-tuple. Raises XmrError for an empty part (``"a+"``) or a
    repeated one.
    """
    if not isinstance(spec, str):
        raise XmrError(f"encoder spec {spec!r} must be a string")
    parts = tuple(part.strip() for part in spec.split("+"))
    if any(not part for part in parts):
        raise XmrError(
            f"encoder spec {spec!r} has an empty part; write 'a+b', e.g. "
            "'efficientnet_lite0:tta+efficientnet_lite2:tta'"
        )
    if len(set(parts)) != len(parts):
        raise XmrError(f"encoder spec {spec!r} names the same encoder twice")
    return parts


def build_image_encoders(spec: str, **options: Any) -> list[Any]:
    """One image encoder per part of a possibly concatenated ``spec`` (``"a+b"``)."""
    return [build_image_encoder(part, **options) for part in split_concatenated(spec)]


def build_text_encoders(spec: str, **options: Any) -> list[Any]:
    """One text encoder per part of a possibly concatenated ``spec`` (``"minilm:mean+tfidf"``)."""
    return [build_text_encoder(part, **options) for part in split_concatenated(spec)]


def _build(registry: Registry[EncoderEntry], spec: str, options: Mapping[str, Any]) -> Any:
    base, in_spec = split_options(spec)
    both = sorted(set(in_spec) & set(options))
    if both:
        raise XmrError(f"encoder spec {spec!r} and the keyword options both set {both}")
    options = {**in_spec, **options}
    name, variant = parse_spec(base)
    entry = registry[name]
    variant = variant or entry.default_variant
    if variant not in entry.variants and not entry.open_variants:
        raise unknown_choice(f"variant of {registry.kind} {name!r}", variant, entry.variants)
    for key in options:
        if key not in entry.options:
            accepted = ", ".join(sorted(entry.options)) or "none"
            raise XmrError(f"{registry.kind} {name!r} has no option {key!r}; accepted: {accepted}")
    return entry.factory(variant, **options)


def build_image_encoder(spec: str, **options: Any) -> Any:
    """Build the image encoder ``spec`` (``name[:variant][?key=value,...]``) with options.

    Unknown names, variants or options raise :class:`XmrError` listing the accepted ones.
    Returns an :class:`~xmr_utils.core.encoders.base.ImageEncoder`; no weights are read yet.
    """
    return _build(IMAGE_ENCODERS, spec, options)


def build_text_encoder(spec: str, **options: Any) -> Any:
    """Build the text encoder ``spec`` (``name[:variant][?key=value,...]``) with options.

    Unknown names, variants or options raise :class:`XmrError` listing the accepted ones.
    Returns a :class:`~xmr_utils.core.encoders.base.TextEncoder`; no weights are read yet.
    """
    return _build(TEXT_ENCODERS, spec, options)
