"""Result tables in a paper's layout: our stored runs beside the published rows, as Markdown, CSV and LaTeX.

A layout is declarative (`TableLayout`): column groups, each one benchmark with one or more metrics. Tasks,
their order and the published numbers come from the benchmark's spec (`benchmarks/*.yaml`, `published:` block);
the layout only chooses column titles (keyed by task name or by the published CSV column, e.g. `PTX_auprc`)
and, for a metric the spec's `published:` block does not cover (a block holds one metric), a fallback block.

Our rows are the full-data runs (label budget null) as 'encoder / head', cells `mean ± std [95% CI]` in percent;
the published rows follow (`mean ± std` as printed in the paper). Optional difference rows give ours minus the
published mean for encoders the paper reports. The CSV is long form with raw fractions.

Under every table come its deviations from the paper, as the layout's recipe declares them
(`results/recipes/LAYOUT.yaml`, `cxrbench.results.recipes.Deviation`): a "Deviations from the paper" section in
Markdown, a footnote-size note block in LaTeX, a `deviations` column in the CSV (on our rows: a JSON list of
{what, why}, `[]` when the runs follow the paper, `null` when no recipe declares them).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cxrbench.errors import CxrbenchError
from cxrbench.results.efficiency import full_data_runs
from cxrbench.results.overlap import LEGEND as OVERLAP_LEGEND, MARK as OVERLAP_MARK, pretraining_overlap

VERDICT_MARKS = {"better": "▲", "worse": "▼", "not significant": "≈"}  # cxrbench.results.comparisons verdicts
SMALL_GROUP_MARK = "‡"  # a worst-group cell whose group has fewer test patients than min_group_patients
from cxrbench.results.published import read_published
from cxrbench.results.recipes import Deviation, recipe_deviations, recipes_dir
from cxrbench.files import atomic_text
from cxrbench.resources import project_root
from cxrbench.results.labels import comparable, run_label, variant_text
from cxrbench.results.store import StoredRun, stored_runs
from cxrbench.specs import BenchmarkSpec, PublishedSpec
from cxrbench.registry import metric_spec
from cxrbench.stats.summary import MACRO

ANY_TASK = "*"  # in a fallback published block: the only task of a one-task benchmark
MISSING = "–"
OURS, PUBLISHED, DIFF = "ours", "published", "diff"
PAPER_HEADS = ("linear", "linear-augmented")  # the papers' tables are linear probes (on cached features, or online)


@dataclass(frozen=True)
class GroupLayout:
    """One column group: a benchmark's tasks (and macro) for each of `metrics`."""

    benchmark: str
    title: str | None = None  # group header; default '<benchmark title> (<METRIC>)'
    metrics: tuple[str, ...] = ()  # default: the benchmark's primary metric
    titles: Mapping[str, str] = field(default_factory=dict)  # task name or published column -> column title, in paper order
    aggregate: str | None = "Agg."  # title of the macro column; None: no macro column
    per_task: bool = True  # False: the macro column only (e.g. "Lungs", the mean over left and right)
    only: tuple[str, ...] = ()  # the tasks shown, when the paper splits a benchmark's tasks over tables (default all)
    # a statistic over patient groups instead of the metric itself (RAD-DINO Table C.3): (attribute, "case_mean" or
    # "worst"), read from each run's metrics.json (`cxrbench.stats.stratified`; `_group_statistic`)
    by_group: tuple[str, str] | None = None
    fallback_published: Mapping[str, PublishedSpec] = field(default_factory=dict)  # metric -> block, when the spec's is for another metric


@dataclass(frozen=True)
class TableLayout:
    name: str
    title: str
    groups: tuple[GroupLayout, ...]
    model_title: str = "Model"
    decimals: int = 1
    published_rows: str = "all"  # all | matching (encoders we ran) | none
    heads: tuple[str, ...] = PAPER_HEADS  # the heads that follow the paper's protocol; other rows get a note
    spread: str = "seeds"  # our "± std": over seeds, or over test cases ("cases": metrics.json's case_std, as Table 3)


_TABLE_1B = "rad-dino_table1b_candid_rsna.csv"
_TABLE_3 = PublishedSpec(file="rad-dino_table3_segmentation_dice.csv", model_column="model", scale=100, metric="dice",
                         source="RAD-DINO, Table 3 (Dice %, mean (std) over test cases with masks)", task_columns={},
                         encoders={"rad-dino": "RAD-DINO", "biovil-t": "BioViL-T", "biomedclip": "BiomedCLIP",
                                   "chexzero": "CheXzero"},
                         heads={"seg-linear": "Linear", "vitdet": "ViTDet", "upernet": "UPerNet"})


