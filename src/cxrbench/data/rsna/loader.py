"""RSNA Pneumonia Detection Challenge (Kaggle 2018, stage 2 training set) as released.

    ROOT/stage_2_train_labels.csv            patientId, x, y, width, height, Target
                                             one row per box; one row with empty box and Target 0 for negatives
    ROOT/stage_2_train_images/<patientId>.dcm
    ROOT/stage_2_detailed_class_info.csv     patientId, class   (optional; informational only)
    ROOT/pneumonia-challenge-dataset-mappings_2018.json
                                             (optional; RSNA's mapping of each Kaggle image to its NIH ChestX-ray14
                                             image: subset_img_id -> img_id, e.g. 00000013_005; the NIH patient is
                                             the part before '_')

Kaggle's `patientId` names an image, not a patient. With the mapping file in ROOT, images of the same NIH
patient share a patient id; without it every image is its own patient (the loader's notes say which).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import binary_labels, csv_row, read_csv, resolve_image_files, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

BOX_COLUMNS = ("x", "y", "width", "height")
PATIENT_ID_SOURCES = ("nih_mapping", "image_id")
DEFAULTS: dict[str, Any] = {
    "labels_csv": "stage_2_train_labels.csv",
    "image_dir": "stage_2_train_images",
    "image_suffix": ".dcm",
    "class_info_csv": "stage_2_detailed_class_info.csv",
    "nih_mapping": "pneumonia-challenge-dataset-mappings_2018.json",
    "patient_id": "nih_mapping",
}


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    if len(spec.tasks) != 1:
        raise DataError(f"benchmark '{spec.name}': RSNA-Pneumonia has one task (Target), the spec lists {list(spec.tasks)}.")
    check_choice(spec, "patient_id", settings["patient_id"], PATIENT_ID_SOURCES)
    return settings


def read_rsna_labels(path: Path) -> pd.DataFrame:
    """One row per image (image_id, Target as float) from the box-level labels CSV, in file order; no image checks.

    Every row of an image must carry the same Target, rows with Target 1 a complete box and rows with Target 0 none.
    """
    raw = read_csv(path, ["patientId", *BOX_COLUMNS, "Target"], "RSNA-Pneumonia labels", text_columns=["patientId"],
                   file_name_columns=["patientId"])
    raw["patientId"] = raw["patientId"].fillna("").str.strip()
    empty = raw["patientId"].eq("")
    if empty.any():
        raise row_error(path, int(empty.to_numpy().nonzero()[0][0]), "patientId", "is empty", "Every row must name its image.")
    target = binary_labels(raw.rename(columns={"patientId": "image_id"}), ["Target"], path)["Target"]
    first = target.groupby(raw["patientId"], sort=False).transform("first")
    differs = target.ne(first)
    if differs.any():
        position = int(differs.to_numpy().nonzero()[0][0])
        image_id = raw["patientId"].iloc[position]
        earlier = int(raw["patientId"].eq(image_id).to_numpy().nonzero()[0][0])
        raise row_error(
            path, position, "Target",
            f"is {int(target.iloc[position])} but row {csv_row(earlier)} gives Target {int(first.iloc[position])} for the same image",
            "Target is per image: every box row of an image must carry the same value; correct one of the rows.",
            f"patientId {image_id}",
        )
    boxes = raw[list(BOX_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    for name in BOX_COLUMNS:
        bad = (target.eq(1) & boxes[name].isna()) | (target.eq(0) & boxes[name].notna())
        if bad.any():
            position = int(bad.to_numpy().nonzero()[0][0])
            problem = ("is empty on a row with Target 1" if target.iloc[position] == 1
                       else f"is {raw[name].iloc[position]} on a row with Target 0")
            raise row_error(path, position, name, problem,
                            "Rows with Target 1 carry a complete box (x, y, width, height); rows with Target 0 none.",
                            f"patientId {raw['patientId'].iloc[position]}")
    per_image = pd.DataFrame({"image_id": raw["patientId"], "Target": target}).drop_duplicates("image_id")
    return per_image.reset_index(drop=True)


def read_nih_mapping(path: Path) -> dict[str, str]:
    """Kaggle image id -> NIH patient id (the NIH image id before '_') from RSNA's mapping JSON."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read {path} as JSON: {exc}. Re-download it from RSNA, or remove it to use one patient "
                        "per image.") from exc
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of entries with 'subset_img_id' and 'img_id', found {type(entries).__name__}.")
    mapping: dict[str, str] = {}
    for index, entry in enumerate(entries):
        for key in ("subset_img_id", "img_id"):
            if not isinstance(entry, dict) or not str(entry.get(key) or "").strip():
                raise DataError(f"{path}, entry {index}: no '{key}'. Every entry maps a Kaggle image (subset_img_id) to "
                                "its NIH image (img_id, e.g. 00000013_005); re-download the file or remove it.")
        nih_image = Path(str(entry["img_id"]).strip()).stem  # tolerate a .png suffix
        patient, sep, _ = nih_image.partition("_")
        if not sep or not patient:
            raise DataError(f"{path}, entry {index}: img_id '{entry['img_id']}' is not an NIH image id "
                            "(<patient>_<follow-up>, e.g. 00000013_005).")
        image = str(entry["subset_img_id"]).strip()
        if mapping.get(image, patient) != patient:
            raise DataError(f"{path}, entry {index}: image {image} is mapped to NIH patients {mapping[image]} and {patient}.")
        mapping[image] = patient
    return mapping


