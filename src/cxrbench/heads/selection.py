"""Choosing a head's setting on the validation split: the macro of a metric over tasks with both classes."""

from __future__ import annotations

import numpy as np

from cxrbench.stats.metrics import task_metric


def validation_score(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """Macro `metric` over the tasks that are defined on this split; -inf when none is (nothing to choose by)."""
    values = [task_metric(metric, labels[:, t], scores[:, t]) for t in range(labels.shape[1])]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("-inf")
