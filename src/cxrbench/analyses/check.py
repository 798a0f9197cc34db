"""Committed tables held to the predictions they came from (`cxrbench table --all --check`, run by CI).

Two links can break between a number in a paper table and the model outputs behind it:
- a run's metrics.json no longer matches its predictions.parquet (hand-edited, or written by other code): every
  metric, and every per-group number of its `stratified` block, is recomputed from the stored predictions with the
  run's own bootstrap settings and compared;
- a committed table (OUT/tables/LAYOUT.{md,csv,tex}) no longer matches the runs (hand-edited, a run added or
  removed, the layout changed): every table is regenerated from the recomputed metrics and compared cell by cell.
Explain and bias runs are held to their files too: an explain run's hits and accuracies are counted again from its
explain.csv, a bias run's fold scores recomputed from the predictions of the group runs it names.
Every problem names the file, and the run, metric and target, or the table's row and column, with both values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from cxrbench.errors import CxrbenchError
from cxrbench.metrics.points import MetricContext
from cxrbench.results.store import (BIAS, EXPLAIN, METRICS, StoredRun, load_metrics, stored_benchmarks, stored_runs,
                                    tables_folder)
from cxrbench.stats.summary import stored_metrics_for, summarize
from cxrbench.tables.model import OURS, PaperTable
from cxrbench.tables.output import rendered
from cxrbench.tables.paper import table_from_runs
from cxrbench.tables.recipes import get_layout, recipe_names

TABLE_SUFFIXES = ("md", "csv", "tex")
#: recomputed numbers may differ from stored ones in the last bits (another BLAS, another summation order)
TOLERANCE = 1e-9


def benchmark_runs(out: Path) -> dict[str, list[StoredRun]]:
    """Every stored run of `cxrbench run` under `out`, by benchmark (the tables' rows)."""
    runs = {name: stored_runs(out, name) for name in stored_benchmarks(out)}
    return {name: found for name, found in runs.items() if found}


def explain_drift(run: StoredRun) -> list[str]:
    """Every per-seed count and accuracy of an explain run (and its macro accuracy per seed) that its explain.csv does
    not give back: boxes with a hit value are the scored ones, accuracy = hits / boxes, the macro accuracy the mean
    over findings with a scored box."""
    where = run.folder / METRICS
    boxes = pd.read_csv(run.folder / "explain.csv", dtype={"hit": "boolean", "finding": str})
    scored = boxes[boxes["hit"].notna()]
    stored, problems = run.metrics["explain"], []
    for seed in stored["seeds"]:
        mine, accuracies = scored[scored["seed"] == seed], []
        for name, item in stored["findings"].items():
            hits = mine.loc[mine["finding"] == name, "hit"].astype(bool)
            found = {"hits": int(hits.sum()), "accuracy": float(hits.mean()) if len(hits) else None}
            accuracies += [found["accuracy"]] if len(hits) else []
            problems += [f"{where}: explain.findings.{name}.{key}.{seed} is {item[key].get(str(seed))!r}, explain.csv "
                         f"gives {value!r}." for key, value in found.items() if not _same(item[key].get(str(seed)), value)]
        macro = sum(accuracies) / len(accuracies) if accuracies else None
        if not _same(stored["macro_accuracy"]["per_seed"].get(str(seed)), macro):
            problems.append(f"{where}: explain.macro_accuracy.per_seed.{seed} is "
                            f"{stored['macro_accuracy']['per_seed'].get(str(seed))!r}, explain.csv gives {macro!r}.")
    return problems


def bias_drift(run: StoredRun) -> list[str]:
    """Every fold score of a bias run that the predictions of its group runs do not give back."""
    from cxrbench.analyses.bias import BiasRuns, fold_scores

    bias, where = run.metrics["bias"], run.folder / METRICS
    groups = {group: StoredRun(run.benchmark, run.folder.parent / name, load_metrics(run.folder.parent / name))
              for group, name in bias["runs"].items()}
    fresh = fold_scores([BiasRuns(run.label, groups)], bias["attribute"], bias["metric"])
    ours = {(r["train_group"], r["test_group"], int(r["fold"])): r["value"] for r in bias["folds"]}
    theirs = {(r.train_group, r.test_group, int(r.fold)): None if pd.isna(r.value) else float(r.value)
              for r in fresh.itertuples()}
    return [f"{where}: bias.folds (trained on {key[0]}, tested on {key[1]}, fold {key[2]}) is {ours.get(key)!r}, the "
            f"group runs' predictions give {theirs.get(key)!r}." for key in sorted(set(ours) | set(theirs), key=str)
            if not _same(ours.get(key), theirs.get(key))]


def recompute(run: StoredRun, predictions: pd.DataFrame | None = None) -> dict:
    """The run's `metrics` block recomputed from its predictions.parquet (or `predictions`, read from it already),
    with the metrics, targets and bootstrap settings its metrics.json names."""
    stored = run.metrics.get("metrics", {})
    return summarize(run.predictions() if predictions is None else predictions, run.scored_targets(),
                     stored_metrics_for(stored), run.bootstrap(), MetricContext.of(run.metrics))


def metric_drift(run: StoredRun, recomputed: dict) -> list[str]:
    """Every number of metrics.json that its predictions do not give back."""
    problems = []
    where = run.folder / METRICS
    stored = run.metrics.get("metrics", {})
    for metric in sorted(set(stored) | set(recomputed)):
        for target in sorted(set(stored.get(metric, {})) | set(recomputed.get(metric, {}))):
            ours, theirs = stored.get(metric, {}).get(target), recomputed.get(metric, {}).get(target)
            if ours is None or theirs is None:
                problems.append(f"{where}: metrics.{metric}.{target} is {'missing' if ours is None else 'not in the predictions'}.")
                continue
            for key, value in _flat(theirs).items():
                if not _same(_flat(ours).get(key), value):
                    problems.append(f"{where}: metrics.{metric}.{target}.{key} is {_flat(ours).get(key)!r}, the predictions "
                                    f"give {value!r}.")
    return problems


def recompute_stratified(run: StoredRun, predictions: pd.DataFrame | None = None) -> dict | None:
    """The run's `stratified` block recomputed from its predictions' group columns, with its stored thresholds,
    minimum group size and operating point and the benchmark's groups; None for a run without one."""
    stored = run.metrics.get("stratified")
    if not stored:
        return None
    from cxrbench.registry import benchmark_spec
    from cxrbench.stats.stratified import stratify

    spec = replace(benchmark_spec(run.benchmark), min_group_patients=stored["min_group_patients"],
                   operating_point=stored.get("operating_point", "f1"))
    metrics = run.metrics.get("metrics", {})
    return stratify(run.predictions() if predictions is None else predictions, spec, run.scored_targets(),
                    stored_metrics_for(metrics), run.bootstrap(), run.metrics.get("thresholds"))


def stratified_drift(run: StoredRun, recomputed: dict | None) -> list[str]:
    """Every number of metrics.json's `stratified` block that its predictions do not give back."""
    stored = run.metrics.get("stratified")
    if recomputed is None or stored is None:
        return []
    ours, theirs = _leaves(stored), _leaves(recomputed)
    where = run.folder / METRICS
    return [f"{where}: stratified.{key} is {ours.get(key)!r}, the predictions give {theirs.get(key)!r}."
            for key in sorted(set(ours) | set(theirs)) if not _same(ours.get(key), theirs.get(key))]


def _leaves(value, prefix: str = "") -> dict:
    """A nested block as {dotted path: leaf}; list items by index, or by their `group` name."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value)
                for k, v in _leaves(item, f"{prefix}{item.get('group', i) if isinstance(item, dict) else i}.").items()}
    return {prefix.rstrip("."): value}


def _flat(entry: dict) -> dict:
    flat = {k: v for k, v in entry.items() if k != "per_seed"}
    flat.update({f"per_seed.{s}": v for s, v in (entry.get("per_seed") or {}).items()})
    return flat


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return a == b


@dataclass
class CheckReport:
    runs: int = 0
    tables: int = 0
    problems: list[str] = field(default_factory=list)


def layout_tables(out: Path) -> dict[str, PaperTable]:
    """Every layout's table from the runs stored under `out` (`cxrbench table --all`); layouts none of whose runs
    follow their protocol are left out."""
    runs = benchmark_runs(out)
    tables = {name: _table(name, runs) for name in recipe_names()}
    return {name: table for name, table in tables.items() if _filled(table)}


def _filled(table: PaperTable) -> bool:
    """A layout `--all` writes: one of our runs follows its protocol (a head it is made of), not only other heads that
    happen to share a benchmark (RayDINO's grid-head table beside RAD-DINO's linear probes)."""
    return any(row.head.split(" [")[0] in table.layout.heads for row in table.of_kind(OURS))


def _runs(out: Path, report: CheckReport) -> dict[str, list[StoredRun]]:
    """The stored runs with their metrics recomputed from their predictions (drift noted in `report`)."""
    runs = benchmark_runs(out)
    for name, found in runs.items():
        fresh = []
        for run in found:
            predictions = run.predictions()  # read once for both recomputations
            metrics = recompute(run, predictions)
            report.problems += metric_drift(run, metrics)
            report.problems += stratified_drift(run, recompute_stratified(run, predictions))
            fresh.append(replace(run, metrics={**run.metrics, "metrics": metrics}))
            report.runs += 1
        runs[name] = fresh
    return runs


def _table(name: str, runs: dict[str, list[StoredRun]]) -> PaperTable:
    """The table NAME: a layout, or LAYOUT_vs_ENCODER (the layout with verdicts against ENCODER, `table --versus`)."""
    layout, _, versus = name.partition("_vs_")
    found = get_layout(layout)
    return table_from_runs(found, {g.benchmark: runs.get(g.benchmark, []) for g in found.groups}, versus=versus or None)


def table_texts(table: PaperTable) -> dict[str, str]:
    return rendered(table)


def check_committed(out: Path) -> CheckReport:
    """Recompute every run's metrics from its predictions and every table from the runs; compare with what is
    committed under OUT/tables/. A committed table with no stored run behind it is a problem too."""
    report = CheckReport()
    runs = _runs(out, report)
    for name in stored_benchmarks(out):
        for run in stored_runs(out, name, EXPLAIN):
            report.problems += explain_drift(run)
            report.runs += 1
        for run in stored_runs(out, name, BIAS):
            report.problems += bias_drift(run)
            report.runs += 1
    folder = tables_folder(out)
    committed = sorted({p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.suffix[1:] in TABLE_SUFFIXES}) \
        if folder.is_dir() else []
    names = recipe_names()
    expected = [name for name in names if _filled(_table(name, runs))]
    for name in committed:
        if name.partition("_vs_")[0] not in names:
            report.problems.append(f"{folder / name}.*: no such layout: its numbers have no run behind them. Remove it.")
        elif name not in expected and not name.partition("_vs_")[2]:
            report.problems.append(f"{folder / name}.*: no stored run of its benchmarks: its numbers have no run behind "
                                   "them. Remove it, or commit the runs it was made from.")
    for name in dict.fromkeys([*expected, *(n for n in committed if n.partition("_vs_")[2] and n.partition("_vs_")[0] in names)]):
        try:
            texts = table_texts(_table(name, runs))
        except CxrbenchError as exc:
            report.problems.append(f"{folder / name}.*: cannot be regenerated: {exc}")
            continue
        report.tables += 1
        for suffix in TABLE_SUFFIXES:
            path = folder / f"{name}.{suffix}"
            if not path.is_file():
                report.problems.append(f"{path} is missing: write it with `cxrbench table --all --out {out}` and commit it.")
                continue
            report.problems += table_drift(path, path.read_text(encoding="utf-8"), texts[suffix])
    return report


def table_drift(path: Path, committed: str, regenerated: str) -> list[str]:
    """Where a committed table differs from the regenerated one: by row and column for Markdown tables and CSV
    files, by line for LaTeX (whose rows are labelled by their first cell)."""
    if committed == regenerated:
        return []
    if path.suffix == ".md":
        return _markdown_drift(path, committed, regenerated)
    if path.suffix == ".csv":
        return _csv_drift(path, committed, regenerated)
    old, new = committed.splitlines(), regenerated.splitlines()
    for number, (a, b) in enumerate(zip(old, new), start=1):
        if a != b:
            return [f"{path}, line {number} (row '{b.split(' & ')[0]}'): committed {a!r}, regenerated {b!r}."]
    return [f"{path}: committed {len(old)} lines, regenerated {len(new)}."]


def _markdown_cells(text: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """(column titles, row label -> cells, the other lines) of one Markdown table."""
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    split = [[cell.strip() for cell in line.strip().strip("|").split(" | ")] for line in rows]
    header = split[0] if split else []
    body = {cells[0]: cells[1:] for cells in split[1:]}
    return header[1:], body, [line for line in text.splitlines() if not line.startswith("|")]


def _markdown_drift(path: Path, committed: str, regenerated: str) -> list[str]:
    old_columns, old_rows, old_other = _markdown_cells(committed)
    columns, rows, other = _markdown_cells(regenerated)
    problems = []
    if old_columns != columns:
        problems.append(f"{path}: columns {old_columns} committed, {columns} regenerated.")
    for label in old_rows.keys() - rows.keys():
        problems.append(f"{path}: row '{label}' has no run behind it (no stored run gives it).")
    for label in rows.keys() - old_rows.keys():
        problems.append(f"{path}: row '{label}' is missing from the committed table.")
    for label in rows.keys() & old_rows.keys():
        for column, a, b in zip(columns, old_rows[label], rows[label]):
            if a != b:
                problems.append(f"{path}: row '{label}', column '{column}': committed {a!r}, regenerated {b!r}.")
    if not problems and old_other != other:
        line = next((a for a, b in zip(old_other, other) if a != b), "")
        problems.append(f"{path}: text outside the table differs (committed {line!r}).")
    return problems or [f"{path}: differs from the regenerated table."]


def _csv_drift(path: Path, committed: str, regenerated: str) -> list[str]:
    from io import StringIO

    key = ["group", "column", "source", "model", "head"]
    try:
        old = pd.read_csv(StringIO(committed))
    except (ValueError, pd.errors.ParserError) as exc:
        return [f"{path} cannot be read as CSV ({exc})."]
    new = pd.read_csv(StringIO(regenerated))
    if list(old.columns) != list(new.columns):
        return [f"{path}: columns {list(old.columns)} committed, {list(new.columns)} regenerated."]
    merged = old.merge(new, on=key, how="outer", suffixes=("_committed", "_regenerated"), indicator=True)
    problems = []
    for _, row in merged.iterrows():
        cell = f"row '{row['model']}' / {row['head']}, column '{row['group']}: {row['column']}'"
        if row["_merge"] == "left_only":
            problems.append(f"{path}: {cell} has no run behind it.")
        elif row["_merge"] == "right_only":
            problems.append(f"{path}: {cell} is missing from the committed file.")
        else:
            for column in (c for c in new.columns if c not in key):
                a, b = row[f"{column}_committed"], row[f"{column}_regenerated"]
                if not (pd.isna(a) and pd.isna(b)) and not _same(_number(a), _number(b)):
                    problems.append(f"{path}: {cell}, {column}: committed {a!r}, regenerated {b!r}.")
    return problems or [f"{path}: differs from the regenerated file (formatting)."]


def _number(value):
    return None if pd.isna(value) else float(value) if isinstance(value, (int, float)) else value
