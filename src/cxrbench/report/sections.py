"""The report's sections as HTML: paper-layout tables, then per benchmark an overview, paired comparisons, label
efficiency, each stored run (summary table, ROC/PR curves, reliability diagram, overlays) and each explain run.

Numbers come from the stored files through the modules that print them elsewhere (`cxrbench.tables`,
`results.efficiency`), so the page shows what `cxrbench table` and `cxrbench curve` show.
Runs that are not the published setting (random weights, another input size, synthetic data) carry a flag
wherever they appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.errors import CxrbenchError
from cxrbench.report import html
from cxrbench.report.collect import BenchmarkResults, ExplainRun, overlays, result_columns, run_targets
from cxrbench.report.comparisons import read_comparison
from cxrbench.report.curves import RESAMPLES, binary_curves
from cxrbench.report.figures import FigureFolder, curves_figure, forest_plot, referral_figure, reliability_figure
from cxrbench.report.referral import referral_curves
from cxrbench.report.reliability import run_reliability
from cxrbench.results.comparisons import TEST_NOTES
from cxrbench.analyses.efficiency import efficiency_display_table, efficiency_long_table, plot_efficiency
from cxrbench.results.budgets import GROUP, full_data_runs, run_budget
from cxrbench.results.labels import comparable, encoder_label, notes_of, run_label
from cxrbench.results.store import PREDICTIONS, StoredRun
from cxrbench.registry import benchmark_spec, metric_spec
from cxrbench.specs import BenchmarkSpec, BootstrapSpec
from cxrbench.typed_yaml import parse_spec
from cxrbench.stats.summary import MACRO
from cxrbench.tables.layout import TableLayout
from cxrbench.tables.markdown import display_frame
from cxrbench.tables.model import DEVIATIONS_TITLE, PUBLISHED, deviation_items, legend
from cxrbench.tables.paper import table_from_store
from cxrbench.tables.recipes import layouts
from cxrbench.tables.runs import MACRO_TITLE, bootstrap_caveats, comparison_table, run_display_table
from cxrbench.tables.stratified import stratified_frames

FOREST_ROWS = 60  # rows drawn in one forest plot; the table below it lists them all


def benchmark_spec_or_none(name: str) -> BenchmarkSpec | None:
    """The registered spec, or None for a benchmark no longer registered (its runs still show, from their files)."""
    try:
        return benchmark_spec(name)
    except CxrbenchError:
        return None


def _metric(name: str):
    """The registered metric's display settings, or None for one no longer registered (shown raw)."""
    try:
        return metric_spec(name)
    except CxrbenchError:
        return None


# ---------------------------------------------------------------- paper tables

def paper_layouts(benchmarks: Sequence[BenchmarkResults]) -> list[TableLayout]:
    """The layouts with at least one stored full-data run among their benchmarks."""
    stored = {b.name for b in benchmarks if full_data_runs(b.runs)}
    return [layout for layout in layouts().values() if any(g.benchmark in stored for g in layout.groups)]


def paper_table_section(layout: TableLayout, out: Path) -> str:
    table = table_from_store(layout, out)
    classes = ["published" if row.kind == PUBLISHED else "flagged" if not comparable(row.variant) else "" for row in table.rows]
    deviations = html.definitions(deviation_items(table.deviations, layout.name), "deviations")
    return (html.heading(3, layout.title, f"layout-{html.slug(layout.name)}") + html.paragraph(legend(table), "meta") +
            html.table(display_frame(table), layout.model_title, classes) + html.notes(table.notes) +
            html.heading(4, DEVIATIONS_TITLE) + deviations)


# ---------------------------------------------------------------- benchmark overview and comparisons

