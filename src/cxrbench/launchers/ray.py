"""Jobs as Ray tasks: on the Ray cluster this machine belongs to (`ray start` on each node, or $RAY_ADDRESS), or on
a local one started for the sweep when there is none.

Each job asks Ray for `cpus` CPUs and, when its device wants one, `gpus` GPUs, so Ray runs as many at once as the
cluster holds and queues the rest. A task lost with its node is retried (`retries`); as every job resumes from the
feature cache and the stored runs, a retry redoes only what was not finished. Paths are made absolute before
submission and the feature cache must be on a file system every node sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import ray

from cxrbench.errors import CxrbenchError
from cxrbench.launchers.base import Job, JobOutcome, run_job
from cxrbench.progress import Progress

PARAMS = {"address": "the cluster to join (default: $RAY_ADDRESS, else a local Ray started for this sweep)",
          "cpus": "CPUs per job (default 1)",
          "gpus": "GPUs per job that runs on a GPU (default 1)",
          "retries": "reruns of a job whose worker or node died (default 2)"}


class RayLauncher:
    name = "ray"

    def __init__(self, params: dict) -> None:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise CxrbenchError(f"--launcher-param {', '.join(unknown)}: not a Ray launcher parameter; it takes "
                                + "; ".join(f"{k} ({v})" for k, v in PARAMS.items()) + ".")
        self.address = params.get("address")
        self.cpus = _number(params, "cpus", 1.0)
        self.gpus = _number(params, "gpus", 1.0)
        self.retries = int(_number(params, "retries", 2))

    def run(self, jobs: Sequence[Job], progress: Progress) -> list[JobOutcome]:
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        try:
            progress.note(f"ray: {len(jobs)} job(s) on {_describe(ray.cluster_resources())}")
            task = ray.remote(run_job)
            pending = {task.options(num_cpus=self.cpus, num_gpus=self.gpus if job.gpu else 0,
                                    max_retries=self.retries).remote(job): number for number, job in enumerate(jobs)}
            outcomes: list[JobOutcome | None] = [None] * len(jobs)
            advance = progress.task("jobs on Ray", len(jobs))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                number = pending.pop(done[0])
                try:
                    outcomes[number] = ray.get(done[0])
                except ray.exceptions.RayError as exc:  # the worker died (out of memory, node lost) past its retries
                    outcomes[number] = JobOutcome(jobs[number].label, error=f"Ray lost the job: {exc}")
                advance(1)
            return [outcome for outcome in outcomes if outcome is not None]
        finally:
            if started_here:
                ray.shutdown()


def _number(params: dict, key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CxrbenchError(f"--launcher-param {key}={value!r}: give a number of at least 0 ({PARAMS[key]}).")
    return float(value)


def _describe(resources: dict) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPUs"]
    if resources.get("GPU"):
        parts.append(f"{resources['GPU']:g} GPUs")
    return ", ".join(parts)