def rsna_patients(root: Path, image_ids: pd.Series, settings: Mapping[str, Any]) -> tuple[pd.Series, str]:
    """Patient id per image, and a note saying where they came from."""
    mapping_path = root / settings["nih_mapping"]
    if settings["patient_id"] == "image_id" or not mapping_path.is_file():
        why = "patient_id: image_id" if settings["patient_id"] == "image_id" else f"no {mapping_path.name} in the data root"
        return image_ids.copy(), f"patient ids: one patient per image ({why})"
    mapping = read_nih_mapping(mapping_path)
    patients = image_ids.map(mapping)
    unmapped = patients.isna()
    patients = patients.where(~unmapped, image_ids)
    note = (f"patient ids: NIH ChestX-ray14 patients from {mapping_path.name} ({patients.nunique()} patients for "
            f"{len(image_ids)} images)")
    if unmapped.any():
        note += f"; {int(unmapped.sum())} image(s) not in the mapping are their own patient (e.g. {image_ids[unmapped].iloc[0]})"
    return patients, note


def _class_info_note(path: Path, labels: pd.DataFrame) -> str | None:
    if not path.is_file():
        return None
    info = read_csv(path, ["patientId", "class"], "RSNA-Pneumonia detailed class info", text_columns=["patientId"])
    info = info.drop_duplicates("patientId").set_index("patientId")["class"]
    classes = labels["image_id"].map(info)
    counts = ", ".join(f"{name}: {count}" for name, count in classes.value_counts().items())
    known = classes.notna()
    disagree = int(((classes[known] == "Lung Opacity") != (labels.loc[known, "Target"] == 1)).sum())
    note = f"{path.name} (informational): {counts}"
    if classes.isna().any():
        note += f"; {int(classes.isna().sum())} image(s) without a class"
    if disagree:
        note += f"; {disagree} image(s) where 'Lung Opacity' and Target disagree"
    return note


def load_rsna_pneumonia(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "RSNA-Pneumonia", "stage_2_train_labels.csv and stage_2_train_images/")
    settings = _settings(spec, options)
    labels = read_rsna_labels(root / settings["labels_csv"])
    task = spec.tasks[0]
    samples = pd.DataFrame({"image_id": labels["image_id"], task: labels["Target"].astype(np.float32)})
    samples["patient_id"], patient_note = rsna_patients(root, samples["image_id"], settings)
    samples["path"] = resolve_image_files(root / settings["image_dir"], samples["image_id"], [settings["image_suffix"]],
                                          "RSNA-Pneumonia DICOM files")
    samples["split"] = POOL
    notes = [patient_note, f"{int(samples[task].sum())} of {len(samples)} images with Target 1 (lung opacity)",
             "split: none released for the labelled images; cxrbench splits the patients (split.fractions of the spec)"]
    class_note = _class_info_note(root / settings["class_info_csv"], labels)
    if class_note:
        notes.append(class_note)
    return BenchmarkData(spec.name, root, spec.targets, samples[["image_id", "patient_id", "path", "split", task]], notes)
