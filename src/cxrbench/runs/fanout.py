"""The one fan-out: a list of RunSpecs, one job each, handed to the launcher (local, Ray, Slurm).

`cxrbench run` (one spec per encoder), `explain`, `bias` (one spec whose group budgets are its folds' runs), the demo
and `reproduce` (one spec per recipe entry and encoder) all come through `run_specs`. Each job prepares its study
itself, so jobs need no shared memory, only shared disks: the feature cache is their rendezvous. Every job carries
the command the user typed and its RunSpec, which its runs record (`cxrbench.recording`). Names and settings
are checked here, before any job is submitted, so that a typo fails once and at once, not in every job on a
cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from cxrbench.errors import CxrbenchError
from cxrbench.evaluations import run_evaluation
from cxrbench.launchers import Job, JobOutcome, make_launcher
from cxrbench.progress import Progress, SilentProgress
from cxrbench.recording import recorded_command
from cxrbench.results.store import run_name
from cxrbench.runs.pipeline import (EncoderOptions, MachineOptions, check_run, evaluate, machine_options, on_this_host,
                                    wants_gpu)
from cxrbench.runs.spec import MachineSpec, RunSpec
from cxrbench.study import StudyOptions, sharing_studies


@dataclass(frozen=True)
class Storage:
    """Where the runs go and what happens to stored ones: `overwrite` replaces a run of other settings, `resume`
    keeps one of the same settings without training it again (`reproduce`)."""

    out: Path
    overwrite: bool = False
    resume: bool = False


def run_specs(specs: Sequence[RunSpec], storage: Storage, machine: MachineSpec, progress: Progress = SilentProgress(),
              command: str | None = None) -> list[JobOutcome]:
    """One job per spec on `machine.launcher`; one outcome per spec, in order (its `evaluate` results, or why it
    failed). A spec whose names, settings or weights fail their check is not submitted: its outcome says why, and
    the others run. `command`: the command the user typed (default: this process's)."""
    launcher = make_launcher(machine.launcher, machine.launcher_params)
    problems = [_problem(spec, storage) for spec in specs]
    if launcher.name != "local":  # a job may start in another working directory
        storage = replace(storage, out=storage.out.resolve())
        specs = [_absolute(spec) for spec in specs]
    placed = machine_options(machine, specs[0].precision if specs else "fp32")
    placed = replace(placed, cache_root=placed.cache_root.resolve()) if launcher.name != "local" else placed
    typed = command or recorded_command()
    jobs = [Job(unit_label(spec), run_spec, (spec, storage, replace(placed, precision=spec.precision), machine.threads),
                gpu=wants_gpu(machine.device), command=typed, run_spec=spec.resolved().as_dict())
            for spec, problem in zip(specs, problems) if problem is None]
    with sharing_studies() if launcher.name == "local" else nullcontext():  # jobs in this process, one by one
        ran = iter(launcher.run(jobs, progress) if jobs else [])
    return [next(ran) if problem is None else JobOutcome(unit_label(spec), error=problem)
            for spec, problem in zip(specs, problems)]


def _problem(spec: RunSpec, storage: Storage) -> str | None:
    """Why `spec` cannot run (an unknown name, a bad setting), from specs alone; None if it can."""
    try:
        check_run(*_parts(spec, storage), weights=False)
    except CxrbenchError as exc:
        return str(exc)
    return None


def run_spec(spec: RunSpec, storage: Storage, machine: MachineOptions, threads: int | None,
             progress: Progress = SilentProgress()) -> list[Any]:
    """A launcher's job: the spec's runs through the one pipeline, on this host's device and thread cap."""
    study, evaluation, encoders = _parts(spec, storage)
    return evaluate(study, evaluation, encoders, on_this_host(machine, threads, progress), progress)


#: the head `explain` trains when the spec names none (one with attention maps)
LOCALISATION_HEAD = "attentive"


def unit_label(spec: RunSpec) -> str:
    """'benchmark · encoder · head[_tag]': how people (progress lines, Slurm logs, errors) name a job. A spec naming
    an unknown benchmark still gets a label (its outcome then says what is unknown) instead of raising here."""
    head = spec.head or (LOCALISATION_HEAD if spec.evaluation == "localisation" else None)
    if head is None:
        try:
            head = spec.resolved().head
        except CxrbenchError:
            head = "default head"
    return f"{spec.benchmark} · {spec.encoder} · {run_name(head, spec.tag)}"


def _parts(spec: RunSpec, storage: Storage) -> tuple[StudyOptions, Any, EncoderOptions]:
    study = StudyOptions(spec.benchmark, Path(spec.data_root) if spec.data_root else None, dict(spec.dataset_options),
                         spec.seeds, spec.budgets(), spec.bootstrap, dict(spec.split))
    encoders = EncoderOptions([spec.encoder], spec.weights, spec.revision, spec.image_size)
    return study, _evaluation(spec, storage), encoders


def _evaluation(spec: RunSpec, storage: Storage) -> Any:
    if spec.evaluation == "localisation":
        from cxrbench.evaluations.localisation import LocalisationEvaluation

        set_here = ("out", "head", "head_overrides", "overwrite")  # from the spec's own keys and the storage
        allowed = [f.name for f in fields(LocalisationEvaluation) if f.name not in set_here]
        unknown = sorted(set(spec.evaluation_params) - set(allowed))
        if unknown:
            raise CxrbenchError(f"evaluation_params {', '.join(unknown)}: localisation takes {', '.join(allowed)}.")
        return LocalisationEvaluation(storage.out, head=spec.head or LOCALISATION_HEAD, head_overrides=dict(spec.head_params),
                                      overwrite=storage.overwrite, **spec.evaluation_params)
    return run_evaluation(spec.benchmark)(storage.out, spec.head, dict(spec.head_params), spec.tag, storage.overwrite,
                                          list(spec.metrics), resume=storage.resume)


def _absolute(spec: RunSpec) -> RunSpec:
    """Paths made absolute for a job that may start elsewhere (the data root, local weights)."""
    weights = spec.weights
    if weights and Path(weights).expanduser().exists():
        weights = str(Path(weights).expanduser().resolve())
    return replace(spec, data_root=str(Path(spec.data_root).resolve()) if spec.data_root else None, weights=weights)
