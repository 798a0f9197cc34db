"""BRAX, the Brazilian labeled chest X-ray dataset (Reis et al., Sci Data 2022), from its PhysioNet 1.1.0 layout:

    ROOT/<folder>/master_spreadsheet_update.csv   one row per image: DicomPath, PngPath, PatientID, PatientSex (M / F /
                                                   O), PatientAge (5-year groups, "85 or more"), AccessionNumber,
                                                   StudyDate, the 14 CheXpert labels (1 / 0 / -1 / blank),
                                                   ViewPosition (AP, PA, LL, RL ...), Rows, Columns, Manufacturer
    ROOT/<folder>/images/...png                    PngPath, relative to the folder (DicomPath: the DICOM beside it)

Columns are read by name, so their order (and a leading unnamed index column) does not matter. The labels come from
a Portuguese report labeller with CheXpert's 14 findings; the uncertain and blank policies are those of
`mimic-cxr`. The patient is PatientID; the image id its PngPath. BRAX has no official split: cxrbench splits the
patients (benchmarks/brax.yaml).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import MISSING_FILES, check_unique, present_files, read_csv, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings, require_labels
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

#: BRAX's 14 label columns: CheXpert's findings (BRAX's own constant, so that the family imports no other family)
LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
          "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax",
          "Support Devices")
UNCERTAIN = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}  # -1: U-Ignore, U-Ones, U-Zeros
BLANK = {"negative": 0.0, "unknown": np.nan}
DEFAULTS: dict[str, Any] = {
    "folder": ["brax/1.1.0", "physionet.org/files/brax/1.1.0", "."],
    "labels_csv": ["master_spreadsheet_update.csv", "master_spreadsheet.csv"],
    "views": ["PA", "AP"],
    "uncertain": "ignore",
    "blank": "negative",
    "missing_images": "error",
}
REQUIRED = ["PngPath", "PatientID", "PatientSex", "PatientAge", "ViewPosition", *LABELS]
SEXES = {"M": "M", "F": "F", "O": ""}  # "O" (other) belongs to neither sex group
#: PatientAge as released: a 5-year group "40-44", the top group "85 or more", or a plain number of years
AGE_PATTERN = re.compile(r"^\s*(\d+)\s*(?:(?:-|to)\s*\d+|or more|\+)?\s*$", re.IGNORECASE)


def _as_list(value: Any) -> list[str]:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]


def labels_file(root: Path, folders: list[str], names: list[str]) -> Path:
    """The first folder (relative to root) holding one of the label spreadsheet names, and that file."""
    for folder in folders:
        for name in names:
            if (root / folder / name).is_file():
                return root / folder / name
    raise DataError(f"No BRAX label spreadsheet ({' or '.join(names)}) in {root} under {', '.join(folders)}. Pass "
                    "--data-root the folder holding BRAX 1.1.0 (its master_spreadsheet_update.csv and images/), or "
                    "set dataset.folder.")


def age_years(raw: pd.DataFrame, path: Path) -> pd.Series:
    """The lower bound of each PatientAge group in years (NaN blank): exact for RayDINO's 35 / 60 age edges, which are
    multiples of five; text that is no age group is refused, naming the row."""
    text = raw["PatientAge"].fillna("").astype(str).str.strip()
    found = text.str.extract(AGE_PATTERN, expand=False)
    bad = found.isna() & text.ne("")
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(path, position, "PatientAge", f"is {text.iloc[position]!r}, not an age group",
                        "BRAX writes 5-year groups such as '40-44' or '85 or more'; correct the row or leave it empty",
                        f"PngPath {raw['PngPath'].iloc[position]}")
    return pd.to_numeric(found, errors="coerce").astype(np.float64)


def label_values(raw: pd.DataFrame, path: Path, uncertain: str, blank: str) -> pd.DataFrame:
    """The 14 labels as 1.0 / 0.0 / NaN after the uncertain (-1) and blank policies; other values refused by row."""
    out = {}
    for label in LABELS:
        text = raw[label].fillna("").astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = ~values.isin([1.0, 0.0, -1.0]) & text.ne("")
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, label, f"is {text.iloc[position]!r}",
                            "BRAX labels are 1 (positive), 0 (negative), -1 (uncertain) or empty; correct the row",
                            f"PngPath {raw['PngPath'].iloc[position]}")
        numbers = values.to_numpy(dtype=np.float64)
        out[label] = np.where(np.isnan(numbers), BLANK[blank], np.where(numbers == -1.0, UNCERTAIN[uncertain], numbers))
    return pd.DataFrame(out, index=raw.index)


def image_ids(raw: pd.DataFrame, path: Path) -> pd.Series:
    """PngPath with '/' separators; a path that is absolute, climbs out ('..') or is empty is refused by row."""
    text = raw["PngPath"].fillna("").astype(str).str.strip().str.replace("\\", "/", regex=False)
    bad = text.eq("") | text.str.startswith("/") | text.str.contains(r"(?:^|/)\.\.(?:/|$)")
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(path, position, "PngPath", f"is {text.iloc[position]!r}",
                        "It names the image's PNG relative to the BRAX folder (images/...png); correct or remove the row")
    return text


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    require_labels(spec, LABELS, "BRAX (CheXpert) label")
    check_choice(spec, "uncertain", settings["uncertain"], tuple(UNCERTAIN))
    check_choice(spec, "blank", settings["blank"], tuple(BLANK))
    check_choice(spec, "missing_images", settings["missing_images"], MISSING_FILES)
    for key in ("folder", "labels_csv", "views"):
        settings[key] = _as_list(settings[key])
    settings["views"] = [v.upper() for v in settings["views"]]
    return settings


def load_brax(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "BRAX", "BRAX 1.1.0 (master_spreadsheet_update.csv and images/)")
    settings = _settings(spec, options)
    path = labels_file(root, settings["folder"], settings["labels_csv"])
    raw = read_csv(path, REQUIRED, "BRAX label spreadsheet", text_columns=["PngPath", "PatientID", "PatientAge",
                   "PatientSex", "ViewPosition", "AccessionNumber", *LABELS]).reset_index(drop=True)
    ids = image_ids(raw, path)
    check_unique(raw.assign(PngPath=ids), ["PngPath"], path)
    patients = raw["PatientID"].fillna("").astype(str).str.strip()
    if patients.eq("").any():
        position = int(np.flatnonzero(patients.eq("").to_numpy())[0])
        raise row_error(path, position, "PatientID", "is empty", "Every BRAX image names its patient; re-download the "
                        "spreadsheet or remove the row", f"PngPath {ids.iloc[position]}")
    sex = raw["PatientSex"].fillna("").astype(str).str.strip().str.upper()
    frame = pd.DataFrame({"image_id": ids, "patient_id": patients, "path": [str(path.parent / i) for i in ids],
                          "split": POOL, "sex": sex.map(SEXES).fillna(""), "age_years": age_years(raw, path),
                          "view": raw["ViewPosition"].fillna("").astype(str).str.strip().str.upper()})
    frame = pd.concat([frame, label_values(raw, path, settings["uncertain"], settings["blank"])], axis=1)
    keep = frame["view"].isin(settings["views"])
    counts = frame["view"].replace("", "unknown").value_counts()
    notes = [f"{path.name}: {int(keep.sum())} of {len(frame)} images have ViewPosition {' / '.join(settings['views'])} "
             f"(all views: {', '.join(f'{v} {int(n)}' for v, n in counts.items())})",
             f"labels: uncertain (-1) -> {settings['uncertain']}, blank -> {settings['blank']}; split: none released, "
             "cxrbench splits the patients (split.scheme random)"]
    frame, missing = present_files(frame[keep].reset_index(drop=True), settings["missing_images"], "BRAX images",
                                   shown="image_id")
    frame["no_finding"] = frame["No Finding"]
    columns = ["image_id", "patient_id", "path", "split", "sex", "age_years", "no_finding", *LABELS]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes + missing)
