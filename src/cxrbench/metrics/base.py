"""The metric contract, after MONAI's metrics and lm-evaluation-harness's registry.

A metric scores the known rows of one target: `labels` [N] (0/1 for binary, the class index for multiclass, the
value for regression) against `scores` ([N] probability of the positive class or the predicted value; [N, K] class
probabilities for multiclass). It declares what it applies to and how to read it, so that specs are checked when
parsed and tables, curves and comparisons need no per-metric code:

- `kinds`: the target kinds it scores, by name (`cxrbench.targets`);
- `higher_is_better`: its direction (selection, "best" marks, paired comparisons);
- `scale`, `unit` and `decimals`: how a value is shown (100, "%" and 1 for fractions);
- `weighted`: optionally, the metric for many bootstrap resamples at once, each a vector of integer weights per
  row. Without it the bootstrap evaluates `score` on each resample's rows (correct, slower).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class Metric:
    title: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool] = True
    scale: ClassVar[float] = 100.0
    unit: ClassVar[str] = "%"
    decimals: ClassVar[int] = 1
    description: ClassVar[str] = ""

    def score(self, labels: np.ndarray, scores: np.ndarray) -> float:
        """The metric on these rows (all labelled); NaN where it is undefined (e.g. one class only)."""
        raise NotImplementedError

    def weighted(self, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """The metric for each row of `weights` [R, N] (non-negative integers: a resample; any integer or float
        dtype, possibly a transposed view: convert with `astype` before arithmetic), or None when the metric has no
        vectorised form."""
        return None

    def resampled(self, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """[R] values, one per resample: the vectorised form where there is one, else `score` on each resample."""
        fast = self.weighted(labels, scores, weights)
        if fast is not None:
            return fast
        values = np.empty(len(weights))
        for r, row in enumerate(np.asarray(weights)):
            index = np.repeat(np.arange(len(labels)), row.astype(np.int64))
            values[r] = self.score(labels[index], scores[index])
        return values
