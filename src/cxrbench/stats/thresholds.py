"""Operating points: the decision threshold of a binary target, chosen on the validation split.

A probability is not a diagnosis: the underdiagnosis rate of a group (its false-negative rate, Seyyed-Kalantari et
al. 2021) needs one threshold per target, fixed before the test set is seen. It is chosen on each seed's validation
predictions by one of two rules (`BenchmarkSpec.operating_point`):

- `f1`: the threshold maximising F1 (the underdiagnosis studies' choice);
- `youden`: the threshold maximising sensitivity + specificity - 1.

Both are read off scikit-learn's curves; ties take the highest threshold (the fewest positive calls).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

RULES = ("f1", "youden")


def choose_threshold(labels: np.ndarray, scores: np.ndarray, rule: str = "f1") -> float | None:
    """The threshold (predict positive when score >= it) of `rule` on the known rows; None when the validation rows
    lack a positive or a negative (no operating point can be chosen)."""
    if rule not in RULES:
        raise ValueError(f"operating point rule {rule!r}: choose one of {RULES}.")
    known = ~np.isnan(labels) & np.isfinite(scores)
    y, s = labels[known].astype(np.int64), scores[known].astype(np.float64)
    if y.min(initial=1) == y.max(initial=0) or len(y) == 0:
        return None
    if rule == "youden":
        fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
        gain = tpr - fpr
        finite = np.isfinite(thresholds)
        candidates = np.flatnonzero(finite & (gain == gain[finite].max()))
    else:
        precision, recall, thresholds = precision_recall_curve(y, s, drop_intermediate=False)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        candidates = np.flatnonzero(f1 == f1.max())
    return float(thresholds[candidates].max())
