"""CANDID-PTX (Feng et al., Radiology: Artificial Intelligence 2021; University of Auckland figshare) as released.

    ROOT/Pneumothorax_reports.csv   SOPInstanceUID, filename, EncodedPixels, StudyInstanceUID, Report, ...
                                    every image once with EncodedPixels -1 (no pneumothorax), or once per
                                    pneumothorax with its run-length encoding (several rows for several)
    ROOT/chest_tube.csv             anon_SOPUID, <annotation reference>, mask_rle   (one row per chest tube)
    ROOT/acute_rib_fracture.csv     anon_SOPUID, <annotation reference>, mask_rle   (one row per fracture)
    ROOT/dataset/<SOPInstanceUID>   the radiographs

The images are the SOPInstanceUIDs of the reports CSV; an image absent from the chest tube (rib fracture)
CSV has no chest tube (rib fracture). The patient is the part of `filename` before its first "_" ("P<n>").
Column names, file names and the image extension are settings of the benchmark spec (see
benchmarks/candid-ptx.yaml for which of them public code confirms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import csv_row, read_csv, resolve_image_files, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

PNEUMOTHORAX, CHEST_TUBE, RIB_FRACTURE = "Pneumothorax", "Chest tube", "Rib fracture"
TASKS = (PNEUMOTHORAX, CHEST_TUBE, RIB_FRACTURE)
PATIENT_ID_SOURCES = ("filename", "image_id")
NO_MASK = "-1"
DEFAULTS: dict[str, Any] = {
    "reports_csv": "Pneumothorax_reports.csv",
    "chest_tube_csv": "chest_tube.csv",
    "rib_fracture_csv": "acute_rib_fracture.csv",
    "image_dir": "dataset",
    "image_suffixes": ["", ".dcm", ".jpg", ".jpeg", ".png"],
    "patient_id": "filename",
    "columns": {
        "image_id": "SOPInstanceUID",
        "filename": "filename",
        "mask": "EncodedPixels",
        "finding_image_id": "anon_SOPUID",
        "finding_mask": "mask_rle",
    },
}
_RLE = re.compile(r"\d+(?:\s+\d+)*")


def candid_settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """The loader's settings: DEFAULTS, then the spec's `dataset:` block, then the options (`columns` merged by key);
    the spec's tasks and the patient id source are checked."""
    settings = dataset_settings(spec, options, DEFAULTS)
    settings["columns"] = {**DEFAULTS["columns"], **(spec.dataset.get("columns") or {}), **(options.get("columns") or {})}
    unknown = [t for t in spec.tasks if t not in TASKS]
    if unknown:
        raise DataError(f"benchmark '{spec.name}': CANDID-PTX has no task '{unknown[0]}'; its tasks are {', '.join(TASKS)}.")
    check_choice(spec, "patient_id", settings["patient_id"], PATIENT_ID_SOURCES)
    return settings


