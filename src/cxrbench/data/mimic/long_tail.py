"""MIMIC-CXR Long-Tail (`mimic-lt`): the CXR-LT 2023 challenge labels (Holste et al., PhysioNet 2023, "CXR-LT:
Multi-Label Long-Tailed Classification on Chest X-Rays" 1.1.0) joined to the MIMIC-CXR-JPG images:

    ROOT/cxr-lt-2023/{train,development,test}.csv     (labels_dir; the names are options) one row per image:
        dicom_id, and the 26 label columns (`LABELS`, 0 / 1); other columns (subject_id, study_id, fpath ...) are
        not needed: subject_id, when present, must agree with MIMIC-CXR-JPG's
    ROOT/mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz  (the `mimic-cxr` layout: subject, study, view of each dicom_id)
    ROOT/mimic-cxr-jpg/files/p<2>/p<subject>/s<study>/<dicom_id>.jpg

The challenge's split files ARE the split: train -> train, development -> train (cxrbench draws its validation
patients per seed), test -> test. RayDINO (Fig. 3a) bins the classes by their prevalence in the training data; that
binning is the `auprc_bins` metric's, computed on each run's training split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import MISSING_FILES, check_unique, first_existing, present_files, read_csv, row_error
from cxrbench.data.mimic.cxr import COMMON, image_path, jpg_folder, read_metadata
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings, require_labels
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

LABELS = (
    "Atelectasis", "Calcification of the Aorta", "Cardiomegaly", "Consolidation", "Edema", "Emphysema",
    "Enlarged Cardiomediastinum", "Fibrosis", "Fracture", "Hernia", "Infiltration", "Lung Lesion", "Lung Opacity",
    "Mass", "No Finding", "Nodule", "Pleural Effusion", "Pleural Other", "Pleural Thickening", "Pneumomediastinum",
    "Pneumonia", "Pneumoperitoneum", "Pneumothorax", "Subcutaneous Emphysema", "Support Devices", "Tortuous Aorta",
)
#: the challenge's split file option -> cxrbench's split
SPLIT_FILES = {"train_csv": "train", "val_csv": "train", "test_csv": "test"}
DEFAULTS: dict[str, Any] = {
    "images_dir": COMMON["images_dir"], "metadata_csv": COMMON["metadata_csv"], "labels_dir": "cxr-lt-2023",
    "train_csv": ["train.csv"], "val_csv": ["development.csv"], "test_csv": ["test.csv"], "views": "all",
    "missing_images": "error",
}


def _names(value: Any) -> list[str]:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]


def read_split_file(path: Path) -> pd.DataFrame:
    """One challenge CSV: dicom_id (lower case), subject_id ("" when absent), the 26 labels as 0.0 / 1.0, and the
    record's 0-based `position`; a label that is not 0 or 1 and a repeated dicom_id are refused by row."""
    raw = read_csv(path, ["dicom_id", *LABELS], "CXR-LT labels", text_columns=["dicom_id", "subject_id", *LABELS],
                   only=["dicom_id", "subject_id", *LABELS], file_name_columns=["dicom_id"]).reset_index(drop=True)
    raw["dicom_id"] = raw["dicom_id"].fillna("").str.strip().str.lower()
    check_unique(raw, ["dicom_id"], path)
    out = pd.DataFrame({"dicom_id": raw["dicom_id"], "position": np.arange(len(raw)),
                        "subject_id": raw["subject_id"].fillna("").str.strip() if "subject_id" in raw else ""})
    for label in LABELS:
        text = raw[label].fillna("").astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce")
        bad = ~values.isin([0.0, 1.0])
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, label, f"is {text.iloc[position]!r}",
                            "CXR-LT labels are 0 or 1; correct the row", f"dicom_id {raw['dicom_id'].iloc[position]}")
        out[label] = values.to_numpy(dtype=np.float64)
    return out


