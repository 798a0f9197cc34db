"""Where the jobs of the one fan-out (`cxrbench.runs.fanout`: one job per RunSpec of `run`, `explain`, `bias`,
`reproduce` and the demo) run: `--launcher local|ray|slurm`.

Each launcher is an existing engine (this process, Ray tasks, a Slurm job array through submitit), never a
scheduler of our own; Ray and submitit are optional extras, imported only when their launcher is asked for.
"""

from __future__ import annotations

import difflib
import importlib

from cxrbench.errors import CxrbenchError
from cxrbench.launchers.base import Job, JobLog, JobOutcome, Launcher, run_job

# name -> (module, class, the extra that installs its engine)
LAUNCHERS = {
    "local": ("cxrbench.launchers.local", "LocalLauncher", None),
    "ray": ("cxrbench.launchers.ray", "RayLauncher", "ray"),
    "slurm": ("cxrbench.launchers.slurm", "SlurmLauncher", "slurm"),
}
_ENGINES = {"ray": "ray", "slurm": "submitit"}


def make_launcher(name: str, params: dict | None = None) -> Launcher:
    """The launcher `name` with its `--launcher-param`s; says which extra to install when its engine is missing."""
    if name not in LAUNCHERS:
        close = difflib.get_close_matches(name, LAUNCHERS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise CxrbenchError(f"--launcher {name}: not a launcher; choose one of {', '.join(LAUNCHERS)}.{hint}")
    module, cls, extra = LAUNCHERS[name]
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != _ENGINES.get(name):
            raise
        raise CxrbenchError(f"--launcher {name} needs {_ENGINES[name]}, which is not installed: "
                            f"pip install 'cxrbench[{extra}]'.") from None
    return getattr(loaded, cls)(dict(params or {}))


__all__ = ["Job", "JobLog", "JobOutcome", "Launcher", "LAUNCHERS", "make_launcher", "run_job"]
