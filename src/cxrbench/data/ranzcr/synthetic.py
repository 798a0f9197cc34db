"""A small synthetic RANZCR CLiP release (train.csv and train/<StudyInstanceUID>.jpg) for the `ranzcr-catheters`
loader, its tests and demos. Each tube drawn is a bright line in the image (an endotracheal tube down the midline,
a nasogastric tube into the abdomen, a central venous catheter from a shoulder); its position class moves its tip:
normal where it belongs, borderline a little off, abnormal far off. So the three groups are learnable from pixels
and co-occur as in the release (most images have a CVC, many more than one tube). Same arguments, same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.ranzcr.loader import LABEL_COLUMNS
from cxrbench.data.common.synthetic import mark_synthetic, render_chest
from cxrbench.data.common.synthetic import _patients

FOLDER = "ranzcr-clip-catheter-line-classification"
POSITIONS = ("Normal", "Borderline", "Abnormal")
#: (share of images with the tube, shares of Normal / Borderline / Abnormal among them): less skewed than the release,
#: so that every column has positives in a small test split
TUBE_SHARES = {"ETT": (0.45, (0.5, 0.3, 0.2)), "NGT": (0.45, (0.5, 0.25, 0.25)), "CVC": (0.8, (0.55, 0.25, 0.2))}
#: tube -> (start x, start y, normal tip x, normal tip y); borderline / abnormal tips move down by 0.08 / 0.22
PATHS = {"ETT": (0.5, 0.0, 0.5, 0.32), "NGT": (0.47, 0.0, 0.55, 0.85), "CVC": (0.2, 0.15, 0.45, 0.35)}
TIP_SHIFT = {"Normal": 0.0, "Borderline": 0.08, "Abnormal": 0.22}


def _uid(*parts: object) -> str:
    return "1.2.826.0.1.3680043.8.498." + str(int(hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:20], 16))


def _draw_line(image: np.ndarray, start: tuple[float, float], end: tuple[float, float]) -> None:
    size = image.shape[0]
    for t in np.linspace(0, 1, 4 * size):
        x, y = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
        row, col = min(int(y * size), size - 1), min(int(x * size), size - 1)
        image[row, max(col - 1, 0):col + 1] = 1.0


def _tubes(rng: np.random.Generator) -> dict[str, str]:
    """tube -> position class, for the tubes present in one image."""
    present = {}
    for tube, (share, positions) in TUBE_SHARES.items():
        if rng.random() < share:
            present[tube] = str(rng.choice(POSITIONS, p=positions))
    return present


def write_synthetic_ranzcr(root: str | Path, patients: int = 60, size: int = 64, seed: int = 0) -> Path:
    """ROOT/ranzcr-clip-catheter-line-classification/{train.csv, train/*.jpg}; patients have 1-3 images; one NGT in
    ten is 'Incompletely Imaged' instead of a position; a Swan Ganz catheter is marked now and then."""
    root = Path(root)
    mark_synthetic(root, "ranzcr", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    folder = root / FOLDER
    (folder / "train").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, person in enumerate(_patients(patients, size, seed, rng)):
        patient = f"ec{int(hashlib.sha1(f'{seed}/{index}'.encode()).hexdigest()[:8], 16):010d}"
        for image_index in range(person["n_images"]):
            uid = _uid(seed, index, image_index)
            image, _ = render_chest([], person["anatomy"], size, rng)
            row = {"StudyInstanceUID": uid, **dict.fromkeys(LABEL_COLUMNS, 0)}
            for tube, position in _tubes(rng).items():
                x0, y0, x1, y1 = PATHS[tube]
                _draw_line(image, (x0, y0), (x1, min(y1 + TIP_SHIFT[position], 0.98)))
                incomplete = tube == "NGT" and rng.random() < 0.1
                row["NGT - Incompletely Imaged" if incomplete else f"{tube} - {position}"] = 1
            row["Swan Ganz Catheter Present"] = int(rng.random() < 0.03)
            pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "train" / f"{uid}.jpg", quality=95)
            rows.append({**row, "PatientID": patient})
    pd.DataFrame(rows, columns=["StudyInstanceUID", *LABEL_COLUMNS, "PatientID"]).to_csv(folder / "train.csv", index=False)
    return root
