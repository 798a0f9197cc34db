"""What a target kind decides, in one place: the `TargetKind` interface every kind implements.

A benchmark names each target's kind by a string (`kind: binary` in its YAML); the kind object behind that string
answers every question that used to be an `if kind == ...` spread over the package: which spec fields it takes,
what a loader's column may hold and how it is counted, whether it can be learned and measured in a split, how a
head sees its labels, the long-form prediction rows, the result columns, how --shots stratifies it, and which
steps of scoring apply (decision thresholds, class probabilities, per-case values). Metrics say which kinds they
score by name (`Metric.kinds`), so "which metrics apply" is the registry's, keyed by the same string.

This module sits low: it imports nothing of cxrbench but `errors`, so specs, loaders, heads, metrics and
statistics can all ask a target for its kind. Kinds work on plain arrays and on the frames they are handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class Target(Protocol):
    """What a kind reads of a target: the fields of `cxrbench.specs.TargetSpec` (kinds see targets through this
    view, so that this package stays below the specs that use it)."""

    name: str
    kind: str
    classes: tuple[str, ...]
    unit: str
    structures: tuple[str, ...]
    metrics: tuple[str, ...]
    lateral: bool


#: the optional fields of a `TargetSpec` that belong to some kinds only (name, kind, unit and metrics are everyone's)
OWNED_FIELDS = ("lateral", "classes", "structures")


class TargetKind:
    """One kind of target. Subclasses set `name` and override what differs from a single numeric column.

    Class attributes say which shared steps apply, so that callers ask a question instead of naming kinds:
    `evaluation`: the evaluation that scores it (`probe` trains heads on features, `segmentation` decoders);
    `fields`: the `OWNED_FIELDS` it takes; `one_hot`: a head learns one such target alone, as a one-hot [N, K]
    over its classes with a probability per class (softmax), and predictions carry those probabilities;
    `thresholded`: a yes/no answer with a score, so a decision threshold is chosen on validation, ROC / PR curves
    and DeLong's test apply; `calibrated`: its scores are probabilities (reliability diagrams);
    `per_case`: scored from per-case columns of its predictions (a mask's Dice per image), not from `score`.
    """

    name: ClassVar[str]
    evaluation: ClassVar[str] = "probe"
    fields: ClassVar[tuple[str, ...]] = ()
    one_hot: ClassVar[bool] = False
    thresholded: ClassVar[bool] = False
    calibrated: ClassVar[bool] = False
    per_case: ClassVar[bool] = False

    # -- the spec -------------------------------------------------------------------------------------------------
    def check(self, target: Target, where: str) -> None:
        """Refuse a spec this kind cannot use (beyond fields it does not own, which `TargetSpec` refuses)."""

    def outputs(self, target: Target) -> int:
        """How many numbers a head predicts for it."""
        return 1

    def result_columns(self, target: Target) -> tuple[str, ...]:
        """What results are reported per (a table column each)."""
        return (target.name,)

    def scored_targets(self, target: Target) -> tuple[Target, ...]:
        """The targets a summary scores for it, one per result column."""
        return (target,)

    # -- a loader's column -----------------------------------------------------------------------------------
    def holds(self, target: Target) -> str | None:
        """What its label column may hold, said for an error message; None: the column is a reference the loader
        reads itself (not checked or converted here)."""
        return "a finite number or NaN"

    def invalid(self, target: Target, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Rows whose value it cannot hold: `values` the column as float64 (NaN where missing or not a number),
        `present` where the column has any entry at all."""
        known = ~np.isnan(values)
        return (known & ~np.isfinite(values)) | (present & ~known)

    def label_values(self, target: Target, frame: pd.DataFrame) -> np.ndarray:
        """[N] float32: its column of the label matrix (NaN unknown)."""
        return frame[target.name].to_numpy(dtype=np.float32)

    def counts(self, target: Target, frame: pd.DataFrame) -> dict[str, Any]:
        """Its counts among `frame`'s rows (what `cxrbench data check` prints): known, unknown, mean, std, min, max."""
        values = frame[target.name].to_numpy(dtype=np.float64)
        known = values[~np.isnan(values)]
        stats = dict.fromkeys(("mean", "std", "min", "max"), float("nan"))
        if len(known):
            stats = {"mean": float(known.mean()), "std": float(known.std(ddof=1)) if len(known) > 1 else float("nan"),
                     "min": float(known.min()), "max": float(known.max())}
        return {"known": int(len(known)), "unknown": int(np.isnan(values).sum()), **stats}

    def missing(self, target: Target, counts: Mapping[str, Any]) -> str | None:
        """What its `counts` in a split lack for it to be learned and measured there; None when nothing."""
        return "fewer than two distinct values" if counts["known"] < 2 or not counts["std"] > 0 else None

    # -- heads and predictions ---------------------------------------------------------------------------------
    def head_labels(self, targets: tuple[Target, ...], values: np.ndarray) -> np.ndarray:
        """A head's label matrix from its targets' columns `values` [N, T]: as they are."""
        return values

    def long_form(self, test: pd.DataFrame, seed: int, targets: tuple[Target, ...], labels: np.ndarray,
                  scores: np.ndarray, values: np.ndarray) -> list[pd.DataFrame]:
        """One frame per target, a row per test image (`test`: image_id, patient_id): `labels` [N, T] the head's
        labels, `scores` its predictions, `values` the targets' own columns [N, T]."""
        return [test.assign(seed=seed, task=t.name, label=labels[:, j], score=scores[:, j]) for j, t in enumerate(targets)]

    def shot_classes(self, target: Target, column: pd.Series) -> list[tuple[str, pd.Index]] | None:
        """For --shots: (class name, the patients that count for it) per class, from one target's training labels
        indexed by patient; None when it has no classes to count."""
        return None
