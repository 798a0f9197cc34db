"""A paper table (`model.PaperTable`) from stored runs and the published numbers, in a layout's columns.

Our rows are the full-data runs (label budget null) as 'encoder / head', one per (encoder, head), cells with the
mean, std and CI of each column's metric and task; the published rows follow, one per model of the paper's CSV.
Optional difference rows give ours minus the published mean for encoders the paper reports, and `versus` marks
each of our cells against one encoder's run (paired on the same test patients).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from cxrbench.errors import CxrbenchError
from cxrbench.registry import metric_spec
from cxrbench.results.budgets import full_data_runs
from cxrbench.results.labels import comparable, run_label
from cxrbench.results.overlap import pretraining_overlap
from cxrbench.results.store import StoredRun, stored_runs
from cxrbench.specs import BenchmarkSpec, PublishedSpec
from cxrbench.stats.summary import MACRO
from cxrbench.tables.layout import ANY_TASK, GroupLayout, TableLayout
from cxrbench.tables.model import DIFF, OURS, PUBLISHED, TRANSFER_MARK, Column, PaperTable, Row
from cxrbench.tables.published import read_published
from cxrbench.tables.recipes import recipe_deviations

SpecLookup = Callable[[str], BenchmarkSpec]


def _published_frame(published: PublishedSpec, cache: dict[tuple, pd.DataFrame]) -> pd.DataFrame:
    key = (published.file, published.metric, published.model_column, published.scale, published.std_suffix,
           published.aggregate_column, tuple(published.task_columns.items()))
    if key not in cache:
        cache[key] = read_published(published)
    return cache[key]


def _column_key(published: PublishedSpec | None, task: str) -> str | None:
    """The published CSV column of `task` without its '_mean' ending: stable however the spec splits the suffix."""
    if published is None or task not in published.task_columns:
        return None
    return re.sub(r"_mean$", "", f"{published.task_columns[task]}{published.std_suffix[0]}")


def _published_for(layout: TableLayout, spec: BenchmarkSpec, group: GroupLayout, metric: str,
                   notes: list[str]) -> PublishedSpec | None:
    """The benchmark's own published block when it is for `metric`, else the table's CSV columns for the group."""
    if spec.published is not None and spec.published.metric == metric:
        return spec.published
    fallback = layout.published_block(group, metric)
    if fallback is None:
        notes.append(f"'{spec.name}' has no published {metric_spec(metric).title} numbers: its columns show ours only.")
        return None
    columns = dict(fallback.task_columns)
    if ANY_TASK in columns:
        if len(spec.tasks) != 1:
            raise CxrbenchError(f"Layout group '{group.benchmark}': '{ANY_TASK}' needs a one-task benchmark, "
                                f"'{spec.name}' has {len(spec.tasks)} tasks.")
        columns = {spec.tasks[0]: columns.pop(ANY_TASK), **columns}
    encoders = fallback.encoders or (spec.published.encoders if spec.published is not None else {})
    return dataclasses.replace(fallback, task_columns=columns, encoders=encoders)


def _group_columns(layout: TableLayout, group: GroupLayout, spec: BenchmarkSpec, notes: list[str]) -> list[Column]:
    metrics = group.metrics or (spec.primary_metric,)
    for metric in metrics:
        metric_spec(metric)  # any registered metric: the benchmark's own, or one a run scored with --metric
    group_title = group.title or f"{spec.title} ({' / '.join(metric_spec(m).title for m in metrics)})"
    _check_macros(layout, group, spec)
    transfer = (spec.transfer.train, spec.transfer.test) if spec.transfer is not None else None
    mark = TRANSFER_MARK if transfer else ""
    column = functools.partial(Column, group_title, benchmark=spec.name, by_group=group.by_group, transfer=transfer)
    columns = []
    for metric in metrics:
        published = _published_for(layout, spec, group, metric, notes)
        results = spec.result_columns
        keys = {task: [task, _column_key(published, task), _column_key(spec.published, task)] for task in results}
        ordered = [task for key in group.titles for task in results if key in keys[task]]
        tasks = [t for t in dict.fromkeys([*ordered, *results]) if not group.only or t in group.only] if group.per_task else []
        for task in tasks:
            title = next((group.titles[k] for k in keys[task] if k in group.titles), None)
            if title is None:  # the paper's abbreviation (the published column) when there is one
                title = published.task_columns[task] if published and task in published.task_columns else task
            if len(metrics) > 1:
                title = metric_spec(metric).title if len(tasks) == 1 else f"{title} {metric_spec(metric).title}"
            columns.append(column(title + mark, metric=metric, task=task, published=published))
        if group.aggregate and (len(tasks) > 1 or not group.per_task):
            title = group.titles.get(metric) or (
                group.aggregate if len(metrics) == 1 else f"{group.aggregate} {metric_spec(metric).title}")
            columns.append(column(title + mark, metric=metric, task=MACRO, published=published))
        for name, members in group.macros.items():
            title = name if len(metrics) == 1 else f"{name} {metric_spec(metric).title}"
            columns.append(column(title + mark, metric=metric, task=name, published=published, members=tuple(members)))
    return columns


def _check_macros(layout: TableLayout, group: GroupLayout, spec: BenchmarkSpec) -> None:
    """Every member of a macro column is one of the benchmark's tasks (a typo would silently average fewer)."""
    for title, members in group.macros.items():
        unknown = [task for task in members if task not in spec.result_columns]
        if unknown or not members:
            raise CxrbenchError(f"Layout '{layout.name}', group '{group.benchmark}', macro '{title}': "
                                f"{', '.join(map(repr, unknown)) or 'no member'} is not a task of {spec.name} "
                                f"(its tasks: {', '.join(spec.result_columns)}); fix the YAML's `macros:`.")


