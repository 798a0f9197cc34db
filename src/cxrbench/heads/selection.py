"""Choosing a head's setting on the validation split: the macro of a metric over tasks with both classes."""

from __future__ import annotations

import numpy as np

from cxrbench.stats.metrics import task_metric


def validation_score(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """Macro `metric` over the tasks with both classes among this split's labels; -inf when no task has (nothing
    to choose by) or when a counted task has non-finite scores, so that every setting is ranked on the same tasks
    and a diverged setting never wins by being scored on fewer of them."""
    known = ~np.isnan(labels)
    defined = [t for t in range(labels.shape[1]) if len(np.unique(labels[known[:, t], t])) == 2]
    values = [task_metric(metric, labels[:, t], scores[:, t]) for t in defined]
    return float(np.mean(values)) if values and np.isfinite(values).all() else float("-inf")
