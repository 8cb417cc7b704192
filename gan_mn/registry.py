"""``Registry``: the names of one kind of thing (model families, norm kinds, losses, study
groups), each registered once, as torch-fidelity registers its feature extractors.

What a kind offers is read from its registry alone: the builders look entries up in it,
the CLI's choices and the study launcher list its names, and the docs test checks the
docs' tables against it. Registering a name a second time is an error, so no kind is
defined in two places. Imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from gan_mn.errors import OptionError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries of one kind (``kind`` names it in errors: "norm kind", "loss")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` as ``name``; a name already taken is an error (a bug, not a
        user's mistake: it keeps its traceback)."""
        if name in self._entries:
            raise RuntimeError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> T:
        """The entry of ``name``; an ``OptionError`` (one line, naming the choices) for a
        name not registered."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise OptionError(f"{self.kind} must be one of {', '.join(self._entries)}; got "
                              f"{name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> tuple[str, ...]:
        """The registered names, in the order they were registered."""
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())
