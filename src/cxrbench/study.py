"""A study: one benchmark's data prepared once for every evaluation and command that runs on it.

Preparing a study loads the benchmark (checking the dataset options it declares), marks synthetic data, draws the
patient-disjoint split manifests of every seed, applies the label budgets, checks that every target can be learned
and measured in each, and fixes the bootstrap settings. `run`, `explain`, `extract` and every later evaluation
start from it, so none of them repeats (or skips) a step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.synthetic import SYNTHETIC_MARKER, synthetic_settings
from cxrbench.data.splits import GroupBudget, LabelBudget, seed_splits
from cxrbench.errors import DataError
from cxrbench.heads.params import check_params
from cxrbench.progress import Progress, SilentProgress
from cxrbench.registry import registry
from cxrbench.specs import BenchmarkSpec, BootstrapSpec, SplitSpec, TargetSpec
from cxrbench.typed_yaml import parse_spec
from cxrbench.transfer import compose_transfer, side_spec, transfer_settings, unmapped_findings


@dataclass
class StudyOptions:
    benchmark: str
    data_root: Path | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    seeds: int | None = None
    # label budgets or patient groups to train on (None = the whole training split); each is its own run
    budgets: list[LabelBudget | GroupBudget | None] = field(default_factory=lambda: [None])
    bootstrap_resamples: int | None = None
    #: fields of the benchmark's `split:` replaced for this study (`--split KEY=VALUE`, a recipe's `split:`), e.g.
    #: {"scheme": "random"} for a fixed test set where the benchmark cross-validates
    split: dict[str, Any] = field(default_factory=dict)


@dataclass
class Study:
    spec: BenchmarkSpec
    data: BenchmarkData
    seeds: list[int]
    bootstrap: BootstrapSpec
    #: per label budget, the manifest of every seed: image_id, patient_id, seed, split (train / val / test / unused)
    manifests: dict[LabelBudget | GroupBudget | None, pd.DataFrame]
    dataset_options: dict[str, Any]

    @property
    def budgets(self) -> list[LabelBudget | GroupBudget | None]:
        return list(self.manifests)

    def split(self, budget: LabelBudget | GroupBudget | None, seed: int):
        """One seed's split name per image (in sample order)."""
        manifest = self.manifests[budget]
        return manifest.loc[manifest["seed"] == seed, "split"].to_numpy()

    @property
    def transfer(self) -> dict[str, Any] | None:
        """What a transfer run records in its metrics.json (train and test benchmarks, each side's options, the label
        mapping); None for a run on one benchmark."""
        return None if self.spec.transfer is None else asdict(self.spec.transfer)

    def with_targets(self, targets: Sequence[TargetSpec | str]) -> "Study":
        """The same images, splits and settings with other label columns as targets (e.g. every boxed finding)."""
        data = self.data.with_targets(targets)
        return replace(self, spec=replace(self.spec, targets=data.targets), data=data)


def resolve_data_root(spec: BenchmarkSpec, data_root: Path | None) -> Path:
    if data_root is not None:
        return Path(data_root).expanduser()
    if spec.data_root_env and os.environ.get(spec.data_root_env):
        return Path(os.environ[spec.data_root_env]).expanduser()
    env_hint = f" or set {spec.data_root_env}" if spec.data_root_env else ""
    raise DataError(f"Benchmark '{spec.name}' needs its data: pass --data-root DIR{env_hint}.")


