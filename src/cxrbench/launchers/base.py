"""What a launcher runs: independent jobs, each a picklable call, and what each one gave back.

A job is one RunSpec, a (benchmark, encoder, head) unit of runs (`cxrbench.runs.fanout` makes one per spec). Jobs
never talk to each other: the feature cache is their rendezvous (a job finding another's store locked waits, then
reuses its shards) and each writes its own run folder, so a launcher only has to start them, wait, and hand back
values or errors in the order it was given.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cxrbench.errors import CxrbenchError
from cxrbench.progress import LineProgress, Progress
from cxrbench.recording import recorded_command, recording


@dataclass(frozen=True)
class Job:
    """`function(*args, progress=...)`, where `function` is importable (a module-level name) so that it pickles."""

    label: str  # for people: "vindr · rad-dino · linear"
    function: Callable[..., Any]
    args: tuple = ()
    gpu: bool = False  # whether the job's device asks for a GPU (--device cuda, or auto on a cluster with GPUs)
    #: the command the user typed, captured where the job was made: a worker's own argv names the engine's worker
    command: str = field(default_factory=recorded_command)
    run_spec: dict[str, Any] | None = None  # the job's RunSpec (`RunSpec.as_dict`), recorded in its runs' config.yaml

    def call(self, progress: Progress) -> Any:
        """Run the job here, its runs recording the submitting command and its RunSpec."""
        with recording(self.command, self.run_spec):
            return self.function(*self.args, progress=progress)


@dataclass
class JobOutcome:
    label: str
    value: Any = None
    error: str | None = None  # why the job failed: the user's message, or a traceback's tail for a bug
    log: str | None = None  # where the job's own output went (cluster launchers)


class Launcher(Protocol):
    name: str

    def run(self, jobs: Sequence[Job], progress: Progress) -> list[JobOutcome]:
        """Run every job; one outcome per job, in the order given. A failed job never stops the others."""


class JobLog(LineProgress):
    """Progress of a job running away from the terminal (a Ray worker, a Slurm job): plain lines on stdout labelled
    with the job, which the engine collects (Ray prints them prefixed with the worker; submitit keeps one log file
    per job)."""

    def __init__(self, label: str):
        super().__init__(prefix=f"[{label}] ")
        self.label = label


def run_job(job: Job) -> JobOutcome:
    """Run one job where it landed. A user's error (no data here, weights missing) is the job's outcome, not a crash,
    so that the caller can list what remains; anything else is a bug, reported with its traceback's tail."""
    try:
        return JobOutcome(job.label, job.call(JobLog(job.label)))
    except CxrbenchError as exc:
        return JobOutcome(job.label, error=str(exc))
    except Exception:  # noqa: BLE001 -- a bug in one job must not lose the other jobs' results
        return JobOutcome(job.label, error="".join(traceback.format_exc(limit=-8)))
