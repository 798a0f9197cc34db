"""Per-task metrics. Point estimates are scikit-learn's own functions; NaN labels are left out.

`weighted_curve_metric` evaluates AUPRC / AUROC for many sample-weight vectors at once (one sort, then
cumulative sums): a bootstrap resample is a vector of integer weights, so 1000 resamples cost about as
much as a few sorts. It equals scikit-learn's `sample_weight` results to 1e-12 (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

METRIC_FUNCTIONS: dict[str, Callable[..., float]] = {
    "auprc": average_precision_score,
    "auroc": roc_auc_score,
}
METRIC_TITLES = {"auprc": "AUPRC", "auroc": "AUROC"}


def metric_names() -> list[str]:
    return list(METRIC_FUNCTIONS)


def task_metric(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """Metric over the rows with a known label; NaN when only one class is present or a labelled row has no score."""
    known = ~np.isnan(labels)
    y, s = labels[known], scores[known]
    if len(np.unique(y)) < 2 or not np.isfinite(s).all():
        return float("nan")
    return float(METRIC_FUNCTIONS[metric](y, s))


def weighted_curve_metric(metric: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`metric` for each row of `weights` ([R, N] non-negative) on fixed labels/scores ([N]); NaN where undefined."""
    known = ~np.isnan(labels)
    labels, scores, weights = labels[known], scores[known], np.atleast_2d(weights)[:, known]
    order = np.argsort(-scores, kind="mergesort")
    scores, labels, weights = scores[order], labels[order].astype(np.float64), weights[:, order].astype(np.float64)
    # last index of each run of tied scores: thresholds are evaluated after whole tie groups
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
    tp = np.cumsum(weights * labels, axis=1)[:, ends]
    fp = np.cumsum(weights * (1.0 - labels), axis=1)[:, ends]
    positives, negatives = tp[:, -1:], fp[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "auprc":
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall_step = np.diff(np.concatenate([np.zeros_like(tp[:, :1]), tp], axis=1), axis=1) / positives
            values = np.sum(recall_step * precision, axis=1)
        elif metric == "auroc":
            tpr = np.concatenate([np.zeros_like(tp[:, :1]), tp], axis=1) / positives
            fpr = np.concatenate([np.zeros_like(fp[:, :1]), fp], axis=1) / negatives
            values = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)
        else:
            raise KeyError(f"No weighted form of metric '{metric}'.")
    undefined = (positives[:, 0] <= 0) | (negatives[:, 0] <= 0)
    return np.where(undefined, np.nan, values)
