"""RANZCR CLiP, catheter and line position challenge (Kaggle 2020), from its release layout:

    ROOT/<folder>/train.csv     StudyInstanceUID, ETT - Abnormal, ETT - Borderline, ETT - Normal, NGT - Abnormal,
                                NGT - Borderline, NGT - Incompletely Imaged, NGT - Normal, CVC - Abnormal,
                                CVC - Borderline, CVC - Normal, Swan Ganz Catheter Present (each 0 / 1), PatientID
    ROOT/<folder>/train/<StudyInstanceUID>.jpg

(train_annotations.csv, the line drawings, is not needed; the challenge's test images have no released labels.)
The targets are release columns, one binary target per tube and position. RayDINO (Fig. 3c) reports three position
groups, Normal / Borderline / Abnormal, each over the endotracheal tube (ETT), nasogastric tube (NGT) and central
venous catheter (CVC): `GROUPS`. Its group frequencies (36.9 / 11.2 / 3.9%) are the MEANS of the three tubes'
prevalences in train.csv, not the share of images with any tube so placed (most images hold a normally placed CVC),
so a group's AUPRC is the macro AUPRC over its three columns. "NGT - Incompletely Imaged" and the Swan Ganz column
belong to no group.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import check_file_names, check_unique, read_csv, resolve_image_files, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings, require_labels
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

TUBES = ("ETT", "NGT", "CVC")
LABEL_COLUMNS = ("ETT - Abnormal", "ETT - Borderline", "ETT - Normal", "NGT - Abnormal", "NGT - Borderline",
                 "NGT - Incompletely Imaged", "NGT - Normal", "CVC - Abnormal", "CVC - Borderline", "CVC - Normal",
                 "Swan Ganz Catheter Present")
#: RayDINO's position group -> its member targets (release columns), one per tube
GROUPS = {position: tuple(f"{tube} - {position}" for tube in TUBES) for position in ("Normal", "Borderline", "Abnormal")}
DEFAULTS: dict[str, Any] = {"folder": ["ranzcr-clip-catheter-line-classification", "."], "labels_csv": "train.csv",
                            "images_dir": "train"}


def _folder(root: Path, folders: Any, name: str) -> Path:
    names = [folders] if isinstance(folders, str) else list(folders)
    for folder in names:
        if (root / folder / name).is_file():
            return root / folder
    raise DataError(f"No RANZCR CLiP {name} in {root} under {', '.join(names)}. Pass --data-root the folder holding the "
                    "Kaggle download (train.csv and train/), or set dataset.folder.")


def release_labels(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The 11 release columns as 0.0 / 1.0; anything else (a blank included: the release has none) is refused by row."""
    out = {}
    for column in LABEL_COLUMNS:
        text = raw[column].fillna("").astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = ~values.isin([0.0, 1.0])
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, column, f"is {text.iloc[position]!r}", "RANZCR labels are 0 or 1; correct the row",
                            f"StudyInstanceUID {raw['StudyInstanceUID'].iloc[position]}")
        out[column] = values.to_numpy(dtype=np.float64)
    return pd.DataFrame(out, index=raw.index)


def load_ranzcr_catheters(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "RANZCR CLiP", "train.csv and train/ of the Kaggle download")
    settings = dataset_settings(spec, options, DEFAULTS)
    require_labels(spec, LABEL_COLUMNS, "RANZCR CLiP label column")
    folder = _folder(root, settings["folder"], settings["labels_csv"])
    path = folder / settings["labels_csv"]
    raw = read_csv(path, ["StudyInstanceUID", *LABEL_COLUMNS, "PatientID"], "RANZCR CLiP labels",
                   text_columns=["StudyInstanceUID", "PatientID", *LABEL_COLUMNS]).reset_index(drop=True)
    raw["StudyInstanceUID"] = raw["StudyInstanceUID"].fillna("").astype(str).str.strip()
    raw["PatientID"] = raw["PatientID"].fillna("").astype(str).str.strip()
    check_file_names(raw, ["StudyInstanceUID"], path)
    check_unique(raw, ["StudyInstanceUID"], path)
    for column in ("StudyInstanceUID", "PatientID"):
        if raw[column].eq("").any():
            position = int(np.flatnonzero(raw[column].eq("").to_numpy())[0])
            raise row_error(path, position, column, "is empty", "Every RANZCR image has a StudyInstanceUID and a "
                            "PatientID; re-download train.csv or remove the row")
    labels = release_labels(raw, path)
    frame = pd.DataFrame({"image_id": raw["StudyInstanceUID"], "patient_id": raw["PatientID"], "split": POOL})
    frame["path"] = resolve_image_files(folder / settings["images_dir"], raw["StudyInstanceUID"], [".jpg"], "RANZCR images")
    frame = pd.concat([frame, labels], axis=1)
    shares = ", ".join(f"{g} {100 * labels[list(members)].mean(axis=0).mean():.1f}%" for g, members in GROUPS.items())
    notes = [f"{path.name}: {len(frame)} images of {frame['patient_id'].nunique()} patients; position groups' mean tube "
             f"prevalence (RayDINO's 'freq'): {shares}; split: none released with labels, cxrbench splits the patients"]
    return BenchmarkData(spec.name, root, spec.targets, frame[["image_id", "patient_id", "path", "split", *LABEL_COLUMNS]], notes)
