"""The contract between dataset loaders and the rest of cxrbench.

A loader returns `BenchmarkData`: one row per image with `image_id`, `patient_id`, `path`, `split`
(official split: train / test), optional `sex` and `age_years`, and one float column per task holding
1.0, 0.0 or NaN (unknown, excluded from losses and metrics), as in torchxrayvision's datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.errors import DataError

REQUIRED_COLUMNS = ("image_id", "patient_id", "path", "split")


@dataclass
class BenchmarkData:
    name: str
    root: Path
    tasks: tuple[str, ...]
    samples: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = [c for c in (*REQUIRED_COLUMNS, *self.tasks) if c not in self.samples.columns]
        if missing:
            raise DataError(f"Loader for '{self.name}' returned no column(s) {missing}.")
        if self.samples["image_id"].duplicated().any():
            dup = self.samples.loc[self.samples["image_id"].duplicated(), "image_id"].iloc[0]
            raise DataError(f"Image id '{dup}' appears more than once in {self.name} at {self.root}.")
        self.samples = self.samples.reset_index(drop=True)

    def labels(self, rows: pd.DataFrame | None = None) -> np.ndarray:
        frame = self.samples if rows is None else rows
        return frame[list(self.tasks)].to_numpy(dtype=np.float32)

    def label_counts(self, split_column: str = "split") -> pd.DataFrame:
        """Positive / negative / unknown counts per split and task (what `cxrbench data check` prints)."""
        rows = []
        for split, frame in self.samples.groupby(split_column, sort=False):
            for task in self.tasks:
                values = frame[task]
                rows.append(
                    {
                        "split": split,
                        "task": task,
                        "positive": int((values == 1).sum()),
                        "negative": int((values == 0).sum()),
                        "unknown": int(values.isna().sum()),
                        "images": len(frame),
                        "patients": int(frame["patient_id"].nunique()),
                    }
                )
        return pd.DataFrame(rows)

    def require_both_classes(self, split_column: str = "split") -> None:
        """Refuse a split in which a task has no positive or no negative example: its AUPRC is undefined."""
        counts = self.label_counts(split_column)
        bad = counts[(counts["positive"] == 0) | (counts["negative"] == 0)]
        if not bad.empty:
            row = bad.iloc[0]
            missing = "positive" if row["positive"] == 0 else "negative"
            raise DataError(
                f"Task '{row['task']}' has no {missing} example in the {row['split']} split of {self.name} "
                f"({row['images']} images at {self.root}); its metrics are undefined. Add data, choose another "
                "label rule (--label-rule), or drop the task from the benchmark spec."
            )
