"""Regression targets: a number in the target's `unit`; the loader's column holds the value or NaN.

Every regression target of a benchmark trains in one head; the long-form `score` is the predicted value. It has no
classes, so --shots does not apply (a training fraction does)."""

from __future__ import annotations

from cxrbench.targets import register
from cxrbench.targets.base import TargetKind


@register
class Regression(TargetKind):
    """The base's single numeric column, as it is."""

    name = "regression"
