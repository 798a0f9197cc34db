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

    def label_counts(self, split: np.ndarray | None = None) -> pd.DataFrame:
        """Positive / negative / unknown counts per split and task (what `cxrbench data check` prints).

        `split`: one split name per image (e.g. a seed's manifest); default the loader's own `split` column.
        """
        groups = self.samples.groupby(self.samples["split"] if split is None else np.asarray(split), sort=False)
        rows = []
        for name, frame in groups:
            for task in self.tasks:
                values = frame[task]
                rows.append(
                    {
                        "split": name,
                        "task": task,
                        "positive": int((values == 1).sum()),
                        "negative": int((values == 0).sum()),
                        "unknown": int(values.isna().sum()),
                        "images": len(frame),
                        "patients": int(frame["patient_id"].nunique()),
                    }
                )
        return pd.DataFrame(rows)

    def require_both_classes(self, split: np.ndarray | None = None, where: str = "", fixes: str = "") -> None:
        """Refuse a train or test split in which a task has no positive or no negative: nothing to learn or measure.

        `fixes`: what the caller can change (e.g. a larger label budget), said before the fixes that always apply.
        """
        counts = self.label_counts(split)
        counts = counts[counts["split"].isin(["train", "test"])]
        bad = counts[(counts["positive"] == 0) | (counts["negative"] == 0)]
        if not bad.empty:
            row = bad.iloc[0]
            missing = "positive" if row["positive"] == 0 else "negative"
            raise DataError(
                f"Task '{row['task']}' has no {missing} example in the {row['split']} split{f' ({where})' if where else ''} of "
                f"{self.name} ({row['images']} images at {self.root}); its metrics are undefined. "
                f"{f'{fixes[:1].upper()}{fixes[1:]}, add data,' if fixes else 'Add data'} or drop the task from the benchmark spec."
            )
