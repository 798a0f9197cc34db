"""CheXpert v1.0 (Irvin et al. 2019), from the Stanford release layout.

    ROOT/CheXpert-v1.0/train.csv, valid.csv      (or the downsampled CheXpert-v1.0-small/)
        Path ("CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg", relative to ROOT), Sex (Male / Female /
        Unknown), Age, Frontal/Lateral, AP/PA, then 14 labels: 1.0 positive, 0.0 negative, -1.0 uncertain, blank
        not mentioned (the labeller's output; valid.csv holds radiologist consensus labels, never -1 or blank)
    ROOT/CheXpert-v1.0/{train,valid}/patientNNNNN/studyN/viewN_<frontal|lateral>.jpg
    ROOT/CheXpert-v1.0/test_labels.csv            (optional: the CheXlocalize release's test labels, Path
                                                   "test/patientNNNNN/...", the 14 labels, often no Sex / Age)

Image paths are taken from the Path's split folder (train / valid / test) on, inside the dataset folder found, so a
renamed copy of the folder reads the same. The patient is the Path's `patientNNNNN` component.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import MISSING_FILES, ages, check_unique, present_files, read_csv, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings, require_labels
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
          "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
          "Support Devices")
UNCERTAIN = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}  # U-Ignore, U-Ones, U-Zeros
BLANK = {"negative": 0.0, "unknown": np.nan}
VIEWS = {"frontal": ("Frontal",), "lateral": ("Lateral",), "all": ("Frontal", "Lateral")}
CHOICES = {"uncertain": tuple(UNCERTAIN), "blank": tuple(BLANK), "views": tuple(VIEWS),
           "test_set": ("valid", "test"), "missing_images": MISSING_FILES}
DEFAULTS: dict[str, Any] = {
    "folder": ["CheXpert-v1.0", "CheXpert-v1.0-small"],
    "uncertain": "ignore",
    "blank": "negative",
    "views": "frontal",
    "projections": ["AP", "PA", "LL", "RL"],
    "train_projections": None,  # the training images' frontal projections, when not `projections` (DINOv2-radiology: AP)
    "test_set": "valid",
    "test_labels_csv": "test_labels.csv",
    "missing_images": "error",
}


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    require_labels(spec, LABELS, "CheXpert label")
    for key, allowed in CHOICES.items():
        if settings[key] not in allowed:
            raise DataError(f"benchmark '{spec.name}': dataset option {key}={settings[key]!r} is not one of {allowed}. "
                            f"Set it in the dataset block of benchmarks/{spec.name}.yaml or with --dataset-option "
                            f"{key}={allowed[0]}.")
    if settings["train_projections"] is None:
        settings["train_projections"] = settings["projections"]
    for key in ("folder", "projections", "train_projections"):
        if isinstance(settings[key], str):
            settings[key] = [settings[key]]
    if not all(isinstance(p, str) for p in settings["train_projections"]):
        raise DataError(f"benchmark '{spec.name}': dataset option train_projections={settings['train_projections']!r} "
                        "must list AP/PA values such as [AP] (or be null for the same as `projections`).")
    return settings


def dataset_folder(root: Path, names: list[str]) -> Path:
    """The first of `names` under root holding train.csv (the full-size or the downsampled release)."""
    for name in names:
        if (root / name / "train.csv").is_file():
            return root / name
    raise DataError(f"No CheXpert train.csv in {root}: looked in {', '.join(names)} (folder). Pass --data-root the folder "
                    "holding CheXpert-v1.0/ (or CheXpert-v1.0-small/), or set dataset.folder.")


def _image_paths(raw: pd.DataFrame, csv: Path, folder: Path) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(image id, image path, patient id) per row: the id is the Path from its split folder on (train/patient...),
    the path that id under `folder`."""
    text = raw["Path"].fillna("").astype(str).str.strip().str.replace("\\", "/", regex=False)
    ids = text.str.extract(r"(?:^|/)((?:train|valid|test)/.+)$", expand=False)
    patients = text.str.extract(r"(?:^|/)(patient\d+)(?:/|$)", expand=False)
    bad = ids.isna() | patients.isna() | text.str.contains(r"(?:^|/)\.\.(?:/|$)") | text.str.startswith("/")
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(csv, position, "Path", f"is {text.iloc[position]!r}",
                        "It names an image as <folder>/<train|valid|test>/patientNNNNN/studyN/viewN_frontal.jpg; "
                        "fix or remove the row.")
    return ids, str(folder) + "/" + ids, patients


def label_values(raw: pd.DataFrame, csv: Path, columns: tuple[str, ...], uncertain: str, blank: str) -> pd.DataFrame:
    """Each label column as 1.0 / 0.0 / NaN after the uncertain (-1) and blank (not mentioned) policies."""
    out = {}
    for column in columns:
        values = pd.to_numeric(raw[column], errors="coerce")
        bad = values.notna() & ~values.isin([1.0, 0.0, -1.0])
        text = values.isna() & raw[column].notna()  # a cell that is not a number (only read as text when there is one)
        if text.any():
            bad |= text & raw[column].astype(str).str.strip().ne("")
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(csv, position, column, f"is {str(raw[column].iloc[position])!r}",
                            "CheXpert labels are 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or empty (not "
                            "mentioned); fix or remove the row.", f"Path {raw['Path'].iloc[position]}")
        numbers = values.to_numpy(dtype=np.float64)  # NaN: a blank cell (any other text was refused above)
        out[column] = np.where(np.isnan(numbers), BLANK[blank],
                               np.where(numbers == -1.0, UNCERTAIN[uncertain], numbers)).astype(np.float32)
    return pd.DataFrame(out, index=raw.index)


