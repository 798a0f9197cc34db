"""What the runs made inside a job record about how they were asked for: the command the user typed and the RunSpec.

The command line captures the typed command once (`typed_command`) and every job carries it with its RunSpec
(`launchers.Job`); a job enters `recording(...)` where it runs, here or in a Ray or Slurm worker, whose own argv
names the engine's worker, not what the user ran. config.yaml and metrics.json read them back from here.
Light on purpose: the command line and the launchers import it before torch or pandas.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_command: str | None = None
_run_spec: dict[str, Any] | None = None


def typed_command(argv: Sequence[str] | None = None) -> str:
    """The cxrbench command of this process as typed (`argv` default: sys.argv), quoted as a shell would need it."""
    return shlex.join(["cxrbench", *list(sys.argv if argv is None else argv)[1:]])


@contextmanager
def recording(command: str | None, run_spec: dict[str, Any] | None = None) -> Iterator[None]:
    """Record `command` (and the canonical `run_spec`) for the runs made inside the block; the previous values
    come back after it (a worker runs many jobs)."""
    global _command, _run_spec
    before = _command, _run_spec
    _command, _run_spec = command, run_spec
    try:
        yield
    finally:
        _command, _run_spec = before


def recorded_command() -> str:
    """The command that made the runs of this block: the submitting one inside a job, else this process's."""
    return _command if _command is not None else typed_command()


def recorded_run_spec() -> dict[str, Any] | None:
    """The RunSpec of the job running here (None for a run made by a direct library call)."""
    return _run_spec
