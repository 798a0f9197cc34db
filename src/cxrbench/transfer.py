"""Transfer studies: heads trained and validated on benchmark A, scored on benchmark B's images.

A transfer benchmark (a YAML with a `transfer:` block, `cxrbench.specs.TransferSpec`) declares A (`train`), B
(`test`), each side's loader options and the label table between them. The study loads A and B through their own
loaders, each asked for the transfer's targets under its own names (`side_spec`), and `compose_transfer` joins the
two into one `BenchmarkData`: A's images outside its released test set train (the transfer's split draws the
validation patients from them per seed), B's chosen images test. Image ids and patients are prefixed with their
benchmark (`paxray:`, `jsrt:`), so the two datasets never share a patient; paths are untouched, so the feature cache
(keyed on the image file) serves A's, B's and the transfer's runs from the same entries.

Why at the study level and not in a loader: a loader sees files, never the registry or another benchmark; here each
side is read exactly as its own benchmark reads it, with its own checks and notes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.samples import BenchmarkData
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec, TargetSpec, TransferSpec
from cxrbench.targets.mask import present_column

#: the dataset options of a transfer benchmark itself (`--dataset-option`); each side's are fixed in the YAML
DEFAULTS: dict[str, Any] = {"test_root": None, "test_images": "all"}
#: test_images: every image of the test benchmark, its released test split, or else the name of a binary column of
#: its loader (the images where it is 1, e.g. JSRT's `nodule`)
EVERY, RELEASED_TEST = "all", "test"


def transfer_settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """The transfer's own options (`test_root`, `test_images`): defaults < the YAML's `dataset:` < the run's."""
    unknown = sorted(set(spec.dataset) - set(DEFAULTS))
    if unknown:
        raise DataError(f"benchmark '{spec.name}': dataset option '{unknown[0]}' is not a transfer option (they are "
                        f"{', '.join(DEFAULTS)}); an option of either side goes under transfer.train_options or "
                        f"transfer.test_options in benchmarks/{spec.name}.yaml.")
    return {**DEFAULTS, **spec.dataset, **{k: v for k, v in options.items() if v is not None}}


def side_spec(spec: BenchmarkSpec, side: BenchmarkSpec, role: str) -> BenchmarkSpec:
    """`side`'s spec asking for the transfer's targets under that side's names (the train side through the mapping),
    so its loader reads exactly those labels, or builds exactly those structures."""
    plan: TransferSpec = spec.transfer
    if side.transfer is not None:
        raise DataError(f"benchmark '{spec.name}': its {role} benchmark '{side.name}' is itself a transfer; name the "
                        f"benchmark it {'trains' if role == 'train' else 'tests'} on instead.")
    targets = []
    for target in spec.targets:
        name = plan.mapping[target.name] if role == "train" else target.name
        own = next((t for t in side.targets if t.name == name), None)
        if own is not None and own.kind != target.kind:
            raise DataError(f"benchmark '{spec.name}': target '{target.name}' is {target.kind}, but {role} benchmark "
                            f"'{side.name}' has '{name}' as a {own.kind} target; map it onto a {target.kind} one.")
        targets.append(replace(target, name=name))
    return replace(side, targets=tuple(targets))


def unmapped_findings(spec: BenchmarkSpec, test_spec: BenchmarkSpec, test: BenchmarkData) -> list[str]:
    """The test benchmark's own targets that its loader still supplies but the mapping leaves out: not scored."""
    return [t.name for t in test_spec.targets if t.name not in spec.tasks and t.name in test.samples]


