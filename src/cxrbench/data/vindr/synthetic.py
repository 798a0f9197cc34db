"""Synthetic VinDr-CXR (image labels of three readers per training image, boxes, DICOM with PatientID, sex and age in
the headers) and VinDr-RibCXR (20 rib polygons per image) in their released layouts, for tests and demos.

VinDr-CXR: each training image is read by three of seventeen readers who each miss or invent findings at realistic
rates; test labels are the truth (the consensus). The real release strips PatientID; the loader falls back to image
ids there. Same config, same bytes of labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.synthetic import PREVALENCE, SyntheticConfig, _draw_patients, _write_dicom, mark_synthetic, render_chest

# The 28 label columns of the official CSVs, in order ("Other disease" in the test CSV).
VINDR_LABELS = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD", "Lung tumor", "Pneumonia", "Tuberculosis",
    "Other diseases", "No finding",
]
READERS = [f"R{i}" for i in range(1, 18)]


def write_synthetic_vindr(root: str | Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write a VinDr-CXR-layout dataset under `root` and return it. Same config, same bytes of labels."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    mark_synthetic(root, "vindr", asdict(config))
    rng = np.random.default_rng(config.seed)
    patients = _draw_patients(config, rng)
    train_rows, test_rows, train_boxes, test_boxes = [], [], [], []
    for patient in patients:
        for visit in range(patient["n_images"]):
            image_id = hashlib.md5(f"{config.seed}/{patient['id']}/{visit}".encode()).hexdigest()
            split = patient["split"]
            image, boxes = render_chest(patient["findings"], patient["anatomy"], config.size, rng)
            _write_dicom(root / split / f"{image_id}.dicom", image, patient, rng)
            if split == "test":
                test_rows.append(_label_row(image_id, set(patient["findings"])))
                test_boxes += [_box_row(image_id, None, name, box) for name, box in boxes]
                continue
            for reader in rng.choice(READERS, size=3, replace=False):
                seen = {f for f in patient["findings"] if rng.random() < config.reader_sensitivity}
                seen |= {f for f in PREVALENCE if f not in patient["findings"] and rng.random() < config.reader_false_positive}
                train_rows.append({"image_id": image_id, "rad_id": reader, **_label_row(image_id, seen)})
                train_boxes += [_box_row(image_id, reader, name, box) for name, box in boxes if name in seen]
    label_columns = ["image_id", "rad_id", *VINDR_LABELS]
    pd.DataFrame(train_rows)[label_columns].to_csv(root / "annotations/image_labels_train.csv", index=False)
    test = pd.DataFrame(test_rows)[["image_id", *VINDR_LABELS]].rename(columns={"Other diseases": "Other disease"})
    test.to_csv(root / "annotations/image_labels_test.csv", index=False)
    box_columns = ["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"]
    pd.DataFrame(train_boxes, columns=box_columns).to_csv(root / "annotations/annotations_train.csv", index=False)
    pd.DataFrame(test_boxes, columns=box_columns).drop(columns="rad_id").to_csv(
        root / "annotations/annotations_test.csv", index=False
    )
    return root


def _label_row(image_id: str, findings: set[str]) -> dict:
    row = {name: int(name in findings) for name in VINDR_LABELS}
    row["No finding"] = int(not findings)
    return {"image_id": image_id, **row}


def _box_row(image_id: str, reader: str | None, name: str, box: tuple[float, float, float, float]) -> dict:
    return {"image_id": image_id, "rad_id": reader, "class_name": name, "x_min": box[0], "y_min": box[1], "x_max": box[2], "y_max": box[3]}


# ------------------------------------------------------------------------------------------------- VinDr-RibCXR

#: VinDr-RibCXR's rib keys, in benchmarks/vindr-ribcxr.yaml's order: the patient's right ribs (image left), then left
RIBS = [f"R{k}" for k in range(1, 11)] + [f"L{k}" for k in range(1, 11)]


def rib_polygons(height: int, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per rib (RIBS), its outline [24, (x, y)] in image pixels: a band from the spine out and down to the lateral chest
    wall, 10 per side from the apex down; the patient's right ribs (R) on the image's left, as in a PA view."""
    outlines = {}
    t = np.linspace(0.0, 1.0, 12)
    for side, direction in (("R", -1.0), ("L", 1.0)):
        for k in range(1, 11):
            medial = (0.13 + 0.062 * (k - 1) + rng.uniform(-0.004, 0.004)) * height
            x = (0.5 + direction * (0.05 + rng.uniform(0.35, 0.38) * t)) * width
            y = medial - 0.03 * height * np.sin(np.pi * t) + 0.05 * height * t
            half = 0.02 * height
            outlines[f"{side}{k}"] = np.concatenate([np.stack([x, y - half], axis=1), np.stack([x, y + half], axis=1)[::-1]])
    return outlines


def write_synthetic_vindr_ribcxr(root: str | Path, train: int = 16, test: int = 6, height: int = 96, width: int = 80,
                                 seed: int = 0) -> Path:
    """VinDr-RibCXR's layout: data/{train,val}/img/VinDr_RibCXR_{train,val}_NNN.png (8-bit grey) and
    data/{train,val}/Vindr_RibCXR_{train,val}_mask.json, pandas "columns" JSON: {"img": {"0": <path from the root>},
    "R1": {"0": [{"x": .., "y": ..}, ...]}, ...}. Every third image is narrower (`width` - 8 columns). Ribs
    (`rib_polygons`) are drawn bright on a darker chest so that a decoder can learn them."""
    root = Path(root)
    mark_synthetic(root, "vindr-ribcxr", {"train": train, "test": test, "height": height, "width": width, "seed": seed})
    rng = np.random.default_rng(seed)
    from skimage.draw import polygon

    count = 0
    for folder, images in (("train", train), ("val", test)):
        (root / "data" / folder / "img").mkdir(parents=True, exist_ok=True)
        labels: dict[str, dict[str, object]] = {"img": {}, **{rib: {} for rib in RIBS}}
        for index in range(images):
            columns = width - 8 if count % 3 == 2 else width
            count += 1
            yy, xx = np.mgrid[0:height, 0:columns] + 0.5
            yy, xx = yy / height, xx / columns
            image = np.where(((xx - 0.5) / 0.46) ** 2 + ((yy - 0.5) / 0.5) ** 2 <= 1.0, 0.3, 0.05)
            outlines = rib_polygons(height, columns, rng)
            for points in outlines.values():
                rows, cols = polygon(points[:, 1], points[:, 0], shape=(height, columns))
                image[rows, cols] = 0.8
            image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0.0, 1.0)
            name = f"data/{folder}/img/VinDr_RibCXR_{folder}_{index:03d}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / name)
            key = str(index)
            labels["img"][key] = name
            for rib, points in outlines.items():
                labels[rib][key] = [{"x": round(float(x), 4), "y": round(float(y), 4)} for x, y in points]
        (root / "data" / folder / f"Vindr_RibCXR_{folder}_mask.json").write_text(json.dumps(labels))
    return root