def resolve_columns(layout: TableLayout, spec_lookup: SpecLookup, notes: list[str]) -> list[Column]:
    columns: list[Column] = []
    for group in layout.groups:
        try:
            spec = spec_lookup(group.benchmark)
        except CxrbenchError as exc:
            raise CxrbenchError(f"Layout '{layout.name}' needs benchmark '{group.benchmark}': {exc}") from None
        columns += _group_columns(layout, group, spec, notes)
    return columns


def _entry(entry: dict | None, spread: str = "seeds") -> dict | None:
    if not entry or entry.get("mean") is None:
        return None
    cell = {k: entry.get(k) for k in ("mean", "std", "ci_low", "ci_high")}
    if spread == "cases":
        cell["std"] = entry.get("case_std")
    return cell


def _group_statistic(metrics: dict, column: Column, spread: str) -> dict | None:
    """A run's statistic over the patient groups of an attribute, for the column's metric and task.

    "case_mean": the mean over the test cases, i.e. the run's own top-line entry (with its spread). RAD-DINO's Table
    C.3 "avg" is this (its values equal the Table 3 overall ones in five of six cells), not the mean of the group
    means, which `stratified` keeps as `group_mean`. "worst": the worst group's mean over EVERY group with a number,
    including groups under `min_group_patients` (the paper reports every group); when such a group is the worst, the
    cell carries its patient count (`small_group`), shown with SMALL_GROUP_MARK, so that it neither vanishes nor
    passes for a well-measured group."""
    attribute, statistic = column.by_group
    if statistic == "case_mean":
        return _entry(metrics.get("metrics", {}).get(column.metric, {}).get(column.task), spread)
    block = ((metrics.get("stratified") or {}).get("attributes", {}).get(attribute) or {})
    higher = metric_spec(column.metric).higher_is_better
    candidates = []
    for group in block.get("groups", ()):
        entry = (group.get("metrics") or {}).get(column.metric, {}).get(column.task) or {}
        if entry.get("mean") is not None:
            candidates.append((entry["mean"] if higher else -entry["mean"], group))
    if not candidates:
        return None
    value, group = min(candidates, key=lambda pair: pair[0])
    cell = {"mean": value if higher else -value, "std": None, "ci_low": None, "ci_high": None}
    if group["too_small"]:
        cell["small_group"] = {"group": group["group"], "patients": group["patients"]}
    return cell


