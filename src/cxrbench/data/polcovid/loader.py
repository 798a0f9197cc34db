"""POLCOVID (Suwalska et al., Scientific Data 2023): normal / pneumonia / COVID-19 chest X-rays from 15 Polish
hospitals, in the layout of its release.

    ROOT/<metadata CSV>      one row per image: filename, patient_id, hospital_id, sex, age, class, class_id,
                             quality, set, ... (the columns of the paper's Table 6)
    ROOT/**/<filename>       the images (DICOM or JPEG), found by file name anywhere under the root, so that the
                             archive's folders (per class, per hospital, or flat) need not be known

Choices the release leaves open (each a dataset option in benchmarks/polcovid.yaml):
- patients: `patient_id` is numbered within each hospital, so a patient is (hospital_id, patient_id);
- the class comes from the `class` column through `class_values` (release text -> class name);
- `quality: Bad` images (16 in the release) are kept unless `drop_bad_quality` is true;
- no benchmark split is released (the `set` column repeats an earlier study's train / hold-out split): cxrbench
  splits the patients 80/10/10 (RayDINO: "80%, 10% and 10% ... when no official splits are available").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import class_codes, file_index, first_existing, read_csv, row_error
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

REQUIRED = ["filename", "patient_id", "hospital_id", "class"]


def load_polcovid(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "POLCOVID", "the metadata CSV and the image folders")
    settings = dataset_settings(spec, options)
    (target,) = [t for t in spec.targets if t.kind == "multiclass"] or [None]
    if target is None or len(spec.targets) != 1:
        raise DataError(f"benchmark '{spec.name}': POLCOVID has one multiclass target (the diagnosis); the spec lists "
                        f"{[t.name for t in spec.targets]}.")
    path = first_existing(root, settings["metadata_csv"], "POLCOVID metadata CSV")
    frame = read_csv(path, REQUIRED, "POLCOVID metadata", text_columns=["filename", "patient_id", "hospital_id", "class"],
                     file_name_columns=["filename"]).reset_index(drop=True)
    for column in ("filename", "patient_id", "hospital_id"):
        empty = frame[column].fillna("").str.strip().eq("")
        if empty.any():
            raise row_error(path, int(np.flatnonzero(empty)[0]), column, "is empty", "Every image needs it; fix or remove the row.")
    frame["filename"] = frame["filename"].str.strip()
    duplicated = frame["filename"].duplicated()
    if duplicated.any():
        position = int(np.flatnonzero(duplicated)[0])
        raise row_error(path, position, "filename", f"repeats {frame['filename'].iloc[position]!r}", "Each image is listed once.")
    notes = []
    if settings["drop_bad_quality"] and "quality" in frame:
        bad = frame["quality"].fillna("").astype(str).str.strip().str.lower().eq("bad")
        notes.append(f"{int(bad.sum())} image(s) with quality 'Bad' left out (drop_bad_quality)")
        frame = frame[~bad].reset_index(drop=True)
    labels = class_codes(frame, "class", settings["class_values"], target.classes, path, ident="filename")
    files = file_index(root)
    missing = [name for name in frame["filename"] if name not in files]
    if missing:
        shown = ", ".join(missing[:5])
        raise DataError(f"{len(missing)} of {len(frame)} images listed in {path} are not under {root} (e.g. {shown}). "
                        "Unpack every archive of the release into the data root.")
    samples = pd.DataFrame({
        "image_id": frame["filename"],
        # patient ids restart in every hospital
        "patient_id": frame["hospital_id"].str.strip() + ":" + frame["patient_id"].str.strip(),
        "path": [str(files[name]) for name in frame["filename"]],
        "split": POOL,
        target.name: labels,
    })
    if "sex" in frame:
        sex = frame["sex"].fillna("").astype(str).str.strip().str.upper().str[:1]
        samples["sex"] = sex.where(sex.isin(["M", "F"]), "")
    if "age" in frame:
        samples["age_years"] = pd.to_numeric(frame["age"], errors="coerce").astype(np.float32)
    counts = ", ".join(f"{name} {int((labels == k).sum())}" for k, name in enumerate(target.classes))
    notes += [f"{len(samples)} images of {samples['patient_id'].nunique()} patients (hospital:patient): {counts}",
              "split: no benchmark split is released; cxrbench splits the patients (split.fractions of the spec)"]
    columns = ["image_id", "patient_id", "path", "split", *[c for c in ("sex", "age_years") if c in samples], target.name]
    return BenchmarkData(spec.name, root, spec.targets, samples[columns], notes)
