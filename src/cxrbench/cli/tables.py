"""`cxrbench table`, `curve`, `report` and `results validate`: what is made of stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app, results_app
from cxrbench.cli.common import VALUES, check_request, user_errors
from cxrbench.cli.show_tables import show_comparison, show_layout
from cxrbench.console import error, note, print_table, progress_display, say
from cxrbench.errors import CxrbenchError


@app.command(short_help="Stored runs of a benchmark beside the paper's numbers, or a paper table's layout.")
@user_errors
def table(
    benchmark: Optional[str] = typer.Argument(None, help="Benchmark name, or a paper table's (as --layout NAME)."),
    out: Path = o.StoredOut,
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
    layout: Optional[str] = typer.Option(None, help="A paper table's layout instead of one benchmark (`cxrbench list tables`); writes OUT/tables/LAYOUT.{md,csv,tex}."),
    diff: bool = typer.Option(False, "--diff", help="With --layout: add rows 'ours − published mean' for encoders the paper reports."),
    versus: Optional[str] = typer.Option(None, "--versus", help="Mark each cell better / worse / not significantly different from this encoder's run of the same head (paired patient bootstrap, Holm-adjusted); files get _vs_ENCODER."),
    all_layouts: bool = typer.Option(False, "--all", help="Every paper layout that has stored runs under OUT: writes OUT/tables/LAYOUT.{md,csv,tex}."),
    check: bool = typer.Option(False, "--check", help="With --all: write nothing; recompute every run's metrics from its predictions and every table from the runs, and fail on any difference from OUT/tables/ (CI)."),
) -> None:
    """Compare every stored run of BENCHMARK (rows encoders, columns tasks) with the paper's numbers, or lay
    out several benchmarks as a paper's table (--layout), or every layout (--all)."""
    from cxrbench.tables.recipes import recipe_names

    if benchmark in recipe_names() and layout is None and metric is None:  # `cxrbench table NAME` of a paper table
        benchmark, layout = None, benchmark
    check_request(benchmark, metrics=[metric] if metric else [])
    if check and not all_layouts:
        raise CxrbenchError("--check compares every committed table: give --all --check.")
    if all_layouts:
        if benchmark is not None or metric is not None or layout is not None or versus is not None:
            raise CxrbenchError("--all writes every paper layout: give no BENCHMARK, --metric, --layout or --versus with it.")
        _all_layouts(out, check)
        return
    if layout is not None:
        if benchmark is not None or metric is not None:
            raise CxrbenchError("--layout fixes the benchmarks and metrics: give either BENCHMARK [--metric M] or --layout NAME.")
        show_layout(layout, out, diff, versus)
        return
    if benchmark is None:
        raise CxrbenchError(f"Give a BENCHMARK (e.g. `cxrbench table vindr`) or --layout NAME ({' | '.join(recipe_names())}).")
    show_comparison(benchmark, out, metric, versus)


def _all_layouts(out: Path, check: bool) -> None:
    from cxrbench.analyses.check import check_committed, layout_tables
    from cxrbench.results.store import paper_table_stem, tables_folder
    from cxrbench.tables.output import write_paper_table

    if check:
        report = check_committed(out)
        for problem in report.problems:
            error(problem)
        if report.problems:
            raise CxrbenchError(f"{len(report.problems)} difference(s) between the committed tables under {tables_folder(out)} "
                                "and the stored predictions. Regenerate with `cxrbench table --all` (after checking why).")
        say(f"ok: {report.runs} runs' metrics recomputed from their predictions and {report.tables} tables regenerated "
            f"match {tables_folder(out)}")
        return
    tables = layout_tables(out)
    if not tables:
        raise CxrbenchError(f"No stored run under {out} belongs to a paper layout. Run `cxrbench reproduce TABLE` first.")
    for name, paper_table in tables.items():
        paths = write_paper_table(paper_table, paper_table_stem(out, name))
        say(f"{name}: " + ", ".join(str(path) for path in paths.values()))


@app.command(short_help="Label efficiency: a metric against the training budget, from stored runs.")
@user_errors
def curve(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    out: Path = o.StoredOut,
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
) -> None:
    """Label efficiency: macro METRIC of every encoder/head against its training budget (fraction or shots), from
    the stored runs HEAD/, HEAD_train-F/ and HEAD_shots-N/; writes OUT/BENCHMARK/efficiency_METRIC.{md,csv,png}."""
    check_request(benchmark, metrics=[metric] if metric else [])
    from cxrbench.registry import benchmark_spec
    from cxrbench.analyses.efficiency import write_efficiency

    result = write_efficiency(benchmark_spec(benchmark), out, metric)
    print_table(result.display, f"{result.title}\n{VALUES}", "model")
    for line in result.notes:
        note(line)
    say("label efficiency: " + ", ".join(str(path) for path in result.paths.values()))


@app.command(short_help="A static HTML report of everything stored under OUT.")
@user_errors
def report(
    out: Path = o.StoredOut,
    dest: Optional[Path] = typer.Option(None, help="Report folder (default OUT/report); an existing report there is replaced."),
) -> None:
    """A static HTML report of everything stored under OUT (tables with CIs, paper layouts, paired comparisons,
    ROC / PR curves with bootstrap bands, reliability diagrams, label efficiency, explain heatmaps, overlays):
    open DEST/index.html, no server needed."""
    from cxrbench.report import write_report
    from cxrbench.results.store import report_folder

    with progress_display() as progress:
        index = write_report(out, dest or report_folder(out), progress)
    say(f"report: {index}")


@results_app.command("validate")
@user_errors
def results_validate(path: Path = typer.Argument(..., help="A run folder, or a results folder holding runs.")) -> None:
    """Check run folders against the metrics.json schema (src/cxrbench/results/metrics.schema.json) and the
    consistency of their predictions and splits; a non-zero exit when any is invalid."""
    from cxrbench.results.schema import find_runs, validate_run

    runs = find_runs(path)
    if not runs:
        raise CxrbenchError(f"No run (a folder holding metrics.json) under {path}.")
    invalid = 0
    for folder in runs:
        problems = validate_run(folder)
        invalid += bool(problems)
        for problem in problems:
            error(f"{folder}: {problem}")
    if invalid:
        raise CxrbenchError(f"{invalid} of {len(runs)} run(s) under {path} are invalid (above).")
    say(f"ok: {len(runs)} run(s) under {path} match the results schema")
