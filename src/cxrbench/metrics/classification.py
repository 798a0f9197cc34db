"""Classification metrics: AUPRC, AUROC, one-vs-rest AUROC, accuracy and balanced accuracy.

Point estimates are scikit-learn's functions. The weighted forms evaluate many bootstrap resamples at once: one
sort of the scores, then sums of the resample weights per group of tied scores that holds a positive (AUPRC, AUROC,
`curve_tallies`), or weighted counts (accuracies). Each equals scikit-learn's `sample_weight` result to 1e-12
(tests/test_metrics.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cxrbench.metrics.base import Metric


def both_classes(labels: np.ndarray) -> bool:
    return len(np.unique(labels)) == 2


def weighted_curve(metric: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUPRC or AUROC of binary `labels` / `scores` [N] for each row of `weights` [R, N]; NaN where a resample
    lacks a class. Thresholds are evaluated after whole groups of tied scores, as scikit-learn does.

    Both areas need, for each group of tied scores that holds a positive (g, in descending score order), only the
    sums of weights that `CurveTallies` holds:

        AUPRC = sum_g positives_g * TP_g / (TP_g + FP_g) / P
        AUROC = sum_g positives_g * (N - FP_g + tied_g / 2) / (P * N)   (Mann-Whitney: a tied pair counts 1/2)

    which are scikit-learn's step-wise precision-recall sum and trapezoidal ROC area. Weights may come images-major
    (`weights.T` C-ordered, as the bootstrap lays them out): the rows are then summed a contiguous row at a time.
    """
    tallies = curve_tallies(labels, scores, np.atleast_2d(weights).T)
    positive, negative = tallies.positive_total, tallies.negative_total
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "auprc":
            reached = tallies.true_positives + tallies.false_positives
            # nothing weighed at or above a group: its positives weigh nothing either, and its 0 / 0 precision counts 0
            np.maximum(reached, 1 if reached.dtype.kind == "i" else np.finfo(np.float64).tiny, out=reached)
            precision = np.divide(tallies.true_positives, reached, dtype=np.float64)
            values = _dot(tallies.positives, precision) / positive
        else:
            below = positive * negative - _dot(tallies.positives, tallies.false_positives)
            if tallies.tied is not None:
                below += 0.5 * _dot(tallies.positives, tallies.tied)
            values = below / (positive * negative)
    return np.where((positive <= 0) | (negative <= 0), np.nan, values)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[R] column-wise dot products of two [G, R] arrays, summed in float64 (exact for integer sums below 2**53)."""
    return np.einsum("gr,gr->r", a, b, dtype=np.float64)


class CurveTallies(NamedTuple):
    """Sums of weights behind a ranking curve, per resample (columns): the rows are the groups of tied scores that
    hold a positive row, in descending score order."""

    positives: np.ndarray  # [G, R] weight of the group's positives
    true_positives: np.ndarray  # [G, R] positives scored at or above the group (TP at its threshold)
    false_positives: np.ndarray  # [G, R] negatives scored at or above the group (FP at its threshold)
    tied: np.ndarray | None  # [G, R] the group's own negatives; None when no negative ties a positive
    positive_total: np.ndarray  # [R] float64
    negative_total: np.ndarray  # [R] float64


def curve_tallies(labels: np.ndarray, scores: np.ndarray, by_row: np.ndarray) -> CurveTallies:
    """`CurveTallies` of binary `labels` / `scores` [N] under the weights `by_row` [N, R] (one row per item).

    Why not cumulative sums over the ranked rows, as scikit-learn does: only the thresholds at positive groups count,
    so each row is added into one segment (its positive group, or the next positive group below it) by a sparse 0/1
    matrix product, which adds whole weight rows, and the cumulative sums then run over the positive groups only.
    The ranking is folded into the matrix's columns, so the weights are never reordered. Integer weights (bootstrap
    counts) are summed as integers, exactly; fractional ones in float64.
    """
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    positive = labels[order] > 0.5
    group = np.cumsum(np.r_[True, ranked[1:] != ranked[:-1]]) - 1 if len(ranked) else np.zeros(0, dtype=np.int64)
    holds_positive = np.zeros(len(ranked) and group[-1] + 1, dtype=bool)
    holds_positive[group[positive]] = True
    # segment s < G: the s-th positive group with the negatives ranked between it and the positive group above it;
    # segment G: the negatives below the last positive group
    segment = (np.cumsum(holds_positive) - holds_positive)[group]
    tied = ~positive & holds_positive[group]
    channels = 3 if tied.any() else 2  # per segment: positives, negatives, and the negatives tied with positives
    rows = np.concatenate([channels * segment + np.where(positive, 0, 1), channels * segment[tied] + 2])
    columns = np.concatenate([order, order[tied]])
    segments = int(holds_positive.sum()) + 1
    summed_as = _sum_type(by_row)
    from scipy.sparse import csr_array

    indicator = csr_array((np.ones(len(rows), dtype=summed_as), (rows, columns)), shape=(channels * segments, len(ranked)))
    sums = (indicator @ by_row.astype(summed_as, copy=False)).reshape(segments, channels, -1)
    running = running_sums(sums[:, :2])
    return CurveTallies(
        positives=sums[:-1, 0], true_positives=running[:-1, 0], false_positives=running[:-1, 1],
        tied=sums[:-1, 2] if channels == 3 else None,
        positive_total=running[-1, 0].astype(np.float64), negative_total=running[-1, 1].astype(np.float64),
    )


def _sum_type(by_row: np.ndarray) -> type:
    """int32 for integer weights whose every sum fits it (bootstrap counts), int64 for larger ones, else float64."""
    if by_row.dtype.kind not in "uib":
        return np.float64
    largest = 1 if by_row.dtype.kind == "b" else int(np.iinfo(by_row.dtype).max)
    if largest * by_row.shape[0] >= 2**31 and int(by_row.max(initial=0)) * by_row.shape[0] >= 2**31:
        return np.int64
    return np.int32


def running_sums(rows: np.ndarray) -> np.ndarray:
    """Cumulative sums down the first axis. numpy's `cumsum(axis=0)` walks each column of a C-ordered array with a
    stride (measured 15x slower at 1,200 x 2,000 int32), so wide rows are added one row at a time instead."""
    if rows[0].size < 256:
        return np.cumsum(rows, axis=0)
    out = np.empty(rows.shape, dtype=rows.dtype)
    out[0] = rows[0]
    for i in range(1, len(rows)):
        np.add(out[i - 1], rows[i], out=out[i])
    return out


def _sklearn():
    """scikit-learn's metrics, imported on first score: the metric classes are also read (as specs) by `cxrbench
    list` and name checks, which must not pay for importing scikit-learn."""
    import sklearn.metrics

    return sklearn.metrics


class AUPRC(Metric):
    title = "AUPRC"
    kinds = ("binary",)
    description = "area under the precision-recall curve (average precision, sklearn.metrics.average_precision_score)"

    def score(self, labels, scores):
        return float(_sklearn().average_precision_score(labels, scores)) if both_classes(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        return weighted_curve("auprc", labels, scores, weights)


class AUROC(Metric):
    title = "AUROC"
    kinds = ("binary",)
    description = "area under the ROC curve (sklearn.metrics.roc_auc_score)"

    def score(self, labels, scores):
        return float(_sklearn().roc_auc_score(labels, scores)) if both_classes(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        return weighted_curve("auroc", labels, scores, weights)


class OneVsRestAUROC(Metric):
    title = "AUROC (OvR)"
    kinds = ("multiclass",)
    description = "unweighted mean over classes of each class's AUROC against the rest (roc_auc_score multi_class='ovr')"

    def score(self, labels, scores):
        classes = np.arange(scores.shape[1])
        if not np.isin(classes, labels).all():
            return float("nan")  # a class without an example: its one-vs-rest AUROC is undefined
        return float(_sklearn().roc_auc_score(labels, scores, multi_class="ovr", average="macro", labels=classes))

    def weighted(self, labels, scores, weights):
        per_class = [weighted_curve("auroc", (labels == k).astype(np.float64), scores[:, k], weights)
                     for k in range(scores.shape[1])]
        return np.mean(per_class, axis=0)  # NaN when any class is missing from a resample, as `score`


def predicted_class(scores: np.ndarray) -> np.ndarray:
    """The predicted class: the argmax of class probabilities, or probability >= 0.5 for a binary target."""
    return scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(np.int64)


class Accuracy(Metric):
    title = "Accuracy"
    kinds = ("binary", "multiclass")
    description = "share of correct predictions (argmax; probability >= 0.5 for binary targets), sklearn.metrics.accuracy_score"

    def score(self, labels, scores):
        return float(_sklearn().accuracy_score(labels.astype(np.int64), predicted_class(scores))) if len(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        correct = (predicted_class(scores) == labels.astype(np.int64)).astype(np.float64)
        weights = np.atleast_2d(weights).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ correct / weights.sum(axis=1)


class BalancedAccuracy(Metric):
    title = "Balanced accuracy"
    kinds = ("binary", "multiclass")
    description = ("mean over classes of the recall of each class (RayDINO's macro accuracy), "
                   "sklearn.metrics.balanced_accuracy_score")

    def score(self, labels, scores):
        return float(_sklearn().balanced_accuracy_score(labels.astype(np.int64), predicted_class(scores))) if len(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        truth = labels.astype(np.int64)
        correct = (predicted_class(scores) == truth).astype(np.float64)
        weights = np.atleast_2d(weights).astype(np.float64)
        recalls = []
        for k in np.unique(truth):  # classes absent from a resample drop out, as in scikit-learn
            members = truth == k
            total = weights[:, members].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append(np.where(total > 0, weights[:, members] @ correct[members] / total, np.nan))
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.array(recalls), axis=0) if recalls else np.full(len(weights), np.nan)
