"""DeLong's test of two correlated AUROCs scored on the same rows, by Sun & Xu's fast midrank algorithm.

Why: two encoders scored on one test set are not independent samples (same images, same labels), so the variance of
their AUROC difference must include the covariance of the two AUROCs. DeLong, DeLong & Clarke-Pearson (Biometrics
44(3), 1988) estimate it from each curve's structural components, the per-positive and per-negative shares of the
Mann-Whitney kernel psi(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise; Sun & Xu (IEEE Signal Processing Letters
21(11), 2014) obtain those components from midranks in O(N log N) instead of the O(m n) kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    diff: float  # auc_a - auc_b
    variance: float  # DeLong's estimate of the variance of diff
    z: float  # diff / sqrt(variance)
    p: float  # two-sided normal p-value of diff == 0


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DeLongResult:
    """Two-sided DeLong test of AUROC(a) == AUROC(b) on the same rows: `labels` [N] in {0, 1}, finite scores [N].

    Undefined values are NaN: everything when a class is missing, the variance, z and p when a class has a single
    row (its structural components have no sample covariance). When the variance is 0 (e.g. identical scores) the
    difference is certain: p is 1 if it is 0, else 0.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.stack([np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)])
    if scores.shape[1:] != labels.shape or labels.ndim != 1:
        raise ValueError(f"delong_test: labels {labels.shape} and scores {scores.shape[1:]} must be [N] vectors of one length.")
    if not (np.isin(labels, (0.0, 1.0)).all() and np.isfinite(scores).all()):
        raise ValueError("delong_test: labels must be 0 or 1 and scores finite (leave unknown rows out first).")
    positive = labels == 1.0
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        return DeLongResult(*[float("nan")] * 6)
    x, y = scores[:, positive], scores[:, ~positive]  # [2, m] positives, [2, n] negatives
    within_x, within_y = rankdata(x, axis=1), rankdata(y, axis=1)  # midranks: a tie shares the mean rank
    overall = rankdata(np.concatenate([x, y], axis=1), axis=1)
    auc = (overall[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    # structural components: the share of negatives each positive outranks, of positives that outrank each negative
    v10 = (overall[:, :m] - within_x) / n
    v01 = 1.0 - (overall[:, m:] - within_y) / m
    diff = float(auc[0] - auc[1])
    if m < 2 or n < 2:
        return DeLongResult(float(auc[0]), float(auc[1]), diff, float("nan"), float("nan"), float("nan"))
    covariance = np.cov(v10) / m + np.cov(v01) / n  # [2, 2], sample covariances (ddof=1) as DeLong
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    if variance > 0:
        z = diff / math.sqrt(variance)
        p = float(2.0 * norm.sf(abs(z)))
    else:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    return DeLongResult(float(auc[0]), float(auc[1]), diff, variance, z, p)
