"""The table model: a paper table's columns and rows, each cell a mapping with the mean, std and CI bounds
(fractions) and its marks (in pretraining data, verdict against a reference encoder, a worst group too small to
trust), with the table's notes, sources and deviations. The renderers (`markdown`, `long_form`, `latex`) read only
this, so that the three files of one table always say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cxrbench.registry import metric_spec
from cxrbench.resources import project_root
from cxrbench.results.overlap import LEGEND as OVERLAP_LEGEND, MARK as OVERLAP_MARK
from cxrbench.specs import PublishedSpec
from cxrbench.tables.layout import TableLayout
from cxrbench.tables.recipes import Deviation, recipes_dir

if TYPE_CHECKING:  # the model is built without pandas; the published frames it caches are pandas'
    import pandas as pd

VERDICT_MARKS = {"better": "▲", "worse": "▼", "not significant": "≈"}  # cxrbench.results.comparisons verdicts
SMALL_GROUP_MARK = "‡"  # a worst-group cell whose group has fewer test patients than min_group_patients
TRANSFER_MARK = "⇢"  # a column of a transfer benchmark: heads trained on one dataset, scored on another
MISSING = "–"
OURS, PUBLISHED, DIFF = "ours", "published", "diff"
DEVIATIONS_TITLE = "Deviations from the paper"


@dataclass(frozen=True)
class Column:
    group: str
    title: str
    benchmark: str
    metric: str
    task: str  # a task name or MACRO
    published: PublishedSpec | None
    by_group: tuple[str, str] | None = None  # (attribute, statistic): GroupLayout.by_group
    members: tuple[str, ...] = ()  # a macro over these tasks only (GroupLayout.macros); `task` is then its title
    transfer: tuple[str, str] | None = None  # (train, test) benchmarks of a transfer benchmark's column


@dataclass
class Row:
    kind: str  # ours | published | diff
    label: str
    cells: list[dict | None]  # per column: mean, std, ci_low, ci_high (fractions); small_group when marked
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
    deviations: tuple[Deviation, ...] | None = None  # the table's YAML's; None: no YAML declares them

    def of_kind(self, kind: str) -> list[Row]:
        return [row for row in self.rows if row.kind == kind]


def best_rows(table: PaperTable) -> list[set[int]]:
    """Per column, the rows (ours and published) whose mean, at the shown precision, is the best (the lowest for a
    metric where lower is better, e.g. FNR). Runs of a variant (random weights, another input size, synthetic data)
    do not compete: they measure something else."""
    best = []
    for i, column in enumerate(table.columns):
        values = {r: round(100 * row.cells[i]["mean"], table.layout.decimals)
                  for r, row in enumerate(table.rows) if row.kind != DIFF and not row.variant and row.cells[i] is not None}
        pick = max if metric_spec(column.metric).higher_is_better else min
        top = pick(values.values()) if len(values) > 1 else None
        best.append({r for r, v in values.items() if v == top} if top is not None else set())
    return best


def cell_parts(row: Row, cell: dict | None, decimals: int, with_ci: bool, column: int) -> tuple[str, str, str] | None:
    """(mean, '± std' or '', '[low, high]' or '') in percent; the mean marked † when the cell is in-distribution and
    ▲ / ▼ / ≈ with its verdict against the --versus encoder: what every renderer of text shows of a cell."""
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


def column_titles(table: PaperTable) -> list[str]:
    """One-line titles: 'group: title' when the table has several column groups."""
    several = len({c.group for c in table.columns}) > 1
    return [f"{c.group}: {c.title}" if several else c.title for c in table.columns]


def legend(table: PaperTable) -> str:
    spread = "test cases with masks" if table.layout.spread == "cases" else "seeds"
    text = f"Ours: mean ± std over {spread} [95% bootstrap CI] of our stored full-data runs (encoder / head)."
    if table.sources:
        text += f" Published: {'; '.join(table.sources)}."
    if table.of_kind(DIFF):
        text += " Δ rows: our mean minus the published mean."
    if any(any(row.overlap) for row in table.rows):
        text += " " + OVERLAP_LEGEND
    for benchmark, (train, test) in transfers(table).items():
        text += f" {TRANSFER_MARK} {benchmark}: heads trained on {train}, scored on {test} (transfer)."
    if any(c.members for c in table.columns):
        text += (" A column over named tasks is the macro of those tasks' metric (mean over seeds of each seed's "
                 "macro; no bootstrap CI).")
    if any(cell and cell.get("small_group") for row in table.rows for cell in row.cells):
        text += (f" {SMALL_GROUP_MARK} (n=K): the worst group has only K test patients, fewer than the benchmark's "
                 "min_group_patients; its value is shown because the paper reports every group, but it is noisy.")
    if table.versus:
        text += (f" {VERDICT_MARKS['better']}/{VERDICT_MARKS['worse']}/{VERDICT_MARKS['not significant']}: better / worse / "
                 f"not significantly different from {table.versus} (paired patient bootstrap on the same test patients, "
                 "Holm-adjusted p < 0.05 over the table's cells).")
    return text


def transfers(table: PaperTable) -> dict[str, tuple[str, str]]:
    """benchmark -> (train, test) for each transfer benchmark among the table's columns, in column order."""
    return {c.benchmark: c.transfer for c in table.columns if c.transfer is not None}


def deviation_items(deviations: tuple[Deviation, ...] | None, name: str) -> list[tuple[str, str]]:
    """(what, why) for each deviation of table `name`; one item saying so when there is none, or when no YAML
    declares them: a table never shows its numbers without saying how they were made relative to the paper."""
    if deviations is None:
        path = recipes_dir() / f"{name}.yaml"
        shown = path.relative_to(project_root()) if path.is_relative_to(project_root()) else path
        return [("not declared", f"no recipe ({shown}) lists how these runs differ from the paper; read the "
                                 "benchmark's and head's notes before comparing.")]
    if not deviations:
        return [("none", "these runs follow the paper's protocol as published.")]
    return [(d.what, d.why) for d in deviations]
