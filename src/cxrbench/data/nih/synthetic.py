"""A small synthetic NIH ChestX-ray14 in its released layout, for tests and demos.

Each label is drawn as the visible VinDr finding in NIH_STAND_INS so that a probe can learn it (stand-ins, not what
the real findings look like); labels without a stand-in are in the CSVs only, so a probe can only guess them. Every
label is positive and negative in both the training and the test patients at the default sizes (`_findings`).
Same arguments, same CSVs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.synthetic import _findings, _image, _patients, _person, mark_synthetic
from cxrbench.data.nih.loader import FINDINGS as NIH_FINDINGS

NIH_STAND_INS = {
    "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural effusion", "Fibrosis": "Pulmonary fibrosis",
    "Pleural_Thickening": "Pleural thickening", "Nodule": "Nodule/Mass", "Mass": "Nodule/Mass",
    "Consolidation": "Lung Opacity", "Infiltration": "Lung Opacity", "Pneumonia": "Lung Opacity",
}
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


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
