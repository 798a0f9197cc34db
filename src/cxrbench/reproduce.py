"""`cxrbench reproduce TABLE`: the runs of a table's recipe that are not stored yet, then the table.

Each encoder of a recipe entry is one job (`cxrbench.launchers`: here, on Ray or on Slurm), one call of the pipeline
(`cxrbench.pipeline.evaluate`) with `resume` on: a run stored with the same settings is kept without computing
anything, and a run stored with other settings is refused (never silently replaced). The plan counts a stored run
as this table's only when it is the kind of run asked for (`stored_status`: weights, input size, data), so a
random-init run or one on synthetic data is named, never taken for a real one. A run that cannot be made (no
data on that host, weights missing, other settings stored) does not stop the others: what remains, and why, is
returned for the caller to print. Jobs sharing an encoder and a benchmark meet at the feature cache: the first
extracts, the others wait on the store's lock and reuse its shards.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from cxrbench.errors import CxrbenchError
from cxrbench.evaluations import run_evaluation
from cxrbench.launchers import Job, Launcher
from cxrbench.launchers.local import LocalLauncher
from cxrbench.pipeline import EncoderOptions, MachineOptions, evaluate, on_this_host, wants_gpu
from cxrbench.progress import Progress, SilentProgress
from cxrbench.results.labels import LOCAL, RANDOM, REAL, RELEASED, SYNTHETIC, RunVariant, released_size, run_variant
from cxrbench.tables.recipes import PlannedRun, Recipe, plan_runs
from cxrbench.results.store import read_metrics
from cxrbench.study import StudyOptions

#: A planned run's status in `reproduce --plan`: stored as asked, not stored, or its folder holds another kind of run.
STORED, TO_RUN, OTHER = "stored", "to run", "holds another kind of run"


@dataclass
class ReproduceOptions:
    out: Path
    data_roots: dict[str, Path] = field(default_factory=dict)  # benchmark -> dataset folder (else its environment variable)
    encoders: list[str] | None = None  # only these rows
    random_init: bool = False  # --weights random: every encoder with random weights of its architecture (a pipeline check)
    image_size: int | None = None
    seeds: int | None = None
    bootstrap_resamples: int | None = None
    overwrite: bool = False
    weights: dict[str, Path] = field(default_factory=dict)  # encoder -> local file or folder of its released weights


@dataclass
class Outcome:
    ran: list[PlannedRun] = field(default_factory=list)
    kept: list[PlannedRun] = field(default_factory=list)  # stored already with the same settings
    remaining: list[tuple[PlannedRun, str]] = field(default_factory=list)  # not run, and why


def reproduce(recipe: Recipe, options: ReproduceOptions, machine: MachineOptions, launcher: Launcher | None = None,
              threads: int | None = None, progress: Progress = SilentProgress()) -> Outcome:
    """One job per (recipe entry, encoder), run by `launcher` (default: here, one after the other); `machine.device`
    may be 'auto', resolved where each job lands, and `threads` caps each job's CPU threads there."""
    planned = plan_runs(recipe, options.out, options.encoders)
    units = [[p for p in planned if p.entry is entry and p.encoder == name]
             for entry in recipe.runs for name in dict.fromkeys(p.encoder for p in planned if p.entry is entry)]
    anywhere = replace(options, out=options.out.resolve(),  # a job may start in another working directory
                       data_roots={name: root.resolve() for name, root in options.data_roots.items()},
                       weights={name: path.resolve() for name, path in options.weights.items()})
    placed = replace(machine, cache_root=machine.cache_root.resolve())
    jobs = [Job(runs[0].unit, reproduce_encoder,
                (tuple(replace(run, folder=run.folder.resolve()) for run in runs), anywhere, placed, threads),
                gpu=wants_gpu(machine.device)) for runs in units]
    outcome = Outcome()
    for runs, result in zip(units, (launcher or LocalLauncher({})).run(jobs, progress)):
        statuses = result.value if result.error is None else [("remaining", result.error)] * len(runs)
        for run, (status, why) in zip(runs, statuses):
            if status == "remaining":
                outcome.remaining.append((run, why))
            else:
                (outcome.kept if status == "kept" else outcome.ran).append(run)
    return outcome


