"""`cxrbench reproduce TABLE`: the runs of a table's recipe that are not stored yet, then the table.

Each encoder of a recipe entry is one RunSpec (`unit_spec`), handed with the others to the one fan-out
(`cxrbench.runs.fanout`: here, on Ray or on Slurm), one call of the pipeline (`cxrbench.runs.pipeline.evaluate`)
with `resume` on: a run stored with the same settings is kept without computing
anything, and a run stored with other settings is refused (never silently replaced). The plan counts a stored run
as this table's only when it is the kind of run asked for (`stored_status`: weights, input size, data), so a
random-init run or one on synthetic data is named, never taken for a real one. A run that cannot be made (no
data on that host, weights missing, other settings stored) does not stop the others: what remains, and why, is
returned for the caller to print. Jobs sharing an encoder and a benchmark meet at the feature cache: the first
extracts, the others wait on the store's lock and reuse its shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cxrbench.errors import CxrbenchError
from cxrbench.progress import Progress, SilentProgress
from cxrbench.results.labels import LOCAL, RANDOM, REAL, RELEASED, SYNTHETIC, RunVariant, released_size, run_variant
from cxrbench.tables.recipes import PlannedRun, Recipe, plan_runs
from cxrbench.results.store import read_metrics
from cxrbench.runs.fanout import Storage, run_specs
from cxrbench.runs.spec import DEFAULT_PRECISION, MachineSpec, RunSpec

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
    precision: str = DEFAULT_PRECISION


@dataclass
class Outcome:
    ran: list[PlannedRun] = field(default_factory=list)
    kept: list[PlannedRun] = field(default_factory=list)  # stored already with the same settings
    remaining: list[tuple[PlannedRun, str]] = field(default_factory=list)  # not run, and why


def reproduce(recipe: Recipe, options: ReproduceOptions, machine: MachineSpec, progress: Progress = SilentProgress(),
              command: str | None = None) -> Outcome:
    """One RunSpec per (recipe entry, encoder) through the one fan-out (`runs.fanout`) on `machine.launcher`, with
    resume on; each planned run is then 'ran', 'kept' (stored already with the same settings) or remaining, with why.
    A budget written before its job failed counts as run."""
    planned = plan_runs(recipe, options.out, options.encoders)
    units = [[p for p in planned if p.entry is entry and p.encoder == name]
             for entry in recipe.runs for name in dict.fromkeys(p.encoder for p in planned if p.entry is entry)]
    before = [{run.folder for run in runs if run.stored} for runs in units]
    outcomes = run_specs([unit_spec(runs, options) for runs in units], Storage(options.out, options.overwrite, resume=True),
                         machine, progress, command)
    outcome = Outcome()
    for runs, stored, result in zip(units, before, outcomes):
        resumed = {Path(r.folder).resolve() for r in result.value if r.resumed} if result.error is None else set()
        for run in runs:
            if result.error is None:
                (outcome.kept if run.folder.resolve() in resumed else outcome.ran).append(run)
            elif run.stored and run.folder not in stored:
                outcome.ran.append(run)
            else:
                outcome.remaining.append((run, result.error))
    return outcome


def unit_spec(runs: Sequence[PlannedRun], options: ReproduceOptions) -> RunSpec:
    """The RunSpec of one recipe entry's runs with one encoder: the entry's protocol, this command's options, and
    the row's own weights first (its random-init row), then --weights random, then a local copy named for the
    encoder."""
    entry, name = runs[0].entry, runs[0].encoder
    local, root = options.weights.get(name), options.data_roots.get(entry.benchmark)
    weights = "random" if options.random_init else entry.weights or (str(local) if local else None)
    return RunSpec(entry.benchmark, name, str(root) if root else None, dict(entry.dataset_options), dict(entry.split),
                   weights, None, fitted_size(name, options.image_size), options.precision, entry.head,
                   dict(entry.head_params), train_fractions=tuple(entry.train_fractions), shots=tuple(entry.shots),
                   seeds=options.seeds, bootstrap=options.bootstrap_resamples, metrics=tuple(entry.metrics),
                   tag=entry.tag)


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
    if size is None or not getattr(entry.load(), "resizable", True):  # a factory function: resizable encoders
        return None
    return entry.spec.nearest_size(size)