_TABLE_C3 = dataclasses.replace(
    _TABLE_3, file="rad-dino_tableC3_segmentation_by_ethnicity.csv", heads={"seg-linear": "Linear"},
    source="RAD-DINO, Table C.3 (Dice %, linear decoder: average over ethnicity groups and worst group)")


_DINOV2_TABLE4 = PublishedSpec(
    file="dinov2-radiology_table4_frozen_auroc.csv", model_column="model", scale=1, metric="auroc", task_columns={},
    source="DINOv2-radiology, Table 4 (macro AUROC, kNN and linear probing; point values)",
    encoders={"dinov2-large": "DINOv2 ViT-L/14", "dinov2-giant": "DINOv2 ViT-g/14", "clip-l14": "CLIP ViT-L/14"},
    heads={"knn": "kNN", "linear-dinov2": "Linear"})


_RAYDINO_SEG = PublishedSpec(file="raydino_segmentation_mdice.csv", model_column="model", scale=100, metric="dice",
                             source="RayDINO, headline segmentation results (mDice %, point estimates)", task_columns={},
                             encoders={"raydino": "RayDINO"})


_RAYDINO_HEADLINE = PublishedSpec(file="raydino_headline_classification.csv", model_column="model", scale=100,
                                  metric="auroc", source="RayDINO, headline results (%, point estimates)",
                                  task_columns={}, encoders={"raydino": "RayDINO"})


def _raydino_headline(metric: str, column: str) -> dict[str, PublishedSpec]:
    return {metric: dataclasses.replace(_RAYDINO_HEADLINE, metric=metric, task_columns={MACRO: column})}


def _raydino_seg(column: str) -> dict[str, PublishedSpec]:
    return {"dice": dataclasses.replace(_RAYDINO_SEG, task_columns={MACRO: column})}


def _table_c3(task_columns: dict[str, str]) -> dict[str, PublishedSpec]:
    return {"dice": dataclasses.replace(_TABLE_C3, task_columns=task_columns)}


def _table3(task_columns: dict[str, str]) -> dict[str, PublishedSpec]:
    return {"dice": dataclasses.replace(_TABLE_3, task_columns=task_columns)}


def _demographics(name: str, title: str, tasks: tuple[str, ...]) -> TableLayout:
    """RAD-DINO's demographic tables: some of `mimic-demographics`' targets, the logistic probe of the paper."""
    return TableLayout(
        name=name, model_title="Encoder", heads=("logistic-default",),
        title=f"RAD-DINO {title} from frozen backbones, logistic regression, accuracy (%), mean (std) over 5 folds",
        groups=(GroupLayout("mimic-demographics", title="MIMIC-CXR, no findings (accuracy)", metrics=("accuracy",),
                            aggregate=None, only=tasks, titles={task: task for task in tasks}),),
    )