def reproduce_encoder(runs: tuple[PlannedRun, ...], options: ReproduceOptions, machine: MachineOptions,
                      threads: int | None, progress: Progress = SilentProgress()) -> list[tuple[str, str]]:
    """One encoder's runs of one recipe entry (a launcher's job): ('ran' | 'kept' | 'remaining', why) per run.

    A run that cannot be made (no data on this host, weights missing, other settings stored) is 'remaining' with
    the reason; a budget written before such a failure counts as run."""
    entry, name = runs[0].entry, runs[0].encoder
    study = StudyOptions(entry.benchmark, options.data_roots.get(entry.benchmark), dict(entry.dataset_options),
                         options.seeds, entry.budgets, options.bootstrap_resamples, dict(entry.split))
    evaluation = run_evaluation(entry.benchmark)(options.out, entry.head, dict(entry.head_params), entry.tag,
                                                 options.overwrite, list(entry.metrics), resume=True)
    local = options.weights.get(name)
    weights = "random" if options.random_init else entry.weights or (str(local) if local else None)  # a row's own first
    encoders = EncoderOptions([name], weights, None, fitted_size(name, options.image_size))
    before = {run.folder for run in runs if run.stored}
    try:
        results = evaluate(study, evaluation, encoders, on_this_host(machine, threads, progress), progress)
    except CxrbenchError as exc:
        return [("ran", "") if run.stored and run.folder not in before else ("remaining", str(exc)) for run in runs]
    resumed = {result.folder for result in results if result.resumed}
    return [("kept" if run.folder in resumed else "ran", "") for run in runs]


def stored_status(run: PlannedRun, options: ReproduceOptions) -> tuple[str, str]:
    """(STORED | TO_RUN | OTHER, why): a stored run counts as this recipe's only when it is the kind of run asked
    for (weights, input size, data), so that a random-init run or one on synthetic data never stands in for a real
    one; the finer settings (seeds, head parameters...) are compared when the run is made."""
    stored = read_metrics(run.folder)
    if stored is None:
        return TO_RUN, ""
    found, asked = run_variant(stored.get("run_identity")), asked_variant(run, options)
    if found.weights == LOCAL and asked.weights == RELEASED:  # a local copy of released weights (raydino, chexzero
        found = replace(found, weights=RELEASED)            # and mrm come only as files) counts as released
    if found == asked:
        return STORED, ""
    return OTHER, (f"{run.folder} holds {found.describe()}, not {asked.describe()} as asked: it is not counted as "
                   "stored. Pass --overwrite to replace it, or write this table to another --out.")


def asked_variant(run: PlannedRun, options: ReproduceOptions) -> RunVariant:
    """The kind of run `reproduce` makes for `run`: random weights with --weights random or a random-init row, the
    fitted --image-size or the encoder's own, and synthetic data only where the benchmark's data folder is one
    cxrbench wrote (a folder not given here is taken as the real dataset)."""
    from cxrbench.data.common.synthetic import synthetic_settings
    from cxrbench.registry import registry
    from cxrbench.study import resolve_data_root

    random = options.random_init or str(run.entry.weights or "").startswith(RANDOM)
    size = fitted_size(run.encoder, options.image_size) or released_size(run.encoder)
    try:
        root = resolve_data_root(registry().get("benchmarks", run.entry.benchmark).spec,
                                 options.data_roots.get(run.entry.benchmark))
    except CxrbenchError:
        root = None
    synthetic = root is not None and synthetic_settings(root) is not None
    return RunVariant(RANDOM if random else RELEASED, size, SYNTHETIC if synthetic else REAL)


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
