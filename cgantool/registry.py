"""Named registries whose errors list the valid names (and suggest the closest one), the one "did you mean"
helper every such error uses, and the config field type of a name that must be registered."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from cgantool.errors import ConfigError

T = TypeVar("T")


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``name`` (case aside), or None when none is close."""
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return by_lower[close[0]] if close else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the choice closest to ``name`` (case aside), or ``""`` when none is close."""
    guess = closest(name, choices)
    return f"did you mean '{guess}'? " if guess else ""


def unknown_name(kind: str, value: str, valid: list[str]) -> PydanticCustomError:
    """The validation error of a name no registry holds: type ``unknown_name``, message ``unknown <kind>``, and
    ``ctx["hint"]`` (the closest valid name, then all of them), which ``config.validate_config`` shows."""
    hint = f"{did_you_mean(value, valid)}valid names: {', '.join(valid)}"
    return PydanticCustomError("unknown_name", f"unknown {kind}", {"hint": hint})


def registered_name(kind: str, names: Callable[[], list[str]]) -> Any:
    """A pydantic field type: a string that ``names()`` holds when validated (an ``unknown_name`` error otherwise);
    the JSON Schema lists ``names()`` as its enum."""

    def check(value: str) -> str:
        if value not in names():
            raise unknown_name(kind, value, names())
        return value

    return Annotated[str, AfterValidator(check), Field(json_schema_extra=lambda schema: schema.update(enum=names()))]


class Registry(Generic[T]):
    """A name → object table. ``@REG.register("name")`` adds; ``REG.get("name")`` looks up."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._watchers: list[Callable[[], None]] = []

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            try:
                self._changed()
            except Exception:
                del self._items[name]  # a watcher refused it (e.g. a term without a valid config section)
                raise
            return obj

        return add

    def unregister(self, name: str) -> T:
        """Remove ``name`` (a plugin's or a test's entry) and return what it held."""
        obj = self._items.pop(name)
        self._changed()
        return obj

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every later register / unregister (the config rebuilds its schema so)."""
        self._watchers.append(callback)

    def _changed(self) -> None:
        for callback in self._watchers:
            callback()

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} '{name}'", hint=self.hint(name)) from None

    def hint(self, name: str) -> str:
        """What an error about the unknown ``name`` suggests: the closest name and every valid one."""
        return f"{did_you_mean(name, self._items)}valid names: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs in registration order."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
