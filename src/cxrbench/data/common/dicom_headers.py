"""Patient id, sex and age from DICOM headers (read without pixel data), for datasets whose CSVs lack them."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pydicom

from cxrbench.data.common.images import DATASET_FIX
from cxrbench.errors import ImageReadError

_TAGS = ["PatientID", "PatientSex", "PatientAge"]


def _age_years(value: str) -> float:
    match = re.fullmatch(r"(\d{1,3})([DWMY])", str(value).strip().upper())
    if not match:
        return np.nan
    number, unit = int(match.group(1)), match.group(2)
    return number / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]


def _read_one(path: str) -> tuple[str, str, float]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except Exception as exc:
        raise ImageReadError(
            f"Cannot read the DICOM header of {path}: {type(exc).__name__}: {str(exc).rstrip('.')}. {DATASET_FIX}"
        ) from exc
    sex = str(getattr(ds, "PatientSex", "") or "").strip().upper()
    return (
        str(getattr(ds, "PatientID", "") or "").strip(),
        sex if sex in ("M", "F") else "",
        _age_years(getattr(ds, "PatientAge", "")),
    )


def read_patient_headers(paths: pd.Series, threads: int = 8) -> pd.DataFrame:
    """Columns patient_id ('' when absent), sex ('M'/'F'/''), age_years (NaN when absent); same index as paths."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        rows = list(pool.map(_read_one, paths.astype(str)))
    return pd.DataFrame(rows, columns=["patient_id", "sex", "age_years"], index=paths.index)
