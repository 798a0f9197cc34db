"""ROC and precision-recall curves of a run's binary targets, with a patient-bootstrap band.

The curve drawn is the *seed mean*: each seed's curve is read on a fixed grid (true-positive rate at `FPR_GRID`,
precision at `RECALL_GRID`) and the seeds are averaged, as the run's metrics average the seeds' AUROC / AUPRC. The
band resamples the test patients (`ClusterBootstrap`, the unit and seed of the run's `bootstrap` settings, `RESAMPLES`
draws) and applies the same resample to every seed, exactly as `stats.summary` does for the metrics' CIs; each
resample yields a seed-mean curve and the band is their pointwise percentile interval (2.5-97.5 % for a 95 %
confidence). Resamples that draw no positive or no negative of a target are left out of its band, as the metrics'
CIs leave them out. A pointwise band is not a simultaneous one: it says how far each point could move, not the
whole curve.

On the grids: TPR is interpolated linearly between the ROC's operating points (the trapezoids AUROC integrates);
precision at recall r is the precision of the first threshold that reaches recall r (the steps average precision
sums), so the PR grid starts above recall 0, where precision is undefined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.bootstrap import ClusterBootstrap
from cxrbench.stats.summary import target_arrays

RESAMPLES = 200
FPR_GRID = np.linspace(0.0, 1.0, 101)
RECALL_GRID = np.linspace(0.01, 1.0, 100)


@dataclass
class Band:
    """A seed-mean curve on `grid` and its pointwise bootstrap interval (NaN where no resample was defined)."""

    grid: np.ndarray
    curve: np.ndarray
    low: np.ndarray
    high: np.ndarray


@dataclass
class TargetCurves:
    target: str
    roc: Band
    pr: Band
    prevalence: float  # positives among the scored test rows of all seeds: the PR curve of a random score
    resamples: int  # resamples with both classes, the band's sample size


def binary_curves(predictions: pd.DataFrame, targets: Sequence[TargetSpec], bootstrap: BootstrapSpec,
                  resamples: int = RESAMPLES) -> list[TargetCurves]:
    """Seed-mean ROC and PR curves with bootstrap bands for the binary `targets` present in `predictions` (a run's
    predictions.parquet: image_id, patient_id, seed, task, label, score)."""
    binary = [t for t in targets if t.target_kind.thresholded and (predictions["task"] == t.name).any()]
    if not binary:
        return []
    seeds = sorted(predictions["seed"].unique().tolist())
    patients = predictions.drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
    images = patients.index
    clusters = patients.to_numpy() if bootstrap.unit == "patient" else images.to_numpy()
    weights = ClusterBootstrap(clusters, resamples, bootstrap.seed).weights()
    tail = (1.0 - bootstrap.confidence) / 2.0 * 100.0
    per_seed = {s: predictions[predictions["seed"] == s] for s in seeds}
    result = []
    for target in binary:
        roc_point, roc_draws, pr_point, pr_draws, labels_seen = [], [], [], [], []
        for seed in seeds:
            labels, scores = target_arrays(per_seed[seed], target, images)
            rows = ~np.isnan(labels) & np.isfinite(scores)
            y, s = labels[rows], scores[rows]
            labels_seen.append(y)
            ones = np.ones((1, len(y)))
            roc_point.append(_roc_on_grid(y, s, ones)[0])
            pr_point.append(_pr_on_grid(y, s, ones)[0])
            roc_draws.append(_roc_on_grid(y, s, weights[:, rows]))
            pr_draws.append(_pr_on_grid(y, s, weights[:, rows]))
        roc = _band(FPR_GRID, np.mean(roc_point, axis=0), np.mean(roc_draws, axis=0), tail)
        pr = _band(RECALL_GRID, np.mean(pr_point, axis=0), np.mean(pr_draws, axis=0), tail)
        defined = int(np.isfinite(np.mean(roc_draws, axis=0)[:, 0]).sum())
        seen = np.concatenate(labels_seen)
        result.append(TargetCurves(target.name, roc, pr, float(seen.mean()) if len(seen) else float("nan"), defined))
    return result


def _band(grid: np.ndarray, curve: np.ndarray, draws: np.ndarray, tail: float) -> Band:
    """`draws` [R, G]: seed-mean curves per resample; rows with NaN (a class not drawn) are left out."""
    kept = draws[np.isfinite(draws).all(axis=1)]
    if len(kept) == 0:
        empty = np.full(len(grid), np.nan)
        return Band(grid, curve, empty, empty.copy())
    low, high = np.percentile(kept, [tail, 100.0 - tail], axis=0)
    return Band(grid, curve, low, high)


def _counts(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true and false positives [R, T] at each distinct threshold, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    y, w = labels[order], weights[:, order]
    ends = np.r_[np.flatnonzero(np.diff(scores[order])), len(y) - 1]  # last row of each group of tied scores
    true_pos = np.cumsum(w * y, axis=1)[:, ends]
    false_pos = np.cumsum(w * (1.0 - y), axis=1)[:, ends]
    return true_pos, false_pos


def _roc_on_grid(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[R, len(FPR_GRID)] true-positive rate per row of `weights`; NaN rows where a class has no weight."""
    def tpr_at(true_pos, false_pos, positives, negatives):
        return np.interp(FPR_GRID, np.r_[0.0, false_pos / negatives], np.r_[0.0, true_pos / positives])

    return _on_grid(labels, scores, weights, len(FPR_GRID), tpr_at)


def _pr_on_grid(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[R, len(RECALL_GRID)] precision per row of `weights`; NaN rows where a class has no weight."""
    def precision_at(true_pos, false_pos, positives, negatives):
        recall = true_pos / positives
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = true_pos / (true_pos + false_pos)
        return precision[np.minimum(np.searchsorted(recall, RECALL_GRID - 1e-12, side="left"), len(recall) - 1)]

    return _on_grid(labels, scores, weights, len(RECALL_GRID), precision_at)


def _on_grid(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, size: int, curve) -> np.ndarray:
    """`curve(true_pos, false_pos, positives, negatives)` on a grid of `size` points for each row of `weights` that
    holds both classes; NaN rows for the others."""
    out = np.full((len(weights), size), np.nan)
    if len(labels) == 0:
        return out
    true_pos, false_pos = _counts(labels, scores, weights)
    positives, negatives = true_pos[:, -1], false_pos[:, -1]
    for r in np.flatnonzero((positives > 0) & (negatives > 0)):
        out[r] = curve(true_pos[r], false_pos[r], positives[r], negatives[r])
    return out
    true_pos, false_pos = _counts(labels, scores, weights)
    positives, negatives = true_pos[:, -1], false_pos[:, -1]
    for r in np.flatnonzero((positives > 0) & (negatives > 0)):
        recall = true_pos[r] / positives[r]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = true_pos[r] / (true_pos[r] + false_pos[r])
        first = np.minimum(np.searchsorted(recall, RECALL_GRID - 1e-12, side="left"), len(recall) - 1)
        out[r] = precision[first]
    return out