def _check_rle(value: Any) -> bool:
    """True for a run-length encoding, False for -1; raises ValueError for anything else."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is empty")
    text = value.strip()
    if text == NO_MASK:
        return False
    if not _RLE.fullmatch(text) or len(text.split()) % 2:
        raise ValueError(f"is '{text[:40]}', neither -1 nor pairs of whole numbers (run-length encoding)")
    return True


def candid_labels(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """One row per image (image_id, filename, patient_id, one float column per task) and notes; no image checks."""
    settings = candid_settings(spec, options)
    cols = settings["columns"]
    reports_path = root / settings["reports_csv"]
    reports = read_csv(
        reports_path, [cols["image_id"], cols["filename"], cols["mask"]], "CANDID-PTX pneumothorax reports",
        text_columns=[cols["image_id"], cols["filename"], cols["mask"]], file_name_columns=[cols["image_id"]],
    )
    ids = reports[cols["image_id"]].fillna("").str.strip()
    positive = np.zeros(len(reports), dtype=bool)
    for position, (image_id, value) in enumerate(zip(ids, reports[cols["mask"]])):
        if not image_id:
            raise row_error(reports_path, position, cols["image_id"], "is empty", "Every row must name its image.")
        try:
            positive[position] = _check_rle(value)
        except ValueError as exc:
            raise row_error(
                reports_path, position, cols["mask"], str(exc),
                "It must be -1 for no pneumothorax or the mask's run-length encoding; fix or remove the row.",
                f"image {image_id}",
            ) from None
    filenames = reports[cols["filename"]].fillna("").str.strip()
    per_row = pd.DataFrame({"image_id": ids, "filename": filenames, "positive": positive})
    if settings["patient_id"] == "filename":
        prefix = filenames.str.split("_", n=1).str[0]
        empty = prefix.eq("")
        if empty.any():
            position = int(empty.to_numpy().nonzero()[0][0])
            raise row_error(
                reports_path, position, cols["filename"], "is empty, so the patient is unknown",
                "Restore the file name (its prefix before '_' is the patient), or set patient_id: image_id.",
                f"image {ids.iloc[position]}",
            )
        per_row["patient_id"] = prefix
        _check_one_value_per_image(per_row, "patient_id", reports_path, cols["filename"])
    else:
        per_row["patient_id"] = per_row["image_id"]

    grouped = per_row.groupby("image_id", sort=False)
    images = grouped.agg(filename=("filename", "first"), patient_id=("patient_id", "first"),
                         rows=("positive", "size"), positives=("positive", "sum")).reset_index()
    notes = []
    mixed = images[(images["positives"] > 0) & (images["positives"] < images["rows"])]
    several = int((images["positives"] > 1).sum())
    if several:
        notes.append(f"pneumothorax: {several} image(s) have several pneumothorax rows (one per region), counted once")
    if len(mixed):
        notes.append(
            f"pneumothorax: {len(mixed)} image(s) have both -1 and run-length rows in {reports_path.name} "
            f"(e.g. {mixed['image_id'].iloc[0]}); they count as positive"
        )
    labels = {PNEUMOTHORAX: (images["positives"] > 0).astype("float32")}
    for task, key in ((CHEST_TUBE, "chest_tube_csv"), (RIB_FRACTURE, "rib_fracture_csv")):
        if task not in spec.tasks:
            continue
        found, note = _finding_images(root / settings[key], task, cols, set(images["image_id"]), reports_path.name)
        labels[task] = images["image_id"].isin(found).astype("float32")
        notes.extend(note)
    frame = pd.concat([images[["image_id", "filename", "patient_id"]], pd.DataFrame(labels)], axis=1)
    source = "prefix of 'filename' before '_'" if settings["patient_id"] == "filename" else "one patient per image"
    notes.insert(0, f"patient ids: {source} ({frame['patient_id'].nunique()} patients for {len(frame)} images)")
    return frame[["image_id", "filename", "patient_id", *spec.tasks]], notes


def _check_one_value_per_image(per_row: pd.DataFrame, key: str, path: Path, column: str) -> None:
    first = per_row.groupby("image_id", sort=False)[key].transform("first")
    differs = per_row[key].ne(first)
    if differs.any():
        position = int(differs.to_numpy().nonzero()[0][0])
        image_id = per_row["image_id"].iloc[position]
        earlier = int(per_row["image_id"].eq(image_id).to_numpy().nonzero()[0][0])
        raise row_error(
            path, position, column,
            f"gives patient '{per_row[key].iloc[position]}' where row {csv_row(earlier)} gives '{first.iloc[position]}' for the same image",
            "An image belongs to one patient: correct one of the two rows.", f"image {image_id}",
        )


def _finding_images(path: Path, task: str, cols: dict, known: set[str], reports_name: str) -> tuple[set[str], list[str]]:
    """Image ids with at least one annotated (mask other than -1) row in a chest tube / rib fracture CSV."""
    frame = read_csv(path, [cols["finding_image_id"]], f"CANDID-PTX {task.lower()} annotations",
                     text_columns=[cols["finding_image_id"], cols["finding_mask"]])
    ids = frame[cols["finding_image_id"]].fillna("").str.strip()
    empty = ids.eq("")
    if empty.any():
        position = int(empty.to_numpy().nonzero()[0][0])
        raise row_error(path, position, cols["finding_image_id"], "is empty", "Every row must name its image.")
    counts = ids.ne("")
    if cols["finding_mask"] in frame.columns:
        counts = frame[cols["finding_mask"]].fillna("").str.strip().ne(NO_MASK)
    found = set(ids[counts])
    notes = []
    unknown = found - known
    if unknown:
        notes.append(f"{task.lower()}: {len(unknown)} image id(s) of {path.name} are not in {reports_name} and are ignored "
                     f"(e.g. {sorted(unknown)[0]})")
    if (~counts).any():
        notes.append(f"{task.lower()}: {int((~counts).sum())} row(s) of {path.name} with mask -1 do not count as positive")
    return found & known, notes


def load_candid_ptx(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "CANDID-PTX", "Pneumothorax_reports.csv and dataset/")
    settings = candid_settings(spec, options)
    frame, notes = candid_labels(root, spec, options)
    frame["path"] = resolve_image_files(root / settings["image_dir"], frame["image_id"], settings["image_suffixes"],
                                        "CANDID-PTX images")
    frame["split"] = POOL
    notes.append("split: none released; cxrbench splits the patients (split.fractions of the spec)")
    columns = ["image_id", "patient_id", "path", "split", *spec.tasks]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)
