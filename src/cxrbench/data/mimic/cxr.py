"""MIMIC-CXR-JPG (2.0.0 / 2.1.0, PhysioNet) with its CheXpert labels (`mimic-cxr`), and the "No Finding" frontal images
linked to MIMIC-IV demographics (`mimic-demographics`, RAD-DINO Table 5 / C.2), read from the released layout:

    ROOT/mimic-cxr-jpg/                                  (dataset option images_dir)
        mimic-cxr-2.0.0-metadata.csv.gz                 dicom_id, subject_id, study_id, ..., ViewPosition, ..., StudyDate
        mimic-cxr-2.0.0-chexpert.csv.gz                 subject_id, study_id, the 14 CheXpert labels (1 / 0 / -1 / blank)
        mimic-cxr-2.0.0-split.csv.gz                    dicom_id, study_id, subject_id, split (train / validate / test)
        files/p10/p10000032/s50414267/<dicom_id>.jpg    p<first 2 digits of subject_id>/p<subject_id>/s<study_id>/
    ROOT/mimic-iv/hosp/{patients,admissions,omr}.csv.gz  (mimic_iv_dir; `cxrbench.data.mimic.iv`)

(.csv as well as .csv.gz.) Rows: the images whose ViewPosition is one of `views` (PA and AP: frontal). Labels are per
study (the CheXpert labeller on the report), so every image of a study has them. Patient = subject_id. Images absent
from the split file, studies without a CheXpert row and (with missing_images: drop) absent image files are counted
in the notes, never dropped silently. benchmarks/mimic-cxr.yaml and mimic-demographics.yaml document every choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import MISSING_FILES, check_unique, first_existing, present_files, read_csv, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings
from cxrbench.data.mimic.iv import RACE_GROUPS, link_demographics
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec, TargetSpec

CHEXPERT_LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion",
    "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices",
)
METADATA = "mimic-cxr-2.0.0-metadata.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
#: the released split -> cxrbench's: `validate` joins train, whose validation patients are drawn per seed
OFFICIAL_SPLITS = {"train": "train", "validate": "train", "test": "test"}
UNCERTAIN = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}
BLANK = {"negative": 0.0, "unknown": np.nan}
COMMON: dict[str, Any] = {
    "images_dir": "mimic-cxr-jpg",
    "mimic_iv_dir": "mimic-iv",
    "metadata_csv": [f"{METADATA}.gz", METADATA],
    "chexpert_csv": [f"{CHEXPERT}.gz", CHEXPERT],
    "split_csv": [f"{SPLIT}.gz", SPLIT],
    "views": ["PA", "AP"],
    "omr_window_days": 365,
    "missing_images": "error",
}
DEFAULTS: dict[str, Any] = {**COMMON, "uncertain": "ignore", "blank": "negative"}
DEMOGRAPHICS_DEFAULTS: dict[str, Any] = {
    **COMMON, "age_bins": [20, 40, 60, 80], "weight_bins": [50, 65, 80, 95], "bmi_bins": [18.5, 25, 30, 35],
}
#: mimic-demographics target -> (demographic column, option holding its bin edges; None: not binned)
DEMOGRAPHIC_TARGETS = {"Sex": ("sex", None), "Age": ("age_years", "age_bins"), "Weight": ("weight_kg", "weight_bins"),
                       "BMI": ("bmi", "bmi_bins"), "Ethnicity": ("race", None)}
DEMOGRAPHIC_COLUMNS = ["sex", "age_years", "race", "weight_kg", "bmi"]


# ---------------------------------------------------------------------------------------------- files


def image_path(folder: Path, subject_id: str, study_id: str, dicom_id: str) -> Path:
    """MIMIC-CXR-JPG's path of an image: files/p<2 digits>/p<subject>/s<study>/<dicom_id>.jpg."""
    return folder / "files" / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}" / f"{dicom_id}.jpg"


def jpg_folder(root: Path, images_dir: str) -> Path:
    folder = root / images_dir
    if not folder.is_dir():
        raise DataError(f"MIMIC-CXR-JPG folder {folder} is missing. Place MIMIC-CXR-JPG (its CSVs and files/) there, "
                        "or name its folder with --dataset-option images_dir=<folder relative to the data root>.")
    return folder