LAYOUTS: dict[str, TableLayout] = {
    layout.name: layout
    for layout in (
        TableLayout(
            name="rad-dino-1a",
            title="RAD-DINO Table 1a: VinDr-CXR, linear probing on frozen backbones, AUPRC (%)",
            groups=(GroupLayout("vindr", title="VinDr-CXR (AUPRC)", metrics=("auprc",), aggregate="Agg."),),
        ),
        TableLayout(
            name="rad-dino-1b",
            title="RAD-DINO Table 1b: CANDID-PTX and RSNA-Pneumonia, linear probing on frozen backbones (%)",
            model_title="Model",
            groups=(
                GroupLayout("candid-ptx", title="CANDID-PTX (AUPRC)", metrics=("auprc",), aggregate=None,
                            titles={"PTX_auprc": "PTX", "chest_tube_auprc": "Chest tube", "rib_fracture_auprc": "Rib fracture"}),
                GroupLayout("rsna-pneumonia", title="RSNA-Pneumonia", metrics=("auprc", "auroc"), aggregate=None,
                            fallback_published={
                                metric: PublishedSpec(file=_TABLE_1B, source="RAD-DINO, Table 1b (%, mean and std over 5 seeds)",
                                                      model_column="model", scale=100, metric=metric,
                                                      task_columns={ANY_TASK: f"rsna_{metric}"})
                                for metric in ("auprc", "auroc")
                            }),
            ),
        ),
        TableLayout(
            name="rad-dino-3",
            title="RAD-DINO Table 3: segmentation on frozen backbones, Dice (%), mean (std over test cases with masks)",
            model_title="Image encoder / decoder",
            heads=("seg-linear", "vitdet", "upernet"),
            spread="cases",
            groups=(
                GroupLayout("mimic-lungs", title="MIMIC-CXR", metrics=("dice",), aggregate="Lungs", per_task=False,
                            fallback_published=_table3({MACRO: "lungs"})),
                GroupLayout("mimic-lung-zones", title="MIMIC-CXR", metrics=("dice",), aggregate="Lung zones",
                            per_task=False, fallback_published=_table3({MACRO: "lung_zones"})),
                GroupLayout("candid-ptx-seg", title="CANDID-PTX", metrics=("dice",), aggregate=None,
                            titles={"pneumothorax": "Pneumothorax", "chest_tube": "Chest tubes"},
                            fallback_published=_table3({"pneumothorax": "pneumothorax", "chest_tube": "chest_tubes"})),
                GroupLayout("vindr-ribcxr", title="VinDr-RibCXR", metrics=("dice",), aggregate="Ribs", per_task=False,
                            fallback_published=_table3({MACRO: "ribs"})),
            ),
        ),
        TableLayout(
            name="raydino-seg",
            title="RayDINO segmentation: mDice (%) on frozen backbones, in-domain and PAXRay++ transfer",
            model_title="Image encoder / decoder",
            heads=("upernet-raydino",),
            # SIIM-ACR: `dice` scores the images with a pneumothorax; RayDINO does not say which images its mDice covers
            groups=tuple(GroupLayout(benchmark, title=title, metrics=("dice",), aggregate="mDice", per_task=False,
                                     fallback_published=_raydino_seg(column))
                         for benchmark, title, column in (
                             ("jsrt", "JSRT", "jsrt"), ("vindr-ribcxr", "VinDr-RibCXR", "vindr_ribcxr"),
                             ("paxray", "PAXRay++", "paxray"), ("siim-acr", "SIIM-ACR", "siim"),
                             ("paxray-to-jsrt", "JSRT from PAXRay++", "jsrt_from_paxray"),
                             ("paxray-to-vindr-ribcxr", "VinDr-RibCXR from PAXRay++", "vindr_ribcxr_from_paxray")))),
        TableLayout(
            name="raydino-headline",
            title="RayDINO headline results: classification, multiclass and regression on frozen backbones (%)",
            model_title="Image encoder / head",
            heads=("raydino-grid",),
            groups=(
                GroupLayout("vindr", title="VinDr-CXR", metrics=("auroc",), aggregate="macro AUROC", per_task=False,
                            fallback_published=_raydino_headline("auroc", "vindr_auroc")),
                GroupLayout("polcovid", title="POLCOVID", metrics=("balanced_accuracy",), aggregate="macro accuracy",
                            per_task=False, fallback_published=_raydino_headline("balanced_accuracy", "polcovid_macro_accuracy")),
                GroupLayout("scoliosis", title="AASCE scoliosis", metrics=("pearson_r",), aggregate="Pearson r",
                            per_task=False, fallback_published=_raydino_headline("pearson_r", "scoliosis_pearson")),
            ),
        ),
        _demographics("rad-dino-5", "Table 5: patient demographics", ("Sex", "Age", "Weight", "BMI")),
        _demographics("rad-dino-c2", "Table C.2: ethnicity", ("Ethnicity",)),
        TableLayout(
            name="rad-dino-c3",
            title=("RAD-DINO Table C.3: MIMIC-CXR lung segmentation by ethnicity, linear decoder on frozen backbones, "
                   "Dice (%): average over the ethnicity groups and the worst group"),
            model_title="Image encoder / decoder",
            heads=("seg-linear",),
            groups=tuple(GroupLayout(benchmark, title=title, metrics=("dice",), aggregate=statistic, per_task=False,
                                     by_group=("ethnicity", {"avg": "case_mean", "worst": "worst"}[statistic]),
                                     fallback_published=_table_c3({MACRO: f"{column}_{statistic}"}))
                         for benchmark, title, column in (("mimic-lungs", "Lungs", "lungs"),
                                                          ("mimic-lung-zones", "Lung zones", "lung_zones"))
                         for statistic in ("avg", "worst")),
        ),
        TableLayout(
            name="dinov2-table4",
            title=("DINOv2-radiology Table 4: NIH ChestX-ray14 and CheXpert (5 findings), kNN and linear probes on frozen "
                   "backbones, macro AUROC"),
            model_title="Method / probe",
            heads=("knn", "linear-dinov2"),
            decimals=3,
            groups=(GroupLayout("nih-cxr14-15", title="NIH ChestX-ray14", metrics=("auroc",), aggregate="macro AUROC",
                                per_task=False, fallback_published={"auroc": dataclasses.replace(_DINOV2_TABLE4, task_columns={MACRO: "nih"})}),
                    GroupLayout("chexpert-5-dinov2", title="CheXpert", metrics=("auroc",), aggregate="macro AUROC",
                                per_task=False, fallback_published={"auroc": dataclasses.replace(_DINOV2_TABLE4, task_columns={MACRO: "chexpert"})})),
        ),
        TableLayout(
            name="rad-dino-c1",
            title="RAD-DINO Table C.1: PadChest lateral views, linear probing on frozen backbones, AUPRC (%)",
            model_title="Image encoder",
            decimals=2,
            groups=(GroupLayout("padchest-lateral", title="PadChest (AUPRC)", metrics=("auprc",), aggregate="Agg",
                                titles={"VDC": "Vertebral deg. changes", "PE": "Pleural Effusion",
                                        "CAB": "Costophrenic angle blunting"}),),
        ),
    )
}


