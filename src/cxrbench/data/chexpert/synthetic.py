"""A small synthetic CheXpert in its released layout (train.csv / valid.csv, study folders, frontal and lateral views),
for tests and demos.

Each label is drawn as the visible VinDr finding in CHEXPERT_STAND_INS so that a probe can learn it (stand-ins, not
what the real findings look like); labels without a stand-in are in the CSVs only. Same arguments, same CSVs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.chexpert.loader import LABELS as CHEXPERT_LABELS
from cxrbench.data.common.synthetic import _findings, _image, _patients, _person, mark_synthetic

CHEXPERT_STAND_INS = {
    "Cardiomegaly": "Cardiomegaly", "Enlarged Cardiomediastinum": "Aortic enlargement", "Lung Opacity": "Lung Opacity",
    "Consolidation": "Lung Opacity", "Pneumonia": "Lung Opacity", "Lung Lesion": "Nodule/Mass",
    "Pleural Effusion": "Pleural effusion", "Pleural Other": "Pleural thickening",
}
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]


# ------------------------------------------------------------------------------------------------- CheXpert


def _chexpert_labels(findings: list[str], consensus: bool, rng: np.random.Generator) -> tuple[dict, set[str]]:
    """The 14 label cells and the labels drawn in the image (`findings`: the given one first). Training labels are
    the labeller's: an extra finding is uncertain (-1.0) a quarter of the time, an absent one sometimes uncertain, sometimes 0.0, mostly blank.
    Consensus labels (valid, test) are 1.0 / 0.0 only."""
    cells, drawn = {}, set()
    for name in CHEXPERT_LABELS[1:]:
        if name in findings:
            drawn.add(name)
            uncertain = name != findings[0] and not consensus and rng.random() < 0.25
            cells[name] = -1.0 if uncertain else 1.0
        elif consensus:
            cells[name] = 0.0
        else:
            draw = rng.random()
            cells[name] = -1.0 if draw < 0.04 else 0.0 if draw < 0.3 else np.nan
    cells["No Finding"] = 1.0 if not findings else (0.0 if consensus else np.nan)
    return cells, drawn


def _chexpert_views(count: int) -> list[tuple[int, int, str]]:
    """(study, view, Frontal / Lateral) of a patient's images: a frontal first, then its lateral, then a new study."""
    return [(1, 1, "Frontal"), (1, 2, "Lateral"), (2, 1, "Frontal")][:count]


def write_synthetic_chexpert(root: str | Path, patients: int = 48, size: int = 64, seed: int = 0, valid_patients: int = 16,
                             test_patients: int = 0, small: bool = False) -> Path:
    """CheXpert-v1.0[-small]/{train,valid}.csv and JPEGs at <folder>/<split>/patientNNNNN/studyN/viewN_<view>.jpg; with
    `test_patients`, also CheXlocalize's test_labels.csv (Path from test/ on, the 14 labels only) and test/ images.

    Patients are numbered as in the release (train from 1, valid from 64541, test from 64741); one training patient
    has Sex Unknown.
    """
    root = Path(root)
    folder = "CheXpert-v1.0-small" if small else "CheXpert-v1.0"
    mark_synthetic(root, "chexpert", {"patients": patients, "size": size, "seed": seed, "valid_patients": valid_patients,
                                      "test_patients": test_patients, "small": small})
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    first = {"valid": 64541, "test": 64741, "train": 1}
    targets = CHEXPERT_LABELS[1:]
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        split = "valid" if index < valid_patients else "test" if index < valid_patients + test_patients else "train"
        position = index - {"valid": 0, "test": valid_patients, "train": valid_patients + test_patients}[split]
        findings = _findings(position, targets, rng)
        sex, age = _person(index, 90, rng)
        for study, view, kind in _chexpert_views(patient["n_images"]):
            cells, drawn = _chexpert_labels(findings, split != "train", rng)
            relative = f"{split}/patient{first[split] + position:05d}/study{study}/view{view}_{kind.lower()}.jpg"
            path = root / folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            image = _image(patient, {CHEXPERT_STAND_INS[f] for f in drawn if f in CHEXPERT_STAND_INS}, size, rng)
            Image.fromarray(image, mode="L").save(path, quality=92)
            written_sex = "Unknown" if split == "train" and position == 1 else {"F": "Female", "M": "Male"}[sex]
            rows[split].append({"Path": relative if split == "test" else f"{folder}/{relative}", "Sex": written_sex,
                                "Age": age, "Frontal/Lateral": kind, "AP/PA": ("AP" if rng.random() < 0.7 else "PA")
                                if kind == "Frontal" else np.nan, **cells})
    pd.DataFrame(rows["train"], columns=CHEXPERT_COLUMNS).to_csv(root / folder / "train.csv", index=False)
    pd.DataFrame(rows["valid"], columns=CHEXPERT_COLUMNS).to_csv(root / folder / "valid.csv", index=False)
    if test_patients:
        pd.DataFrame(rows["test"], columns=["Path", *CHEXPERT_LABELS]).to_csv(root / folder / "test_labels.csv", index=False)
    return root