def read_metadata(folder: Path, names: list[str]) -> tuple[pd.DataFrame, Path]:
    """The metadata CSV (dicom_id lower case, subject_id, study_id, ViewPosition, StudyDate as text, `position`: its
    record's 0-based place in the file) and its path."""
    path = first_existing(folder, names, "MIMIC-CXR-JPG metadata (dicom_id, subject_id, study_id)")
    ids = ["dicom_id", "subject_id", "study_id"]
    frame = read_csv(path, ids, "MIMIC-CXR-JPG metadata", text_columns=[*ids, "StudyDate", "ViewPosition"],
                     only=[*ids, "ViewPosition", "StudyDate"], file_name_columns=ids).reset_index(drop=True)
    frame = frame.assign(**{c: frame[c].fillna("").astype(str).str.strip() for c in ids})
    frame["dicom_id"] = frame["dicom_id"].str.lower()
    for column in ("ViewPosition", "StudyDate"):
        frame[column] = frame[column].fillna("").astype(str).str.strip() if column in frame else ""
    frame["position"] = np.arange(len(frame))
    return frame, path


def study_dates(frame: pd.DataFrame, path: Path) -> pd.Series:
    """The StudyDate (YYYYMMDD) of each metadata row as a date; one that does not parse is an error naming the row."""
    dates = pd.to_datetime(frame["StudyDate"].str.split(".").str[0], format="%Y%m%d", errors="coerce")
    bad = dates.isna()
    if bad.any():
        row = frame[bad].iloc[0]
        raise row_error(path, int(row["position"]), "StudyDate", f"is {row['StudyDate']!r}, not a date YYYYMMDD",
                        "It dates the study for age, weight and BMI; correct it from the image's DICOM header, or "
                        "remove the row to leave the image out", f"dicom_id {row['dicom_id']}")
    return dates


def read_chexpert(folder: Path, names: list[str]) -> pd.DataFrame:
    """study_id -> the 14 CheXpert labels as released: 1.0, 0.0, -1.0 (uncertain), NaN (blank)."""
    path = first_existing(folder, names, "MIMIC-CXR-JPG CheXpert labels")
    frame = read_csv(path, ["study_id", *CHEXPERT_LABELS], "MIMIC-CXR-JPG CheXpert labels",
                     text_columns=["subject_id", "study_id"]).reset_index(drop=True)
    frame["study_id"] = frame["study_id"].fillna("").str.strip()
    check_unique(frame, ["study_id"], path)
    out = {}
    for label in CHEXPERT_LABELS:
        values = pd.to_numeric(frame[label], errors="coerce")
        bad = ~values.isin([1.0, 0.0, -1.0]) & (values.notna() | frame[label].notna())
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, label, f"is {frame[label].iloc[position]!r}",
                            "CheXpert labels are 1 (positive), 0 (negative), -1 (uncertain) or blank; correct the row",
                            f"study_id {frame['study_id'].iloc[position]}")
        out[label] = values.astype(np.float64).to_numpy()
    return pd.DataFrame(out, index=pd.Index(frame["study_id"], name="study_id"))


def read_official_split(folder: Path, names: list[str]) -> pd.Series:
    """dicom_id (lower case) -> train / validate / test, from the split CSV."""
    path = first_existing(folder, names, "MIMIC-CXR-JPG split (dicom_id, split)")
    frame = read_csv(path, ["dicom_id", "split"], "MIMIC-CXR-JPG split", text_columns=["dicom_id", "split"],
                     only=["dicom_id", "split"]).reset_index(drop=True)
    frame["dicom_id"] = frame["dicom_id"].fillna("").str.strip().str.lower()
    frame["split"] = frame["split"].fillna("").str.strip().str.lower()
    bad = ~frame["split"].isin(OFFICIAL_SPLITS)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(path, position, "split", f"is {frame['split'].iloc[position]!r}",
                        f"The released splits are {', '.join(OFFICIAL_SPLITS)}; correct the row",
                        f"dicom_id {frame['dicom_id'].iloc[position]}")
    check_unique(frame, ["dicom_id"], path)
    return frame.set_index("dicom_id")["split"]


# ---------------------------------------------------------------------------------------------- settings


def _number_list(spec: BenchmarkSpec, key: str, value: Any) -> list[float]:
    values = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    try:
        edges = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DataError(f"benchmark '{spec.name}': {key} must be a list of numbers, got {value!r}.") from None
    if not edges or any(a >= b for a, b in zip(edges, edges[1:])):
        raise DataError(f"benchmark '{spec.name}': {key} must be ascending bin edges, got {value!r}.")
    return edges


