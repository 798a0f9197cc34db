"""The base of every dataset's mask reader: `reader(target, reference)` -> bool [S, H, W].

A loader never decodes masks: its samples' mask column holds a reference (an image id, a dicom id) and
`BenchmarkData.mask_reader` opens one image's masks when an evaluation asks, one channel per structure of the target
in the target's order, on the mask's own pixel grid. Masks are never all in memory.

Why a base: each release stores its masks its own way (RLE rows in a CSV, GIFs per structure, polygons, COCO RLE, one
lung-field PNG), but every reader must refuse the same two mistakes the same way, before any file is opened: a target
the benchmark has no masks for, and a reference that is missing or names no image of the benchmark. A reader says
what it has (`targets`, `knows`) and how to read (`read`); `__call__` does the checking.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import Any, ClassVar

import numpy as np

from cxrbench.errors import DataError


def missing(reference: Any) -> bool:
    """A sample without a mask reference: None or NaN (pandas' missing value in an object column)."""
    return reference is None or (isinstance(reference, float) and np.isnan(reference))


class MaskReader(ABC):
    """Opens one image's masks when asked (module docstring)."""

    #: the dataset, as errors name it
    dataset: ClassVar[str]
    #: what a reference is, as errors name it
    reference_kind: ClassVar[str] = "an image id of the benchmark"

    @abstractmethod
    def targets(self) -> Collection[str]:
        """The mask targets this reader has masks for."""

    @abstractmethod
    def knows(self, target: str, reference: str) -> bool:
        """Whether `reference` names an image whose `target` masks this reader can open."""

    @abstractmethod
    def read(self, target: str, reference: str) -> np.ndarray:
        """bool [S, H, W] of a known target and reference."""

    def __call__(self, target: str, reference: Any) -> np.ndarray:
        if target not in self.targets():
            raise DataError(f"{self.dataset} has no mask target '{target}' (its mask targets: {sorted(self.targets())}).")
        if missing(reference) or not self.knows(target, str(reference)):
            raise DataError(f"{self.dataset} target '{target}': no mask for reference {reference!r} ({self.reference_kind}).")
        return self.read(target, str(reference))
