"""Jobs as a Slurm job array through submitit, one log folder per job.

Every job is submitted in one array (`slurm_array_parallelism` caps how many run at once). A job that is preempted
or reaches its time limit is requeued by submitit with the same arguments; since a job resumes from the finished
feature-cache shards and the stored runs, the requeued job redoes only what was not finished. The parameters are
submitit's (`timeout_min`, `cpus_per_task`, `gpus_per_node`, `mem_gb`, `slurm_partition`, `slurm_account`, ...);
`cluster=local` runs the same jobs as local processes (how the tests run them) and `cluster=debug` in this process.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import submitit

from cxrbench.errors import CxrbenchError
from cxrbench.launchers.base import Job, JobOutcome, run_job
from cxrbench.progress import Progress

DEFAULT_LOGS = Path("cxrbench-logs") / "slurm"
DEFAULT_TIMEOUT_MIN = 240  # submitit's own default is 5 minutes; a timed-out job is requeued and resumes
POLL_SECONDS = 2.0


class RequeuedJob(submitit.helpers.Checkpointable):
    """Runs a job; on preemption or timeout submitit resubmits it with the same job (checkpoint's default), which
    is right here because the job itself resumes from what its earlier attempt finished."""

    def __call__(self, job: Job) -> JobOutcome:
        return run_job(job)


class SlurmLauncher:
    name = "slurm"

    def __init__(self, params: dict) -> None:
        params = dict(params)
        self.logs = Path(str(params.pop("logs", DEFAULT_LOGS))).expanduser().resolve()
        self.cluster = params.pop("cluster", None)
        if self.cluster is None and shutil.which("sbatch") is None:
            raise CxrbenchError("--launcher slurm: no `sbatch` on this machine's PATH. Submit from a Slurm login node, "
                                "or add --launcher-param cluster=local to run the same jobs as local processes.")
        params.setdefault("timeout_min", DEFAULT_TIMEOUT_MIN)
        params.setdefault("name", "cxrbench")
        self.params = params

    def run(self, jobs: Sequence[Job], progress: Progress) -> list[JobOutcome]:
        executor = self._executor(any(job.gpu for job in jobs))
        with executor.batch():  # one job array
            submitted = [executor.submit(RequeuedJob(), job) for job in jobs]
        progress.note(f"slurm: {len(jobs)} job(s) submitted; logs under {self.logs}")
        advance = progress.task("jobs on Slurm", len(jobs))
        waiting = set(range(len(jobs)))
        while waiting:
            finished = {number for number in waiting if submitted[number].done()}
            waiting -= finished
            advance(len(finished))
            if waiting:
                time.sleep(POLL_SECONDS)
        return [self._outcome(job, handle) for job, handle in zip(jobs, submitted)]

    def _executor(self, gpu: bool) -> submitit.AutoExecutor:
        try:
            executor = submitit.AutoExecutor(folder=self.logs, cluster=self.cluster)  # JOBID_TASK_log.out/.err per job
            params = dict(self.params)
            if gpu:
                params.setdefault("gpus_per_node", 1)
            executor.update_parameters(**params)
        except (NameError, ValueError, AssertionError, TypeError) as exc:
            raise CxrbenchError(f"--launcher-param: submitit refused the parameters ({' '.join(str(exc).split())}). "
                                "Give submitit's names, e.g. timeout_min=600, gpus_per_node=1, "
                                "slurm_partition=gpu, or cluster=local.") from None
        return executor

    @staticmethod
    def _outcome(job: Job, handle) -> JobOutcome:
        log = str(handle.paths.stdout)
        try:
            outcome = handle.result()
        except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as exc:
            return JobOutcome(job.label, error=f"the Slurm job ended without a result ({str(exc).splitlines()[0]}); "
                                               f"see {log}", log=log)
        outcome.log = log
        return outcome
