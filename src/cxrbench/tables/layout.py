"""A paper table's layout, declared in its YAML's `layout:` block: column groups, each one benchmark with one or
more metrics, and where the paper's numbers are when the benchmark's own `published:` block does not cover them.

Tasks, their order and the published numbers come from the benchmark's spec (`benchmarks/*.yaml`, `published:`);
a layout only chooses column titles (keyed by task name or by the published CSV column, e.g. `PTX_auprc`) and, per
group and metric, the columns of the table's own published CSV (the YAML's top-level `published:` block): a
benchmark's block holds one metric, and a paper table may print another (RSNA AUROC) or a statistic of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from cxrbench.errors import SpecError
from cxrbench.registry import metric_spec
from cxrbench.specs import BenchmarkSpec, PublishedSpec

ANY_TASK = "*"  # in a group's `published:` columns: the only task of a one-task benchmark
PAPER_HEADS = ("linear", "linear-augmented")  # the papers' tables are linear probes (on cached features, or online)


@dataclass(frozen=True)
class PaperCsv:
    """The table's published CSV (in `results/published/`, beside the tables folder) and how to read its rows; each
    group names the columns it takes from it per metric, which completes a `PublishedSpec`."""

    file: str
    source: str  # the paper and table, printed in the legend
    model_column: str = "model"
    scale: float = 100  # the paper's units over fractions
    encoders: dict[str, str] = field(default_factory=dict)  # ours -> the paper's row name (empty: the benchmark's)
    heads: dict[str, str] = field(default_factory=dict)  # ours -> the paper's decoder, rows "<model> / <decoder>"

    def block(self, metric: str, task_columns: dict[str, str]) -> PublishedSpec:
        return PublishedSpec(file=self.file, source=self.source, model_column=self.model_column, scale=self.scale,
                             metric=metric, task_columns=dict(task_columns), encoders=dict(self.encoders),
                             heads=dict(self.heads))


@dataclass(frozen=True)
class GroupLayout:
    """One column group: a benchmark's tasks (and macro) for each of `metrics`."""

    benchmark: str
    title: str | None = None  # group header; default '<benchmark title> (<METRIC>)'
    metrics: tuple[str, ...] = ()  # default: the benchmark's primary metric
    # task name, published column or (for a macro column) metric name -> column title, in paper order
    titles: dict[str, str] = field(default_factory=dict)
    aggregate: str | None = "Agg."  # title of the macro column; None: no macro column
    per_task: bool = True  # False: the macro column only (e.g. "Lungs", the mean over left and right)
    only: tuple[str, ...] = ()  # the tasks shown, when the paper splits a benchmark's tasks over tables (default all)
    # column title -> member tasks: a column holding the macro over these tasks only, for a paper that averages a
    # chosen subset of a benchmark's targets (RayDINO's catheter positions over three tubes, the "5 class avg." of
    # ChestX-ray14); its published column is keyed by the title (`published: {metric: {TITLE: column}}`)
    macros: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # a statistic over patient groups instead of the metric itself (RAD-DINO Table C.3): (attribute, "case_mean" or
    # "worst"), read from each run's metrics.json (`cxrbench.stats.stratified`; `paper._group_statistic`)
    by_group: tuple[str, str] | None = None
    # metric -> {task ('macro' for the aggregate, '*' for a one-task benchmark's task) -> the table's CSV column}:
    # used when the benchmark's own `published:` block is for another metric
    published: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class TableLayout:
    title: str
    groups: tuple[GroupLayout, ...]
    name: str = ""  # the table's name: its YAML file's (set when loaded), or the benchmark's
    model_title: str = "Model"
    decimals: int = 1
    published_rows: Literal["all", "matching", "none"] = "all"  # matching: the encoders we ran
    heads: tuple[str, ...] = PAPER_HEADS  # the heads that follow the paper's protocol; other rows get a note
    spread: Literal["seeds", "cases"] = "seeds"  # our "± std": over seeds, or over test cases (metrics.json case_std)
    published: PaperCsv | None = None  # the YAML's top-level `published:` block (set when loaded)

    def __post_init__(self) -> None:
        if not self.groups:
            raise SpecError("`groups` is empty: a table needs at least one column group (a benchmark).")
        for group in self.groups:
            if group.published and self.published is None and self.name:
                raise SpecError(f"group '{group.benchmark}' names published columns but the table has no "
                                    "`published:` block (file, source) to read them from.")
            if group.by_group is not None and group.macros:
                raise SpecError(f"group '{group.benchmark}': `macros` and `by_group` cannot be combined (a macro "
                                "over chosen tasks has no per-group statistic); split them into two groups.")
            if group.by_group is not None and group.by_group[1] not in ("case_mean", "worst"):
                raise SpecError(f"group '{group.benchmark}': by_group statistic '{group.by_group[1]}' is "
                                    "neither case_mean nor worst.")

    def published_block(self, group: GroupLayout, metric: str) -> PublishedSpec | None:
        """The table's published numbers for `metric` in `group`; None when the group names no columns for it."""
        columns = group.published.get(metric)
        return None if columns is None or self.published is None else self.published.block(metric, columns)


def benchmark_layout(spec: BenchmarkSpec, metric: str) -> TableLayout:
    """The per-benchmark comparison (`cxrbench table BENCH`): every task by name, macro, the paper's rows we ran."""
    title = metric_spec(metric).title
    return TableLayout(
        name=spec.name, title=f"{spec.title}: {title} (%)", model_title="model", published_rows="matching",
        groups=(GroupLayout(spec.name, title=title, metrics=(metric,), titles={t: t for t in spec.result_columns},
                            aggregate="Macro"),),
    )


def with_name(layout: TableLayout, name: str, published: PaperCsv | None) -> TableLayout:
    """The layout as its YAML file names it, with the table's published CSV (checked again with both set)."""
    return dataclasses.replace(layout, name=name, published=published)