def overview_section(spec: BenchmarkSpec, runs: Sequence[StoredRun]) -> str:
    """The per-benchmark comparison of `cxrbench table BENCH` on the primary metric (full-data runs)."""
    metric = spec.primary_metric
    full = [run for run in full_data_runs(runs) if metric in run.metrics.get("metrics", {})]
    if not full:
        return ""
    frame = comparison_table(spec, full, metric)
    ours = {run.label: run for run in full}
    classes = ["published" if label not in ours else "flagged" if not comparable(ours[label].variant) else ""
               for label in frame.index]
    heading = metric_spec(metric).heading
    return (html.heading(3, f"Overview: {heading}") +
            html.paragraph(f"Every full-data run on {spec.title}, {heading}: mean ± std over seeds [95% bootstrap CI]; "
                           "the paper's rows (italic) for the same encoders: mean ± std as published.", "meta") +
            html.table(frame, "model", classes))


def comparison_section(path: Path, figures: FigureFolder) -> str:
    """A `cxrbench compare` file: forest plot of the paired differences and the table of its rows."""
    parts = [html.heading(3, f"Paired comparison: {path.stem}")]
    frame = read_comparison(path)
    if frame.empty:
        return "".join(parts) + html.notes([f"{path.name} holds no comparison."])
    metric = str(frame["metric"].iloc[0])
    spec = _metric(metric)
    scale, title = (spec.scale, spec.title) if spec else (1.0, metric)
    unit = "percentage points" if spec and spec.unit == "%" else (spec.unit if spec and spec.unit else "raw value")
    # labelled as the file says the runs were when compared
    reference_labels = [encoder_label(r, notes_of(v)) for r, v in zip(frame["reference"], frame["reference_variant"])]
    several = len(set(reference_labels)) > 1
    names = [f"{run_label(row.encoder, row.head, notes_of(row.variant))}{f' vs {reference}' if several else ''} · "
             f"{MACRO_TITLE if row.target == MACRO else row.target}"
             for row, reference in zip(frame.itertuples(index=False), reference_labels)]
    references = ", ".join(dict.fromkeys(reference_labels))
    corrections = ", ".join(dict.fromkeys(c for c in frame["correction"] if c))
    caption = (f"{title}: encoder minus reference ({references}), point and 95% paired bootstrap CI, in {unit}; "
               f"verdicts after {corrections or 'no'} correction. Green: better, red: worse, grey: not significant.")
    drawn = frame.head(FOREST_ROWS)
    png = forest_plot(drawn, names[:FOREST_ROWS], f"{title}: difference from {references}", f"{title} difference ({unit})", scale)
    alt = (f"Forest plot of {len(drawn)} paired differences in {title} against {references}, one row per encoder and "
           "target, with confidence intervals and a vertical line at zero")
    parts.append(html.figure(figures.save(png, f"forest-{path.stem}"), alt, caption))
    if len(frame) > FOREST_ROWS:
        parts.append(html.notes([f"the plot shows the first {FOREST_ROWS} of {len(frame)} rows; the table lists all."]))
    parts.append(html.table(_comparison_frame(frame, names, reference_labels, scale, spec.decimals if spec else 3), "comparison",
                            [f"verdict-{html.slug(v)}" for v in frame["verdict"]]))
    parts.append(html.notes(list(TEST_NOTES)))
    return "".join(parts)


def _comparison_frame(frame: pd.DataFrame, names: Sequence[str], references: Sequence[str], scale: float,
                      decimals: int) -> pd.DataFrame:
    def shown(value: float) -> str:
        return "–" if pd.isna(value) else f"{scale * value:.{decimals}f}"

    def p_value(value: float) -> str:
        return "–" if pd.isna(value) else f"{value:.3g}"

    rows = {
        "reference": list(references),
        "mean (reference)": [shown(v) for v in frame["mean_reference"]],
        "mean (encoder)": [shown(v) for v in frame["mean_encoder"]],
        "difference [95% CI]": [f"{shown(d)} [{shown(lo)}, {shown(hi)}]"
                                for d, lo, hi in zip(frame["diff"], frame["ci_low"], frame["ci_high"])],
        "p (bootstrap)": [p_value(v) for v in frame["p_bootstrap"]],
        "p (DeLong)": [p_value(v) for v in frame["p_delong"]],
        "p (t-test)": [p_value(v) for v in frame["p_ttest"]],
        "p (adjusted)": [p_value(v) for v in frame["p_adjusted"]],
        "verdict": frame["verdict"].tolist(),
    }
    return pd.DataFrame(rows, index=list(names))


