"""A small synthetic BRAX 1.1.0 release (master_spreadsheet_update.csv and PNGs under images/) for the `brax`
loader, its tests and demos. Findings are drawn by `synthetic.render_chest` as the stand-ins of `synthetic_mimic`
(a visible sign per CheXpert label, not what the finding looks like); labels are per study, as BRAX's report
labeller gives them, with uncertain (-1) and blank cells, lateral (LL) images, 5-year age groups with "85 or more"
and the sex "O". Same arguments, same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.mimic_cxr import CHEXPERT_LABELS
from cxrbench.data.synthetic import mark_synthetic, render_chest
from cxrbench.data.synthetic_layouts import _patients
from cxrbench.data.synthetic_mimic import STAND_INS, _study_labels

FOLDER = "brax/1.1.0"
COLUMNS = ["DicomPath", "PngPath", "PatientID", "PatientSex", "PatientAge", "AccessionNumber", "StudyDate",
           *CHEXPERT_LABELS, "ViewPosition", "Rows", "Columns", "Manufacturer"]


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


def write_synthetic_brax(root: str | Path, patients: int = 60, size: int = 64, seed: int = 0) -> Path:
    """ROOT/brax/1.1.0/{master_spreadsheet_update.csv, images/id-<patient>/Study-<n>/Series-<n>/image-<n>.png}; each
    patient has 1-2 studies of a frontal (PA or AP) image and sometimes a lateral (LL) one. Every seventh patient's
    sex is "O"."""
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
            labels = _study_labels(rng)
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
