"""Reading and rewriting the gzip-compressed CSVs of the MIMIC releases (MIMIC-CXR-JPG, MIMIC-IV) in tests, every cell
kept as the text the file holds, so that a test that damages one cell leaves the others byte-identical."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd


def read_gz_csv(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


def write_gz_csv(path: Path, frame: pd.DataFrame) -> None:
    with gzip.open(path, "wt", newline="") as handle:
        frame.to_csv(handle, index=False)
