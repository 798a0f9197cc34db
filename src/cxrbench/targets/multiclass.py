"""Multiclass targets: one of the target's `classes`; the loader's column holds the class index (0-based, in the
order of `classes`) or NaN.

Each multiclass target trains in its own head, on a one-hot [N, K] (softmax over its classes). Its long-form rows
hold the class index as `label`, the predicted class as `score` and the class probabilities beside them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrbench.errors import SpecError
from cxrbench.targets import register
from cxrbench.targets.base import Target, TargetKind

if TYPE_CHECKING:
    import pandas as pd


#: the long-form column of a one-hot target's class probabilities (one per class, in the target's class order)
PROBABILITIES = "probabilities"


@register
class Multiclass(TargetKind):
    name = "multiclass"
    fields = ("classes",)
    one_hot = True
    calibrated = True

    def check(self, target: Target, where: str) -> None:
        if len(target.classes) < 2 or len(set(target.classes)) != len(target.classes):
            raise SpecError(f"{where}: a multiclass target needs `classes`, two or more distinct names.")

    def outputs(self, target: Target) -> int:
        return len(target.classes)

    def holds(self, target: Target) -> str:
        return f"a class index 0..{len(target.classes) - 1} ({', '.join(target.classes)}) or NaN"

    def invalid(self, target: Target, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        return ~np.isnan(values) & ~np.isin(values, np.arange(len(target.classes), dtype=np.float64))

    def counts(self, target: Target, frame: pd.DataFrame) -> dict[str, Any]:
        values = frame[target.name].to_numpy(dtype=np.float64)
        known = values[~np.isnan(values)]
        return {**{name: int((known == k).sum()) for k, name in enumerate(target.classes)}, "unknown": int(np.isnan(values).sum())}

    def missing(self, target: Target, counts: Mapping[str, Any]) -> str | None:
        return "fewer than two of its classes" if sum(counts[c] > 0 for c in target.classes) < 2 else None

    def head_labels(self, targets: tuple[Target, ...], values: np.ndarray) -> np.ndarray:
        """The one target's column [N, 1] as a one-hot [N, K] (a NaN row where the class is unknown)."""
        column = values[:, 0]
        onehot = np.zeros((len(column), self.outputs(targets[0])), dtype=np.float32)
        known = ~np.isnan(column)
        onehot[np.flatnonzero(known), column[known].astype(np.int64)] = 1.0
        onehot[~known] = np.nan
        return onehot

    def long_form(self, test: pd.DataFrame, seed: int, targets: tuple[Target, ...], labels: np.ndarray,
                  scores: np.ndarray, values: np.ndarray) -> list[pd.DataFrame]:
        frame = test.assign(seed=seed, task=targets[0].name, label=values[:, 0].astype(np.float64),
                            score=scores.argmax(axis=1).astype(np.float64))
        frame[PROBABILITIES] = list(scores.astype(np.float64))
        return [frame]

    def shot_classes(self, target: Target, column: pd.Series) -> list[tuple[str, pd.Index]]:
        """Per class, the patients one of whose training images has it."""
        out = []
        for k, name in enumerate(target.classes):
            has = column.eq(float(k)).groupby(level=0).any()
            out.append((f"class '{name}'", has.index[has.to_numpy()]))
        return out