def get_layout(name: str) -> TableLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, LAYOUTS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CxrbenchError(f"Unknown table layout '{name}'.{hint} Choose one of {', '.join(LAYOUTS)}.") from None


def benchmark_layout(spec: BenchmarkSpec, metric: str) -> TableLayout:
    """The per-benchmark comparison (`cxrbench table BENCH`): every task by name, macro, the paper's rows we ran."""
    title = metric_spec(metric).title
    return TableLayout(
        name=spec.name, title=f"{spec.title}: {title} (%)", model_title="model", published_rows="matching",
        groups=(GroupLayout(spec.name, title=title, metrics=(metric,), titles={t: t for t in spec.result_columns}, aggregate="Macro"),),
    )


@dataclass(frozen=True)
class Column:
    group: str
    title: str
    benchmark: str
    metric: str
    task: str  # a task name or MACRO
    published: PublishedSpec | None
    by_group: tuple[str, str] | None = None  # (attribute, statistic): GroupLayout.by_group


@dataclass
class Row:
    kind: str  # ours | published | diff
    label: str
    cells: list[dict | None]  # per column: mean, std, ci_low, ci_high (fractions)
    encoder: str | None = None
    head: str | None = None
    model: str | None = None  # the paper's model name (published rows; ours when the paper reports the encoder)
    variant: tuple[str, ...] = ()  # ours: how the encoder differs from the released one (StoredRun.variant)
    overlap: list[tuple[str, ...]] = field(default_factory=list)  # per column: datasets both pre-trained on and tested on
    verdicts: list[str | None] = field(default_factory=list)  # per column: against the --versus encoder (comparisons)


@dataclass
class PaperTable:
    layout: TableLayout
    columns: list[Column]
    rows: list[Row]
    sources: list[str]
    notes: list[str] = field(default_factory=list)
    frames: dict[tuple, pd.DataFrame] = field(default_factory=dict, repr=False)  # read_published, per block
    versus: str | None = None  # the reference encoder of the cells' verdicts
    deviations: tuple[Deviation, ...] | None = None  # the layout's recipe's; None: no recipe declares them

    def of_kind(self, kind: str) -> list[Row]:
        return [row for row in self.rows if row.kind == kind]


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


def _published_for(spec: BenchmarkSpec, group: GroupLayout, metric: str, notes: list[str]) -> PublishedSpec | None:
    if spec.published is not None and spec.published.metric == metric:
        return spec.published
    fallback = group.fallback_published.get(metric)
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


def resolve_columns(layout: TableLayout, spec_lookup: Callable[[str], BenchmarkSpec], notes: list[str]) -> list[Column]:
    columns: list[Column] = []
    for group in layout.groups:
        try:
            spec = spec_lookup(group.benchmark)
        except CxrbenchError as exc:
            raise CxrbenchError(f"Layout '{layout.name}' needs benchmark '{group.benchmark}': {exc}") from None
        metrics = group.metrics or (spec.primary_metric,)
        for metric in metrics:
            metric_spec(metric)  # any registered metric: the benchmark's own, or one a run scored with --metric
        group_title = group.title or f"{spec.title} ({' / '.join(metric_spec(m).title for m in metrics)})"
        for metric in metrics:
            published = _published_for(spec, group, metric, notes)
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
                columns.append(Column(group_title, title, spec.name, metric, task, published, group.by_group))
            if group.aggregate and (len(tasks) > 1 or not group.per_task):
                title = group.aggregate if len(metrics) == 1 else f"{group.aggregate} {metric_spec(metric).title}"
                columns.append(Column(group_title, title, spec.name, metric, MACRO, published, group.by_group))
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


