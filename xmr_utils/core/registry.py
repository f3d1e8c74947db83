"""Small explicit registries: components are looked up by key, never by matching names."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from xmr_utils.core.errors import unknown_choice

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only name -> component mapping whose misses raise a clear :class:`XmrError`.

    ``kind`` names what is registered ("image encoder", "miner") for the error message.
    """

    def __init__(self, kind: str, entries: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = dict(entries or {})

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds ``obj`` under ``name`` (names are unique)."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_choice(self.kind, name, self._entries) from None

    # Mapping's own ``in`` and ``get`` catch KeyError, which a miss does not raise here
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._entries.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
