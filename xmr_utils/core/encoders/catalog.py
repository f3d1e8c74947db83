"""The two encoder registries and the spec grammar ``name`` or ``name:variant``.

Each registered entry says which variants and options it accepts, so a wrong spec or option
is refused with the accepted ones listed before any model is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from xmr_utils.core.errors import XmrError, unknown_choice
from xmr_utils.core.registry import Registry

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder family.

    Attributes:
        factory: ``factory(variant, **options)`` -> encoder (cheap: loads no weights).
        variants: accepted variants; the first is the default.
        options: accepted keyword options.
        summary: one line for listings (dimension, where the weights come from).
    """

    factory: Callable[..., Any]
    variants: tuple[str, ...]
    options: tuple[str, ...] = ()
    summary: str = ""

    @property
    def default_variant(self) -> str:
        return self.variants[0]


IMAGE_ENCODERS: Registry[EncoderEntry] = Registry("image encoder")
TEXT_ENCODERS: Registry[EncoderEntry] = Registry("text encoder")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"name"`` or ``"name:variant"`` into ``(name, variant or None)``.

    Anything after a second colon belongs to canonical specs written by encoders and is
    rejected here (pass options as keywords instead).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise XmrError(
            f"encoder spec {spec!r} is empty; write 'name' or 'name:variant', e.g. 'minilm:mean'"
        )
    parts = spec.strip().split(":")
    if len(parts) > 2 or "+" in spec:
        raise XmrError(
            f"encoder spec {spec!r} is not 'name' or 'name:variant'; pass options "
            "as keywords, e.g. build_text_encoder('fasttext:mean', vectors='cc.bin')"
        )
    return parts[0], (parts[1] if len(parts) == 2 and parts[1] else None)


def safe_token(value: object) -> str:
    """``value`` as a filesystem-safe token (runs of other characters become ``-``)."""
    return _UNSAFE.sub("-", str(value)).strip("-") or "x"


def canonical_spec(name: str, variant: str, extras: Mapping[str, object] = ()) -> str:
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
    name, variant = parse_spec(spec)
    entry = registry[name]
    variant = variant or entry.default_variant
    if variant not in entry.variants:
        raise unknown_choice(f"variant of {registry.kind} {name!r}", variant, entry.variants)
    for key in options:
        if key not in entry.options:
            accepted = ", ".join(sorted(entry.options)) or "none"
            raise XmrError(f"{registry.kind} {name!r} has no option {key!r}; accepted: {accepted}")
    return entry.factory(variant, **options)


def build_image_encoder(spec: str, **options: Any) -> Any:
    """Build the image encoder ``spec`` (``name`` or ``name:variant``) with keyword options.

    Unknown names, variants or options raise :class:`XmrError` listing the accepted ones.
    Returns an :class:`~xmr_utils.core.encoders.base.ImageEncoder`; no weights are read yet.
    """
    return _build(IMAGE_ENCODERS, spec, options)


def build_text_encoder(spec: str, **options: Any) -> Any:
    """Build the text encoder ``spec`` (``name`` or ``name:variant``) with keyword options.

    Unknown names, variants or options raise :class:`XmrError` listing the accepted ones.
    Returns a :class:`~xmr_utils.core.encoders.base.TextEncoder`; no weights are read yet.
    """
    return _build(TEXT_ENCODERS, spec, options)
