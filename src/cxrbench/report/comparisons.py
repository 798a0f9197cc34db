"""Paired comparisons written by `cxrbench compare` (`results.store.comparison_stem`: OUT/BENCHMARK/comparisons/).

One row per (encoder, head, target) against a reference encoder: `diff` is the encoder's mean minus the reference's
(raw fractions, as metrics.json), `ci_low`/`ci_high` its paired bootstrap interval, `verdict` the decision after
the multiple-comparison `correction`. The report draws each file as a forest plot and a table; it reads the file
as written and never recomputes a test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrbench.errors import DataError
from cxrbench.results.comparisons import BETTER, COLUMNS, SAME, UNTESTED, WORSE

NUMERIC = ("mean_reference", "mean_encoder", "diff", "ci_low", "ci_high", "p_bootstrap", "p_delong", "p_ttest", "p_adjusted")
VERDICTS = (BETTER, WORSE, SAME, UNTESTED)


def read_comparison(path: Path) -> pd.DataFrame:
    """The file's rows with numeric columns as floats (empty p-values as NaN); a DataError naming what is wrong
    when the file is not a comparison."""
    try:
        frame = pd.read_csv(path, dtype={"benchmark": str, "metric": str, "reference": str, "reference_variant": str,
                                         "encoder": str, "variant": str, "head": str, "target": str, "correction": str,
                                         "verdict": str}, keep_default_na=False,
                            na_values={column: [""] for column in NUMERIC})
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as a comparison CSV: {exc}") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)} of `cxrbench compare`.")
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    unknown = sorted(set(frame["verdict"]) - set(VERDICTS))
    if unknown:
        raise DataError(f"{path}: unknown verdict(s) {', '.join(map(repr, unknown))}; expected one of {', '.join(VERDICTS)}.")
    return frame[list(COLUMNS)]