def _cell(metrics: dict, column: Column, spread: str) -> dict | None:
    """A run's cell for `column`: a statistic over patient groups, a macro over chosen tasks, or the stored entry."""
    if column.by_group:
        return _group_statistic(metrics, column, spread)
    if column.members:
        return _members_macro(metrics, column)
    return _entry(metrics.get("metrics", {}).get(column.metric, {}).get(column.task), spread)


def _members_macro(metrics: dict, column: Column) -> dict | None:
    """The macro over the column's member tasks, as the stored macro is made over all of them: per seed the mean of
    the members' values, then mean and std (the run's ddof) over seeds. None unless every member has every seed: a
    macro over fewer tasks than the paper's would not be the paper's statistic. No CI: the bootstrap of this subset
    is not stored (RayDINO's catheter groups, Fig. 3c)."""
    entries = [metrics.get("metrics", {}).get(column.metric, {}).get(task) or {} for task in column.members]
    seeds = [set((entry.get("per_seed") or {}).keys()) for entry in entries]
    common = set.intersection(*seeds) if seeds else set()
    if not common or any(s != common for s in seeds) or any(
            entry["per_seed"][seed] is None for entry in entries for seed in common):
        return None
    per_seed = [sum(entry["per_seed"][seed] for entry in entries) / len(entries) for seed in sorted(common)]
    ddof = metrics.get("std_ddof", 1)
    mean = sum(per_seed) / len(per_seed)
    std = (sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - ddof)) ** 0.5 if len(per_seed) > ddof else None
    return {"mean": mean, "std": std, "ci_low": None, "ci_high": None}


def _our_rows(layout: TableLayout, columns: list[Column], runs: Mapping[str, Sequence[StoredRun]],
              specs: dict[str, BenchmarkSpec], notes: list[str]) -> tuple[list[Row], dict]:
    """One row per (encoder, head) of the full-data runs, sorted; and the run behind each cell (for verdicts)."""
    ours: dict[tuple[str, str], list[dict | None]] = {}
    variants: dict[tuple[str, str], tuple[str, ...]] = {}
    sources: dict[tuple[str, str, int], StoredRun] = {}  # (encoder, head, column) -> the run behind the cell
    for i, column in enumerate(columns):
        for run in full_data_runs(runs.get(column.benchmark, ())):
            key = (run.encoder, run.method)
            cells = ours.setdefault(key, [None] * len(columns))
            cells[i] = _cell(run.metrics, column, layout.spread)
            if cells[i] is not None:
                sources[(*key, i)] = run
            variants[key] = tuple(dict.fromkeys((*variants.get(key, ()), *run.variant)))
    rows = [Row(OURS, run_label(encoder, head, variants[(encoder, head)]), cells, encoder=encoder, head=head,
                variant=variants[(encoder, head)]) for (encoder, head), cells in sorted(ours.items())]
    for row in rows:  # weights drawn at random were pre-trained on nothing
        pretrained = "random init" not in row.variant
        row.overlap = [pretraining_overlap(row.encoder, specs[c.benchmark]) if pretrained else () for c in columns]
    other_heads = sorted({row.head for row in rows if row.head.split(" [")[0] not in layout.heads})
    if other_heads:
        notes.append(f"rows of the heads {', '.join(other_heads)} do not follow the paper's protocol ({', '.join(layout.heads)}).")
    for row in rows:
        models = {c.published.paper_model(row.encoder, row.head) for c in columns if c.published} - {None}
        row.model = next(iter(models)) if len(models) == 1 else None
    return rows, sources


