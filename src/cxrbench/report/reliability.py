"""Reliability diagrams of a run's classification targets: how far its probabilities are from observed frequencies.

The test predictions of every seed are pooled (each seed's head is a separate model of the same protocol, so the
pooled diagram shows the protocol's calibration with more rows per bin than one seed has). Bins and ECE follow
`metrics.calibration`: positive-class probability for binary targets, top-label confidence for multiclass ones,
`BINS` equal-width bins. The ECE shown is that of the pooled rows, which is the weighted gap of the bins drawn; a
run scored with `--metric ece` also stores the per-seed mean in metrics.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrbench.metrics.calibration import BINS, reliability_bins
from cxrbench.specs import TargetSpec
from cxrbench.stats.summary import target_arrays

@dataclass
class Reliability:
    target: str
    kind: str
    bins: pd.DataFrame  # reliability_bins: bin_low, bin_high, count, confidence, observed
    ece: float
    rows: int


def run_reliability(predictions: pd.DataFrame, targets: Sequence[TargetSpec], bins: int = BINS) -> list[Reliability]:
    """Pooled-over-seeds reliability bins and ECE of each target in `predictions` whose kind scores probabilities
    (`TargetKind.calibrated`: binary, multiclass)."""
    images = pd.Index(sorted(predictions["image_id"].unique()))
    result = []
    for target in targets:
        if not target.target_kind.calibrated or not (predictions["task"] == target.name).any():
            continue
        labels, scores = [], []
        for _, part in predictions.groupby("seed", sort=True):
            y, s = target_arrays(part, target, images)
            known = ~np.isnan(y) & (np.isfinite(s) if s.ndim == 1 else np.isfinite(s).all(axis=1))
            labels.append(y[known])
            scores.append(s[known])
        y, s = np.concatenate(labels), np.concatenate(scores)
        if len(y) == 0:
            continue
        table = reliability_bins(y, s, bins)
        ece = float((table["count"] * (table["observed"] - table["confidence"]).abs()).sum() / table["count"].sum())
        result.append(Reliability(target.name, target.kind, table, ece, len(y)))
    return result