def build_paper_table(
    layout: TableLayout,
    runs: Mapping[str, Sequence[StoredRun]],
    spec_lookup: Callable[[str], BenchmarkSpec] | None = None,
    diff: bool = False,
    versus: str | None = None,
) -> PaperTable:
    """`runs`: benchmark -> stored runs (budget runs are left out here). `spec_lookup` defaults to the registry.
    `versus`: mark each of our cells better / worse / not significantly different from this encoder's run of the
    same head (paired on the same test patients, `cxrbench.results.comparisons`)."""
    if spec_lookup is None:
        from cxrbench.registry import benchmark_spec as spec_lookup
    notes: list[str] = []
    columns = resolve_columns(layout, spec_lookup, notes)

    ours: dict[tuple[str, str], list[dict | None]] = {}
    variants: dict[tuple[str, str], tuple[str, ...]] = {}
    sources: dict[tuple[str, str, int], StoredRun] = {}  # (encoder, head, column) -> the run behind the cell
    for i, column in enumerate(columns):
        for run in full_data_runs(runs.get(column.benchmark, ())):
            key = (run.encoder, run.method)
            cells = ours.setdefault(key, [None] * len(columns))
            cells[i] = (_group_statistic(run.metrics, column, layout.spread) if column.by_group
                        else _entry(run.metrics.get("metrics", {}).get(column.metric, {}).get(column.task), layout.spread))
            if cells[i] is not None:
                sources[(*key, i)] = run
            variants[key] = tuple(dict.fromkeys((*variants.get(key, ()), *run.variant)))
    rows = [Row(OURS, run_label(encoder, head, variants[(encoder, head)]), cells, encoder=encoder, head=head,
                variant=variants[(encoder, head)]) for (encoder, head), cells in sorted(ours.items())]
    specs = {c.benchmark: spec_lookup(c.benchmark) for c in columns}
    for row in rows:  # weights drawn at random were pre-trained on nothing
        pretrained = "random init" not in row.variant
        row.overlap = [pretraining_overlap(row.encoder, specs[c.benchmark]) if pretrained else () for c in columns]
    other_heads = sorted({row.head for row in rows if row.head.split(" [")[0] not in layout.heads})
    if other_heads:
        notes.append(f"rows of the heads {', '.join(other_heads)} do not follow the paper's protocol ({', '.join(layout.heads)}).")
    for row in rows:
        models = {c.published.paper_model(row.encoder, row.head) for c in columns if c.published} - {None}
        row.model = next(iter(models)) if len(models) == 1 else None

    paper: dict[str, list[dict | None]] = {}
    frames: dict[tuple, pd.DataFrame] = {}
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
    published_rows = [Row(PUBLISHED, f"{model} (published)", cells, model=model,
                          overlap=[_published_overlap(c, model, specs[c.benchmark]) for c in columns])
                      for model, cells in paper.items()]

    diff_rows = []
    if diff:
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
                    theirs = _published_cell(_published_frame(column.published, frames), model, column.task) if model else None
                if row.cells[i] is not None and theirs is not None:
                    cells[i] = {"mean": row.cells[i]["mean"] - theirs["mean"], "std": None, "ci_low": None, "ci_high": None}
            if any(cell is not None for cell in cells):
                diff_rows.append(Row(DIFF, f"Δ {row.label} − {row.model or 'published'}", cells,
                                     encoder=row.encoder, head=row.head, model=row.model))
    if diff and not diff_rows:
        notes.append("no difference rows: the paper reports none of these runs' encoders (as released).")
    if versus is not None:
        _add_verdicts(rows, columns, sources, versus, notes)
    return PaperTable(layout, columns, [*rows, *diff_rows, *published_rows], list(dict.fromkeys(sources_text)), notes,
                      frames, versus, recipe_deviations(layout.name) if layout.name in LAYOUTS else None)


def _add_verdicts(rows: list[Row], columns: list[Column], sources: dict, versus: str, notes: list[str]) -> None:
    """Each of our cells against the `versus` encoder's run of the same head and column (its own row gets none)."""
    from cxrbench.results.comparisons import versus_verdicts

    cells, places = [], []
    for r, row in enumerate(rows):
        for i, column in enumerate(columns):
            run, reference = sources.get((row.encoder, row.head, i)), sources.get((versus, row.head, i))
            if column.by_group is None and run is not None and reference is not None and run is not reference:
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