def _published_cells(layout: TableLayout, columns: list[Column], rows: list[Row],
                     frames: dict[tuple, pd.DataFrame]) -> tuple[dict[str, list[dict | None]], list[str]]:
    """The paper's rows (model -> cells) the layout shows, and the sources they come from."""
    paper: dict[str, list[dict | None]] = {}
    sources_text: list[str] = []
    for i, column in enumerate(columns):
        if column.published is None:
            continue
        sources_text.append(column.published.source)
        found = _published_frame(column.published, frames)
        found = found[found["task"] == column.task]
        for record in found.to_dict("records"):
            cells = paper.setdefault(record["model"], [None] * len(columns))
            std = record["std"]
            cells[i] = {"mean": record["mean"], "std": None if std is None or pd.isna(std) else std, "ci_low": None, "ci_high": None}
    if layout.published_rows == "matching":
        wanted = {c.published.paper_model(r.encoder, r.head) for r in rows for c in columns if c.published} - {None}
        paper = {model: cells for model, cells in paper.items() if model in wanted}
    elif layout.published_rows == "none":
        paper = {}
    return paper, list(dict.fromkeys(sources_text))


def _diff_rows(columns: list[Column], rows: list[Row], paper: dict[str, list[dict | None]],
               frames: dict[tuple, pd.DataFrame], notes: list[str]) -> list[Row]:
    diff_rows = []
    for row in rows:
        if not comparable(row.variant):  # random weights, another input size or synthetic data: not the published setting
            notes.append(f"no difference row for {row.label}: not the released encoder on the released data "
                         f"({', '.join(row.variant)}).")
            continue
        cells: list[dict | None] = [None] * len(columns)
        for i, column in enumerate(columns):
            model = column.published.paper_model(row.encoder, row.head) if column.published else None
            theirs = paper.get(model, [None] * len(columns))[i] if model else None
            if theirs is None:  # the paper's row may be hidden (published_rows), read it again
                theirs = published_cell(_published_frame(column.published, frames), model, column.task) if model else None
            if row.cells[i] is not None and theirs is not None:
                cells[i] = {"mean": row.cells[i]["mean"] - theirs["mean"], "std": None, "ci_low": None, "ci_high": None}
        if any(cell is not None for cell in cells):
            diff_rows.append(Row(DIFF, f"Δ {row.label} − {row.model or 'published'}", cells,
                                 encoder=row.encoder, head=row.head, model=row.model))
    if not diff_rows:
        notes.append("no difference rows: the paper reports none of these runs' encoders (as released).")
    return diff_rows


def build_paper_table(layout: TableLayout, runs: Mapping[str, Sequence[StoredRun]], spec_lookup: SpecLookup | None = None,
                      diff: bool = False, versus: str | None = None) -> PaperTable:
    """`runs`: benchmark -> stored runs (budget runs are left out here). `spec_lookup` defaults to the registry.
    `versus`: mark each of our cells better / worse / not significantly different from this encoder's run of the
    same head (paired on the same test patients, `cxrbench.results.comparisons`)."""
    if spec_lookup is None:
        from cxrbench.registry import benchmark_spec as spec_lookup
    notes: list[str] = []
    columns = resolve_columns(layout, spec_lookup, notes)
    specs = {c.benchmark: spec_lookup(c.benchmark) for c in columns}
    rows, sources = _our_rows(layout, columns, runs, specs, notes)
    frames: dict[tuple, pd.DataFrame] = {}
    paper, sources_text = _published_cells(layout, columns, rows, frames)
    published_rows = [Row(PUBLISHED, f"{model} (published)", cells, model=model,
                          overlap=[_published_overlap(c, model, specs[c.benchmark]) for c in columns])
                      for model, cells in paper.items()]
    diff_rows = _diff_rows(columns, rows, paper, frames, notes) if diff else []
    if versus is not None:
        _add_verdicts(rows, columns, sources, versus, notes)
    return PaperTable(layout, columns, [*rows, *diff_rows, *published_rows], sources_text, notes, frames, versus,
                      recipe_deviations(layout.name))