# ---------------------------------------------------------------- label efficiency

def efficiency_section(results: BenchmarkResults, spec: BenchmarkSpec | None, figures: FigureFolder) -> str:
    """The label-efficiency curve of the primary metric, drawn from the stored budget runs, and any efficiency_*.png
    `cxrbench curve` left for other metrics. The results folder is only read: the curve is drawn into the report."""
    parts, drawn = [], None
    if spec is not None and any(run_budget(run).on_curve and not run_budget(run).full for run in results.runs):
        long = efficiency_long_table(spec, results.runs, spec.primary_metric)
        if not long.empty:
            drawn = spec.primary_metric
            heading = metric_spec(drawn).heading
            title = f"{spec.title}: label efficiency, macro {heading}"
            src = figures.save(plot_efficiency(long, title, drawn), f"efficiency-{results.name}-{drawn}")
            alt = (f"Label-efficiency curves of {results.name}: macro {heading} against the training budget, one line per "
                   "encoder and head, with 95% bootstrap bands")
            parts += [html.figure(src, alt, f"{title}: mean ± std over seeds, band: 95% bootstrap CI."),
                      html.table(efficiency_display_table(long), "model")]
    for path in results.efficiency_images:
        metric = path.stem.removeprefix("efficiency_")
        if metric == drawn:
            continue
        src = figures.copy(path, f"efficiency-{results.name}-{metric}")
        parts.append(html.figure(src, f"Label-efficiency curves of {results.name} for {metric}, as `cxrbench curve` drew them",
                                 f"{path.name} (written by `cxrbench curve`)"))
    return html.heading(3, "Label efficiency") + "".join(parts) if parts else ""


#: The bias protocol's Mann-Whitney files the report shows: file suffix, the columns shown (the first indexes the
#: rows), and what the test compares.
BIAS_TESTS = (
    ("tests", ("model", "test_group", "other_group", "same_mean", "other_mean", "p"),
     "Mann-Whitney U (two-sided), folds trained on the tested group against folds trained on another group:"),
    ("models", ("model", "other_model", "train_group", "test_group", "model_mean", "other_mean", "p"),
     "Mann-Whitney U (two-sided), one model's folds against another model's, same training and test group:"),
)


def bias_section(results: BenchmarkResults, figures: FigureFolder) -> str:
    """The bias protocol's figures and Mann-Whitney tests of every attribute with stored bias runs, as `cxrbench bias`
    laid them side by side in the benchmark's folder."""
    parts = []
    for attribute, files in results.bias.items():
        path = files["png"]
        src = figures.copy(path, f"bias-{results.name}-{attribute}")
        parts.append(html.figure(src, f"Box plots of the metric per fold for heads trained on each {attribute} group of "
                                      f"{results.name}, scored on each test group",
                                 f"{path.name} (written by `cxrbench bias --attribute {attribute}`): one box per training "
                                 "group within each test group, every fold a point."))
        for suffix, columns, caption in BIAS_TESTS:
            tests = files[suffix]
            if not tests.is_file():
                continue
            frame = pd.read_csv(tests)
            missing = [c for c in columns if c not in frame]
            if missing:  # a hand-edited or older file: said, not a KeyError that ends the report
                parts.append(html.notes([f"{tests.name} lacks the column(s) {', '.join(missing)}: not shown; run "
                                         f"`cxrbench bias --attribute {attribute}` again to rewrite it."]))
                continue
            shown = frame[list(columns)].round({c: 4 for c in columns if c.endswith("_mean")}).assign(
                p=frame["p"].map(lambda v: f"{v:.2g}"))
            parts.append(html.paragraph(caption, "meta"))
            parts.append(html.table(shown.set_index(columns[0]), columns[0]))
    return html.heading(3, "Bias by patient group") + "".join(parts) if parts else ""


