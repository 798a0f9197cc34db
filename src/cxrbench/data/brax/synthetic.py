"""A small synthetic BRAX 1.1.0 release (master_spreadsheet_update.csv and PNGs under images/) for the `brax`
loader, its tests and demos. Findings are drawn by `synthetic.render_chest` as stand-ins (`STAND_INS`: a visible
sign per label, not what the finding looks like); labels are per study, as BRAX's report
labeller gives them, with uncertain (-1) and blank cells, lateral (LL) images, 5-year age groups with "85 or more"
and the sex "O". Same arguments, same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.brax.loader import LABELS
from cxrbench.data.common.synthetic import mark_synthetic, render_chest
from cxrbench.data.common.synthetic import _patients

FOLDER = "brax/1.1.0"
#: BRAX label -> the finding `render_chest` draws for it (a visible stand-in, not what the finding looks like)
STAND_INS = {"Cardiomegaly": "Cardiomegaly", "Pleural Effusion": "Pleural effusion", "Lung Opacity": "Lung Opacity",
             "Lung Lesion": "Nodule/Mass", "Pleural Other": "Pleural thickening",
             "Enlarged Cardiomediastinum": "Aortic enlargement", "Edema": "Pulmonary fibrosis"}
ABNORMAL = [label for label in LABELS if label != "No Finding"]
COLUMNS = ["DicomPath", "PngPath", "PatientID", "PatientSex", "PatientAge", "AccessionNumber", "StudyDate", *LABELS, "ViewPosition", "Rows", "Columns", "Manufacturer"]


def _hex(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:16]


def age_group(age: int) -> str:
    """BRAX's 5-year PatientAge group of an age in years."""
    if age >= 85:
        return "85 or more"
    low = age // 5 * 5
    return f"{low}-{low + 4}"


def _cell(value: float) -> str:
    return "" if np.isnan(value) else f"{value:g}"


def study_labels(rng: np.random.Generator, first: str) -> dict[str, float]:
    """One study's labels as the report labeller leaves them: No Finding 1 (40%), else `first` and sometimes another
    finding, with a negative, often an uncertain (-1) one, and blanks for the rest."""
    row = dict.fromkeys(LABELS, np.nan)
    if rng.random() < 0.4:
        row["No Finding"] = 1.0
        return row
    row[first] = 1.0
    if rng.random() < 0.4:
        row[str(rng.choice([label for label in ABNORMAL if label != first]))] = 1.0
    uncertain, negative = rng.choice([label for label in ABNORMAL if np.isnan(row[label])], size=2, replace=False)
    row[str(negative)] = 0.0
    if rng.random() < 0.6:
        row[str(uncertain)] = -1.0
    return row


def write_synthetic_brax(root: str | Path, patients: int = 60, size: int = 64, seed: int = 0) -> Path:
    """ROOT/brax/1.1.0/{master_spreadsheet_update.csv, images/id-<patient>/Study-<n>/Series-<n>/image-<n>.png}; each
    patient has 1-2 studies of a frontal (PA or AP) image and sometimes a lateral (LL) one; the findings of abnormal
    studies take turns, so that each is about as frequent as the others. Every seventh patient's sex is "O"."""
    root = Path(root)
    mark_synthetic(root, "brax", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    rows = []
    for index, person in enumerate(_patients(patients, size, seed, rng)):
        patient = _hex("patient", seed, index)
        sex = "O" if index % 7 == 6 else person["sex"]
        for study in range(1 + int(rng.random() < 0.4)):
            accession = _hex("study", seed, index, study)
            labels = study_labels(rng, ABNORMAL[len(rows) % len(ABNORMAL)])
            planted = sorted(STAND_INS[label] for label in STAND_INS if labels[label] == 1.0)
            views = ["PA" if rng.random() < 0.6 else "AP"] + (["LL"] if rng.random() < 0.4 else [])
            for series, view in enumerate(views):
                stem = f"images/id-{patient}/Study-{accession}/Series-{series}/image-{_hex('image', accession, view)}"
                image, _ = render_chest(planted, person["anatomy"], size, rng)
                (folder / stem).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{stem}.png")
                rows.append({"DicomPath": f"{stem}.dcm", "PngPath": f"{stem}.png", "PatientID": patient,
                             "PatientSex": sex, "PatientAge": age_group(person["age"]), "AccessionNumber": accession,
                             "StudyDate": 20190101 + study, **{k: _cell(v) for k, v in labels.items()},
                             "ViewPosition": view, "Rows": size, "Columns": size, "Manufacturer": int(rng.integers(0, 4))})
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "master_spreadsheet_update.csv", index=False)
    return root
