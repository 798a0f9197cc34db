"""A paper table's three files, and the per-benchmark comparison's LaTeX (its Markdown and CSV are
`runs.comparison_table` and `runs.comparison_long_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cxrbench.files import atomic_text
from cxrbench.results.store import StoredRun
from cxrbench.specs import BenchmarkSpec
from cxrbench.tables.latex import to_latex
from cxrbench.tables.layout import benchmark_layout
from cxrbench.tables.long_form import long_frame
from cxrbench.tables.markdown import paper_markdown
from cxrbench.tables.model import PaperTable
from cxrbench.tables.paper import build_paper_table


def write_paper_table(table: PaperTable, stem: Path) -> dict[str, Path]:
    """STEM.md, STEM.csv (long form, fractions), STEM.tex, each written atomically."""
    paths = {suffix: stem.with_name(f"{stem.name}.{suffix}") for suffix in ("md", "csv", "tex")}
    for suffix, text in rendered(table).items():
        atomic_text(paths[suffix], text)
    return paths


def rendered(table: PaperTable) -> dict[str, str]:
    """{'md', 'csv', 'tex'}: the table's three renderings, as `write_paper_table` writes them."""
    return {"md": paper_markdown(table), "csv": long_frame(table).to_csv(index=False), "tex": to_latex(table)}


def comparison_latex(spec: BenchmarkSpec, runs: Sequence[StoredRun], metric: str, versus: str | None = None) -> str:
    """The per-benchmark comparison table (`cxrbench table BENCH`) as LaTeX."""
    return to_latex(build_paper_table(benchmark_layout(spec, metric), {spec.name: runs}, lambda name: spec, versus=versus))
