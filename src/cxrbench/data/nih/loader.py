"""NIH ChestX-ray14 (Wang et al. 2017), from the official release layout.

    ROOT/Data_Entry_2017_v2020.csv (or the first release's Data_Entry_2017.csv)
        Image Index, Finding Labels ("Cardiomegaly|Effusion", or "No Finding"), Follow-up #, Patient ID,
        Patient Age, Patient Gender, View Position, OriginalImage[Width, Height], OriginalImagePixelSpacing[x, y]
    ROOT/train_val_list.txt, ROOT/test_list.txt    one Image Index per line: the official patient-wise split
    ROOT/images/<Image Index>                       8-bit PNG (the NIH release's 12 tarballs, unpacked)
        or ROOT/images_001/images/ ... ROOT/images_012/images/   (the Kaggle copy)

Every finding is 1 when Finding Labels names it and 0 otherwise ("No Finding": all 0, `no_finding` 1; the target
"No Finding" is that same flag, for benchmarks that score it as a 15th class, as `nih-cxr14-15` does). The two
lists and the CSV come from one release and cover each other exactly (86,524 + 25,596 = 112,120 images), so an
image in both lists or in neither, and a list entry the CSV lacks, are refused: they mean mixed-up downloads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import MISSING_FILES, ages, check_unique, csv_row, first_existing, present_files, read_csv, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings, require_labels
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
            "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
CSV_NAMES = ["Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"]
DEFAULTS: dict[str, Any] = {
    "labels_csv": CSV_NAMES,
    "train_list": "train_val_list.txt",
    "test_list": "test_list.txt",
    "image_folders": ["images", "images_*/images"],
    "views": ["PA", "AP"],
    "max_age": 100,
    "missing_images": "error",
}
REQUIRED = ["Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position"]


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    require_labels(spec, (*FINDINGS, NO_FINDING), "ChestX-ray14 finding")
    check_choice(spec, "missing_images", settings["missing_images"], MISSING_FILES)
    for key in ("labels_csv", "image_folders", "views"):
        if isinstance(settings[key], str):
            settings[key] = [settings[key]]
    return settings


def read_split_lists(root: Path, settings: Mapping[str, Any]) -> dict[str, tuple[str, Path, int]]:
    """Image name -> (split, list file, line number) from the official lists; an image listed twice is refused."""
    where: dict[str, tuple[str, Path, int]] = {}
    for split, key in (("train", "train_list"), ("test", "test_list")):
        path = root / settings[key]
        if not path.is_file():
            raise DataError(f"Missing ChestX-ray14 split list: {path} does not exist. The official split comes with the "
                            "release (train_val_list.txt and test_list.txt); check --data-root.")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name = line.strip()
            if not name:
                continue
            if name in where:
                _, first, first_line = where[name]
                raise DataError(f"{path}, line {number}: {name} is already listed at {first}, line {first_line}. An image "
                                "belongs to one official split: remove one of the two lines (use the lists of one release).")
            where[name] = (split, path, number)
    return where


def _official_split(raw: pd.DataFrame, csv: Path, lists: Mapping[str, tuple[str, Path, int]]) -> pd.Series:
    """train / test per row, after checking that the lists and the CSV name the same images."""
    names = raw["Image Index"]
    in_csv = set(names)
    strays = [(path, line, name) for name, (_, path, line) in lists.items() if name not in in_csv]
    if strays:
        path, line, name = min(strays, key=lambda s: (str(s[0]), s[1]))
        raise DataError(f"{path}, line {line}: {name} is not in {csv} ({len(strays)} list entr{'y' if len(strays) == 1 else 'ies'} "
                        "missing from it). Use the CSV and the lists of one release, or remove the line.")
    split = names.map(lambda name: lists[name][0] if name in lists else "")
    unlisted = split.eq("")
    if unlisted.any():
        position = int(np.flatnonzero(unlisted.to_numpy())[0])
        raise row_error(csv, position, "Image Index", f"{names.iloc[position]} is in neither split list "
                        f"({int(unlisted.sum())} such image(s))",
                        "Use the CSV and the lists of one release, or add the image to one list (keeping its patient's "
                        "images together).")
    return split


def finding_labels(raw: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """The 14 findings (1.0 / 0.0) and `no_finding` per row, from the '|'-separated Finding Labels."""
    text = raw["Finding Labels"].fillna("").str.replace(r"\s*\|\s*", "|", regex=True).str.strip()
    dummies = text.str.get_dummies("|")
    unknown = [c for c in dummies.columns if c not in (*FINDINGS, NO_FINDING)]
    none = dummies[NO_FINDING] if NO_FINDING in dummies else pd.Series(0, index=raw.index)
    bad = text.eq("") | ((none == 1) & (dummies.sum(axis=1) > 1)) | (dummies[unknown].sum(axis=1) > 0)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(csv, position, "Finding Labels", f"is {raw['Finding Labels'].iloc[position]!r}",
                        f"It lists findings among {', '.join(FINDINGS)} separated by '|', or is '{NO_FINDING}' alone; "
                        "fix or remove the row.", f"Image Index {raw['Image Index'].iloc[position]}")
    labels = pd.DataFrame({f: dummies[f].astype(np.float32) if f in dummies else np.float32(0.0) for f in FINDINGS},
                          index=raw.index)
    labels["no_finding"] = none.astype(np.float32)
    labels[NO_FINDING] = labels["no_finding"]  # as a target: the 15th class of DINOv2-radiology's public code
    return labels


def demographics(raw: pd.DataFrame, csv: Path, max_age: float) -> tuple[pd.DataFrame, list[str]]:
    """`sex` (F / M / "") and `age_years` (NaN above `max_age`: the first release's ages above 100 are typing errors,
    e.g. 412, that the v2020 CSV corrected); a note naming the rows whose age was set unknown."""
    raw_age = raw["Patient Age"]
    age = ages(raw, "Patient Age", csv, "Image Index")
    notes = []
    implausible = age > max_age
    if implausible.any():
        shown = ", ".join(f"row {csv_row(p)} ({raw['Image Index'].iloc[p]}: {raw_age.iloc[p]})"
                          for p in np.flatnonzero(implausible.to_numpy())[:5])
        notes.append(f"{int(implausible.sum())} image(s) with Patient Age above max_age {max_age:g} have an unknown age, "
                     f"e.g. {shown}")
    sex = raw["Patient Gender"].fillna("").astype(str).str.strip().str.upper()
    frame = pd.DataFrame({"sex": sex.where(sex.isin(["F", "M"]), ""),
                          "age_years": age.where(~implausible).astype("float64")}, index=raw.index)
    return frame, notes


def image_index(root: Path, patterns: list[str]) -> dict[str, str]:
    """The folder of every file of the image folders (`patterns`: globs under root) by name, each folder listed once."""
    folders = sorted({folder for pattern in patterns for folder in root.glob(pattern) if folder.is_dir()})
    if not folders:
        raise DataError(f"No ChestX-ray14 image folder in {root}: looked for {', '.join(patterns)} (image_folders). Unpack "
                        "the release's images_*.tar.gz there (they unpack into images/), or set image_folders.")
    found: dict[str, Path] = {}
    for folder in folders:
        for entry in os.scandir(folder):
            if entry.name in found:
                raise DataError(f"Two ChestX-ray14 images named {entry.name}: in {found[entry.name]} and {folder}. Remove "
                                "the duplicate (or narrow image_folders).")
            found[entry.name] = str(folder)
    return found


def _paths(root: Path, frame: pd.DataFrame, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """The rows with their image paths; missing images refused (or dropped with a note, `missing_images: drop`)."""
    index = image_index(root, settings["image_folders"])
    folders = frame["image_id"].map(index).fillna(str(root / "images"))  # an image in no folder: where NIH unpacks it
    return present_files(frame.assign(path=folders + os.sep + frame["image_id"]), settings["missing_images"],
                         f"ChestX-ray14 images listed in the CSV (looked for in {', '.join(settings['image_folders'])})",
                         shown="image_id")


def load_nih_cxr14(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "ChestX-ray14", "Data_Entry_2017_v2020.csv, the two split lists and images/")
    settings = _settings(spec, options)
    csv = first_existing(root, settings["labels_csv"], "ChestX-ray14 labels CSV")
    raw = read_csv(csv, REQUIRED, "ChestX-ray14 labels", text_columns=["Image Index", "Patient ID", "Finding Labels"],
                   file_name_columns=["Image Index"]).reset_index(drop=True)
    raw["Image Index"] = raw["Image Index"].fillna("").str.strip()
    raw["Patient ID"] = raw["Patient ID"].fillna("").str.strip()
    for column in ("Image Index", "Patient ID"):
        empty = raw[column].eq("")
        if empty.any():
            raise row_error(csv, int(np.flatnonzero(empty.to_numpy())[0]), column, "is empty",
                            "Every row needs an image and a patient; fix or remove it.")
    check_unique(raw, ["Image Index"], csv)
    split = _official_split(raw, csv, read_split_lists(root, settings))
    people, notes = demographics(raw, csv, settings["max_age"])
    frame = pd.concat([pd.DataFrame({"image_id": raw["Image Index"], "patient_id": raw["Patient ID"], "split": split}),
                       people, finding_labels(raw, csv)], axis=1)
    view = raw["View Position"].fillna("").astype(str).str.strip()
    kept = view.isin(settings["views"])
    if not kept.all():
        notes.append(f"{int((~kept).sum())} of {len(raw)} images left out: View Position not in {settings['views']} (views)")
        frame = frame[kept]
    frame, path_notes = _paths(root, frame, settings)
    notes += path_notes
    notes.append(f"{len(frame)} images of {frame['patient_id'].nunique()} patients (Patient ID); official split from "
                 f"{settings['train_list']} (train) and {settings['test_list']} (test)")
    columns = ["image_id", "patient_id", "path", "split", "sex", "age_years", "no_finding", *FINDINGS, NO_FINDING]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)
