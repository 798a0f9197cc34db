"""Threshold-dependent metrics of binary targets: false-negative rate, false-positive rate and subset accuracy.

A probability becomes a decision at a threshold, and what a deployed classifier gets wrong depends on it: the
domain pre-training paper (appendix A.7, Table 7) reports the false-negative (underdiagnosis) rate and the subset
accuracy at the thresholds 0.1 to 0.5, and warns that the FNR in particular moves a lot with the threshold. Each is
scored at those fixed thresholds and at `val`, the threshold each seed chose on its own validation split
(`cxrbench.stats.thresholds`, the benchmark's `operating_point` rule), which is the one a deployment would use.

A prediction is positive when its score is at or above the threshold (as `stats.thresholds` and `accuracy`).

- FNR = FN / (FN + TP): the share of positive images called negative; FPR = FP / (FP + TN). Undefined (NaN) without
  a positive (FNR) or a negative (FPR).
- Subset accuracy: the share of images on which every binary target is right (scikit-learn's `accuracy_score` on
  multilabel arrays), over the images whose every label is known.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrbench.metrics.points import MetricContext, PointMetric
from cxrbench.specs import TargetSpec

THRESHOLDS = ("0.1", "0.2", "0.3", "0.4", "0.5")
VALIDATION = "val"  # the point of each seed's validation-chosen threshold


class ThresholdMetric(PointMetric):
    """A metric of the decisions `scores >= threshold`; `threshold` is a number, one per target ([T], a joint
    metric at `val`), or None where validation chose none (the metric is then undefined)."""

    kinds = ("binary",)
    points = (*THRESHOLDS, VALIDATION)

    def __init__(self, threshold: float | np.ndarray | None = None):
        if threshold is None and self.point not in (None, VALIDATION):
            threshold = float(self.point)  # a fixed threshold is its own point
        self.threshold = threshold

    @property
    def pairable(self) -> bool:
        return not self.joint and self.point != VALIDATION

    def available(self, point, context):
        return point != VALIDATION or context is not None and bool(context.thresholds)

    def bind(self, context: MetricContext | None, seed: int, targets: Sequence[TargetSpec]):
        if self.point != VALIDATION:
            return self
        chosen = [context.threshold(seed, t.name) for t in targets]
        bound = type(self)(None if None in chosen else (np.array(chosen) if self.joint else chosen[0]))
        bound.name = self.name
        return bound

    def decisions(self, scores: np.ndarray) -> np.ndarray | None:
        """The positive calls, or None when there is no threshold."""
        return None if self.threshold is None else scores >= self.threshold


class _ErrorRate(ThresholdMetric):
    """The share of the rows of one class (`of_positives`) that the decisions get wrong."""

    higher_is_better = False
    of_positives: bool = True

    def score(self, labels, scores):
        called = self.decisions(scores)
        members = (labels > 0.5) == self.of_positives
        if called is None or not members.any():
            return float("nan")
        return float((members & (called != self.of_positives)).sum() / members.sum())

    def weighted(self, labels, scores, weights):
        weights = np.atleast_2d(weights).astype(np.float64)
        called = self.decisions(scores)
        if called is None:
            return np.full(len(weights), np.nan)
        members = (labels > 0.5) == self.of_positives
        total = weights @ members.astype(np.float64)
        wrong = weights @ (members & (called != self.of_positives)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, wrong / total, np.nan)


class FalseNegativeRate(_ErrorRate):
    title = "FNR"
    description = ("false-negative (underdiagnosis) rate FN / (FN + TP) at thresholds 0.1-0.5 and at each seed's "
                   "validation-chosen threshold (fnr@val); positive when score >= threshold")


class FalsePositiveRate(_ErrorRate):
    title = "FPR"
    of_positives = False
    description = ("false-positive rate FP / (FP + TN) at thresholds 0.1-0.5 and at each seed's validation-chosen "
                   "threshold (fpr@val); positive when score >= threshold")


class SubsetAccuracy(ThresholdMetric):
    title = "Subset accuracy"
    joint = True
    description = ("share of images whose every binary target is right (sklearn.metrics.accuracy_score on the label "
                   "matrix) at thresholds 0.1-0.5 and at the validation-chosen thresholds (subset_accuracy@val)")

    def score(self, labels, scores):
        called = self.decisions(scores)
        if called is None or not len(labels):
            return float("nan")
        return float(self._all_right(labels, called).mean())

    def weighted(self, labels, scores, weights):
        weights = np.atleast_2d(weights).astype(np.float64)
        called = self.decisions(scores)
        if called is None:
            return np.full(len(weights), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ self._all_right(labels, called).astype(np.float64) / weights.sum(axis=1)

    @staticmethod
    def _all_right(labels: np.ndarray, called: np.ndarray) -> np.ndarray:
        """[N] whether each image's decisions [N, T] equal its labels on every target."""
        return ((labels > 0.5) == called).reshape(len(labels), -1).all(axis=1)
