"""The default launcher: every job in this process, one after the other, with the terminal's progress bars."""

from __future__ import annotations

from collections.abc import Sequence

from cxrbench.errors import CxrbenchError
from cxrbench.launchers.base import Job, JobOutcome
from cxrbench.progress import Progress


class LocalLauncher:
    name = "local"

    def __init__(self, params: dict) -> None:
        if params:
            raise CxrbenchError(f"--launcher-param {', '.join(params)}: the local launcher takes no parameters.")

    def run(self, jobs: Sequence[Job], progress: Progress) -> list[JobOutcome]:
        """A user's error ends that job only; a bug keeps its traceback (here, in the terminal, it is readable)."""
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(JobOutcome(job.label, job.call(progress)))
            except CxrbenchError as exc:
                outcomes.append(JobOutcome(job.label, error=str(exc)))
        return outcomes
