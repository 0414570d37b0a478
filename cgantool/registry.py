"""Named registries whose errors list the valid names (and suggest the closest one)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cgantool.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object table. ``@REG.register("name")`` adds; ``REG.get("name")`` looks up."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            guess = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'", hint=f"{guess}valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