def _add_verdicts(rows: list[Row], columns: list[Column], sources: dict, versus: str, notes: list[str]) -> None:
    """Each of our cells against the `versus` encoder's run of the same head and column (its own row gets none)."""
    from cxrbench.results.comparisons import versus_verdicts

    cells, places = [], []
    for r, row in enumerate(rows):
        for i, column in enumerate(columns):
            run, reference = sources.get((row.encoder, row.head, i)), sources.get((versus, row.head, i))
            if not column.by_group and not column.members and run is not None and reference is not None \
                    and run is not reference:
                cells.append((run, reference, column.metric, column.task))
                places.append((r, i))
    if not any(row.encoder == versus for row in rows):
        raise CxrbenchError(f"--versus {versus}: no stored run of '{versus}' in this table; choose one of its encoders "
                            f"({', '.join(sorted({row.encoder for row in rows}))}).")
    for row in rows:
        row.verdicts = [None] * len(columns)
    for (r, i), verdict in zip(places, versus_verdicts(cells)):
        rows[r].verdicts[i] = verdict
    unmatched = sorted({row.label for row in rows if row.encoder != versus and not any(row.verdicts)})
    if unmatched:
        notes.append(f"no verdict against {versus} for {', '.join(unmatched)}: {versus} has no run of that head.")


def _published_overlap(column: Column, model: str, spec: BenchmarkSpec) -> tuple[str, ...]:
    """A published row's overlap, through the encoder the paper's model name maps to (none for unmapped rows)."""
    mapping = column.published.encoders if column.published else {}
    encoder = next((e for e, m in mapping.items() if model == m or model.startswith(f"{m} / ")), None)
    return pretraining_overlap(encoder, spec) if encoder else ()


def published_cell(frame: pd.DataFrame, model: str, task: str) -> dict | None:
    """The published mean of `model` on `task` in a `read_published` frame; None when the paper has none."""
    found = frame[(frame["model"] == model) & (frame["task"] == task)]
    return None if found.empty else {"mean": float(found["mean"].iloc[0])}


def published_frame(column: Column, table: PaperTable) -> pd.DataFrame:
    """The published numbers behind a column, read once per table (the table keeps them)."""
    return _published_frame(column.published, table.frames)


def table_from_store(layout: TableLayout, out: Path, spec_lookup: SpecLookup | None = None,
                     diff: bool = False, versus: str | None = None) -> PaperTable:
    """The layout's table from every stored full-data run under `out`; an error when there is none."""
    benchmarks = list(dict.fromkeys(group.benchmark for group in layout.groups))
    table = table_from_runs(layout, {name: stored_runs(out, name) for name in benchmarks}, spec_lookup, diff, versus)
    if not table.of_kind(OURS):
        raise CxrbenchError(
            f"No stored full-data runs for layout '{layout.name}' under {out} (benchmarks: {', '.join(benchmarks)}). "
            f"Run `cxrbench run {benchmarks[0]} --encoder NAME --out {out}` or `cxrbench reproduce {layout.name}` first."
        )
    return table


def table_from_runs(layout: TableLayout, runs: Mapping[str, Sequence[StoredRun]],
                    spec_lookup: SpecLookup | None = None, diff: bool = False,
                    versus: str | None = None) -> PaperTable:
    """The layout's table from these runs (benchmark -> runs), noting the benchmarks that have none."""
    table = build_paper_table(layout, runs, spec_lookup, diff, versus)
    benchmarks = list(dict.fromkeys(group.benchmark for group in layout.groups))
    missing = [name for name in benchmarks if not full_data_runs(runs.get(name, ()))]
    if missing:
        table.notes.append(f"no stored runs of {', '.join(missing)}: those columns show published numbers only.")
    return table

