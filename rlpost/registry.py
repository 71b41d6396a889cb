"""Name -> (component, config schema) tables behind every config group (algo, advantage, sampler, ...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    component: Any  # a function or class
    schema: type  # dataclass that type-checks the group's yaml


class Registry:
    """One table per config group; `name` in the group's yaml selects the entry."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, schema: type) -> Callable[[Any], Any]:
        def add(component: Any) -> Any:
            if name in self._entries:
                raise ValueError(f"{self.group}: '{name}' registered twice")
            self._entries[name] = Entry(component, schema)
            return component

        return add

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise KeyError(f"{self.group}.name={name!r} is not registered; known: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)
