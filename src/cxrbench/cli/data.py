"""`cxrbench data check`: a dataset folder validated, and its label and group counts."""

from __future__ import annotations

from typing import Optional
from pathlib import Path

import typer
from rich.text import Text

from cxrbench.cli import options as o
from cxrbench.cli.app import data_app
from cxrbench.cli.common import check_request, key_values, user_errors
from cxrbench.console import console, note, text_table, warn


@data_app.command("check")
@user_errors
def data_check(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    data_root: Optional[Path] = o.DataRoot,
    dataset_option: list[str] = o.DatasetOptions,
) -> None:
    """Validate a dataset folder (files, columns, ids, label values) and print label counts per split and target."""
    check_request(benchmark)
    from cxrbench.study import load_benchmark

    spec, data = load_benchmark(benchmark, data_root, key_values("--dataset-option", dataset_option))
    console.print(Text.assemble(("ok", "green"), f": {spec.title} at {data.root}: {len(data.samples)} images, "
                                f"{data.samples['patient_id'].nunique()} patients"), highlight=False)
    for line in data.notes:
        note(line)
    if spec.transfer is None:
        from cxrbench.study import check_transfers_from

        for line in check_transfers_from(spec.name, data.root):
            note(line)
    _print_counts(data.label_counts(), "labels in the dataset" if spec.split.scheme == "random" else "labels per official split",
                  data)
    split = None
    if spec.split.scheme != "official":
        from cxrbench.data.splits import seed_splits

        split = seed_splits(data.samples, spec.name, 0, spec.split)["split"].to_numpy()
        if spec.split.scheme == "kfold":
            drawn = (f"fold 0 of {spec.split.folds}: one part of the patients tests, the others train"
                     + (f" ({spec.split.val_fraction:g} of them validate)" if spec.split.val_fraction else ""))
        else:
            test_note = "the same test patients for every seed" if spec.split.test == "fixed" else "test patients redrawn per seed"
            drawn = f"seed 0 ({'/'.join(f'{f:g}' for f in spec.split.fractions)} of patients; {test_note})"
        _print_counts(data.label_counts(split), f"labels per split, {drawn}", data)
    if spec.groups:
        _print_groups(spec, data)
    for split_name, task, missing in data.learnability_problems(split):
        warn(f"task '{task}' has {missing} in the {split_name} split: `cxrbench run {benchmark}` will refuse it "
             "(its metric is undefined).")


def _print_counts(tables: dict, title: str, data) -> None:
    """One table per target kind: binary (positive / negative / unknown), regression (known, unknown, mean, std, min,
    max); one per multiclass target, its classes as columns (e.g. RAD-DINO Table E.1's bins)."""
    for kind, counts in tables.items():
        parts = counts.groupby("task", sort=False) if kind == "multiclass" else [(None, counts)]
        for task, part in parts:
            numbers = ([*data.target(task).classes, "unknown", "images", "patients"] if task is not None
                       else [c for c in part.columns if c not in ("split", "task")])
            rows = [[row["split"], row["task"], *(_shown(row[c]) for c in numbers)] for _, row in part.iterrows()]
            heading = f"{title} ({kind} targets)" if len(tables) > 1 or kind != "binary" else title
            console.print(text_table(f"{title} ({task}: classes)" if task is not None else heading,
                                     ["split", "task", *numbers], rows, right=tuple(numbers)))


def _print_groups(spec, data) -> None:
    """Per attribute of the spec's `groups:`: images, patients, share female, age and share with findings per split
    and group (RayDINO table S2; RAD-DINO Table E.1's counts)."""
    from cxrbench.data.groups import group_summary

    for attribute, group in spec.groups.items():
        if group.column not in data.samples:
            note(f"groups by {attribute}: the loader supplies no '{group.column}' column for this copy; not broken down")
    summary = group_summary(data, spec)
    numbers = ["images", "patients", "female_share", "age_mean", "age_std", "finding_share"]
    for attribute, table in summary.groupby("attribute", sort=False):
        rows = [[row["split"], row["group"], *(_shown(row[c]) for c in numbers)] for _, row in table.iterrows()]
        console.print(text_table(f"groups by {attribute} ('{spec.groups[attribute].column}'; per official split)",
                                 ["split", "group", *numbers], rows, right=tuple(numbers)))


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
