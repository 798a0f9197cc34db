"""Regression metrics: mean absolute error, SMAPE and Pearson's r (RayDINO's scoliosis Cobb angles).

MAE is scikit-learn's, Pearson's r scipy's. SMAPE has no library implementation: it is the mean over rows of
|prediction - truth| / ((|prediction| + |truth|) / 2), a row where both are 0 counting 0, shown in percent (0-200):
the same quantity as cxrbench's SMAPE loss (`heads.losses.masked_smape`). Weighted forms use the resample weights
as row counts, so each equals the point estimate on the resampled rows.
"""

from __future__ import annotations

import numpy as np

from cxrbench.metrics.base import Metric


def _rows(weights: np.ndarray) -> np.ndarray:
    return np.atleast_2d(weights).astype(np.float64)


class MAE(Metric):
    title = "MAE"
    kinds = ("regression",)
    higher_is_better = False
    scale = 1.0
    unit = ""
    decimals = 2
    description = "mean absolute error, sklearn.metrics.mean_absolute_error, in the target's unit"

    def score(self, labels, scores):
        from sklearn.metrics import mean_absolute_error  # imported when scoring: `cxrbench list` reads this class

        return float(mean_absolute_error(labels, scores)) if len(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        weights = _rows(weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ np.abs(scores - labels) / weights.sum(axis=1)


def smape_terms(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    denominator = (np.abs(scores) + np.abs(labels)) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, np.abs(scores - labels) / denominator, 0.0)


class SMAPE(Metric):
    title = "SMAPE"
    kinds = ("regression",)
    higher_is_better = False
    description = "symmetric mean absolute percentage error, mean of |p - y| / ((|p| + |y|) / 2), in percent (0-200)"

    def score(self, labels, scores):
        return float(np.mean(smape_terms(labels, scores))) if len(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        weights = _rows(weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ smape_terms(labels, scores) / weights.sum(axis=1)


class PearsonR(Metric):
    title = "Pearson r"
    kinds = ("regression",)
    scale = 1.0
    unit = ""
    decimals = 3
    description = "Pearson's correlation between prediction and truth, scipy.stats.pearsonr"

    def score(self, labels, scores):
        if len(labels) < 2 or np.ptp(labels) == 0 or np.ptp(scores) == 0:
            return float("nan")
        from scipy.stats import pearsonr  # imported when scoring: `cxrbench list` reads this class

        return float(pearsonr(labels, scores).statistic)

    def weighted(self, labels, scores, weights):
        weights = _rows(weights)
        total = weights.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_y = weights @ labels / total[:, 0]
            mean_p = weights @ scores / total[:, 0]
            dy = labels[None, :] - mean_y[:, None]
            dp = scores[None, :] - mean_p[:, None]
            covariance = (weights * dy * dp).sum(axis=1)
            spread = np.sqrt((weights * dy * dy).sum(axis=1) * (weights * dp * dp).sum(axis=1))
            r = covariance / spread
        return np.where(spread > 0, r, np.nan)
