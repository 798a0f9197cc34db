"""Binary targets: a finding present (1) or absent (0); the loader's column holds 1.0 / 0.0 / NaN (unknown).

Every binary target of a benchmark trains in one multi-label head (masked BCE, as the papers' probes), its score
is P(positive); a decision threshold is chosen per seed on validation (for false-negative rates per group)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrbench.targets import register
from cxrbench.targets.base import Target, TargetKind

if TYPE_CHECKING:
    import pandas as pd



@register
class Binary(TargetKind):
    name = "binary"
    thresholded = True
    calibrated = True

    def holds(self, target: Target) -> str:
        return "1, 0 or NaN (unknown)"

    def invalid(self, target: Target, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        return ~np.isnan(values) & ~np.isin(values, (0.0, 1.0))

    def counts(self, target: Target, frame: pd.DataFrame) -> dict[str, Any]:
        values = frame[target.name].to_numpy(dtype=np.float64)
        known = values[~np.isnan(values)]
        return {"positive": int((known == 1).sum()), "negative": int((known == 0).sum()), "unknown": int(np.isnan(values).sum())}

    def missing(self, target: Target, counts: Mapping[str, Any]) -> str | None:
        if counts["positive"] == 0 or counts["negative"] == 0:
            return f"no {'positive' if counts['positive'] == 0 else 'negative'} example"
        return None

    def shot_classes(self, target: Target, column: pd.Series) -> list[tuple[str, pd.Index]]:
        """Positive patients (any training image positive), then negative ones (none is)."""
        patient_max = column.groupby(level=0).max()
        return [(f"label {value:g}", patient_max.index[patient_max.to_numpy() == value]) for value in (1.0, 0.0)]
