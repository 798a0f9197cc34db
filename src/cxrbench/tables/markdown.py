"""Markdown: one pipe-table writer (`grid`) for every table cxrbench writes, a frame's (`to_markdown`: run tables,
per-benchmark comparisons, curves, bias) and a paper table's (`paper_markdown`: title, legend, bold best per column,
notes and the deviations section)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cxrbench.tables.model import (
    DEVIATIONS_TITLE, MISSING, PaperTable, best_rows, cell_parts, column_titles, deviation_items, legend,
)


def grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A pipe table's lines: the header, its rule, a line per row (cells as given, already text)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def to_markdown(frame: pd.DataFrame, index_title: str = "") -> str:
    """A frame as a pipe table, its index as the first column titled `index_title`."""
    rows = [[str(index), *map(str, row.tolist())] for index, row in frame.iterrows()]
    return "\n".join(grid([index_title, *map(str, frame.columns)], rows)) + "\n"


def _plain(parts: tuple[str, str, str] | None, bold: bool = False) -> str:
    if parts is None:
        return MISSING
    mean, std, ci = parts
    text = f"**{mean}**" if bold else mean
    return text + (f" ± {std}" if std else "") + (f" {ci}" if ci else "")


def display_frame(table: PaperTable, with_ci: bool = True, bold_best: bool = False) -> pd.DataFrame:
    """Rows labelled as in the table, cells as text (bold best per column in Markdown syntax if asked): what the
    terminal, the report and the Markdown file show."""
    best = best_rows(table) if bold_best else [set()] * len(table.columns)
    data = [[_plain(cell_parts(row, cell, table.layout.decimals, with_ci, i), r in best[i]) for i, cell in enumerate(row.cells)]
            for r, row in enumerate(table.rows)]
    return pd.DataFrame(data, index=[row.label for row in table.rows], columns=column_titles(table))


def paper_markdown(table: PaperTable, with_ci: bool = True, bold_best: bool = True) -> str:
    frame = display_frame(table, with_ci, bold_best)
    rows = [[str(label).replace("|", "\\|"), *(v.replace("|", "\\|") for v in values)]
            for label, values in zip(frame.index, frame.to_numpy().tolist())]
    lines = [f"# {table.layout.title}", "", legend(table) + (" Bold: best per column." if bold_best else ""), "",
             *grid([table.layout.model_title, *frame.columns], rows)]
    if table.notes:
        lines += ["", *(f"- {note}" for note in table.notes)]
    items = deviation_items(table.deviations, table.layout.name)
    lines += ["", f"## {DEVIATIONS_TITLE}", "", *(f"- **{what}**: {why}" for what, why in items)]
    return "\n".join(lines) + "\n"
