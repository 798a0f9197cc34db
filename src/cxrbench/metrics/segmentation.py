"""Segmentation metrics: averages of per-case values, each over the cases it is defined on.

A mask target is scored per structure. Its per-case values are computed once, when the test masks are predicted
(`per_case_values`, MONAI's `compute_dice` / `compute_hausdorff_distance`), and stored in `predictions.parquet`,
one row per image, structure and seed, with `label` = 1 when the reference mask has the structure and 0 when it
is empty. A metric here averages one of those columns over the cases it names, so that the bootstrap resamples
cases like any other metric and the empty-mask policy is part of the metric's name, never mixed silently:

- `dice`: Dice on the cases whose reference has the structure (RAD-DINO's "test cases that have a mask");
- `dice_empty_is_1`: Dice on every case, an empty prediction of an empty reference counting 1 (the SIIM-ACR Kaggle
  convention), a non-empty prediction of an empty reference 0;
- `detection_rate`: of the cases whose reference has the structure, the share whose prediction has any pixel;
- `hd95`: the 95th-percentile Hausdorff distance in mask pixels, on the cases where both reference and prediction
  have the structure (undefined otherwise).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np

from cxrbench.metrics.base import Metric

#: the per-case columns of a mask target's predictions, in `per_case_values` order
CASE_COLUMNS = ("dice", "dice_empty_is_1", "predicted", "hd95")


def per_case_values(predicted: np.ndarray, reference: np.ndarray, hd95: bool = True) -> dict[str, np.ndarray]:
    """Per structure values of one case: `predicted` and `reference` are boolean [S, H, W] on the same grid.

    dice: MONAI's Dice, NaN where the reference is empty; dice_empty_is_1: MONAI's Dice with empty references kept
    (1 if the prediction is empty too, else 0); predicted: 1 if the prediction has the structure; hd95: MONAI's
    95th-percentile Hausdorff distance in pixels, NaN unless both masks have the structure.
    """
    import torch  # imported when scoring: `cxrbench list` reads the metric classes
    from monai.metrics import compute_dice, compute_hausdorff_distance

    p = torch.from_numpy(np.ascontiguousarray(predicted, dtype=np.float64))[None]
    y = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float64))[None]
    dice = compute_dice(p, y, include_background=True, ignore_empty=True)[0].double().numpy()
    kaggle = compute_dice(p, y, include_background=True, ignore_empty=False)[0].double().numpy()
    present = predicted.reshape(len(predicted), -1).any(axis=1)
    has = reference.reshape(len(reference), -1).any(axis=1)
    distance = np.full(len(predicted), np.nan)
    both = present & has
    if hd95 and both.any():
        both_index = np.flatnonzero(both)
        with warnings.catch_warnings():  # MONAI 1.5-1.6 warns about an argument it passes itself
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
            values = compute_hausdorff_distance(p[:, both_index], y[:, both_index], include_background=True, percentile=95)
        distance[both_index] = values[0].double().numpy()
    return {"dice": dice, "dice_empty_is_1": kaggle, "predicted": present.astype(np.float64), "hd95": distance}


class CaseAverage(Metric):
    """The weighted mean of one per-case column over the cases `selects` keeps (labels: reference has the structure)."""

    kinds = ("mask",)
    #: the summary also reports the spread of the per-case values (`stats.summary`, `case_std`)
    averages_cases: ClassVar[bool] = True
    #: the column of the predictions this metric averages
    case_value: ClassVar[str] = "dice"
    #: which cases: "with_structure" (the reference has it) or "all"
    cases: ClassVar[str] = "with_structure"

    def selects(self, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
        keep = labels == 1 if self.cases == "with_structure" else np.ones(len(labels), dtype=bool)
        return keep & np.isfinite(values)

    def score(self, labels, scores):
        return float(np.mean(scores)) if len(scores) else float("nan")

    def weighted(self, labels, scores, weights):
        weights = np.atleast_2d(weights).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return weights @ scores / weights.sum(axis=1)


class Dice(CaseAverage):
    title = "Dice"
    description = "Dice per case (monai.metrics.compute_dice), mean over the test cases whose reference has the structure"


class DiceEmptyIsOne(CaseAverage):
    title = "Dice (empty = 1)"
    case_value = "dice_empty_is_1"
    cases = "all"
    description = ("Dice per case over every test case, an empty prediction of an empty reference counting 1 "
                   "(SIIM-ACR Kaggle convention; compute_dice ignore_empty=False)")


class DetectionRate(CaseAverage):
    title = "Detection rate"
    case_value = "predicted"
    description = "share of the test cases whose reference has the structure where the prediction has any pixel"


class HD95(CaseAverage):
    title = "HD95"
    case_value = "hd95"
    higher_is_better = False
    scale = 1.0
    unit = "px"
    decimals = 1
    description = ("95th-percentile Hausdorff distance in mask pixels (monai.metrics.compute_hausdorff_distance), "
                   "mean over the test cases where reference and prediction both have the structure")