# ---------------------------------------------------------------- runs

def run_title(run: StoredRun) -> str:
    """'encoder (variant) / head', with the label budget of a label-efficiency run (its head is the full run's)."""
    budget = run_budget(run)
    if budget.kind == GROUP:
        group = run.metrics["label_budget"]["train_group"]
        return run.label + f" · trained on {group['attribute']} group {group['group']}"
    return run.label + ("" if budget.full else f" · {budget.label} of the training labels")


def run_section(run: StoredRun, out: Path, figures: FigureFolder) -> str:
    parts = [html.heading(3, run_title(run), flags=run.variant), html.paragraph(_run_meta(run, out), "meta")]
    targets = run_targets(run)
    parts.append(html.table(run_display_table(run.metrics, result_columns(run, targets)), "metric"))
    parts.append(html.notes(bootstrap_caveats(run.metrics)))
    if run.metrics.get("stratified"):
        parts.append(html.paragraph(f"By patient group (macro; groups under {run.metrics['stratified']['min_group_patients']} "
                                    "test patients are not reported):", "meta"))
        for title, frame, line in stratified_frames(run.metrics):
            parts += [html.paragraph(title, "meta"), html.table(frame, "group"), html.notes([line] if line else [])]
    predictions_path = run.folder / PREDICTIONS
    if predictions_path.is_file() and any(t.target_kind.calibrated for t in targets):  # not a segmentation run's
        predictions = run.predictions()
        parts.append(_curves(run, predictions, targets, figures))
        parts.append(_reliability(run, predictions, targets, figures))
    parts.append(_referral(run, figures))
    pictures = [html.figure(figures.copy(path, f"overlay-{run.encoder}-{path.stem}"),
                            f"Segmentation overlay of {run.label} on test image {path.stem}: reference and predicted outlines",
                            path.stem)
                for path in overlays(run)]
    if pictures:
        parts.append(html.paragraph("Overlays (first seed): each structure in its own colour, reference outlines solid, predicted dashed (legend under each image).", "meta"))
        parts.append(html.gallery(pictures))
    return "".join(parts)


def _run_meta(run: StoredRun, out: Path) -> str:
    metrics = run.metrics
    seeds = metrics.get("seeds") or []
    images = sorted(set((metrics.get("n_test_images") or {}).values()))
    boot = metrics.get("bootstrap") or {}
    items = [f"folder {run.folder.relative_to(out)}"]
    if seeds:
        items.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
    if images:
        items.append(f"{' / '.join(f'{n:,}' for n in images)} test images")
    if boot:
        items.append(f"bootstrap: {boot.get('resamples')} resamples by {boot.get('unit')}")
    return "; ".join(items)


def _bootstrap(run: StoredRun) -> BootstrapSpec:
    stored = run.metrics.get("bootstrap")
    try:
        return parse_spec(BootstrapSpec, dict(stored), "metrics.json bootstrap") if isinstance(stored, dict) else BootstrapSpec()
    except CxrbenchError:
        return BootstrapSpec()


def _curves(run: StoredRun, predictions: pd.DataFrame, targets, figures: FigureFolder) -> str:
    bootstrap = _bootstrap(run)
    curves = binary_curves(predictions, targets, bootstrap, RESAMPLES)
    if not curves:
        return ""
    confidence = f"{100 * bootstrap.confidence:g}%"
    title = f"{run.label}: ROC and precision-recall curves"
    caption = (f"Seed-mean curves; band: pointwise {confidence} bootstrap interval over {RESAMPLES} {bootstrap.unit} "
               "resamples of the test set, the same resamples for every seed. Dotted: chance (ROC diagonal; PR at the "
               "prevalence).")
    alt = (f"ROC and precision-recall curves of {run.label}, one pair of panels per binary target "
           f"({', '.join(c.target for c in curves)}), each with a {confidence} bootstrap band")
    short = [f"{c.target}: only {c.resamples} of {RESAMPLES} resamples drew both classes; its band rests on those."
             for c in curves if c.resamples < RESAMPLES]
    return (html.figure(figures.save(curves_figure(curves, title), f"curves-{run.encoder}-{run.method}"), alt, caption)
            + html.notes(short))


