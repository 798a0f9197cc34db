"""`cxrbench compare`: paired comparisons of encoders scored on the same test patients."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app
from cxrbench.cli.common import check_request, names as split_names, user_errors
from cxrbench.console import print_table, say
from cxrbench.errors import CxrbenchError


@app.command(short_help="Paired comparison of encoders on the same test patients (CIs, tests, verdicts).")
@user_errors
def compare(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    encoders: str = typer.Option(..., "--encoders", help="Two or more encoders, comma-separated: the first is the reference."),
    head: Optional[str] = typer.Option(None, help="The head whose runs are compared (default: the benchmark's)."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
    correction: str = typer.Option("holm", help="Multiple-comparison adjustment over every row: holm | bh (Benjamini-Hochberg) | none."),
    test: str = typer.Option("bootstrap", help="The p-value behind the verdicts: bootstrap (paired patient bootstrap) | delong (AUROC) | ttest (over seeds, RayDINO)."),
    ttest: str = typer.Option("independent", help="The t-test over seeds: independent (RayDINO's two populations of seeds) | paired (by seed) | welch."),
    alpha: float = typer.Option(0.05, help="Significance level of the verdicts (on adjusted p-values)."),
    out: Path = o.StoredOut,
) -> None:
    """Paired comparison of encoders scored on the same test patients: the difference to the reference with its
    paired-bootstrap CI, DeLong's test (AUROC), the t-test over seeds, adjusted p-values and a verdict per task;
    writes OUT/BENCHMARK/comparisons/METRIC_vs_REFERENCE.{csv,md}."""
    names = split_names(encoders)
    if len(names) < 2:
        raise CxrbenchError(f"--encoders {encoders}: name at least two encoders (the first is the reference).")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CxrbenchError(f"--encoders {encoders}: {', '.join(repeated)} named more than once; an encoder compared "
                            "with itself tells nothing. Name each encoder once.")
    # encoders: as stored, registered or not; a head as tables name it may carry its tag ('linear [lr-sweep]')
    check_request(benchmark, head=head.split(" [")[0] if head else None, metrics=[metric] if metric else [])
    from cxrbench.registry import benchmark_spec, metric_spec
    from cxrbench.results.comparisons import TEST_NOTES, compare_runs, reference_run
    from cxrbench.results.budgets import full_data_runs
    from cxrbench.results.labels import encoder_label, notes_of
    from cxrbench.results.store import comparison_stem, stored_runs, write_texts
    from cxrbench.tables.markdown import to_markdown

    spec = benchmark_spec(benchmark)
    metric = metric or spec.primary_metric
    metric_spec(metric)
    runs = full_data_runs(stored_runs(out, benchmark))
    method = head or spec.default_head
    chosen = [reference_run(runs, name, method) for name in names]
    frame = compare_runs(chosen[0], chosen[1:], metric, correction, test, ttest, alpha)
    pairs = [f"{encoder_label(e, notes_of(v))} − {encoder_label(r, notes_of(rv))}" for e, v, r, rv
             in zip(frame["encoder"], frame["variant"], frame["reference"], frame["reference_variant"])]
    shown = frame.assign(
        comparison=[f"{pair} · {t}" for pair, t in zip(pairs, frame["target"])],
        difference=[_difference(row, metric) for _, row in frame.iterrows()],
        **{c: [_p(v) for v in frame[c]] for c in ("p_bootstrap", "p_delong", "p_ttest", "p_adjusted")},
    ).set_index("comparison")[["difference", "p_bootstrap", "p_delong", "p_ttest", "p_adjusted", "verdict"]]
    title = (f"{spec.title}: {metric_spec(metric).title}, {method} heads, paired on the same test patients\n"
             f"difference [95% paired-bootstrap CI]; p adjusted by {correction} over {len(frame)} comparisons; verdict from {test}")
    say(title)
    for pair in dict.fromkeys(pairs):  # one short table per compared pair: it fits 80 columns
        rows = [i for i, p in enumerate(pairs) if p == pair]
        terminal = shown.iloc[rows].copy()
        terminal.index = frame["target"].iloc[rows].tolist()
        terminal.columns = ["difference [CI]", "p boot", "p DeLong", "p t", "p adj", "verdict"]
        terminal = terminal.loc[:, (terminal != "–").any()]  # a test that does not apply (DeLong off AUROC) is left out
        print_table(terminal, pair, "target")
    stem = comparison_stem(out, benchmark, metric, names[0])
    notes = "".join(f"- {note}\n" for note in TEST_NOTES)
    write_texts(stem, {".csv": frame.to_csv(index=False),
                       ".md": f"# {title}\n\n" + to_markdown(shown, "comparison") + f"\n\n{notes}"})
    say(f"comparisons: {stem}.csv, {stem}.md")


def _difference(row, metric: str) -> str:
    from cxrbench.registry import metric_spec

    spec = metric_spec(metric)
    if row["diff"] is None or _missing(row["diff"]):
        return "–"
    scale, decimals = spec.scale, spec.decimals
    text = f"{scale * row['diff']:+.{decimals}f}"
    if not _missing(row["ci_low"]) and not _missing(row["ci_high"]):
        text += f" [{scale * row['ci_low']:+.{decimals}f}, {scale * row['ci_high']:+.{decimals}f}]"
    return text


def _p(value) -> str:
    return "–" if value is None or _missing(value) else (f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}")


def _missing(value) -> bool:
    import math

    return value is None or (isinstance(value, float) and math.isnan(value))
