"""The head contract: fit on training features/labels (validation for monitoring or selection), then score."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrbench.errors import SpecError
from cxrbench.specs import HeadSpec


@dataclass
class FeatureSet:
    """Features of one split: `global_` [N, D], optional `patches` [N, H, W, D]; labels [N, T] with NaN unknown."""

    global_: np.ndarray
    labels: np.ndarray
    patches: np.ndarray | None = None


@dataclass
class FitReport:
    """What a head chose and saw while training, stored with the results."""

    chosen: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)


class Head(ABC):
    #: which cached arrays the head needs ("global", "patches")
    needs: tuple[str, ...] = ("global",)
    #: hyperparameters this head accepts, with their defaults
    defaults: dict[str, Any] = {}

    def __init__(self, spec: HeadSpec, overrides: dict[str, Any] | None = None):
        unknown = set(spec.params) - set(self.defaults) | set(overrides or {}) - set(self.defaults)
        if unknown:
            raise SpecError(f"Head '{spec.name}' has no parameter(s) {sorted(unknown)}; it accepts {sorted(self.defaults)}.")
        self.spec = spec
        self.params = {**self.defaults, **spec.params, **(overrides or {})}

    @abstractmethod
    def fit(self, train: FeatureSet, val: FeatureSet, seed: int) -> FitReport: ...

    @abstractmethod
    def predict(self, features: FeatureSet) -> np.ndarray:
        """Scores [N, T] (probabilities for classification)."""
