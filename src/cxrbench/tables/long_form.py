"""CSV: a paper table in long form, one row per (row, column) with a value, raw fractions."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from cxrbench.results.labels import variant_text
from cxrbench.tables.model import DIFF, OURS, PUBLISHED, PaperTable
from cxrbench.tables.paper import published_cell, published_frame

LONG_COLUMNS = ["layout", "group", "column", "source", "model", "encoder", "variant", "head", "benchmark", "metric", "task",
                "mean", "std", "ci_low", "ci_high", "published_model", "published_mean", "diff", "in_pretraining", "versus",
                "deviations"]


def long_frame(table: PaperTable) -> pd.DataFrame:
    """One row per (row, column) with a value; raw fractions. Our rows carry the matching published mean and the
    difference, and the table's deviations from the paper as JSON (a list of {what, why}; `null`: no YAML declares
    them): one column keeps the long form one row per number, and each number keeps how it was made beside it."""
    paper = {row.model: row.cells for row in table.of_kind(PUBLISHED)}
    deviations = json.dumps(None if table.deviations is None else [dataclasses.asdict(d) for d in table.deviations],
                            ensure_ascii=False)
    records = []
    for row in table.rows:
        if row.kind == DIFF:
            continue
        for i, (column, cell) in enumerate(zip(table.columns, row.cells)):
            if cell is None:
                continue
            record = {"layout": table.layout.name, "group": column.group, "column": column.title,
                      "benchmark": column.benchmark, "metric": column.metric, "task": column.task, **cell,
                      "published_model": None, "published_mean": None, "diff": None,
                      "in_pretraining": ";".join(row.overlap[i]) if row.overlap else "",
                      "versus": row.verdicts[i] if row.verdicts else None}
            if row.kind == OURS:
                model = column.published.paper_model(row.encoder, row.head) if column.published else None
                theirs = paper.get(model, [None] * len(table.columns))[i] if model else None
                if theirs is None and model:
                    theirs = published_cell(published_frame(column, table), model, column.task)
                record.update(source="cxrbench", model=row.encoder, encoder=row.encoder, variant=variant_text(row.variant),
                              head=row.head, deviations=deviations)
                if theirs is not None:
                    record.update(published_model=model, published_mean=theirs["mean"], diff=cell["mean"] - theirs["mean"])
            else:
                record.update(source=column.published.source if column.published else "published", model=row.model,
                              encoder=None, variant=None, head=None)
            records.append(record)
    return pd.DataFrame(records, columns=LONG_COLUMNS)
