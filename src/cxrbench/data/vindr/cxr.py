"""VinDr-CXR (PhysioNet 1.0.0) in its official layout.

    ROOT/annotations/image_labels_train.csv   image_id, rad_id, <28 labels>   (one row per image and reader)
    ROOT/annotations/image_labels_test.csv    image_id, <28 labels>           (5-reader consensus)
    ROOT/train/<image_id>.dicom, ROOT/test/<image_id>.dicom

The test CSV spells "Other disease" where the training CSV has "Other diseases"; both are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cxrbench.data.common.csvs import binary_labels, check_files_exist, check_unique, read_csv
from cxrbench.data.common.dicom_headers import read_patient_headers
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings
from cxrbench.data.vindr.boxes import TEST_BOXES, read_test_boxes
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

TRAIN_LABELS = Path("annotations/image_labels_train.csv")
TEST_LABELS = Path("annotations/image_labels_test.csv")
LABEL_RULES = ("majority", "any")
PATIENT_ID_SOURCES = ("dicom_header", "image_id")
_COLUMN_ALIASES = {"Other disease": "Other diseases"}


def combine_readers(per_reader: pd.DataFrame, tasks: list[str], rule: str) -> pd.DataFrame:
    """One row per image from one row per (image, reader): `any` reader, or a strict `majority` of readers."""
    if rule not in LABEL_RULES:
        raise DataError(f"Unknown label rule '{rule}'; choose one of {', '.join(LABEL_RULES)}.")
    grouped = per_reader.groupby("image_id", sort=False)
    if rule == "any":
        return grouped[tasks].max()
    votes = grouped[tasks].sum()
    readers = grouped.size()
    return (votes.mul(2).gt(readers, axis=0)).astype("float32")


def load_vindr(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    settings = dataset_settings(spec, options, {"label_rule": "majority", "patient_id": "dicom_header"})
    rule = settings["label_rule"]
    patient_source = check_choice(spec, "patient_id", settings["patient_id"], PATIENT_ID_SOURCES)
    root = data_folder(root, "VinDr-CXR", "annotations/, train/, test/")

    train_csv, test_csv = root / TRAIN_LABELS, root / TEST_LABELS
    train_raw = read_csv(train_csv, ["image_id", "rad_id", *spec.tasks], "VinDr-CXR training labels",
                         file_name_columns=["image_id"]).rename(columns=_COLUMN_ALIASES)
    test_raw = read_csv(test_csv, ["image_id", *spec.tasks], "VinDr-CXR test labels", file_name_columns=["image_id"]).rename(columns=_COLUMN_ALIASES)
    check_unique(train_raw, ["image_id", "rad_id"], train_csv)
    check_unique(test_raw, ["image_id"], test_csv)
    # every finding of both files is loaded (another evaluation may pick its own, e.g. explainability's boxed ones)
    labels = [c for c in train_raw.columns if c not in ("image_id", "rad_id") and c in test_raw.columns]
    per_reader = pd.concat([train_raw[["image_id"]], binary_labels(train_raw, labels, train_csv)], axis=1)
    train = combine_readers(per_reader, labels, rule).reset_index()
    test = pd.concat([test_raw[["image_id"]], binary_labels(test_raw, labels, test_csv)], axis=1)

    overlap = set(train["image_id"]) & set(test["image_id"])
    if overlap:
        raise DataError(f"Image {sorted(overlap)[0]} is listed in both {train_csv} and {test_csv} ({len(overlap)} such images).")
    train["split"], test["split"] = "train", "test"
    samples = pd.concat([train, test], ignore_index=True)
    samples["path"] = [str(root / split / f"{image_id}.dicom") for split, image_id in zip(samples["split"], samples["image_id"])]
    check_files_exist(samples["path"], "VinDr-CXR DICOM files")

    notes = [f"training labels: '{rule}' of {per_reader.groupby('image_id').size().median():.0f} readers per image"]
    if patient_source == "dicom_header":
        headers = read_patient_headers(samples["path"])
        samples["sex"], samples["age_years"] = headers["sex"], headers["age_years"]
        has_id = headers["patient_id"] != ""
        samples["patient_id"] = headers["patient_id"].where(has_id, samples["image_id"])
        notes.append(
            f"patient ids: DICOM PatientID for {int(has_id.sum())} of {len(samples)} images, image id for the rest"
        )
    else:
        samples["patient_id"] = samples["image_id"]
        notes.append("patient ids: one patient per image (VinDr-CXR publishes no patient ids)")
    boxes = read_test_boxes(root) if (root / TEST_BOXES).is_file() else None
    columns = ["image_id", "patient_id", "path", "split", *[c for c in ("sex", "age_years") if c in samples], *labels]
    return BenchmarkData(spec.name, root, spec.targets, samples[columns], notes, boxes=boxes)
