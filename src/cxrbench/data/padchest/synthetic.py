"""A small synthetic PadChest release (16-bit PNG images and the label CSV with the release's columns), for tests and
demos. Labels are drawn as visible stand-ins. Same arguments, same files.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.synthetic import STAND_INS, _patients, _render, mark_synthetic

PADCHEST_COLUMNS = [
    "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth", "PatientSex_DICOM",
    "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric", "Modality_DICOM", "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM", "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM", "SpatialResolution_DICOM",
    "BitsStored_DICOM", "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM", "Columns_DICOM",
    "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime", "RelativeXRayExposure_DICOM",
    "ReportID", "Report", "MethodLabel", "Labels", "Localizations", "LabelsLocalizationsBySentence", "labelCUIS",
    "LocalizationsCUIS",
]
PADCHEST_CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"


# ----------------------------------------------------------------------------------------------- PadChest


def write_synthetic_padchest(root: str | Path, patients: int = 30, size: int = 48, seed: int = 0,
                             compress: bool = False) -> Path:
    """The PadChest labels CSV (plain, or .csv.gz with `compress`) and 16-bit PNGs at <ImageDir>/<ImageID>.

    Each patient has 1-2 studies with a lateral (Projection L) and usually a PA image sharing the study's
    Labels, written like the real CSV: list literals, some labels with a leading space, "loculated pleural
    effusion" (which is not "pleural effusion"), and one lateral image without Labels.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    stand_in = STAND_INS["padchest-lateral"]
    rows = []
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        patient_id = str(int(hashlib.sha256(f"{seed}/patient/{index}".encode()).hexdigest()[:30], 16))
        birth = 2015 - patient["age"]
        for study in range(min(patient["n_images"], 2)):
            labels = []
            if rng.random() < 0.3:
                labels.append("vertebral degenerative changes")
            effusion = rng.random() < 0.3
            if effusion:
                labels.append("pleural effusion")
            if rng.random() < (0.6 if effusion else 0.15):
                labels.append("costophrenic angle blunting")
            if not effusion and rng.random() < 0.1:
                labels.append("loculated pleural effusion")
            if rng.random() < 0.3:
                labels.append("kyphosis")
            labels = labels or ["normal"]
            text = "[" + ", ".join(repr(" " + l if k and rng.random() < 0.5 else l) for k, l in enumerate(labels)) + "]"
            study_id = str(int(hashlib.sha256(f"{seed}/study/{index}/{study}".encode()).hexdigest()[:30], 16))
            views = ["L", "PA"] if rng.random() < 0.8 else ["L"]
            for view_index, view in enumerate(views):
                image_id = f"{study_id}{view_index}_{rng.integers(0, 5):02d}-{rng.integers(0, 200):03d}-{rng.integers(0, 200):03d}.png"
                directory = int(rng.integers(0, 3))
                image, _ = _render(patient, [stand_in[l] for l in labels if l in stand_in], size, rng)
                folder = root / str(directory)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(folder / image_id)
                rows.append({
                    "ImageID": image_id, "ImageDir": directory, "StudyDate_DICOM": 20150000 + 100 * (study + 1) + 15,
                    "StudyID": study_id, "PatientID": patient_id, "PatientBirth": float(birth),
                    "PatientSex_DICOM": patient["sex"], "ViewPosition_DICOM": "LATERAL" if view == "L" else "POSTEROANTERIOR",
                    "Projection": view, "MethodProjection": "Manual review of DICOM fields", "Pediatric": "No",
                    "Modality_DICOM": "CR", "PhotometricInterpretation_DICOM": "MONOCHROME2", "BitsStored_DICOM": 16,
                    "Rows_DICOM": size, "Columns_DICOM": size, "ReportID": 4000000 + len(rows),
                    "Report": "synthetic report .", "MethodLabel": "Physician", "Labels": text,
                    "Localizations": "[]", "LabelsLocalizationsBySentence": "[" + text + "]", "labelCUIS": "[]",
                    "LocalizationsCUIS": "[]",
                })
    frame = pd.DataFrame(rows).reindex(columns=PADCHEST_COLUMNS)
    lateral = frame.index[frame["Projection"] == "L"]
    frame.loc[lateral[-1], "Labels"] = np.nan  # as in the real CSV, a few images have no Labels
    root.mkdir(parents=True, exist_ok=True)
    mark_synthetic(root, "padchest-lateral", {"patients": patients, "size": size, "seed": seed, "compress": compress})
    if compress:
        with gzip.open(root / (PADCHEST_CSV + ".gz"), "wt", newline="") as handle:
            frame.to_csv(handle)
    else:
        frame.to_csv(root / PADCHEST_CSV)  # with the unnamed index column of the released file
    return root
