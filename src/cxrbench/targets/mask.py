"""Mask targets: `structures` outlined on the image, one result column and one decoder channel per structure.

The loader's column holds a reference its mask reader opens lazily (masks are never all in memory); an optional
binary companion column `<target>:present` says, without reading masks, whether any structure is drawn.
`lateral: true` when the structures have a side (left / right lung, ribs): a horizontal flip would swap them,
so augmentation may not flip. Segmentation decoders score them, per case (a Dice per image and structure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrbench.errors import SpecError
from cxrbench.targets import register
from cxrbench.targets.base import Target, TargetKind

if TYPE_CHECKING:
    import pandas as pd



def present_column(target: str) -> str:
    """The name of a mask target's optional companion column: 1.0 where any of its structures is drawn, else 0.0
    (known to the loader without reading masks)."""
    return f"{target}:present"


def presence(name: str, frame: pd.DataFrame) -> np.ndarray:
    """1 / 0 / NaN per row of `frame`: a mask target's structures drawn, none drawn, no mask reference."""
    known = frame[name].notna().to_numpy()
    present = present_column(name)
    values = frame[present].to_numpy(dtype=np.float32) if present in frame else np.ones(len(frame), dtype=np.float32)
    return np.where(known, values, np.nan).astype(np.float32)


@register
class Mask(TargetKind):
    name = "mask"
    evaluation = "segmentation"
    fields = ("lateral", "structures")
    per_case = True

    def check(self, target: Target, where: str) -> None:
        if not target.structures:
            raise SpecError(f"{where}: a mask target needs `structures`, the names of what is outlined.")

    def result_columns(self, target: Target) -> tuple[str, ...]:
        return target.structures

    def scored_targets(self, target: Target) -> tuple[Target, ...]:
        """One mask target per structure, with its owner's metrics (the macro average is over structures)."""
        return tuple(dataclasses.replace(target, name=s, structures=(s,), unit="", lateral=False) for s in target.structures)

    def holds(self, target: Target) -> None:
        return None

    def label_values(self, target: Target, frame: pd.DataFrame) -> np.ndarray:
        """Whether its structures are drawn (`<name>:present`, else 1 wherever there is a mask reference)."""
        return presence(target.name, frame)

    def counts(self, target: Target, frame: pd.DataFrame) -> dict[str, Any]:
        values = frame[target.name]
        counts = {"with_mask": int(values.notna().sum()), "unknown": int(values.isna().sum())}
        if present_column(target.name) in frame:  # a loader's companion column: has the structure (1) or not (0)
            drawn = presence(target.name, frame)
            counts.update(present=int((drawn == 1).sum()), empty=int((drawn == 0).sum()))
        return counts

    def missing(self, target: Target, counts: Mapping[str, Any]) -> str | None:
        """Never refused here: images without a mask take part in no split (`evaluations.segmentation`)."""
        return None