def _published_cell(frame: pd.DataFrame, model: str, task: str) -> dict | None:
    found = frame[(frame["model"] == model) & (frame["task"] == task)]
    return None if found.empty else {"mean": float(found["mean"].iloc[0])}


def table_from_store(layout: TableLayout, out: Path, spec_lookup: Callable[[str], BenchmarkSpec] | None = None,
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
                    spec_lookup: Callable[[str], BenchmarkSpec] | None = None, diff: bool = False,
                    versus: str | None = None) -> PaperTable:
    """The layout's table from these runs (benchmark -> runs), noting the benchmarks that have none."""
    table = build_paper_table(layout, runs, spec_lookup, diff, versus)
    benchmarks = list(dict.fromkeys(group.benchmark for group in layout.groups))
    missing = [name for name in benchmarks if not full_data_runs(runs.get(name, ()))]
    if missing:
        table.notes.append(f"no stored runs of {', '.join(missing)}: those columns show published numbers only.")
    return table


# ---------------------------------------------------------------- formatting

def _best(table: PaperTable) -> list[set[int]]:
    """Per column, the rows (ours and published) whose mean, at the shown precision, is the highest. Runs of a
    variant (random weights, another input size, synthetic data) do not compete: they measure something else."""
    best = []
    for i in range(len(table.columns)):
        values = {r: round(100 * row.cells[i]["mean"], table.layout.decimals)
                  for r, row in enumerate(table.rows) if row.kind != DIFF and not row.variant and row.cells[i] is not None}
        top = max(values.values()) if len(values) > 1 else None
        best.append({r for r, v in values.items() if v == top} if top is not None else set())
    return best


def _parts(row: Row, cell: dict | None, decimals: int, with_ci: bool, column: int) -> tuple[str, str, str] | None:
    """(mean, '± std' or '', '[low, high]' or '') in percent; the mean marked † when the cell is in-distribution and
    ▲ / ▼ / ≈ with its verdict against the --versus encoder."""
    if cell is None or cell.get("mean") is None:
        return None
    if row.kind == DIFF:
        value = 100 * cell["mean"]
        return (f"{'+' if value >= 0 else '−'}{abs(value):.{decimals}f}", "", "")
    std = f"{100 * cell['std']:.{decimals}f}" if cell.get("std") is not None else ""
    ci = ""
    if with_ci and cell.get("ci_low") is not None and cell.get("ci_high") is not None:
        ci = f"[{100 * cell['ci_low']:.{decimals}f}, {100 * cell['ci_high']:.{decimals}f}]"
    marks = (OVERLAP_MARK if row.overlap and row.overlap[column] else "") + (
        VERDICT_MARKS.get(row.verdicts[column], "") if row.verdicts else "")
    if cell.get("small_group"):
        marks += f"{SMALL_GROUP_MARK} (n={cell['small_group']['patients']})"
    return (f"{100 * cell['mean']:.{decimals}f}{marks}", std, ci)


def _plain(parts: tuple[str, str, str] | None, bold: bool = False) -> str:
    if parts is None:
        return MISSING
    mean, std, ci = parts
    text = f"**{mean}**" if bold else mean
    return text + (f" ± {std}" if std else "") + (f" {ci}" if ci else "")


def column_titles(table: PaperTable) -> list[str]:
    """One-line titles: 'group: title' when the table has several column groups."""
    several = len({c.group for c in table.columns}) > 1
    return [f"{c.group}: {c.title}" if several else c.title for c in table.columns]


def display_frame(table: PaperTable, with_ci: bool = True, bold_best: bool = False) -> pd.DataFrame:
    """Rows labelled as in the table, cells as text (bold best per column in Markdown syntax if asked)."""
    best = _best(table) if bold_best else [set()] * len(table.columns)
    data = [[_plain(_parts(row, cell, table.layout.decimals, with_ci, i), r in best[i]) for i, cell in enumerate(row.cells)]
            for r, row in enumerate(table.rows)]
    return pd.DataFrame(data, index=[row.label for row in table.rows], columns=column_titles(table))


