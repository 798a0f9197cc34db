"""Metrics read at several points: decision thresholds, referral rates, prevalence bins.

A paper reports such a metric as a row of numbers (FNR at thresholds 0.1 to 0.5, AUROC after referring 0% to 25%
of the predictions), so each point is scored and stored as a metric of its own, named `NAME@POINT` (`fnr@0.3`,
`selective_auroc@0.1`, `auprc_bins@rare`): metrics.json keeps its one shape (metric -> target or macro -> summary),
tables and layouts address a point like any metric, and the registry resolves the name to `PointMetric.at(point)`.
A benchmark that names the bare metric (`fnr`) gets every point its class declares.

Some points need what the predictions alone do not hold, given to the summary as a `MetricContext`: the decision
threshold each seed chose on its validation split (point `val`), and each target's prevalence on the training split
(prevalence bins). A point whose context is missing is left out (a per-group summary has neither), never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import numpy as np

from cxrbench.errors import UnknownNameError
from cxrbench.metrics.base import Metric
from cxrbench.specs import TargetSpec


@dataclass(frozen=True)
class MetricContext:
    """What some points need besides the test predictions.

    `thresholds`: seed -> binary target -> the decision threshold chosen on that seed's validation split (None where
    none could be chosen; `cxrbench.stats.thresholds`). `train_prevalence`: target -> share of positives among the
    labelled training images (pooled over seeds; `train_prevalence`)."""

    thresholds: Mapping = field(default_factory=dict)
    train_prevalence: Mapping[str, float] | None = None

    def threshold(self, seed: int, target: str) -> float | None:
        """The seed's validation-chosen threshold of `target` (seeds keyed as ints, or as strings in metrics.json)."""
        chosen = self.thresholds.get(seed, self.thresholds.get(str(seed))) or {}
        return chosen.get(target)

    @classmethod
    def of(cls, metrics: Mapping) -> MetricContext:
        """The context a stored run was scored with, read back from its metrics.json (to recompute its numbers)."""
        blocks = (metrics.get("metric_points") or {}).values()
        prevalence = next((block["prevalence"] for block in blocks if "prevalence" in block), None)
        return cls(metrics.get("thresholds") or {}, prevalence)


def train_prevalence(values: np.ndarray, targets: Sequence[TargetSpec],
                     training: Sequence[np.ndarray]) -> dict[str, float]:
    """Each binary target's share of positives among its labelled training rows, pooled over seeds.

    `values` [N, T]: the loader's label columns (NaN unknown) in the order of `targets`; `training`: one boolean mask
    [N] per seed, the rows of its training split. A target with no labelled training row is left out."""
    rows = np.concatenate([np.flatnonzero(mask) for mask in training]) if len(training) else np.zeros(0, dtype=np.int64)
    prevalence = {}
    for j, target in enumerate(targets):
        if target.kind != "binary":
            continue
        column = values[rows, j]
        known = ~np.isnan(column)
        if known.any():
            prevalence[target.name] = float((column[known] > 0.5).sum() / known.sum())
    return prevalence


def point_name(metric: str, point: str) -> str:
    return f"{metric}@{point}"


class PointMetric(Metric):
    """A metric declared at `points`; an instance with `point` None stands for all of them (a bare name).

    `joint`: scores all its targets at once, one value per image set (subset accuracy): `score` and `weighted` then
    receive labels and scores [N, T], and the summary stores the macro entry only."""

    points: ClassVar[tuple[str, ...]] = ()
    point: ClassVar[str | None] = None
    joint: ClassVar[bool] = False
    name: str = ""

    @classmethod
    def at(cls, point: str) -> type[PointMetric]:
        """The class of one point (what the registry returns for `NAME@POINT`)."""
        return _point_class(cls, point)

    def points_for(self, context: MetricContext | None) -> tuple[str, ...]:
        """The points to score: this instance's own, or every declared one; those `context` cannot serve left out."""
        wanted = self.points if self.point is None else (self.point,)
        return tuple(p for p in wanted if self.available(p, context))

    def available(self, point: str, context: MetricContext | None) -> bool:
        """Whether `point` can be scored with `context` (default: always)."""
        return True

    def at_point(self, point: str) -> PointMetric:
        """An instance of one point, named `BASE@POINT`."""
        instance = self.at(point)()
        instance.name = point_name(self.name.partition("@")[0] or type(self).__name__, point)
        return instance

    def members(self, targets: Sequence[TargetSpec], context: MetricContext | None) -> list[TargetSpec]:
        """The targets this point scores among those asked (a prevalence bin keeps its own)."""
        return list(targets)

    @property
    def pairable(self) -> bool:
        """Whether paired comparisons can score this point on each target from the predictions alone (they get no
        context): not a joint metric, nor a point bound to each seed's validation threshold."""
        return not self.joint

    def stored(self, targets: Sequence[TargetSpec], context: MetricContext | None) -> dict | None:
        """What metrics.json keeps of this metric besides its summaries (its `metric_points` block), or None."""
        return None

    def bind(self, context: MetricContext | None, seed: int, targets: Sequence[TargetSpec]) -> Metric:
        """The metric for one seed and its targets (one, or all of a joint metric's): a point that depends on the
        seed (a validation-chosen threshold) returns a copy holding what it needs; the default is the point itself."""
        return self


@lru_cache(maxsize=None)
def _point_class(base: type[PointMetric], point: str) -> type[PointMetric]:
    """One class per (metric, point), so that a point is the same class however often it is looked up."""
    if base.point is not None:
        base = base.__mro__[1]
    if point not in base.points:
        raise UnknownNameError(f"{base.title or base.__name__} is read at the points {', '.join(base.points)}, not at "
                               f"{point!r} (write NAME@POINT, e.g. NAME@{base.points[0]}).")
    return type(f"{base.__name__}At{point}", (base,), {"point": point, "title": f"{base.title} @{point}",
                                                         "__module__": base.__module__})
