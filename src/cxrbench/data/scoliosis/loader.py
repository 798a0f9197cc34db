"""AASCE 2019 / BoostNet spinal X-rays (SpineWeb Dataset 16: 609 anterior-posterior spine radiographs with three
Cobb angles each; Wu et al., MICCAI 2017), in the layout of `boostnet_labeldata.zip`:

    ROOT/data/training/*.jpg      481 images        ROOT/labels/training/filenames.csv   one file name per row
    ROOT/data/test/*.jpg          128 images        ROOT/labels/training/angles.csv      three Cobb angles (degrees)
                                                    ROOT/labels/training/landmarks.csv   136 landmark coordinates
                                                    (and the same three files under labels/test/)

None of the CSVs has a header; row i of angles.csv belongs to row i of filenames.csv (never to a folder listing).
Landmarks are not used here (the targets are the angles). Choices the release leaves open, in the spec:
- which angle each column holds: the order of the benchmark's three targets (see benchmarks/scoliosis.yaml);
- patients: none are released, so each image is its own patient (some images are near-duplicates: a patient
  may reach both the training and the validation split; the official test split is kept as released).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import check_files_exist, numbers
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

SPLITS = {"training": "train", "test": "test"}


def _headerless(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"Missing {what}: {path} does not exist. Check --data-root points at boostnet_labeldata/.")
    try:
        return pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:
        raise DataError(f"Cannot parse {path} as CSV: {exc}") from exc


def read_split(root: Path, folder: str, targets: list[str]) -> pd.DataFrame:
    """image_id, path and one column per angle of one released split; errors name the file and the row."""
    labels = root / "labels" / folder
    names = _headerless(labels / "filenames.csv", f"BoostNet {folder} file names")
    angles = _headerless(labels / "angles.csv", f"BoostNet {folder} Cobb angles")
    if len(names) != len(angles):
        raise DataError(f"{labels / 'filenames.csv'} has {len(names)} rows and {labels / 'angles.csv'} {len(angles)}; "
                        "row i of one belongs to row i of the other, so they must have as many.")
    if angles.shape[1] != len(targets):
        raise DataError(f"{labels / 'angles.csv'} has {angles.shape[1]} columns; the benchmark's targets {targets} "
                        "need one each (its three Cobb angles).")
    files = names[0].astype(str).str.strip()
    bad = files.str.contains(r"[/\\\x00]", regex=True) | files.isin(["", ".", ".."])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{labels / 'filenames.csv'}, row {row + 1}: {files.iloc[row]!r} is not a plain file name.")
    frame = pd.DataFrame({"image_id": files.str.rsplit(".", n=1).str[0], "file": files})
    for column, name in enumerate(targets):
        frame[name] = numbers(angles, column, labels / "angles.csv", "Cobb angles", list(files), header=False).to_numpy()
    frame["path"] = [str(root / "data" / folder / file) for file in files]
    frame["split"] = SPLITS[folder]
    return frame


def load_scoliosis(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "AASCE/BoostNet", "data/ and labels/ (boostnet_labeldata)")
    settings = dataset_settings(spec, options)
    if any(t.kind != "regression" for t in spec.targets):
        raise DataError(f"benchmark '{spec.name}': the BoostNet targets are Cobb angles (regression).")
    targets = list(spec.tasks)
    frames = [read_split(root, folder, targets) for folder in settings["splits"]]
    samples = pd.concat(frames, ignore_index=True)
    duplicated = samples["image_id"].duplicated()
    if duplicated.any():
        raise DataError(f"Image {samples.loc[duplicated, 'image_id'].iloc[0]} is listed in two splits under {root / 'labels'}.")
    check_files_exist(samples["path"], "BoostNet images")
    samples["patient_id"] = samples["image_id"]
    counts = ", ".join(f"{folder} {int((samples['split'] == SPLITS[folder]).sum())}" for folder in settings["splits"])
    notes = [f"images: {counts}; patients: one per image (the release has no patient ids)",
             f"angle columns read as {', '.join(targets)} (benchmarks/{spec.name}.yaml says why)"]
    return BenchmarkData(spec.name, root, spec.targets, samples[["image_id", "patient_id", "path", "split", *targets]], notes)