def cxr_settings(spec: BenchmarkSpec, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The options every MIMIC-CXR-JPG benchmark shares (`COMMON`: files, views, missing images, the OMR window of
    the demographics), read and checked; each loader then checks its own."""
    settings = dataset_settings(spec, options, defaults)
    for key in ("metadata_csv", "chexpert_csv", "split_csv", "views"):
        if isinstance(settings[key], str):
            settings[key] = [v.strip() for v in settings[key].split(",")]
    settings["views"] = [str(v).strip().upper() for v in settings["views"]]
    check_choice(spec, "missing_images", settings["missing_images"], MISSING_FILES)
    window = settings["omr_window_days"]
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not window >= 0:
        raise DataError(f"benchmark '{spec.name}': omr_window_days must be a number of days (0 or more), got {window!r}.")
    return settings


# ---------------------------------------------------------------------------------------------- images


def frontal_images(root: Path, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """One row per image of the chosen views that the split file lists: image_id, patient_id, study_id, path,
    official (train / validate / test), view, study_date; and notes."""
    folder = jpg_folder(root, settings["images_dir"])
    metadata, path = read_metadata(folder, list(settings["metadata_csv"]))
    check_unique(metadata, ["dicom_id"], path)
    views = metadata["ViewPosition"].str.upper().isin(settings["views"])
    counts = metadata["ViewPosition"].replace("", "unknown").value_counts()
    notes = [f"{int(views.sum())} of {len(metadata)} images have ViewPosition {' / '.join(settings['views'])} (all views: "
             + ", ".join(f"{v} {int(n)}" for v, n in counts.items()) + ")"]
    chosen = metadata[views]
    official = read_official_split(folder, list(settings["split_csv"]))
    listed = chosen["dicom_id"].isin(official.index)
    if not listed.all():
        notes.append(f"{int((~listed).sum())} image(s) absent from the split file are left out, e.g. "
                     f"{chosen.loc[~listed, 'dicom_id'].iloc[0]}")
    chosen = chosen[listed]
    frame = pd.DataFrame({
        "image_id": chosen["dicom_id"], "patient_id": chosen["subject_id"], "study_id": chosen["study_id"],
        "path": [str(image_path(folder, s, t, d)) for s, t, d in zip(chosen["subject_id"], chosen["study_id"], chosen["dicom_id"])],
        "official": official.reindex(chosen["dicom_id"]).to_numpy(), "view": chosen["ViewPosition"].str.upper(),
        "study_date": study_dates(chosen, path),
    })
    frame, missing = present_files(frame, settings["missing_images"], "selected MIMIC-CXR-JPG images")
    return frame.sort_values("image_id", kind="stable").reset_index(drop=True), notes + missing


def study_labels(frame: pd.DataFrame, root: Path, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """The released CheXpert labels of each image's study (same index; NaN where the study has no row) with a column
    `labelled` (whether it has one), and notes."""
    labels = read_chexpert(jpg_folder(root, settings["images_dir"]), list(settings["chexpert_csv"]))
    rows = labels.reindex(frame["study_id"])
    rows.index = frame.index
    unlabelled = ~frame["study_id"].isin(labels.index)
    rows["labelled"] = ~unlabelled
    notes = []
    if unlabelled.any():
        notes.append(f"{int(unlabelled.sum())} image(s) of {frame.loc[unlabelled, 'study_id'].nunique()} study(ies) without "
                     "a CheXpert row are unknown for every label")
    return rows, notes


def label_policy(raw: pd.DataFrame, uncertain: str, blank: str) -> pd.DataFrame:
    """1 / 0 / NaN per label: uncertain (-1) and blank as the policy says; NaN where the study has no CheXpert row."""
    labelled = raw["labelled"].to_numpy(dtype=bool)[:, None]
    values = raw[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64)
    out = np.where(values == -1.0, UNCERTAIN[uncertain], values)
    out = np.where(np.isnan(values) & labelled, BLANK[blank], out)
    return pd.DataFrame(out, index=raw.index, columns=list(CHEXPERT_LABELS))


def attach_demographics(frame: pd.DataFrame, root: Path, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """`frame` with the MIMIC-IV demographic columns (sex, age_years, race, weight_kg, bmi) of each image's study."""
    demographics, notes = link_demographics(frame["patient_id"], frame["study_date"], root / settings["mimic_iv_dir"],
                                            float(settings["omr_window_days"]))
    return pd.concat([frame, demographics], axis=1), notes


def _split_note(frame: pd.DataFrame) -> str:
    counts = frame["official"].value_counts()
    return ("split: official; " + ", ".join(f"{s} {int(counts.get(s, 0))}" for s in OFFICIAL_SPLITS)
            + " images; validate joins train (its validation patients are drawn per seed)")


# ---------------------------------------------------------------------------------------------- loaders


def load_mimic_cxr(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR-JPG", "mimic-cxr-jpg/ and mimic-iv/")
    settings = cxr_settings(spec, options, DEFAULTS)
    check_choice(spec, "uncertain", settings["uncertain"], tuple(UNCERTAIN))
    check_choice(spec, "blank", settings["blank"], tuple(BLANK))
    unknown = [t for t in spec.tasks if t not in CHEXPERT_LABELS]
    if unknown:
        raise DataError(f"benchmark '{spec.name}': target(s) {unknown} are not CheXpert labels of MIMIC-CXR-JPG "
                        f"({', '.join(CHEXPERT_LABELS)}).")
    frame, notes = frontal_images(root, settings)
    raw, label_notes = study_labels(frame, root, settings)
    labels = label_policy(raw, settings["uncertain"], settings["blank"])
    frame, demographic_notes = attach_demographics(frame, root, settings)
    frame = pd.concat([frame, labels], axis=1)
    frame["split"] = frame["official"].map(OFFICIAL_SPLITS)
    frame["no_finding"] = labels["No Finding"]
    notes += [*label_notes, f"labels: uncertain (-1) -> {settings['uncertain']}, blank -> {settings['blank']}",
              _split_note(frame), *demographic_notes]
    columns = ["image_id", "patient_id", "path", "split", *DEMOGRAPHIC_COLUMNS, "no_finding", *CHEXPERT_LABELS]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)


def bin_codes(values: pd.Series, edges: list[float]) -> np.ndarray:
    """The left-closed bin of each value ([e_i, e_i+1); below the first edge bin 0, from the last one up the last
    bin), NaN where the value is unknown."""
    codes = np.digitize(values.to_numpy(dtype=np.float64), edges, right=False).astype(np.float64)
    return np.where(values.isna().to_numpy(), np.nan, codes)


def demographic_target(frame: pd.DataFrame, target: TargetSpec, settings: Mapping[str, Any], spec: BenchmarkSpec) -> np.ndarray:
    """One mimic-demographics target column: Sex 1 male / 0 female; Age, Weight, BMI the bin index; Ethnicity the
    index of the race group among the target's classes; NaN unknown."""
    if target.name not in DEMOGRAPHIC_TARGETS:
        raise DataError(f"benchmark '{spec.name}': target '{target.name}' is none of {', '.join(DEMOGRAPHIC_TARGETS)}.")
    column, option = DEMOGRAPHIC_TARGETS[target.name]
    if column == "sex":
        return frame["sex"].map({"M": 1.0, "F": 0.0}).to_numpy(dtype=np.float64)
    if column == "race":
        wrong = [c for c in target.classes if c not in RACE_GROUPS]
        if wrong:
            raise DataError(f"benchmark '{spec.name}': Ethnicity classes {wrong} are not MIMIC-IV race groups "
                            f"({', '.join(RACE_GROUPS)}).")
        index = {name: float(k) for k, name in enumerate(target.classes)}
        return frame["race"].map(index).to_numpy(dtype=np.float64)
    edges = _number_list(spec, option, settings[option])
    if len(edges) + 1 != len(target.classes):
        raise DataError(f"benchmark '{spec.name}': {option} has {len(edges)} edges, making {len(edges) + 1} bins, but "
                        f"target '{target.name}' has {len(target.classes)} classes; give one class per bin.")
    return bin_codes(frame[column], edges)


def load_mimic_demographics(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR-JPG", "mimic-cxr-jpg/ and mimic-iv/")
    settings = cxr_settings(spec, options, DEMOGRAPHICS_DEFAULTS)
    frame, notes = frontal_images(root, settings)
    raw, label_notes = study_labels(frame, root, settings)
    normal = (raw["No Finding"] == 1.0).to_numpy()
    notes += [*label_notes, f"{int(normal.sum())} of {len(frame)} images of {frame.loc[normal, 'patient_id'].nunique()} "
              "subjects are of studies labelled No Finding (1.0) and are kept"]
    frame = frame[normal].reset_index(drop=True)
    frame, demographic_notes = attach_demographics(frame, root, settings)
    frame["no_finding"] = 1.0
    for target in spec.targets:
        frame[target.name] = demographic_target(frame, target, settings, spec)
    frame["split"] = POOL
    notes += [*demographic_notes, "split: every official split pooled; cxrbench cross-validates over the subjects "
              "(split.folds of the spec)"]
    columns = ["image_id", "patient_id", "path", "split", *DEMOGRAPHIC_COLUMNS, "no_finding", *spec.tasks]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)
