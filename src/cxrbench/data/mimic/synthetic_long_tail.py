"""A small synthetic CXR-LT 2023 release on top of the synthetic MIMIC-CXR-JPG one, for the `mimic-lt` loader, its
tests and demos: cxr-lt-2023/{train,development,test}.csv (dicom_id, subject_id, study_id, the 26 labels) for every
image of MIMIC-CXR-JPG's train / validate / test split. The labels are NOT drawn in the pixels: they test the
plumbing and the prevalence bins, not an encoder. Each class has a set prevalence (`PREVALENCE`): 9 above 10%, 11
between 1 and 10% and 6 below 1% on the training file, as RayDINO's bins count them; every class has at least two
positive images in the train file and one in the test file, so every target can be trained and scored. Same arguments, same files.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.data.mimic.long_tail import LABELS
from cxrbench.data.common.synthetic import mark_synthetic
from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr

COMMON_CLASSES = ("Atelectasis", "Cardiomegaly", "Edema", "Lung Opacity", "No Finding", "Pleural Effusion",
                  "Pneumonia", "Support Devices", "Consolidation")
RARE_CLASSES = ("Pneumomediastinum", "Pneumoperitoneum", "Subcutaneous Emphysema", "Hernia", "Fibrosis",
                "Pleural Other")
#: class -> share of positive images: common 12-40%, uncommon 2-8%, rare 0.3%
PREVALENCE = {
    **{name: 0.12 + 0.035 * k for k, name in enumerate(COMMON_CLASSES)},
    **{name: 0.003 for name in RARE_CLASSES},
    **{name: 0.02 + 0.006 * k for k, name in enumerate(n for n in LABELS if n not in COMMON_CLASSES + RARE_CLASSES)},
}
FILES = {"train": "train.csv", "validate": "development.csv", "test": "test.csv"}
#: fewest positives of a class per file: two in train (one may be drawn for validation), one in test
LEAST = {"train": 2, "validate": 0, "test": 1}

def _read(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)

def _labels(count: int, rng: np.random.Generator, least: int) -> dict[str, np.ndarray]:
    """Per class, max(least, round(prevalence x count)) positive images at random places."""
    out = {}
    for name in LABELS:
        values = np.zeros(count, dtype=int)
        values[rng.choice(count, size=min(count, max(least, round(PREVALENCE[name] * count))), replace=False)] = 1
        out[name] = values
    return out

def write_synthetic_mimic_lt(root: str | Path, patients: int = 200, size: int = 32, seed: int = 0) -> Path:
    """The synthetic MIMIC-CXR-JPG release (`synthetic_mimic`) and, beside it, cxr-lt-2023/ labelling all its images."""
    root = Path(root)
    write_synthetic_mimic_cxr(root, patients=patients, size=size, seed=seed)
    mark_synthetic(root, "mimic-lt", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng([seed, 26])
    jpg = root / "mimic-cxr-jpg"
    images = _read(jpg / "mimic-cxr-2.0.0-split.csv.gz")
    for split, name in FILES.items():
        part = images[images["split"] == split].sort_values("dicom_id", kind="stable").reset_index(drop=True)
        frame = pd.DataFrame({"dicom_id": part["dicom_id"], "subject_id": part["subject_id"],
                              "study_id": part["study_id"], **_labels(len(part), rng, LEAST[split])})
        (root / "cxr-lt-2023").mkdir(parents=True, exist_ok=True)
        frame.to_csv(root / "cxr-lt-2023" / name, index=False)
    return root
