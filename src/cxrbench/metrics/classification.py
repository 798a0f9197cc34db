"""Classification metrics: AUPRC, AUROC, one-vs-rest AUROC, accuracy and balanced accuracy.

Point estimates are scikit-learn's functions. The weighted forms evaluate many bootstrap resamples at once: one
sort of the scores, then cumulative sums of the resample weights (AUPRC, AUROC), or weighted counts (accuracies).
Each equals scikit-learn's `sample_weight` result to 1e-12 (tests/test_metrics.py).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, roc_auc_score

from cxrbench.metrics.base import Metric


def both_classes(labels: np.ndarray) -> bool:
    return len(np.unique(labels)) == 2


def weighted_curve(metric: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUPRC or AUROC of binary `labels` / `scores` [N] for each row of `weights` [R, N]; NaN where a resample
    lacks a class. Thresholds are evaluated after whole groups of tied scores, as scikit-learn does."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels, weights = scores[order], labels[order].astype(np.float64), np.atleast_2d(weights)[:, order].astype(np.float64)
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # last index of each run of tied scores
    tp = np.cumsum(weights * labels, axis=1)[:, ends]
    fp = np.cumsum(weights * (1.0 - labels), axis=1)[:, ends]
    positives, negatives = tp[:, -1:], fp[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "auprc":
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall_step = np.diff(np.concatenate([np.zeros_like(tp[:, :1]), tp], axis=1), axis=1) / positives
            values = np.sum(recall_step * precision, axis=1)
        else:
            tpr = np.concatenate([np.zeros_like(tp[:, :1]), tp], axis=1) / positives
            fpr = np.concatenate([np.zeros_like(fp[:, :1]), fp], axis=1) / negatives
            values = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)
    undefined = (positives[:, 0] <= 0) | (negatives[:, 0] <= 0)
    return np.where(undefined, np.nan, values)


class AUPRC(Metric):
    title = "AUPRC"
    kinds = ("binary",)
    description = "area under the precision-recall curve (average precision, sklearn.metrics.average_precision_score)"

    def score(self, labels, scores):
        return float(average_precision_score(labels, scores)) if both_classes(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        return weighted_curve("auprc", labels, scores, weights)


class AUROC(Metric):
    title = "AUROC"
    kinds = ("binary",)
    description = "area under the ROC curve (sklearn.metrics.roc_auc_score)"

    def score(self, labels, scores):
        return float(roc_auc_score(labels, scores)) if both_classes(labels) else float("nan")

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
        return float(roc_auc_score(labels, scores, multi_class="ovr", average="macro", labels=classes))

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
        return float(accuracy_score(labels.astype(np.int64), predicted_class(scores))) if len(labels) else float("nan")

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
        return float(balanced_accuracy_score(labels.astype(np.int64), predicted_class(scores))) if len(labels) else float("nan")

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
