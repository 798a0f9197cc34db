"""PadChest (BIMCV, Bustos et al. 2020) lateral views, as in RAD-DINO Table C.1, from the released layout.

    ROOT/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv[.gz]
        ImageID, ImageDir, StudyDate_DICOM, StudyID, PatientID, PatientBirth, PatientSex_DICOM, Projection,
        Labels (a Python-list literal, e.g. "['pleural effusion', ' costophrenic angle blunting']"), ...
    ROOT/<ImageDir>/<ImageID>        16-bit PNG (ImageDir is the number of the released zip, 0-54)

Lateral views are the rows with Projection "L". For every task: all lateral images whose Labels contain the
task's PadChest label (after stripping spaces; exact label, so "loculated pleural effusion" is not "pleural
effusion"), plus as many negatives drawn without replacement from the lateral images without it; every other
image is unknown (NaN) for that task. Images selected by no task are left out. The draw is seeded per task from
`negative_seed` and the label text and made over the negatives sorted by ImageID, so it does not depend on
the CSV's row order or on the other tasks.
"""

from __future__ import annotations

import ast
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import check_unique, first_existing, read_csv, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

CSV_NAME = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
MISSING_IMAGES = ("error", "drop")
DEFAULTS: dict[str, Any] = {
    "labels_csv": [CSV_NAME, CSV_NAME + ".gz"],
    "projection": "L",
    "task_labels": {},
    "negatives_per_positive": 1,
    "negative_seed": 0,
    "exclude_images": [],
    "missing_images": "error",
}
REQUIRED = ["ImageID", "ImageDir", "PatientID", "Projection", "Labels"]
OPTIONAL = ["PatientSex_DICOM", "PatientBirth", "StudyDate_DICOM"]  # sex and age, when present


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    task_labels = settings["task_labels"]
    missing = [t for t in spec.tasks if t not in task_labels]
    if missing:
        raise DataError(f"benchmark '{spec.name}': dataset.task_labels has no PadChest label for task '{missing[0]}'; "
                        "map every task to a label string of the Labels column.")
    check_choice(spec, "missing_images", settings["missing_images"], MISSING_IMAGES)
    ratio = settings["negatives_per_positive"]
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
        raise DataError(f"benchmark '{spec.name}': negatives_per_positive must be a positive number, got {ratio!r}.")
    if isinstance(settings["labels_csv"], str):
        settings["labels_csv"] = [settings["labels_csv"]]
    return settings


def _parse_labels(text: Any) -> frozenset[str] | None:
    """The set of labels in one Labels cell (None when the cell is empty); ValueError when it is not a list literal."""
    if not isinstance(text, str):
        return None
    value = ast.literal_eval(text.strip())  # literals only: never evaluates code
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of strings")
    return frozenset(v.strip() for v in value)


