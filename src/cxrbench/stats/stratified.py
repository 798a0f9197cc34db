"""Stratified reporting: a run's metrics per patient group, with the average, the worst group and the gap.

For every attribute of the benchmark's `groups:` (sex, age group, ethnicity, ...), the test predictions are split
by the group column written beside them (`cxrbench.data.groups`) and each group is summarised as the whole run is
(`stats.summary.summarize`: value per seed, mean, std, and a bootstrap CI that resamples the group's own patients).
A group with fewer test patients than the benchmark's `min_group_patients` (in any seed) is flagged `too_small`: run
tables show it as too small (a CI over a handful of patients is noise that reads like evidence) and it stays out of
the summary below, but its metrics are kept, so that a paper layout that reports every group (RAD-DINO Table C.3's
worst group) can show its number with its patient count and a mark instead of letting it vanish.

Over the groups large enough to report, per metric and target: `group_mean` (the unweighted mean of the group
means), `worst` and `worst_group` (the lowest mean, or the highest for a lower-is-better metric), `best` and `gap`
(best - worst, in the metric's direction: always >= 0). The group mean is not Table C.3's "avg": that is the mean
over test cases (it equals the paper's Table 3 overall values), i.e. the run's own top-line metric.

Underdiagnosis (binary targets): each seed's threshold, chosen on its validation split (`stats.thresholds`), turns
test scores into calls; fairlearn's `MetricFrame` gives the false-negative rate per group, averaged over seeds, and
the gap between the highest and lowest group rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from cxrbench.data.groups import group_column, group_order
from cxrbench.metrics.points import PointMetric
from cxrbench.registry import metric as registered_metric
from cxrbench.specs import BenchmarkSpec, BootstrapSpec, TargetSpec
from cxrbench.stats.summary import MACRO, summarize

FNR = "false_negative_rate"


def stratify(predictions: pd.DataFrame, spec: BenchmarkSpec, targets: Sequence[TargetSpec],
             metrics_for: Callable[[TargetSpec], Sequence[str]], bootstrap: BootstrapSpec,
             thresholds: Mapping | None = None) -> dict:
    """metrics.json's `stratified` block for one run: `predictions` carry a `group:<attribute>` column per attribute
    of `spec.groups` (missing columns are skipped); `bootstrap`: the run's settings; `thresholds`: {seed: {task:
    threshold or None}}."""
    attributes = {}
    for attribute, group in spec.groups.items():
        column = group_column(attribute)
        if column not in predictions:
            continue
        labels = predictions[column]
        seeds = sorted(predictions["seed"].unique().tolist())
        groups = [_group(predictions[labels.eq(name).to_numpy()], name, seeds, spec.min_group_patients, targets,
                         metrics_for, bootstrap) for name in group_order(labels, group)]
        unknown = predictions[labels.isna().to_numpy()]
        attributes[attribute] = {
            "column": group.column,
            "groups": groups,
            "unknown": {"images": int(unknown["image_id"].nunique()), "patients": int(unknown["patient_id"].nunique())},
            "summary": _summary(groups, targets, metrics_for),
            "underdiagnosis": _underdiagnosis(predictions, column, groups, targets, thresholds or {}),
        }
    return {"min_group_patients": spec.min_group_patients, "operating_point": spec.operating_point,
            "attributes": attributes}


def _group(rows: pd.DataFrame, name: str, seeds: list, min_patients: int, targets: Sequence[TargetSpec],
           metrics_for: Callable[[TargetSpec], Sequence[str]], bootstrap: BootstrapSpec) -> dict:
    """One group's counts and metrics, flagged `too_small` when it has fewer than `min_patients` test patients in
    some seed (a seed whose test split has none of the group counts as zero: cross-validation folds test different
    patients)."""
    per_seed = rows.groupby("seed")["patient_id"].nunique().reindex(seeds, fill_value=0)
    patients = int(per_seed.min()) if len(per_seed) else 0
    entry = {"group": name, "images": int(rows["image_id"].nunique()), "patients": patients,
             "too_small": patients < min_patients}
    if len(rows):
        entry["metrics"] = summarize(rows, targets, metrics_for, bootstrap)
    return entry


def _summary(groups: list[dict], targets: Sequence[TargetSpec], metrics_for) -> dict:
    """Per metric and target (and macro): mean of the group means, worst and best group over the groups reported."""
    reported = [g for g in groups if not g["too_small"]]
    names = list(dict.fromkeys(name for t in targets for name in metrics_for(t)))
    out: dict = {}
    stored = dict.fromkeys(key for g in groups for key in g.get("metrics", {}))
    for name in [key for name in names for key in _points_of(name, stored)]:
        higher = registered_metric(name).higher_is_better
        columns = [t.name for t in targets if name in metrics_for(t) or "@" in name] + [MACRO]
        out[name] = {}
        for column in columns:
            means = {g["group"]: g["metrics"][name][column]["mean"] for g in reported if column in g["metrics"].get(name, {})}
            means = {k: v for k, v in means.items() if v is not None}
            if not means:
                continue
            order = sorted(means, key=means.get, reverse=higher)  # best first
            best, worst = order[0], order[-1]
            out[name][column] = {"group_mean": float(np.mean(list(means.values()))), "worst": means[worst],
                                 "worst_group": worst, "best": means[best], "best_group": best,
                                 "gap": abs(means[best] - means[worst]), "groups": len(means)}
    return out


def _points_of(name: str, stored: dict) -> list[str]:
    """The summary keys of a metric: the name itself, or for a metric read at points the NAME@POINT keys the groups'
    summaries hold (none for a point they could not score: a per-group summary has no validation thresholds)."""
    if not isinstance(registered_metric(name), PointMetric):
        return [name]
    return [key for key in stored if key == name or key.partition("@")[0] == name]


def _underdiagnosis(predictions: pd.DataFrame, column: str, groups: list[dict], targets: Sequence[TargetSpec],
                    thresholds: Mapping) -> dict:
    """Per binary target (and macro over them): each reported group's false-negative rate at the seed's validation
    threshold, averaged over seeds, and the gap between the highest and the lowest; {} without thresholds."""
    binary = [t.name for t in targets if t.target_kind.thresholded]
    reported = [g["group"] for g in groups if not g["too_small"]]
    if not binary or not reported or not thresholds:
        return {}
    from fairlearn.metrics import MetricFrame, false_negative_rate

    rates: dict[str, dict[str, list[float]]] = {task: {g: [] for g in reported} for task in binary}
    for seed, rows in predictions[predictions[column].isin(reported)].groupby("seed"):
        chosen = thresholds.get(seed, thresholds.get(str(seed), {}))
        for task in binary:
            threshold = chosen.get(task)
            part = rows[(rows["task"] == task) & rows["label"].notna()]
            if threshold is None or part.empty:
                continue
            frame = MetricFrame(metrics=false_negative_rate, y_true=part["label"].to_numpy(dtype=np.int64),
                                y_pred=(part["score"].to_numpy() >= threshold).astype(np.int64),
                                sensitive_features=part[column].to_numpy())
            for name, value in frame.by_group.items():
                if np.isfinite(value):
                    rates[task][name].append(float(value))
    out = {}
    for task, per_group in rates.items():
        means = {g: float(np.mean(v)) for g, v in per_group.items() if v}
        if means:
            out[task] = {"groups": means, "worst_group": max(means, key=means.get),
                         "gap": max(means.values()) - min(means.values())}
    tasks = [t for t in out]
    common = [g for g in reported if all(g in out[t]["groups"] for t in tasks)]
    if tasks and common:
        macro = {g: float(np.mean([out[t]["groups"][g] for t in tasks])) for g in common}
        out[MACRO] = {"groups": macro, "worst_group": max(macro, key=macro.get), "gap": max(macro.values()) - min(macro.values())}
    return out
