"""Adjusting p-values for multiple comparisons (several targets, metrics or encoder pairs at once).

Why: a table of paired comparisons tests one hypothesis per cell; read together, some cells look significant by
chance. Holm's step-down procedure controls the family-wise error rate under any dependence between the tests;
Benjamini-Hochberg controls the false discovery rate (valid for independent or positively dependent tests, as
AUROCs of correlated targets scored by the same encoders usually are). Undefined p-values (None, NaN) stay NaN and do
not count as tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrbench.errors import CxrbenchError

METHODS = ("holm", "bh", "none")


def adjust_p_values(p_values: Sequence[float | None] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values, in the input's order and shape, each capped at 1.

    With the m defined p-values sorted ascending, p_(1) <= ... <= p_(m):
    - holm: adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j))  (Holm 1979);
    - bh:   adjusted p_(i) = min over j >= i of min(1, m p_(j) / j)        (Benjamini & Hochberg 1995; as
            `scipy.stats.false_discovery_control(method='bh')`);
    - none: the p-values as given.
    """
    if method not in METHODS:
        raise CxrbenchError(f"Unknown p-value adjustment '{method}': use one of {', '.join(METHODS)}.")
    values = np.array([np.nan if v is None else v for v in np.asarray(p_values, dtype=object).ravel()], dtype=np.float64)
    defined = ~np.isnan(values)
    if ((values[defined] < 0) | (values[defined] > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1]; got {values[defined & ((values < 0) | (values > 1))].tolist()}.")
    p = values[defined]
    m = len(p)
    if method == "none" or m == 0:
        adjusted = p
    else:
        order = np.argsort(p, kind="stable")
        ranked = p[order]
        rank = np.arange(1, m + 1)
        if method == "holm":
            stepped = np.maximum.accumulate((m - rank + 1) * ranked)
        else:
            stepped = np.minimum.accumulate((m * ranked / rank)[::-1])[::-1]
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    out = np.full(values.shape, np.nan)
    out[defined] = adjusted
    return out.reshape(np.shape(p_values))
