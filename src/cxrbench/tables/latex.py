"""LaTeX: a paper table as a booktabs float, a two-level header (column groups over column titles), sections for
our rows, difference rows and the published rows, and the deviations as a numbered footnote-size block."""

from __future__ import annotations

import re

from cxrbench.tables.model import (
    DEVIATIONS_TITLE, DIFF, OURS, PUBLISHED, PaperTable, best_rows, cell_parts, deviation_items, legend,
)


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "–": "--",
    "✓": r"\checkmark{}", "✗": r"$\times$", "†": r"\textsuperscript{\dag}", "‡": r"\textsuperscript{\ddag}", "▲": r"$^{\blacktriangle}$",
    "▼": r"$^{\blacktriangledown}$", "≈": r"$^{\approx}$", "<": r"\textless{}", ">": r"\textgreater{}",
    "⇢": r"$^{\dashrightarrow}$",  # TRANSFER_MARK (amssymb)
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
    best = best_rows(table) if bold_best else [set()] * len(columns)
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
            cells = [_latex_cell(cell_parts(row, cell, layout.decimals, with_ci, i), r in best[i]) for i, cell in enumerate(row.cells)]
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
