"""A tiny name -> object registry, so recipes and CLI flags can name components."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from irdistill.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (case-insensitive) to classes or factories of one kind.

    Example:
        >>> indexes = Registry("index")
        >>> @indexes.register("flat")
        ... class Flat: ...
        >>> indexes.get("FLAT") is Flat
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            key = name.lower()
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[key] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it named (a plug-in's tests clean up with it)."""
        obj = self.get(name)
        del self._items[name.lower()]
        return obj

    def get(self, name: str) -> T:
        try:
            return self._items[name.lower()]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
