"""The head contract: fit on training features/labels (validation for monitoring or selection), then score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrbench.errors import SpecError
from cxrbench.heads.params import check_params
from cxrbench.progress import Progress, SilentProgress
from cxrbench.specs import HeadSpec
from cxrbench.threads import Work


@dataclass
class FeatureSet:
    """Features of one split: `global_` [N, D], optional `patches` [N, H, W, D]; labels [N, T] with NaN unknown.

    `patches` may be cached rows read lazily (`CachedRows`): heads index it a batch at a time.
    `standardise_on`: the features whose statistics standardise the inputs, when not these (a label budget trains
    on a few images but takes statistics over the whole training split, labelled or not).
    """

    global_: np.ndarray
    labels: np.ndarray
    patches: Any = None
    standardise_on: "FeatureSet | None" = None


@dataclass
class FitReport:
    """What a head chose and saw while training, stored with the results."""

    chosen: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    #: one row per configuration tried (e.g. a grid's validation scores), stored as the run's selection.csv
    table: list[dict[str, Any]] = field(default_factory=list)


class Head(ABC):
    #: which cached arrays the head needs ("global", "patches"); may depend on the parameters
    needs: tuple[str, ...] = ("global",)
    #: benchmark task types the head can train for
    task_types: tuple[str, ...] = ("multilabel", "binary")
    #: hyperparameters this head accepts, with their defaults (which also fix their types)
    defaults: dict[str, Any] = {}
    #: scalar parameters that may be given as a list, every value trained (a grid's axes)
    sweeps: tuple[str, ...] = ()
    #: how the head's steps use CPU threads (`cxrbench.threads`): "light" heads train on one thread
    work: Work = "light"

    def __init__(self, spec: HeadSpec, overrides: dict[str, Any] | None = None, task_type: str = "multilabel"):
        unknown = set(spec.params) - set(self.defaults) | set(overrides or {}) - set(self.defaults)
        if unknown:
            raise SpecError(f"Head '{spec.name}' has no parameter(s) {sorted(unknown)}; it accepts {sorted(self.defaults)}.")
        self.spec = spec
        if task_type not in self.task_types:
            raise SpecError(f"Head '{spec.name}' trains {' / '.join(self.task_types)} tasks, not {task_type}; use a grid head (e.g. mlp).")
        given = {**spec.params, **(overrides or {})}
        self.params = {**self.defaults, **check_params(f"Head '{spec.name}'", self.defaults, given, self.sweeps)}
        self.task_type = task_type

    @abstractmethod
    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress()) -> FitReport:
        """Train on `train` (choosing among settings on `val` where the head has several); `progress` shows the
        epochs or fits as they go, so that a long training is never a frozen bar."""

    @abstractmethod
    def predict(self, features: FeatureSet) -> np.ndarray:
        """Scores [N, T] (probabilities for classification)."""
