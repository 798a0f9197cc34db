"""`cxrbench reproduce TABLE`: the runs of a table's recipe that are not stored yet, then the table.

Each encoder of a recipe entry is one call of the pipeline (`cxrbench.pipeline.evaluate`) with `resume` on: a run
stored with the same settings is kept without computing anything, and a run stored with other settings is refused
(never silently replaced). A run that cannot be made (no data on this machine, weights missing, other settings
stored) does not stop the others: what remains, and why, is returned for the caller to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cxrbench.errors import CxrbenchError
from cxrbench.evaluations import run_evaluation
from cxrbench.pipeline import EncoderOptions, MachineOptions, evaluate
from cxrbench.progress import Progress, SilentProgress
from cxrbench.results.recipes import PlannedRun, Recipe, plan_runs
from cxrbench.study import StudyOptions


@dataclass
class ReproduceOptions:
    out: Path
    data_roots: dict[str, Path] = field(default_factory=dict)  # benchmark -> dataset folder (else its environment variable)
    encoders: list[str] | None = None  # only these rows
    random_init: bool = False  # every encoder with random weights of its architecture (a pipeline check)
    image_size: int | None = None
    seeds: int | None = None
    bootstrap_resamples: int | None = None
    overwrite: bool = False


@dataclass
class Outcome:
    ran: list[PlannedRun] = field(default_factory=list)
    kept: list[PlannedRun] = field(default_factory=list)  # stored already with the same settings
    remaining: list[tuple[PlannedRun, str]] = field(default_factory=list)  # not run, and why


def reproduce(recipe: Recipe, options: ReproduceOptions, machine: MachineOptions,
              progress: Progress = SilentProgress()) -> Outcome:
    planned = plan_runs(recipe, options.out, options.encoders)
    outcome = Outcome()
    for entry in recipe.runs:
        mine = [p for p in planned if p.entry is entry]
        if not mine:
            continue
        study = StudyOptions(entry.benchmark, options.data_roots.get(entry.benchmark), dict(entry.dataset_options),
                             options.seeds, entry.budgets, options.bootstrap_resamples)
        for name in dict.fromkeys(p.encoder for p in mine):  # one call per encoder: one failing does not stop the others
            evaluation = run_evaluation(entry.benchmark)(options.out, entry.head, dict(entry.head_params), entry.tag,
                                                         options.overwrite, [], resume=True)
            encoders = EncoderOptions([name], "random" if options.random_init else entry.weights, None,
                                      fitted_size(name, options.image_size))
            _run_encoder(study, evaluation, encoders, machine, progress, [p for p in mine if p.encoder == name], outcome)
    return outcome


def _run_encoder(study: StudyOptions, evaluation, encoders: EncoderOptions, machine: MachineOptions, progress: Progress,
                 mine: list[PlannedRun], outcome: Outcome) -> None:
    before = {p.folder for p in mine if p.stored}
    try:
        results = evaluate(study, evaluation, encoders, machine, progress)
    except CxrbenchError as exc:  # a budget written before the failure is done; a run stored before it is not confirmed
        for p in mine:
            if p.stored and p.folder not in before:
                outcome.ran.append(p)
            else:
                outcome.remaining.append((p, str(exc)))
        return
    resumed = {result.folder for result in results if result.resumed}
    for p in mine:
        (outcome.kept if p.folder in resumed else outcome.ran).append(p)


def fitted_size(encoder: str, size: int | None) -> int | None:
    """`size` rounded to the nearest multiple of the encoder's patch size (one patch at least), so that one
    --image-size serves a table of ViT/14, /16 and /32 encoders; None keeps each encoder's released size (always, for
    an encoder that cannot take another)."""
    from cxrbench.registry import registry

    entry = registry().get("encoders", encoder)
    patch = entry.spec.architecture.get("patch_size")
    if size is None or not getattr(entry.load(), "resizable", True):  # a factory function: resizable encoders
        return None
    if not patch:
        return size
    return max(int(patch), int(round(size / int(patch))) * int(patch))
