"""Choosing a head's setting on the validation split, by a registered metric over the targets of the head.

The value is the macro of the metric over the head's targets that are defined on this split (a binary target
with both classes, a multiclass one with at least two, a regression one with two values or more), so that every
setting is ranked on the same targets; it is NaN when no target is defined or when a counted target has
non-finite scores (a diverged setting never wins by being scored on fewer targets). `ranking` turns a value
into "larger is better" whatever the metric's direction.
"""

from __future__ import annotations

import numpy as np

from cxrbench.metrics.base import Metric
from cxrbench.targets import target_kind


def validation_score(metric: Metric, kind: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """`labels` / `scores` as a head sees them: [N, T] for binary and regression targets, a one-hot [N, K] and
    class probabilities [N, K] for one multiclass target (a `one_hot` kind)."""
    if target_kind(kind).one_hot:
        known = ~np.isnan(labels).any(axis=1)
        classes = labels[known].argmax(axis=1).astype(np.float64)
        if len(np.unique(classes)) < 2:
            return float("nan")
        chosen = scores[known]
        return metric.score(classes, chosen) if np.isfinite(chosen).all() else float("nan")
    known = ~np.isnan(labels)
    needed = 2
    defined = [t for t in range(labels.shape[1]) if len(np.unique(labels[known[:, t], t])) >= needed]
    values = []
    for t in defined:
        y, s = labels[known[:, t], t], scores[known[:, t], t]
        values.append(metric.score(y, s) if np.isfinite(s).all() else float("nan"))
    return float(np.mean(values)) if values and np.isfinite(values).all() else float("nan")


def ranking(metric: Metric, value: float) -> float:
    """Larger is better: the value, negated for a metric where lower is better; -inf when not finite."""
    if not np.isfinite(value):
        return float("-inf")
    return value if metric.higher_is_better else -value
