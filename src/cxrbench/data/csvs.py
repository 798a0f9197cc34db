"""Reading a dataset's label CSV with errors that name the file, the column and the row."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cxrbench.errors import DataError


def read_csv(path: Path, required: Iterable[str], what: str) -> pd.DataFrame:
    """Read `path` (as strings where ids are concerned) and check that every `required` column exists."""
    if not path.is_file():
        raise DataError(f"Missing {what}: {path} does not exist. Check --data-root points at the dataset's top folder.")
    try:
        frame = pd.read_csv(path, dtype={"image_id": str, "rad_id": str})
    except Exception as exc:
        raise DataError(f"Cannot parse {path} as CSV: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in required:
        if column not in frame.columns:
            close = difflib.get_close_matches(column, frame.columns, n=1)
            hint = f" (found '{close[0]}'; rename it)" if close else ""
            raise DataError(f"{path} has no column '{column}'{hint}. Its columns are: {', '.join(frame.columns)}.")
    return frame


def binary_labels(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> pd.DataFrame:
    """The label columns as float, after checking every value is 0 or 1 (CSV row numbers in errors)."""
    out = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(
                f"{path}, row {row + 2} (image {frame['image_id'].iloc[row]}): column '{column}' is "
                f"{frame[column].iloc[row]}; labels must be 0 or 1."
            )
        out[column] = values.astype("float32")
    return pd.DataFrame(out, index=frame.index)


def check_unique(frame: pd.DataFrame, keys: list[str], path: Path) -> None:
    duplicated = frame.duplicated(subset=keys, keep="first")
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        values = ", ".join(f"{k}={frame[k].iloc[row]}" for k in keys)
        raise DataError(f"{path}, row {row + 2}: duplicate entry ({values}); each must appear once.")


def check_files_exist(paths: pd.Series, what: str) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = "\n  ".join(str(p) for p in missing[:5])
        raise DataError(
            f"{len(missing)} of {len(paths)} {what} listed in the label CSV are missing, e.g.:\n  {shown}\n"
            "Complete the download, or remove their rows from the CSV to run on the images present."
        )
