"""How stored runs are laid out as tables (one benchmark, a paper's layout, cells marked against an encoder), shown
here and written beside the runs through the results store (which names every path)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from cxrbench.cli.common import DEFAULT_DEMO_DIR, VALUES
from cxrbench.console import note, print_table, say
from cxrbench.errors import CxrbenchError


def show_layout(name: str, out: Path, diff: bool, versus: Optional[str] = None) -> None:
    from cxrbench.results.store import paper_table_stem
    from cxrbench.tables.markdown import display_frame
    from cxrbench.tables.output import write_paper_table
    from cxrbench.tables.paper import table_from_store
    from cxrbench.tables.recipes import get_layout

    paper_layout = get_layout(name)
    result = table_from_store(paper_layout, out, diff=diff, versus=versus)
    spread = "test cases" if paper_layout.spread == "cases" else "seeds"
    print_table(display_frame(result), f"{paper_layout.title}\nours: mean ± std over {spread} [95% bootstrap CI]",
                paper_layout.model_title)
    for line in result.notes:
        note(line)
    show_deviations(result.deviations, name)
    paths = write_paper_table(result, paper_table_stem(out, f"{name}_vs_{versus}" if versus else name))
    say("tables: " + ", ".join(str(path) for path in paths.values()))


def show_deviations(deviations, name: str) -> None:
    """The table's deviations from the paper (its recipe's), printed beside its plan or its numbers."""
    from cxrbench.tables.model import DEVIATIONS_TITLE, deviation_items

    say(f"{DEVIATIONS_TITLE} ({name}):", "bold")
    for what, why in deviation_items(deviations, name):
        say(f"  - {what}: {why}")


def show_comparison(benchmark: str, out: Path, metric: Optional[str], versus: Optional[str] = None) -> None:
    """Every stored full-data run of `benchmark` against the paper's numbers (or marked against `versus`)."""
    from cxrbench.registry import benchmark_spec, metric_spec
    from cxrbench.results.budgets import full_data_runs
    from cxrbench.results.store import benchmark_table_stem, stored_benchmarks, stored_runs, write_texts
    from cxrbench.tables.markdown import to_markdown
    from cxrbench.tables.output import comparison_latex
    from cxrbench.tables.runs import comparison_long_table, comparison_table

    spec = benchmark_spec(benchmark)
    metric = metric or spec.primary_metric
    metric_spec(metric)  # a registered metric (did-you-mean otherwise)
    runs = full_data_runs(stored_runs(out, benchmark))  # label-budget runs belong to `cxrbench curve`
    if not runs:
        demo_runs = DEFAULT_DEMO_DIR / "results"
        hint = (f" The demo's runs are in {demo_runs}: `cxrbench table {benchmark} --out {demo_runs}`."
                if out != demo_runs and benchmark in stored_benchmarks(demo_runs) else "")
        raise CxrbenchError(f"No stored runs of '{benchmark}' under {out}.{hint} Run `cxrbench run {benchmark} --encoder NAME "
                            f"--out {out}` first.")
    if not any(metric in run.metrics.get("metrics", {}) for run in runs):
        raise CxrbenchError(f"No stored run of '{benchmark}' under {out} has {metric} scores; add them with "
                            f"`cxrbench run {benchmark} ... --metric {metric}`.")
    if versus is not None:
        _show_versus(spec, runs, metric, versus, out)
        return
    frame = comparison_table(spec, runs, metric)
    title = f"{spec.title}: {metric_spec(metric).heading}"
    print_table(frame, f"{title}\n{VALUES}", "model")
    stem = benchmark_table_stem(out, benchmark, metric)
    write_texts(stem, {".md": f"# {title} ({VALUES})\n\n" + to_markdown(frame, "model"),
                       ".csv": comparison_long_table(spec, runs, metric).to_csv(index=False),
                       ".tex": comparison_latex(spec, runs, metric)})
    say(f"tables: {stem}.md, {stem}.csv, {stem}.tex")


def _show_versus(spec, runs: list, metric: str, versus: str, out: Path) -> None:
    """The per-benchmark comparison with each cell marked against `versus` (cxrbench.tables renders the marks)."""
    from cxrbench.results.store import benchmark_table_stem
    from cxrbench.tables.layout import benchmark_layout
    from cxrbench.tables.markdown import display_frame
    from cxrbench.tables.output import write_paper_table
    from cxrbench.tables.paper import build_paper_table

    table = build_paper_table(benchmark_layout(spec, metric), {spec.name: runs}, lambda name: spec, versus=versus)
    print_table(display_frame(table), f"{table.layout.title}\n{VALUES}; ▲ better, ▼ worse, ≈ not significantly "
                f"different from {versus} (paired patient bootstrap, Holm-adjusted p < 0.05)", "model")
    for line in table.notes:
        note(line)
    paths = write_paper_table(table, benchmark_table_stem(out, spec.name, metric, versus))
    say("tables: " + ", ".join(str(path) for path in paths.values()))
