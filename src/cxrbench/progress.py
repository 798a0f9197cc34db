"""How long-running work reports progress without printing: the CLI passes a `Progress`, a rich bar on a terminal and
plain lines (`LineProgress`) where the output is a log file, a pipe or a cluster job."""

from __future__ import annotations

import sys
import time
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


def _print_line(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


class LineProgress:
    """Progress as plain lines, for output no one watches live (`nohup ... > log`, `| tee`, a Slurm or Ray job): a
    line when a task starts and when it ends, and between them one at each tenth done, at most every `every_s`
    seconds, with the seconds since it started. A transient task (one seed's epochs) speaks only after `quiet_s`
    seconds: quick ones would bury the others, while a seed that trains for an hour must still show that it moves."""

    def __init__(self, prefix: str = "", quiet_s: float = 30.0, every_s: float = 10.0, bullet: str = "",
                 write: Callable[[str], None] = _print_line):
        self.prefix, self.quiet_s, self.every_s, self.bullet, self.write = prefix, quiet_s, every_s, bullet, write

    def task(self, description: str, total: int, transient: bool = False) -> Callable[[int], None]:
        started = time.perf_counter()
        done, said = [0], [started]
        step = max(1, total // 10)
        if not transient:
            self._line(f"{description}: 0/{total}")

        def advance(n: int) -> None:
            before, done[0] = done[0], done[0] + n
            finished = done[0] >= total
            if not finished and done[0] // step == before // step:
                return
            now = time.perf_counter()
            if transient and now - started < self.quiet_s:
                return
            if finished or now - said[0] >= self.every_s:
                said[0] = now
                self._line(f"{description}: {done[0]}/{total} ({now - started:.0f} s)")

        return advance

    def note(self, message: str) -> None:
        self._line(f"{self.bullet}{message}")

    def _line(self, text: str) -> None:
        self.write(f"{self.prefix}{text}")
