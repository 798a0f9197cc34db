"""Calibration: expected calibration error (ECE) and the reliability bins behind a reliability diagram.

A classification head outputs probabilities, and a clinical user reads them as such: ECE says how far they are from
the observed frequencies. Binary targets are scored on the positive-class probability (what scikit-learn's
`calibration_curve` plots); multiclass targets on the top-label confidence against top-label correctness (Guo et
al., 2017). Both use `BINS` equal-width bins on [0, 1], assigned as scikit-learn's `calibration_curve` assigns them
(`numpy.searchsorted` on the inner edges, so a probability on an edge belongs to the bin below it), and

    ECE = sum over bins of (rows in the bin / rows) * |observed frequency - mean probability|.

The number of bins is a choice the literature does not fix (15 in Guo et al.; 10 in scikit-learn's default plot);
`ExpectedCalibrationError.bins` sets it, and a plugin subclass may register another count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cxrbench.metrics.base import Metric

if TYPE_CHECKING:
    import pandas as pd

BINS = 15


def calibration_rows(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(outcome [N] in {0, 1}, probability [N]): the positive class for binary targets ([N] scores), the top label
    for multiclass targets ([N, K] class probabilities)."""
    if scores.ndim == 2:
        top = scores.argmax(axis=1)
        return (top == labels.astype(np.int64)).astype(np.float64), scores.max(axis=1).astype(np.float64)
    return labels.astype(np.float64), scores.astype(np.float64)


def bin_index(probabilities: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each probability, as `sklearn.calibration.calibration_curve(strategy='uniform')` assigns it."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], probabilities)


def reliability_bins(labels: np.ndarray, scores: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """One row per non-empty bin: its edges, how many rows fall in it, their mean probability and the observed
    frequency of the outcome (a reliability diagram plots `observed` against `confidence`)."""
    outcome, probability = calibration_rows(labels, scores)
    index = bin_index(probability, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, probability, minlength=bins) / count
        observed = np.bincount(index, outcome, minlength=bins) / count
    kept = count > 0
    import pandas as pd

    return pd.DataFrame({"bin_low": edges[:-1][kept], "bin_high": edges[1:][kept], "count": count[kept],
                         "confidence": confidence[kept], "observed": observed[kept]})


class ExpectedCalibrationError(Metric):
    title = "ECE"
    kinds = ("binary", "multiclass")
    higher_is_better = False
    decimals = 2
    bins = BINS
    description = (f"expected calibration error over {BINS} equal-width bins: positive-class probability (binary), "
                   "top-label confidence (multiclass); bins as sklearn.calibration.calibration_curve")

    def score(self, labels, scores):
        if not len(labels):
            return float("nan")
        outcome, probability = calibration_rows(labels, scores)
        index = bin_index(probability, self.bins)
        gap = np.bincount(index, outcome - probability, minlength=self.bins)
        return float(np.abs(gap).sum() / len(labels))

    def weighted(self, labels, scores, weights):
        outcome, probability = calibration_rows(labels, scores)
        members = np.zeros((len(labels), self.bins))
        members[np.arange(len(labels)), bin_index(probability, self.bins)] = 1.0
        weights = np.atleast_2d(weights).astype(np.float64)
        gaps = weights @ (members * (outcome - probability)[:, None])  # [R, bins]: weighted sum of outcome - probability
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.abs(gaps).sum(axis=1) / weights.sum(axis=1)