def _demographics(raw: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """`sex` (F / M / "": Unknown or absent) and `age_years` (NaN when absent); refuses an age that is not a number."""
    sex = raw["Sex"].fillna("").astype(str).str.strip() if "Sex" in raw else pd.Series("", index=raw.index)
    age = ages(raw, "Age", csv, "Path") if "Age" in raw else pd.Series(np.nan, index=raw.index)
    return pd.DataFrame({"sex": sex.map({"Female": "F", "Male": "M"}).fillna(""), "age_years": age}, index=raw.index)


def _views(raw: pd.DataFrame, paths: list[str]) -> pd.Series:
    """Frontal / Lateral per row: the column where the CSV has it, else the file name (view1_frontal.jpg)."""
    if "Frontal/Lateral" in raw:
        return raw["Frontal/Lateral"].fillna("").astype(str).str.strip()
    return pd.Series(["Lateral" if "lateral" in Path(p).name.lower() else "Frontal" for p in paths], index=raw.index)


def read_split_csv(csv: Path, folder: Path, split: str, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """One release CSV as samples (image_id, patient_id, path, split, sex, age_years, no_finding, the 14 labels)
    after the view and projection filters; notes on what was filtered and what is unknown. No image checks."""
    raw = read_csv(csv, ["Path", *LABELS], f"CheXpert {split} labels", text_columns=["Path", "Sex", "AP/PA"]).reset_index(drop=True)
    check_unique(raw, ["Path"], csv)
    ids, paths, patients = _image_paths(raw, csv, folder)
    frame = pd.concat([
        pd.DataFrame({"image_id": ids, "patient_id": patients,
                      "path": paths, "split": split}, index=raw.index),
        _demographics(raw, csv), label_values(raw, csv, LABELS, settings["uncertain"], settings["blank"]),
    ], axis=1)
    frame["no_finding"] = frame["No Finding"]
    notes = [] if {"Sex", "Age"} <= set(raw.columns) else [f"{csv.name} has no Sex / Age columns: its {len(raw)} images "
                                                            "have unknown sex and age"]
    view = _views(raw, paths)
    keep = view.isin(VIEWS[settings["views"]])
    projections = settings["train_projections"] if split == "train" else settings["projections"]
    if "AP/PA" in raw and settings["views"] != "lateral":
        projection = raw["AP/PA"].fillna("").str.strip()
        keep &= view.ne("Frontal") | projection.isin(projections)
    if not keep.all():
        notes.append(f"{csv.name}: {int(keep.sum())} of {len(raw)} images kept (views: {settings['views']}, frontal "
                     f"projections: {projections})")
    return frame[keep], notes


def chexpert_samples(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """The training images (train.csv) and the test images (valid.csv, or test_labels.csv with `test_set: test`)
    with their labels and notes; no image checks."""
    settings = _settings(spec, options)
    folder = dataset_folder(Path(root), settings["folder"])
    test_csv = folder / ("valid.csv" if settings["test_set"] == "valid" else settings["test_labels_csv"])
    if not test_csv.is_file():
        hint = ("the official validation set, released with train.csv" if settings["test_set"] == "valid" else
                "the test labels of the CheXlocalize release; or set test_set: valid")
        raise DataError(f"Missing CheXpert test labels: {test_csv} does not exist ({hint}).")
    train, notes = read_split_csv(folder / "train.csv", folder, "train", settings)
    test, test_notes = read_split_csv(test_csv, folder, "test", settings)
    shared = sorted(set(train["patient_id"]) & set(test["patient_id"]))
    if shared:
        raise DataError(f"Patient {shared[0]} has images in both {folder / 'train.csv'} and {test_csv} ({len(shared)} such "
                        "patients). The CheXpert splits are patient-disjoint: use the CSVs of one release.")
    frame = pd.concat([train, test], ignore_index=True)
    notes += test_notes
    notes.append(f"{folder.name}: train.csv -> train ({len(train)} images), {test_csv.name} -> test ({len(test)}); labels: "
                 f"uncertain (-1) -> {settings['uncertain']}, blank -> {settings['blank']}")
    return frame, notes


def load_chexpert(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "CheXpert", "CheXpert-v1.0/ (train.csv, valid.csv and the images)")
    settings = _settings(spec, options)
    frame, notes = chexpert_samples(root, spec, options)
    frame, missing = present_files(frame, settings["missing_images"], "CheXpert images listed in the CSVs")
    notes += missing
    columns = ["image_id", "patient_id", "path", "split", "sex", "age_years", "no_finding", *LABELS]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)