def _lateral_rows(raw: pd.DataFrame, path: Path, settings: Mapping[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Lateral images with their parsed labels (column `findings`), after exclusions; notes on what was left out."""
    lateral = raw[raw["Projection"].astype(str).str.strip() == settings["projection"]]
    notes = [f"{len(lateral)} of {len(raw)} images have Projection '{settings['projection']}'"]
    excluded = lateral["ImageID"].isin(set(settings["exclude_images"]))
    if excluded.any():
        notes.append(f"{int(excluded.sum())} lateral image(s) left out as known missing or corrupt (exclude_images)")
        lateral = lateral[~excluded]
    parsed: dict[str, frozenset[str] | None] = {}
    for text in lateral["Labels"].dropna().unique():
        try:
            parsed[text] = _parse_labels(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            position = int(raw.index.get_loc(lateral.index[(lateral["Labels"] == text).to_numpy()][0]))
            raise row_error(path, position, "Labels", f"is {text[:60]!r}, not a list of label strings",
                            "It must be a list literal such as ['pleural effusion', 'kyphosis']; fix or remove the row.",
                            f"ImageID {raw['ImageID'].iloc[position]}") from None
    findings = lateral["Labels"].map(lambda t: parsed.get(t) if isinstance(t, str) else None)
    unlabelled = findings.isna()
    if unlabelled.any():
        notes.append(f"{int(unlabelled.sum())} lateral image(s) without Labels are unknown for every task")
    frame = lateral.loc[~unlabelled].copy()
    frame["findings"] = findings[~unlabelled]
    return frame, notes


def _demographics(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    if "PatientSex_DICOM" in frame:
        sex = frame["PatientSex_DICOM"].astype(str).str.strip().str.upper()
        out["sex"] = sex.where(sex.isin(["M", "F"]), "")
    if "PatientBirth" in frame and "StudyDate_DICOM" in frame:
        study_year = pd.to_numeric(frame["StudyDate_DICOM"], errors="coerce") // 10000
        out["age_years"] = (study_year - pd.to_numeric(frame["PatientBirth"], errors="coerce")).astype("float64")
    return out


def balanced_labels(findings: pd.Series, image_ids: pd.Series, task_labels: Mapping[str, str], seed: int,
                    ratio: float = 1.0) -> tuple[pd.DataFrame, list[str]]:
    """Per task: 1.0 for every image with the label, 0.0 for `ratio` times as many drawn from those without, NaN else.

    Images carrying a more specific form of the finding (a label containing the task's, e.g. "loculated pleural
    effusion" for "pleural effusion") are neither positive nor eligible as negatives: they stay unknown.
    """
    out, notes = {}, []
    for task, label in task_labels.items():
        positive = findings.map(lambda found, label=label: label in found).to_numpy(dtype=bool)
        related = findings.map(lambda found, label=label: any(label in f for f in found)).to_numpy(dtype=bool)
        values = np.full(len(findings), np.nan, dtype=np.float32)
        values[positive] = 1.0
        pool = np.flatnonzero(~related)
        if (related & ~positive).any():
            notes.append(f"{task}: {int((related & ~positive).sum())} images with a more specific form of '{label}' "
                         "are left out of the negatives")
        pool = pool[np.argsort(image_ids.to_numpy()[pool], kind="stable")]
        wanted = int(round(ratio * positive.sum()))
        if wanted > len(pool):
            notes.append(f"{task}: only {len(pool)} negatives for {int(positive.sum())} positives; all are used")
            wanted = len(pool)
        rng = np.random.default_rng([int(seed), zlib.crc32(label.encode())])
        values[rng.choice(pool, size=wanted, replace=False)] = 0.0
        out[task] = values
        notes.append(f"{task}: {int(positive.sum())} lateral positives ('{label}'), {wanted} sampled negatives "
                     f"(negative_seed {seed})")
    return pd.DataFrame(out, index=findings.index), notes


def padchest_lateral_labels(
    root: Path, spec: BenchmarkSpec, options: Mapping[str, Any], keep: Callable[[pd.DataFrame], pd.Series] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The selected lateral images (image_id, patient_id, image_dir, [sex, age_years], tasks) and notes; no image checks.

    `keep`, if given, filters the lateral candidates (True = usable) before negatives are drawn.
    """
    settings = _settings(spec, options)
    path = first_existing(Path(root), settings["labels_csv"], "PadChest labels CSV")
    raw = read_csv(path, REQUIRED, "PadChest labels", text_columns=["ImageID", "PatientID", "Projection", "Labels"],
                   only=OPTIONAL, file_name_columns=["ImageID"])
    raw = raw.reset_index(drop=True)
    for column in ("ImageID", "PatientID"):
        empty = raw[column].fillna("").str.strip().eq("")
        if empty.any():
            position = int(empty.to_numpy().nonzero()[0][0])
            raise row_error(path, position, column, "is empty", "Every row needs an image and a patient; fix or remove it.")
    directory = pd.to_numeric(raw["ImageDir"], errors="coerce")
    bad_dir = directory.isna() | (directory != directory.round())
    if bad_dir.any():
        position = int(bad_dir.to_numpy().nonzero()[0][0])
        raise row_error(path, position, "ImageDir", f"is {raw['ImageDir'].iloc[position]!r}, not a folder number",
                        "It names the folder (0-54) holding the image; fix or remove the row.",
                        f"ImageID {raw['ImageID'].iloc[position]}")
    raw["image_dir"] = directory.astype("int64").astype(str)
    check_unique(raw, ["ImageID"], path)
    lateral, notes = _lateral_rows(raw, path, settings)
    if keep is not None:
        usable = keep(lateral)
        if not usable.all():
            notes.append(f"{int((~usable).sum())} lateral image(s) whose file is missing were dropped "
                         f"(missing_images: drop), e.g. {lateral.loc[~usable, 'ImageID'].iloc[0]}")
        lateral = lateral[usable]
    labels, label_notes = balanced_labels(lateral["findings"], lateral["ImageID"],
                                          {t: settings["task_labels"][t] for t in spec.tasks},
                                          settings["negative_seed"], settings["negatives_per_positive"])
    notes.extend(label_notes)
    chosen = labels.notna().any(axis=1)
    frame = pd.concat([
        pd.DataFrame({"image_id": lateral["ImageID"].str.strip(), "patient_id": lateral["PatientID"].str.strip(),
                      "image_dir": lateral["image_dir"]}),
        _demographics(lateral), labels,
    ], axis=1)[chosen].reset_index(drop=True)
    notes.append(f"{len(frame)} lateral images selected by at least one task, {frame['patient_id'].nunique()} patients "
                 "(PatientID)")
    return frame, notes


def load_padchest_lateral(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "PadChest", f"{CSV_NAME} and the numbered image folders")
    settings = _settings(spec, options)

    def image_paths(frame: pd.DataFrame) -> pd.Series:
        return pd.Series([str(root / d / i) for d, i in zip(frame["image_dir"], frame["image_id"])], index=frame.index)

    def present(lateral: pd.DataFrame) -> pd.Series:
        return pd.Series([(root / d / i.strip()).is_file() for d, i in zip(lateral["image_dir"], lateral["ImageID"])],
                         index=lateral.index)

    frame, notes = padchest_lateral_labels(root, spec, options, present if settings["missing_images"] == "drop" else None)
    frame["path"] = image_paths(frame)
    missing = [p for p in frame["path"] if not Path(p).is_file()]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise DataError(
            f"{len(missing)} of {len(frame)} selected PadChest images are missing, e.g.:\n  {shown}\n"
            "Complete the download (ImageDir is the number of the zip file), list known-bad images under "
            "dataset.exclude_images in the benchmark spec, or set dataset.missing_images: drop to leave out the images "
            "that are absent before negatives are drawn."
        )
    frame["split"] = POOL
    notes.append("split: none released; cxrbench splits the patients (split.fractions of the spec)")
    optional = [c for c in ("sex", "age_years") if c in frame]
    columns = ["image_id", "patient_id", "path", "split", *optional, *spec.tasks]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)
