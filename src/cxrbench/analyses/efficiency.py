"""Label efficiency: the same encoder and head trained on less labelled data, as a table and a curve.

A run trained on a label budget lives next to the full-data run of its head:

    OUT/BENCH/ENCODER/HEAD/               full training data       metrics.json "label_budget": null
    OUT/BENCH/ENCODER/HEAD_train-0.1/     10% of the training set  "label_budget": {"train_fraction": 0.1}
    OUT/BENCH/ENCODER/HEAD_shots-4/       4 patients per class     "label_budget": {"shots": 4}

What a run is comes from its metrics.json (`head`, `tag`, `label_budget`), never from the folder's name. Full data
counts as training fraction 1.0. `n_train_images` (an int, or one int per seed) is carried into the table when
metrics.json has it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrbench.errors import CxrbenchError
from cxrbench.registry import metric_spec
from cxrbench.files import atomic_bytes, atomic_text
from cxrbench.results.labels import encoder_label, notes_of, run_label, variant_text
from cxrbench.results.budgets import FRACTION, SHOTS, Budget, run_budget
from cxrbench.results.store import StoredRun, efficiency_files, stored_runs
from cxrbench.specs import BenchmarkSpec
from cxrbench.stats.summary import MACRO
from cxrbench.tables.markdown import to_markdown
from cxrbench.tables.runs import format_entry

LONG_COLUMNS = ["encoder", "variant", "head", "budget_kind", "budget_value", "budget", "full_data", "metric", "task",
                "mean", "std", "ci_low", "ci_high", "seeds", "n_train_images"]


def _n_train(metrics: dict) -> float | None:
    value = metrics.get("n_train_images")
    if isinstance(value, dict):  # one count per seed: report their mean
        counts = [v for v in value.values() if isinstance(v, (int, float))]
        return float(sum(counts) / len(counts)) if counts else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def efficiency_long_table(spec: BenchmarkSpec, runs: Sequence[StoredRun], metric: str) -> pd.DataFrame:
    """One row per (encoder, variant, head, budget, task or macro): raw fractions, sorted by encoder, variant, head,
    budget. `encoder` is the bare name and `variant` how the run differs from the published protocol ('' when it
    does not), as in the other CSV files (`cxrbench.results.labels`)."""
    chosen: dict[tuple[str, str, str, Budget], StoredRun] = {}
    for run in runs:
        budget = run_budget(run)
        if not budget.on_curve:
            continue
        key = (run.encoder, variant_text(run.variant), run.method, budget)  # a random-init run is its own curve
        if key not in chosen or run.metrics.get("label_budget") is None:  # the full-data run wins over an explicit fraction 1
            chosen[key] = run
    rows = []
    for (encoder, variant, head, budget), run in sorted(chosen.items(), key=lambda item: (*item[0][:3], item[0][3].sort_key)):
        entries = run.metrics.get("metrics", {}).get(metric)
        if entries is None:
            continue
        n_train = _n_train(run.metrics)
        for task in (*[t for t in spec.result_columns if t in entries], *[t for t in entries if t not in spec.result_columns and t != MACRO], MACRO):
            entry = entries.get(task)
            if entry is None:
                continue
            rows.append({
                "encoder": encoder, "variant": variant, "head": head, "budget_kind": budget.kind,
                "budget_value": budget.value, "budget": budget.label, "full_data": budget.full, "metric": metric, "task": task,
                **{k: entry.get(k) for k in ("mean", "std", "ci_low", "ci_high")},
                "seeds": len(entry.get("per_seed") or {}), "n_train_images": n_train,
            })
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _notes(record: dict) -> tuple[str, ...]:
    """A row's variant as notes, for the labels people read (a CSV read back has NaN for the published protocol)."""
    variant = record["variant"]
    return notes_of(variant if isinstance(variant, str) else "")


def _budgets(long: pd.DataFrame) -> list[Budget]:
    found = {Budget(k, float(v), bool(f)) for k, v, f in long[["budget_kind", "budget_value", "full_data"]].itertuples(index=False)}
    return sorted(found, key=lambda b: b.sort_key)


def efficiency_display_table(long: pd.DataFrame) -> pd.DataFrame:
    """Rows 'encoder / head', columns budgets (fractions ascending, then shots), cells macro 'mean ± std [CI]' on the
    metric's scale."""
    macro = long[long["task"] == MACRO]
    budgets = _budgets(macro)
    titles = {}
    for budget in budgets:
        part = macro[(macro["budget_kind"] == budget.kind) & (macro["budget_value"] == budget.value)]
        counts = part["n_train_images"].dropna().unique()
        titles[budget] = budget.label + (f" (n={counts[0]:,.0f})" if len(counts) == 1 else "")
    rows: dict[str, dict[str, str]] = {}
    for record in macro.to_dict("records"):
        budget = Budget(record["budget_kind"], float(record["budget_value"]), bool(record["full_data"]))
        entry = {k: None if pd.isna(record[k]) else record[k] for k in ("mean", "std", "ci_low", "ci_high")}
        label = run_label(record["encoder"], record["head"], _notes(record))
        rows.setdefault(label, {})[titles[budget]] = format_entry(entry, record["metric"])
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[titles[b] for b in budgets])
    return frame.fillna("–")


