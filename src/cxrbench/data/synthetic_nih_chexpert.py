"""Small synthetic NIH ChestX-ray14 and CheXpert datasets in their released layouts, for tests and demos.

Images come from `synthetic.render_chest`, which draws VinDr-CXR findings; each label is drawn as the visible VinDr
finding in NIH_STAND_INS / CHEXPERT_STAND_INS so that a probe can learn it (stand-ins, not what the real findings
look like); labels without a stand-in are in the CSVs only, so a probe can only guess them. Every label is
positive and negative in both the training and the test patients at the default sizes: patient k of each split is
given label k (cycling through the labels, and every (n+1)-th patient none), plus random extra findings. Patients
have 1-3 images, alternate F / M and cycle through the 0-35 / 35-60 / 60-100 age groups. Same arguments, same CSVs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.chexpert import LABELS as CHEXPERT_LABELS
from cxrbench.data.nih_cxr14 import FINDINGS as NIH_FINDINGS
from cxrbench.data.synthetic import mark_synthetic, render_chest
from cxrbench.data.synthetic_layouts import _patients

NIH_STAND_INS = {
    "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural effusion", "Fibrosis": "Pulmonary fibrosis",
    "Pleural_Thickening": "Pleural thickening", "Nodule": "Nodule/Mass", "Mass": "Nodule/Mass",
    "Consolidation": "Lung Opacity", "Infiltration": "Lung Opacity", "Pneumonia": "Lung Opacity",
}
CHEXPERT_STAND_INS = {
    "Cardiomegaly": "Cardiomegaly", "Enlarged Cardiomediastinum": "Aortic enlargement", "Lung Opacity": "Lung Opacity",
    "Consolidation": "Lung Opacity", "Pneumonia": "Lung Opacity", "Lung Lesion": "Nodule/Mass",
    "Pleural Effusion": "Pleural effusion", "Pleural Other": "Pleural thickening",
}
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]
AGE_GROUPS = ((1, 35), (35, 60), (60, 96))
EXTRA_FINDING = 0.1  # chance of each other label on top of the one a patient is given


def _findings(position: int, names: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """Label `position` mod (n + 1) (none for n), so that every label has positives and negatives in a split of
    more than n patients, first, then each other label with probability EXTRA_FINDING (none on the label-free
    patients)."""
    cycle = position % (len(names) + 1)
    if cycle == len(names):
        return []
    given = names[cycle]
    return [given, *(name for name in names if name != given and rng.random() < EXTRA_FINDING)]


def _person(index: int, cap: int, rng: np.random.Generator) -> tuple[str, int]:
    """Sex and age: alternating, and cycling through the three age groups (ages up to `cap`)."""
    low, high = AGE_GROUPS[index % 3]
    return ("F" if index % 2 else "M"), int(rng.integers(low, min(high, cap + 1)))


def _image(patient: dict, stand_ins: set[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """An 8-bit radiograph drawing `stand_ins`; the heart and aortic knob sized by them, not by the VinDr draw."""
    anatomy = {**patient["anatomy"],
               "ctr": rng.uniform(0.52, 0.64) if "Cardiomegaly" in stand_ins else rng.uniform(0.38, 0.5),
               "aortic_radius": rng.uniform(0.045, 0.062) if "Aortic enlargement" in stand_ins else rng.uniform(0.028, 0.044)}
    image, _ = render_chest(sorted(stand_ins), anatomy, size, rng)
    return np.round(image * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------- NIH ChestX-ray14


def write_synthetic_nih_cxr14(root: str | Path, patients: int = 48, size: int = 64, seed: int = 0, test_patients: int = 16,
                              kaggle: bool = False) -> Path:
    """Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt and 8-bit grayscale PNGs named
    <patient:08d>_<follow-up:03d>.png in images/ (or, with `kaggle`, spread over images_001/images/ ...)."""
    root = Path(root)
    mark_synthetic(root, "nih-cxr14", {"patients": patients, "size": size, "seed": seed, "test_patients": test_patients,
                                       "kaggle": kaggle})
    rng = np.random.default_rng(seed)
    rows, lists = [], {"train": [], "test": []}
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        split, position = ("test", index) if index < test_patients else ("train", index - test_patients)
        findings = _findings(position, NIH_FINDINGS, rng)
        sex, age = _person(index, 95, rng)
        for visit in range(patient["n_images"]):
            name = f"{index + 1:08d}_{visit:03d}.png"
            folder = root / (f"images_{1 + len(rows) % 3:03d}/images" if kaggle else "images")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_image(patient, {NIH_STAND_INS[f] for f in findings if f in NIH_STAND_INS}, size, rng),
                            mode="L").save(folder / name)
            rows.append({"Image Index": name, "Finding Labels": "|".join(f for f in NIH_FINDINGS if f in findings) or "No Finding",
                          "Follow-up #": visit,
                         "Patient ID": index + 1, "Patient Age": age, "Patient Gender": sex,
                         "View Position": "PA" if rng.random() < 0.6 else "AP", "OriginalImage[Width": size,
                         "Height]": size, "OriginalImagePixelSpacing[x": 0.143, "y]": 0.143})
            lists[split].append(name)
    pd.DataFrame(rows, columns=NIH_COLUMNS).to_csv(root / "Data_Entry_2017_v2020.csv", index=False)
    (root / "train_val_list.txt").write_text("".join(f"{name}\n" for name in sorted(lists["train"])))
    (root / "test_list.txt").write_text("".join(f"{name}\n" for name in sorted(lists["test"])))
    return root


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