def legend(table: PaperTable) -> str:
    spread = "test cases with masks" if table.layout.spread == "cases" else "seeds"
    text = f"Ours: mean ± std over {spread} [95% bootstrap CI] of our stored full-data runs (encoder / head)."
    if table.sources:
        text += f" Published: {'; '.join(table.sources)}."
    if table.of_kind(DIFF):
        text += " Δ rows: our mean minus the published mean."
    if any(any(row.overlap) for row in table.rows):
        text += " " + OVERLAP_LEGEND
    if any(cell and cell.get("small_group") for row in table.rows for cell in row.cells):
        text += (f" {SMALL_GROUP_MARK} (n=K): the worst group has only K test patients, fewer than the benchmark's "
                 "min_group_patients; its value is shown because the paper reports every group, but it is noisy.")
    if table.versus:
        text += (f" {VERDICT_MARKS['better']}/{VERDICT_MARKS['worse']}/{VERDICT_MARKS['not significant']}: better / worse / "
                 f"not significantly different from {table.versus} (paired patient bootstrap on the same test patients, "
                 "Holm-adjusted p < 0.05 over the table's cells).")
    return text


DEVIATIONS_TITLE = "Deviations from the paper"


def deviation_items(deviations: tuple[Deviation, ...] | None, name: str) -> list[tuple[str, str]]:
    """(what, why) for each deviation of table `name`; one item saying so when there is none, or when no recipe
    declares them: a table never shows its numbers without saying how they were made relative to the paper."""
    if deviations is None:
        recipe = (recipes_dir() / f"{name}.yaml").relative_to(project_root())
        return [("not declared", f"no recipe ({recipe}) lists how these runs differ from the paper; read the "
                                 "benchmark's and head's notes before comparing.")]
    if not deviations:
        return [("none", "these runs follow the paper's protocol as published.")]
    return [(d.what, d.why) for d in deviations]


def _markdown_deviations(table: PaperTable) -> list[str]:
    items = deviation_items(table.deviations, table.layout.name)
    return ["", f"## {DEVIATIONS_TITLE}", "", *(f"- **{what}**: {why}" for what, why in items)]