def _reliability(run: StoredRun, predictions: pd.DataFrame, targets, figures: FigureFolder) -> str:
    items = run_reliability(predictions, targets)
    if not items:
        return ""
    title = f"{run.label}: reliability"
    caption = ("Test predictions of all seeds pooled; equal-width bins (marker area: rows in the bin); dotted: perfect "
               "calibration. ECE: expected calibration error of the pooled rows (binary: positive-class probability; "
               "multiclass: top-label confidence).")
    alt = (f"Reliability diagrams of {run.label}: observed frequency against predicted probability for "
           f"{', '.join(f'{i.target} (ECE {i.ece:.3f})' for i in items)}")
    return html.figure(figures.save(reliability_figure(items, title), f"reliability-{run.encoder}-{run.method}"), alt, caption)


def _referral(run: StoredRun, figures: FigureFolder) -> str:
    curves = referral_curves(run.metrics)
    if not curves:
        return ""
    caption = ("Selective prediction: AUROC after the most uncertain test predictions (probability closest to 0.5) are "
               "referred to an expert who answers correctly; seed means, band: bootstrap interval of the macro average.")
    alt = f"Referral curve of {run.label}: AUROC against the share of predictions referred, per target and macro"
    return html.figure(figures.save(referral_figure(curves, f"{run.label}: referral"), f"referral-{run.encoder}-{run.method}"),
                       alt, caption)


# ---------------------------------------------------------------- explain

def explain_section(explain: ExplainRun, figures: FigureFolder) -> str:
    """RayDINO-style localisation: macro accuracy, per finding, and a few attention heatmaps."""
    summary = explain.summary
    macro = summary.get("macro_accuracy") or {}
    parts = [html.heading(3, f"{run_label(explain.encoder, summary.get('head', 'attentive'), explain.variant)}: explainability",
                          flags=explain.variant)]
    parts.append(html.paragraph(
        f"Macro localisation accuracy (argmax patch inside a radiologist box): {_percent(macro)} "
        f"over {len(summary.get('seeds') or [])} seeds; {summary.get('n_images_with_boxes', '?')} test images with boxes.",
        "meta"))
    findings = summary.get("findings") or {}
    if findings:
        frame = pd.DataFrame.from_dict(
            {name: {"boxes": entry.get("boxes"), "images": entry.get("images"),
                    "accuracy (%)": _percent({"mean": entry.get("accuracy_mean"), "std": entry.get("accuracy_std")})}
             for name, entry in findings.items()}, orient="index")
        parts.append(html.table(frame, "finding"))
    pictures = [html.figure(figures.copy(path, f"heatmap-{explain.encoder}-{path.parent.name}"),
                            f"Attention heatmap of {explain.encoder} for {path.parent.name} on test image {path.stem}, "
                            "with the radiologist boxes and the argmax patch", f"{path.parent.name}: {path.stem}")
                for path in explain.heatmaps]
    if pictures:
        parts.append(html.gallery(pictures))
    return "".join(parts)


def _percent(entry: dict) -> str:
    def value(key: str) -> float | None:
        number = entry.get(key)
        return float(number) if isinstance(number, (int, float)) and np.isfinite(number) else None

    mean, std, low, high = (value(k) for k in ("mean", "std", "ci_low", "ci_high"))
    if mean is None:
        return "n/a"
    text = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")
    return text + (f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None and high is not None else "")