def check_dataset_options(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """`--dataset-option` values checked against the options the benchmark declares (its spec's `dataset:` block)."""
    unknown = sorted(set(options) - set(spec.dataset))
    if unknown:
        raise DataError(f"--dataset-option {unknown[0]}: benchmark '{spec.name}' has no such dataset option (it takes: "
                        f"{', '.join(sorted(spec.dataset)) or 'none'}; see benchmarks/{spec.name}.yaml).")
    return check_params(f"benchmark '{spec.name}' dataset option", spec.dataset, dict(options), positive=False)


def with_split(spec: BenchmarkSpec, overrides: Mapping[str, Any]) -> BenchmarkSpec:
    """The spec with some fields of its `split:` replaced, checked as the benchmark YAML's own would be; the run then
    records the split it really used."""
    if not overrides:
        return spec
    split = parse_spec(SplitSpec, {**asdict(spec.split), **overrides}, f"--split for benchmark '{spec.name}'")
    return replace(spec, split=split)


def load_benchmark(name: str, data_root: Path | None, options: Mapping[str, Any]) -> tuple[BenchmarkSpec, BenchmarkData]:
    """The benchmark's data as its loader reads it (options checked first), marked when cxrbench generated it; a
    transfer benchmark's from its two benchmarks, each read by its own loader (`cxrbench.transfer`)."""
    entry = registry().get("benchmarks", name)
    spec: BenchmarkSpec = entry.spec
    options = check_dataset_options(spec, options)
    if spec.transfer is not None:
        return spec, _load_transfer(spec, data_root, options)
    return _load(spec, entry.load(), resolve_data_root(spec, data_root), options)


def _load(spec: BenchmarkSpec, loader: Any, root: Path, options: Mapping[str, Any]) -> tuple[BenchmarkSpec, BenchmarkData]:
    data = loader(root, spec, options)
    if tuple(data.targets) != tuple(spec.targets):  # a dataset option changed them (PAXRay++'s all_classes)
        spec = replace(spec, targets=tuple(data.targets))
    if synthetic_settings(data.root) is not None:
        data.synthetic = True
        data.notes.insert(0, f"synthetic data ({data.root / SYNTHETIC_MARKER}): written by cxrbench for demos and tests; "
                             "its numbers are not comparable with any paper")
    return spec, data


def _load_transfer(spec: BenchmarkSpec, data_root: Path | None, options: Mapping[str, Any]) -> BenchmarkData:
    """Train side from --data-root (else the YAML's variable, the train benchmark's); test side from the option
    test_root, else the test benchmark's own variable."""
    plan = spec.transfer
    settings = transfer_settings(spec, options)
    test_entry = registry().get("benchmarks", plan.test)
    test_spec: BenchmarkSpec = test_entry.spec
    given = settings["test_root"]
    if given is None and not (test_spec.data_root_env and os.environ.get(test_spec.data_root_env)):
        variable = f" or set {test_spec.data_root_env}" if test_spec.data_root_env else ""
        raise DataError(f"benchmark '{spec.name}' is scored on {plan.test}'s images: pass --dataset-option test_root=DIR "
                        f"(the {plan.test} folder){variable}.")
    train = _load_train_side(spec, resolve_data_root(spec, data_root))
    _, test = _load(side_spec(spec, test_spec, "test"), test_entry.load(),
                    resolve_data_root(test_spec, None if given is None else Path(given)),
                    check_dataset_options(test_spec, plan.test_options))
    return compose_transfer(spec, train, test, settings, unmapped_findings(spec, test_spec, test))


def _load_train_side(spec: BenchmarkSpec, root: Path) -> BenchmarkData:
    """A transfer's training benchmark read from `root` by its own loader, with the transfer's train_options."""
    entry = registry().get("benchmarks", spec.transfer.train)
    return _load(side_spec(spec, entry.spec, "train"), entry.load(), root,
                 check_dataset_options(entry.spec, spec.transfer.train_options))[1]


def check_transfers_from(name: str, root: Path) -> list[str]:
    """One line per registered transfer benchmark that trains on benchmark `name` with options of its own
    (`train_options`, e.g. PAXRay++'s structure tables), after reading its training side from `root` (that
    benchmark's folder) with them: an option that this copy of the release cannot serve is refused (DataError naming
    the transfer) by `data check` on this folder alone, before a run needs the test benchmark's folder too. A
    transfer without such options reads the folder as the benchmark itself does, which the check has just done."""
    lines = []
    for entry in registry().entries("benchmarks"):
        spec: BenchmarkSpec = entry.spec
        if spec.transfer is None or spec.transfer.train != name or not spec.transfer.train_options:
            continue
        try:
            train = _load_train_side(spec, root)
        except DataError as error:
            raise DataError(f"transfer benchmark '{spec.name}' (benchmarks/{spec.name}.yaml, transfer.train_options) "
                            f"cannot train on this {name} folder: {error}") from None
        structures = sum(len(t.structures) for t in train.targets)
        labels = f"{structures} structures" if structures else f"{len(train.targets)} findings"
        lines.append(f"transfer {spec.name} (tested on {spec.transfer.test}): its training side reads from this folder "
                     f"with the transfer's options ({len(train.samples)} images, {labels})")
    return lines


#: the study last prepared inside `sharing_studies`, by its options' repr (None: outside, nothing is kept)
_SHARED: ContextVar[dict[str, Study] | None] = ContextVar("cxrbench_shared_study", default=None)


@contextmanager
def sharing_studies() -> Iterator[None]:
    """Inside the block, a job asking for the same StudyOptions as the job before it gets that job's Study instead of
    reading the data and drawing the splits again. The local launcher runs a multi-encoder `run` or `reproduce` as
    one job per encoder, one after the other in one process; reading MIMIC-CXR's CSVs once per encoder is waste.
    Only the last study is kept (consecutive jobs share one; memory stays that of one study), and only inside the
    block: a later command, or a test that edits a folder between calls, reads the files again. A Study is never
    changed once prepared (evaluations derive new ones), so sharing it cannot leak one job's state into another."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def prepare_study(options: StudyOptions, progress: Progress = SilentProgress()) -> Study:
    shared, key = _SHARED.get(), repr(options)
    if shared is not None and key in shared:
        progress.note(f"{options.benchmark}: the data and splits read for the previous job serve this one")
        return shared[key]
    study = _prepare_study(options, progress)
    if shared is not None:
        shared.clear()
        shared[key] = study
    return study


def _prepare_study(options: StudyOptions, progress: Progress) -> Study:
    spec, data = load_benchmark(options.benchmark, options.data_root, options.dataset_options)
    spec = with_split(spec, options.split)
    for note in data.notes:
        progress.note(note)
    seeds = list(range(options.seeds if options.seeds is not None else spec.seeds))
    if not seeds:
        raise DataError("--seeds must be at least 1.")
    bootstrap = spec.bootstrap if options.bootstrap_resamples is None else replace(spec.bootstrap, resamples=options.bootstrap_resamples)
    manifests = pd.concat([seed_splits(data.samples, spec.name, s, spec.split) for s in seeds], ignore_index=True)
    budgeted = {budget: _apply_budget(manifests, data, budget, spec) for budget in options.budgets}
    study = Study(spec, data, seeds, bootstrap, budgeted, dict(options.dataset_options))
    check_learnable(study)
    return study


def check_learnable(study: Study) -> None:
    """Refuse a seed or budget in which a target has nothing to learn or measure (before any feature is computed)."""
    for budget, manifest in study.manifests.items():
        for seed, part in manifest.groupby("seed", sort=True):
            study.data.require_learnable(part["split"].to_numpy(), f"seed {seed}" + (f", {budget.suffix}" if budget else ""),
                                         _class_fixes(study.spec, budget))


def _class_fixes(spec: BenchmarkSpec, budget: LabelBudget | GroupBudget | None) -> str:
    """What the user can change when a split lacks a class: the budget, the label rule where the benchmark has one."""
    fixes = [budget.fix] if budget is not None else []
    if "label_rule" in spec.dataset:
        fixes.append("choose another label rule (--dataset-option label_rule=..., training labels only)")
    return ", ".join(fixes)


def _apply_budget(manifests: pd.DataFrame, data: BenchmarkData, budget: LabelBudget | GroupBudget | None,
                  spec: BenchmarkSpec) -> pd.DataFrame:
    if budget is None:
        return manifests
    return pd.concat([budget.apply(part, data, spec) for _, part in manifests.groupby("seed", sort=True)], ignore_index=True)
