"""How long-running work reports progress without printing: the CLI passes a rich-backed `Progress`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def task(self, description: str, total: int, transient: bool = False) -> Callable[[int], None]:
        """Start a bar; returns `advance(n)`. A `transient` bar (one seed's epochs) goes once complete."""

    def note(self, message: str) -> None:
        """A one-line message for the user (e.g. 'features cached: no forward pass')."""


class SilentProgress:
    def task(self, description: str, total: int, transient: bool = False) -> Callable[[int], None]:
        return lambda n: None

    def note(self, message: str) -> None:
        pass
