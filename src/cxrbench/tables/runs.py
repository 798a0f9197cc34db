"""Frame tables: one per run (every metric, written as the run's table.md and table.csv), and one per benchmark
comparing stored runs with the paper (`cxrbench table BENCH`, its .md and .csv).

Numbers are shown as `mean ± std [CI low, CI high]` on each metric's display scale (percent for the fractions:
AUPRC, AUROC, accuracies, SMAPE; Pearson's r and MAE as they are); CSVs keep the raw values.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cxrbench.registry import metric_spec
from cxrbench.results.labels import variant_notes, variant_text
from cxrbench.results.store import StoredRun
from cxrbench.specs import BenchmarkSpec
from cxrbench.stats.summary import MACRO
from cxrbench.tables.published import read_published

MACRO_TITLE = "Macro"
NOT_SCORED = "–"  # a metric the target's kind has no use for


def format_entry(entry: dict | None, metric: str = "auprc", with_ci: bool = True) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    spec = metric_spec(metric)

    def shown(value: float) -> str:
        return f"{spec.scale * value:.{spec.decimals}f}"

    text = shown(entry["mean"])
    if entry.get("std") is not None and not pd.isna(entry["std"]):
        text += f" ± {shown(entry['std'])}"
    if with_ci and entry.get("ci_low") is not None:
        text += f" [{shown(entry['ci_low'])}, {shown(entry['ci_high'])}]"
    return text


def run_long_table(metrics: dict, tasks: Sequence[str]) -> pd.DataFrame:
    """variant, metric, task, mean, std, ci_low, ci_high, bootstrap_median, seeds: machine-readable (raw values)."""
    variant = variant_text(variant_notes(str(metrics.get("encoder", "")), metrics.get("run_identity")))
    rows = []
    for metric, entries in metrics["metrics"].items():
        for task in (*tasks, MACRO):
            entry = entries.get(task)
            if entry is None:
                continue
            rows.append(
                {"variant": variant, "metric": metric, "task": task, **{k: entry[k] for k in ("mean", "std", "ci_low", "ci_high", "bootstrap_median")},
                 "seeds": len(entry["per_seed"])}
            )
    return pd.DataFrame(rows)


def run_display_table(metrics: dict, tasks: Sequence[str]) -> pd.DataFrame:
    """Rows metrics, columns tasks + Macro, cells 'mean ± std [CI]' on each metric's scale."""
    data = {
        metric_spec(metric).heading: {
            **{task: format_entry(entries[task], metric) if task in entries else NOT_SCORED for task in tasks},
            MACRO_TITLE: format_entry(entries[MACRO], metric),
        }
        for metric, entries in metrics["metrics"].items()
    }
    return pd.DataFrame.from_dict(data, orient="index")


def bootstrap_caveats(metrics: dict) -> list[str]:
    """A line per metric whose CIs left out resamples where it is undefined (a class missing): those CIs are
    conditional on every class being drawn, and too narrow or shifted when many were left out (a small test set)."""
    resamples = (metrics.get("bootstrap") or {}).get("resamples")
    lines = []
    for metric, entries in metrics["metrics"].items():
        dropped = {task: entry.get("bootstrap_undefined") or 0 for task, entry in entries.items()}
        worst = max(dropped.values(), default=0)
        if worst:
            tasks = ", ".join(MACRO_TITLE if task == MACRO else task for task, n in dropped.items() if n)
            lines.append(f"{metric_spec(metric).title}: up to {worst}{f' of {resamples}' if resamples else ''} bootstrap "
                         f"resamples left the metric undefined (a class missing) and were left out of the CI ({tasks}); "
                         "such CIs are unreliable, more test patients would fix it.")
    return lines


def comparison_table(spec: BenchmarkSpec, runs: Sequence[StoredRun], metric: str) -> pd.DataFrame:
    """Rows: every stored run ('encoder / head'), then the paper's rows for the same encoders."""
    rows: dict[str, dict[str, str]] = {}
    for run in runs:
        entries = run.metrics["metrics"].get(metric)
        if entries is None:
            continue
        rows[run.label] = {
            **{task: format_entry(entries.get(task), metric) for task in spec.result_columns},
            MACRO_TITLE: format_entry(entries.get(MACRO), metric),
        }
    published = spec.published
    if published is not None and published.metric == metric:
        paper = read_published(published)
        wanted = [published.encoders[r.encoder] for r in runs if r.encoder in published.encoders]
        for model in dict.fromkeys(wanted):
            part = paper[paper["model"] == model].set_index("task")
            rows[f"{model} (published)"] = {
                (task if task != MACRO else MACRO_TITLE): format_entry(
                    {"mean": part.loc[task, "mean"], "std": part.loc[task, "std"]} if task in part.index else None,
                    metric, with_ci=False,
                )
                for task in (*spec.result_columns, MACRO)
            }
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*spec.result_columns, MACRO_TITLE])


def comparison_long_table(spec: BenchmarkSpec, runs: Sequence[StoredRun], metric: str) -> pd.DataFrame:
    rows = []
    for run in runs:
        for task, entry in run.metrics["metrics"].get(metric, {}).items():
            rows.append({"source": "cxrbench", "model": run.encoder, "variant": variant_text(run.variant), "head": run.head,
                         "metric": metric, "task": task,
                         "mean": entry["mean"], "std": entry["std"], "ci_low": entry["ci_low"], "ci_high": entry["ci_high"]})
    if spec.published is not None and spec.published.metric == metric:
        for record in read_published(spec.published).to_dict("records"):
            rows.append({"source": spec.published.source, "model": record["model"], "variant": "", "head": "linear", "metric": metric,
                         "task": record["task"], "mean": record["mean"], "std": record["std"], "ci_low": None, "ci_high": None})
    return pd.DataFrame(rows)