def compose_transfer(spec: BenchmarkSpec, train: BenchmarkData, test: BenchmarkData, settings: Mapping[str, Any],
                     unmapped: list[str]) -> BenchmarkData:
    """One benchmark's data from the two loaded sides: A's images outside its released test set as `train`, B's
    chosen images as `test`, each target's column from the side's own column."""
    plan: TransferSpec = spec.transfer
    if unmapped and plan.unmapped == "refuse":
        raise DataError(f"benchmark '{spec.name}': {plan.test}'s finding(s) {unmapped} have no row in transfer.mapping "
                        f"(unmapped: refuse); add rows to benchmarks/{spec.name}.yaml or set unmapped: drop.")
    trained = train.samples[train.samples["split"] != "test"]
    tested = _test_images(test.samples, str(settings["test_images"]), spec.name, plan.test)
    if trained.empty or tested.empty:
        raise DataError(f"benchmark '{spec.name}': no {'training' if trained.empty else 'test'} images "
                        f"({plan.train if trained.empty else plan.test} at {train.root if trained.empty else test.root}).")
    names = {plan.train: {t.name: plan.mapping[t.name] for t in spec.targets}, plan.test: {t.name: t.name for t in spec.targets}}
    samples = pd.concat([_prefixed(trained, plan.train, names[plan.train], spec, "train"),
                         _prefixed(tested, plan.test, names[plan.test], spec, "test")], ignore_index=True)
    common = Path(os.path.commonpath([os.path.abspath(train.root), os.path.abspath(test.root)]))
    reader = None
    if any(t.kind == "mask" for t in spec.targets):
        reader = TransferMasks({plan.train: train.mask_reader, plan.test: test.mask_reader}, names)
    notes = [_summary(spec, len(trained), len(train.samples), len(tested), len(test.samples), settings, train.root,
                      test.root)]
    if unmapped:
        notes.append(f"not scored: {plan.test}'s finding(s) {', '.join(unmapped)} (no row in the mapping of "
                     f"benchmarks/{spec.name}.yaml: no counterpart in {plan.train}, or no case in the test set)")
    notes += [f"{plan.train} (train): {n}" for n in train.notes] + [f"{plan.test} (test): {n}" for n in test.notes]
    return BenchmarkData(spec.name, common, spec.targets, samples, notes, synthetic=train.synthetic or test.synthetic,
                         mask_reader=reader)


class TransferMasks:
    """`reader(target, (benchmark, reference))`: a training image's masks from the train benchmark's reader (its
    classes mapped onto the test benchmark's structures by its loader), a test image's from the test benchmark's."""

    def __init__(self, readers: Mapping[str, Any], names: Mapping[str, Mapping[str, str]]):
        self.readers, self.names = dict(readers), {k: dict(v) for k, v in names.items()}  # side -> target -> its name there

    def __call__(self, target: str, reference: Any) -> np.ndarray:
        source, inner = reference
        return self.readers[source](self.names[source][target], inner)


def _test_images(samples: pd.DataFrame, chosen: str, benchmark: str, test_name: str) -> pd.DataFrame:
    """The test benchmark's images that are scored: all, its released test split, or those a binary column marks."""
    if chosen == EVERY:
        return samples
    if chosen == RELEASED_TEST:
        return samples[samples["split"] == "test"]
    if chosen not in samples:
        raise DataError(f"benchmark '{benchmark}': dataset option test_images={chosen!r} is neither '{EVERY}', "
                        f"'{RELEASED_TEST}' nor a column that marks images of the test benchmark ({test_name} has no "
                        f"'{chosen}'). Use --dataset-option test_images={EVERY}.")
    return samples[samples[chosen] == 1.0]


def _prefixed(samples: pd.DataFrame, source: str, names: Mapping[str, str], spec: BenchmarkSpec, split: str) -> pd.DataFrame:
    """One side's images with prefixed ids and patients, each target's column taken from the side's column of that
    target (mask references tagged with their side), and the columns of the transfer's patient groups."""
    out = pd.DataFrame({
        "image_id": [f"{source}:{i}" for i in samples["image_id"]],
        "patient_id": [f"{source}:{p}" for p in samples["patient_id"]],
        "path": samples["path"].to_numpy(),
        "split": split,
    })
    for target in spec.targets:
        out[target.name] = _column(samples, target, names[target.name], source)
        if target.kind == "mask":
            known, presence = samples[names[target.name]].notna().to_numpy(), present_column(names[target.name])
            out[present_column(target.name)] = (samples[presence].to_numpy(dtype=np.float32) if presence in samples
                                                else np.where(known, 1.0, np.nan))
    for group in spec.groups.values():
        out[group.column] = samples[group.column].to_numpy() if group.column in samples else None
    return out


def _column(samples: pd.DataFrame, target: TargetSpec, name: str, source: str) -> Any:
    if name not in samples:
        raise DataError(f"benchmark '{source}' supplies no column '{name}' for the transfer's target '{target.name}'; "
                        "fix its row in the transfer's mapping.")
    if target.kind == "mask":
        return [(source, ref) if ok else None for ref, ok in zip(samples[name], samples[name].notna())]
    return pd.to_numeric(samples[name], errors="coerce").to_numpy(dtype=np.float32)


def _summary(spec: BenchmarkSpec, n_train: int, n_train_all: int, n_test: int, n_test_all: int,
             settings: Mapping[str, Any], train_root: Path, test_root: Path) -> str:
    plan: TransferSpec = spec.transfer
    pairs = "; ".join(f"{t} <- {a}" for t, a in plan.mapping.items())
    return (f"transfer: trains on {plan.train} at {train_root} ({n_train} of its {n_train_all} images: those outside its "
            f"released test set), tests on {plan.test} at {test_root} ({n_test} of {n_test_all} images: "
            f"test_images {settings['test_images']}); targets (test name <- train name): {pairs}")
