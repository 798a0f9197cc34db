"""A small synthetic RSNA-Pneumonia release (DICOM images, the stage-2 label CSV, optionally the NIH mapping), for
tests and demos. Pneumonia is drawn as a visible stand-in (Lung Opacity). Same arguments, same files.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.data.common.synthetic import _patients, _render, _uid, _write_dicom, mark_synthetic

# ----------------------------------------------------------------------------------------- RSNA-Pneumonia


def write_synthetic_rsna(root: str | Path, patients: int = 24, size: int = 64, seed: int = 0, nih_mapping: bool = True) -> Path:
    """stage_2_train_labels.csv, stage_2_detailed_class_info.csv, stage_2_train_images/<patientId>.dcm and,
    with `nih_mapping`, pneumonia-challenge-dataset-mappings_2018.json (NIH patients have 1-3 images; the
    mapping also lists a few images that are not in the labels, as the real one lists the test images)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    mark_synthetic(root, "rsna-pneumonia", {"patients": patients, "size": size, "seed": seed, "nih_mapping": nih_mapping})
    rng = np.random.default_rng(seed)
    labels, classes, mapping = [], [], []
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        nih_patient = 1000 * (seed + 1) + index
        for visit in range(patient["n_images"]):
            image_id = str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)), version=4))
            positive = rng.random() < 0.3
            image, boxes = _render(patient, ["Lung Opacity"] if positive else [], size, rng)
            _write_dicom(root / "stage_2_train_images" / f"{image_id}.dcm", image, {**patient, "id": image_id}, rng)
            mapping.append({"img_id": f"{nih_patient:08d}_{visit:03d}", "subset_img_id": image_id,
                            "StudyInstanceUID": _uid(seed, "rsna", index, visit), "orig_labels": ["No Finding"]})
            if positive:
                x0, y0, x1, y1 = next(box for name, box in boxes if name == "Lung Opacity")
                parts = 2 if len(labels) % 2 else 1
                width = (x1 - x0) / parts
                for k in range(parts):
                    labels.append({"patientId": image_id, "x": round(x0 + k * width, 1), "y": round(y0, 1),
                                   "width": round(width, 1), "height": round(y1 - y0, 1), "Target": 1})
                    classes.append({"patientId": image_id, "class": "Lung Opacity"})
            else:
                labels.append({"patientId": image_id, "x": None, "y": None, "width": None, "height": None, "Target": 0})
                classes.append({"patientId": image_id, "class": "Normal" if rng.random() < 0.5 else "No Lung Opacity / Not Normal"})
    pd.DataFrame(labels).to_csv(root / "stage_2_train_labels.csv", index=False)
    pd.DataFrame(classes).to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    if nih_mapping:
        for extra in range(3):  # images of the challenge's test set: in the mapping, not in the labels
            mapping.append({"img_id": f"{900000 + extra:08d}_000", "subset_img_id": str(uuid.UUID(int=extra + 1, version=4)),
                            "StudyInstanceUID": _uid(seed, "rsna-test", extra), "orig_labels": ["No Finding"]})
        (root / "pneumonia-challenge-dataset-mappings_2018.json").write_text(json.dumps(mapping))
    return root
