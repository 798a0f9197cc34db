"""A small synthetic POLCOVID release (images and metadata by hospital), for tests and demos. Each class is drawn as
visible stand-in findings. Same arguments, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.synthetic import STAND_INS, _patients, _render, _write_dicom, mark_synthetic

# ------------------------------------------------------------------------------------------------- POLCOVID

POLCOVID_COLUMNS = ["origin", "filename", "patient_id", "hospital", "hospital_eng", "hospital_id", "sex", "age", "smoke",
                    "smoke_packyears", "class", "class_id", "quality", "subtype", "set"]
POLCOVID_CLASSES = ["NORMAL", "PNEUMONIA", "COVID-19"]


def write_synthetic_polcovid(root: str | Path, patients: int = 60, size: int = 64, seed: int = 0) -> Path:
    """metadata.csv (the paper's Table 6 columns) and images in per-class folders, DICOM from hospital 1 and JPEG
    from the others, named Anonymous_<hospital>_<patient>_<class id>[_<visit>]; patient ids restart per hospital.
    Classes are drawn as visible stand-ins (STAND_INS["polcovid"]) so that a probe can learn them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    mark_synthetic(root, "polcovid", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    rows, per_hospital = [], {}
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        label = int(rng.choice(3, p=[0.5, 0.25, 0.25]))
        hospital = 1 + index % 3
        per_hospital[hospital] = per_hospital.get(hospital, 0) + 1
        number = per_hospital[hospital]
        for visit in range(patient["n_images"]):
            suffix = ".dcm" if hospital == 1 else ".jpg"
            name = f"Anonymous_{hospital}_{number}_{label + 1}" + (f"_{visit + 1}" if visit else "") + suffix
            image, _ = _render(patient, STAND_INS["polcovid"][POLCOVID_CLASSES[label]], size, rng)
            path = root / "images" / POLCOVID_CLASSES[label] / name
            if suffix == ".dcm":
                _write_dicom(path, image, {**patient, "id": f"{hospital}-{number}"}, rng)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, quality=92)
            rows.append({"origin": "POLCOVID", "filename": name, "patient_id": number, "hospital": f"Szpital {hospital}",
                         "hospital_eng": f"Hospital {hospital}", "hospital_id": hospital,
                         "sex": patient["sex"] if rng.random() < 0.6 else "", "age": patient["age"], "smoke": "",
                         "smoke_packyears": "", "class": POLCOVID_CLASSES[label], "class_id": label + 1,
                         "quality": "Bad" if rng.random() < 0.02 else "Good", "subtype": "", "set": "train"})
    pd.DataFrame(rows, columns=POLCOVID_COLUMNS).to_csv(root / "metadata.csv", index=False)
    return root
