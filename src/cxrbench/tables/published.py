"""The papers' published numbers (copied from the papers' tables into results/published/), as a long frame."""

from __future__ import annotations

import pandas as pd

from cxrbench.resources import published_dir
from cxrbench.specs import PublishedSpec


def read_published(spec: PublishedSpec) -> pd.DataFrame:
    """Long form: model, task ('macro' for the aggregate), mean, std, in the paper's units divided by `scale`; a blank
    cell (a figure's competitor the text gives no number for) has no row."""
    path = published_dir() / spec.file
    table = pd.read_csv(path, comment="#")
    mean_suffix, std_suffix = spec.std_suffix
    rows = []
    for _, record in table.iterrows():
        model = str(record[spec.model_column])
        for task, column in spec.task_columns.items():
            std = record.get(f"{column}{std_suffix}")
            if pd.isna(record[f"{column}{mean_suffix}"]):  # a blank cell: the paper gives no number for this model
                continue
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "mean": float(record[f"{column}{mean_suffix}"]) / spec.scale,
                    "std": None if std is None or pd.isna(std) else float(std) / spec.scale,
                }
            )
        if spec.aggregate_column:
            rows.append({"model": model, "task": "macro", "mean": float(record[spec.aggregate_column]) / spec.scale, "std": None})
    return pd.DataFrame(rows)