def to_markdown(table: PaperTable, with_ci: bool = True, bold_best: bool = True) -> str:
    frame = display_frame(table, with_ci, bold_best)
    header = [table.layout.model_title, *frame.columns]
    lines = [f"# {table.layout.title}", "", legend(table) + (" Bold: best per column." if bold_best else ""), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, values in zip(frame.index, frame.to_numpy().tolist()):
        lines.append("| " + " | ".join([str(label).replace("|", "\\|"), *(v.replace("|", "\\|") for v in values)]) + " |")
    if table.notes:
        lines += ["", *(f"- {note}" for note in table.notes)]
    lines += _markdown_deviations(table)
    return "\n".join(lines) + "\n"


LONG_COLUMNS = ["layout", "group", "column", "source", "model", "encoder", "variant", "head", "benchmark", "metric", "task",
                "mean", "std", "ci_low", "ci_high", "published_model", "published_mean", "diff", "in_pretraining", "versus",
                "deviations"]


def long_frame(table: PaperTable) -> pd.DataFrame:
    """One row per (row, column) with a value; raw fractions. Our rows carry the matching published mean and the
    difference, and the table's deviations from the paper as JSON (a list of {what, why}; `null`: no recipe declares
    them): one column keeps the long form one row per number, and each number keeps how it was made beside it."""
    paper = {row.model: row.cells for row in table.of_kind(PUBLISHED)}
    deviations = json.dumps(None if table.deviations is None else [dataclasses.asdict(d) for d in table.deviations],
                            ensure_ascii=False)
    records = []
    for row in table.rows:
        if row.kind == DIFF:
            continue
        for i, (column, cell) in enumerate(zip(table.columns, row.cells)):
            if cell is None:
                continue
            record = {"layout": table.layout.name, "group": column.group, "column": column.title,
                      "benchmark": column.benchmark, "metric": column.metric, "task": column.task, **cell,
                      "published_model": None, "published_mean": None, "diff": None,
                      "in_pretraining": ";".join(row.overlap[i]) if row.overlap else "",
                      "versus": row.verdicts[i] if row.verdicts else None}
            if row.kind == OURS:
                model = column.published.paper_model(row.encoder, row.head) if column.published else None
                theirs = paper.get(model, [None] * len(table.columns))[i] if model else None
                if theirs is None and model:
                    theirs = _published_cell(_published_frame(column.published, table.frames), model, column.task)
                record.update(source="cxrbench", model=row.encoder, encoder=row.encoder, variant=variant_text(row.variant),
                              head=row.head, deviations=deviations)
                if theirs is not None:
                    record.update(published_model=model, published_mean=theirs["mean"], diff=cell["mean"] - theirs["mean"])
            else:
                record.update(source=column.published.source if column.published else "published", model=row.model,
                              encoder=None, variant=None, head=None)
            records.append(record)
    return pd.DataFrame(records, columns=LONG_COLUMNS)


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--",
    "✓": r"\checkmark{}", "✗": r"$\times$", "†": r"\textsuperscript{\dag}", "‡": r"\textsuperscript{\ddag}", "▲": r"$^{\blacktriangle}$",
    "▼": r"$^{\blacktriangledown}$", "≈": r"$^{\approx}$", "<": r"\textless{}", ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def _latex_cell(parts: tuple[str, str, str] | None, bold: bool) -> str:
    if parts is None:
        return "--"
    mean, std, ci = (latex_escape(p) for p in parts)
    text = rf"\textbf{{{mean}}}" if bold else mean
    if std:
        text += rf" $\pm$ {std}"
    if ci:
        text += rf" {{\scriptsize {ci}}}"
    return text


def to_latex(table: PaperTable, with_ci: bool = True, bold_best: bool = True) -> str:
    """A booktabs `table` with a two-level header (column groups over column titles); needs \\usepackage{booktabs}."""
    layout, columns = table.layout, table.columns
    width = 1 + len(columns)
    best = _best(table) if bold_best else [set()] * len(columns)
    spans: list[list] = []  # [group title, first column (1-based in the tabular), last]
    for i, column in enumerate(columns, start=2):
        if spans and spans[-1][0] == column.group:
            spans[-1][2] = i
        else:
            spans.append([column.group, i, i])
    caption = legend(table) + (" Bold: best per column." if bold_best else "")
    lines = [
        f"% {latex_escape(layout.title)}",
        "% Written by cxrbench (`cxrbench table`); needs \\usepackage{booktabs} (and amssymb for --versus marks).",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(layout.title)}. {latex_escape(caption)}}}",
        rf"\label{{tab:{re.sub(r'[^A-Za-z0-9:.-]', '-', layout.name)}}}",
        rf"\begin{{tabular}}{{l{'c' * len(columns)}}}",
        r"\toprule",
        " & ".join(["", *(rf"\multicolumn{{{last - first + 1}}}{{c}}{{{latex_escape(title)}}}" for title, first, last in spans)]) + r" \\",
        " ".join(rf"\cmidrule(lr){{{first}-{last}}}" for _, first, last in spans),
        " & ".join([latex_escape(layout.model_title), *(latex_escape(c.title) for c in columns)]) + r" \\",
    ]
    sections = [(OURS, None), (DIFF, None), (PUBLISHED, "Published: " + "; ".join(table.sources) if table.sources else "Published")]
    for kind, heading in sections:
        members = [(r, row) for r, row in enumerate(table.rows) if row.kind == kind]
        if not members:
            continue
        lines.append(r"\midrule")
        if heading:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{latex_escape(heading)}}}}} \\")
        for r, row in members:
            label = row.model if kind == PUBLISHED else row.label
            cells = [_latex_cell(_parts(row, cell, layout.decimals, with_ci, i), r in best[i]) for i, cell in enumerate(row.cells)]
            lines.append(" & ".join([latex_escape(label), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", *_latex_deviations(table), r"\end{table}"]
    return "\n".join(lines) + "\n"


def _latex_deviations(table: PaperTable) -> list[str]:
    """The deviations as a footnote-size block under the tabular, inside the float (a \\footnote does not work in a
    table float); numbered, so that the text may cite them."""
    items = deviation_items(table.deviations, table.layout.name)
    return [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize\raggedright",
            rf"\textit{{{DEVIATIONS_TITLE}.}}\par",
            *(rf"({n})~\textbf{{{latex_escape(what)}}}: {latex_escape(why)}\par"
              for n, (what, why) in enumerate(items, 1)),
            r"\end{minipage}"]


def write_paper_table(table: PaperTable, stem: Path) -> dict[str, Path]:
    """STEM.md, STEM.csv (long form, fractions), STEM.tex, each written atomically."""
    paths = {suffix: stem.with_name(f"{stem.name}.{suffix}") for suffix in ("md", "csv", "tex")}
    atomic_text(paths["md"], to_markdown(table))
    atomic_text(paths["csv"], long_frame(table).to_csv(index=False))
    atomic_text(paths["tex"], to_latex(table))
    return paths


def comparison_latex(spec: BenchmarkSpec, runs: Sequence[StoredRun], metric: str, versus: str | None = None) -> str:
    """The per-benchmark comparison table (`cxrbench table BENCH`) as LaTeX."""
    return to_latex(build_paper_table(benchmark_layout(spec, metric), {spec.name: runs}, lambda name: spec, versus=versus))