def _join(labels: pd.DataFrame, metadata: pd.DataFrame, path: Path, folder: Path) -> pd.DataFrame:
    """The labelled images with their MIMIC-CXR-JPG subject, study, view and path; an image absent from the metadata
    or whose subject_id disagrees with it is refused, naming the row."""
    meta = metadata.set_index("dicom_id")
    unknown = ~labels["dicom_id"].isin(meta.index)
    if unknown.any():
        row = labels[unknown].iloc[0]
        raise row_error(path, int(row["position"]), "dicom_id", f"is {row['dicom_id']!r}, absent from the MIMIC-CXR-JPG "
                        "metadata", "The CXR-LT labels name MIMIC-CXR-JPG images; use the metadata of MIMIC-CXR-JPG "
                        "2.0.0 / 2.1.0, or remove the row")
    joined = labels.join(meta[["subject_id", "study_id", "ViewPosition"]].rename(columns={"subject_id": "subject_id_jpg"}),
                         on="dicom_id")
    wrong = joined["subject_id"].ne("") & joined["subject_id"].ne(joined["subject_id_jpg"])
    if wrong.any():
        row = joined[wrong].iloc[0]
        raise row_error(path, int(row["position"]), "subject_id", f"is {row['subject_id']!r}, but MIMIC-CXR-JPG gives "
                        f"image {row['dicom_id']} to subject {row['subject_id_jpg']}", "Re-download the label file")
    joined["patient_id"] = joined["subject_id_jpg"]
    joined["path"] = [str(image_path(folder, s, t, d)) for s, t, d in
                      zip(joined["patient_id"], joined["study_id"], joined["dicom_id"])]
    return joined


def _check_disjoint(frame: pd.DataFrame, paths: dict[str, Path]) -> None:
    """The challenge split its patients; a subject in both train (or development) and test would leak, so refuse."""
    train, test = (set(frame.loc[frame["split"] == s, "patient_id"]) for s in ("train", "test"))
    shared = sorted(train & test)
    if shared:
        raise DataError(f"Subject {shared[0]} has images in both the training files ({paths['train_csv'].name}, "
                        f"{paths['val_csv'].name}) and {paths['test_csv']} ({len(shared)} such subjects). The CXR-LT "
                        "splits are patient-disjoint: use the label files of one release.")


def load_mimic_lt(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR-LT", "mimic-cxr-jpg/ and cxr-lt-2023/")
    settings = dataset_settings(spec, options, DEFAULTS)
    require_labels(spec, LABELS, "CXR-LT label")
    check_choice(spec, "missing_images", settings["missing_images"], MISSING_FILES)
    folder = jpg_folder(root, settings["images_dir"])
    metadata, _ = read_metadata(folder, _names(settings["metadata_csv"]))
    labels_dir = root / settings["labels_dir"]
    paths = {key: first_existing(labels_dir, _names(settings[key]), f"CXR-LT {key.removesuffix('_csv')} labels")
             for key in SPLIT_FILES}
    parts = [(_join(read_split_file(path), metadata, path, folder).assign(split=SPLIT_FILES[key], source=path))
             for key, path in paths.items()]
    frame = pd.concat(parts, ignore_index=True)
    repeated = frame["dicom_id"].duplicated(keep="first")
    if repeated.any():
        row = frame[repeated].iloc[0]
        raise row_error(row["source"], int(row["position"]), "dicom_id", f"is {row['dicom_id']!r}, already in "
                        f"{frame.loc[frame['dicom_id'] == row['dicom_id'], 'source'].iloc[0].name}",
                        "An image belongs to one split file; use the files of one release")
    _check_disjoint(frame, paths)
    notes = [f"{p.name}: {len(part)} images -> {SPLIT_FILES[k]}" for (k, p), part in zip(paths.items(), parts)]
    if settings["views"] != "all":
        views = [v.upper() for v in _names(settings["views"])]
        keep = frame["ViewPosition"].str.upper().isin(views)
        notes.append(f"{int(keep.sum())} of {len(frame)} labelled images have ViewPosition {' / '.join(views)}")
        frame = frame[keep]
    frame = frame.rename(columns={"dicom_id": "image_id"})
    frame, missing = present_files(frame.reset_index(drop=True), settings["missing_images"], "CXR-LT images",
                                   shown="image_id")
    columns = ["image_id", "patient_id", "path", "split", *LABELS]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes + missing)