def plot_efficiency(long: pd.DataFrame, title: str, metric: str) -> bytes:
    """PNG bytes: macro `metric` (on its display scale) against training fraction (log axis) and/or shots; one line per encoder/head,
    a shaded 95% bootstrap CI band and seed-std error bars. Full data is drawn as a dashed level in the shots panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    macro = long[long["task"] == MACRO].copy()
    for column in ("mean", "std", "ci_low", "ci_high"):
        macro[column] = pd.to_numeric(macro[column], errors="coerce") * metric_spec(metric).scale
    has_shots = (macro["budget_kind"] == SHOTS).any()
    has_fractions = (~macro["full_data"] & (macro["budget_kind"] == FRACTION)).any()
    panels = [kind for kind, present in ((FRACTION, has_fractions or not has_shots), (SHOTS, has_shots)) if present]
    macro["encoder"] = [encoder_label(record["encoder"], _notes(record)) for record in macro.to_dict("records")]
    lines = list(dict.fromkeys(zip(macro["encoder"], macro["head"])))
    one_head = len({head for _, head in lines}) == 1

    figure = Figure(figsize=(6.4 * len(panels), 4.4), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    colours = [f"C{i % 10}" for i in range(len(lines))]
    for ax, kind in zip(axes, panels):
        ticks: set[float] = set()
        for (encoder, head), colour in zip(lines, colours):
            part = macro[(macro["encoder"] == encoder) & (macro["head"] == head)]
            label = encoder if one_head else f"{encoder} / {head}"
            points = part[part["budget_kind"] == kind].sort_values("budget_value")
            if kind == SHOTS:
                full = part[part["full_data"]]
                if len(full) and pd.notna(full["mean"].iloc[0]):
                    ax.axhline(full["mean"].iloc[0], color=colour, linestyle="--", linewidth=1, alpha=0.7)
            points = points[points["mean"].notna()]
            if points.empty:
                continue
            x = points["budget_value"].to_numpy(dtype=float)
            ticks.update(x.tolist())
            band = points[["ci_low", "ci_high"]].notna().all(axis=1)
            if band.any():
                ax.fill_between(x[band.to_numpy()], points.loc[band, "ci_low"], points.loc[band, "ci_high"],
                                color=colour, alpha=0.18, linewidth=0)
            yerr = points["std"].fillna(0).to_numpy() if points["std"].notna().any() else None
            ax.errorbar(x, points["mean"], yerr=yerr, color=colour, marker="o", markersize=4, capsize=3, label=label)
        if kind == FRACTION:
            ax.set_xscale("log")
            ax.set_xlabel("training fraction (log scale)")
            formatter = FuncFormatter(lambda v, _: f"{100 * v:g}%")
        else:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("patients per class (shots, log scale); dashed: full data")
            formatter = FuncFormatter(lambda v, _: f"{v:g}")
        if ticks:
            ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(formatter)
        ax.set_ylabel(f"macro {metric_spec(metric).heading}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title, fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@dataclass
class EfficiencyResult:
    long: pd.DataFrame
    display: pd.DataFrame
    title: str
    paths: dict[str, Path]
    notes: list[str]


def write_efficiency(spec: BenchmarkSpec, out: Path, metric: str | None = None) -> EfficiencyResult:
    """Collect every stored run of `spec` under `out` and write its efficiency_<metric>.{md,csv,png}
    (`results.store.efficiency_files`)."""
    metric = metric or spec.primary_metric
    metric_spec(metric)  # a registered metric (did-you-mean otherwise)
    runs = stored_runs(out, spec.name)
    if not runs:
        raise CxrbenchError(
            f"No stored runs of '{spec.name}' under {out}. Run `cxrbench run {spec.name} --encoder NAME --out {out}` "
            "with and without a label budget first."
        )
    long = efficiency_long_table(spec, runs, metric)
    if long.empty:
        raise CxrbenchError(f"The stored runs of '{spec.name}' under {out} have no '{metric}' results.")
    notes = []
    if long["full_data"].all():
        notes.append("only full-data runs were found: the curve has a single point per encoder.")
    display = efficiency_display_table(long)
    title = f"{spec.title}: label efficiency, macro {metric_spec(metric).heading}"
    paths = efficiency_files(out, spec.name, metric)
    atomic_text(paths["md"], f"# {title} (mean ± std over seeds [95% bootstrap CI])\n\n" + to_markdown(display, "model"))
    atomic_text(paths["csv"], long.to_csv(index=False))
    atomic_bytes(paths["png"], plot_efficiency(long, title, metric))
    return EfficiencyResult(long, display, title, paths, notes)
