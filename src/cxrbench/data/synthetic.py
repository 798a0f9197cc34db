"""A deterministic synthetic chest X-ray generator that writes the official VinDr-CXR layout.

Why: the demo and the tests must exercise the real loader, DICOM reader and pipeline without any
download. Findings are planted the way a radiologist sees them:

- Cardiomegaly: cardiothoracic ratio (heart width / inner thoracic width) above 0.5 (normal 0.38-0.48).
- Pleural effusion: fluid at a lung base that blunts the costophrenic angle, with a meniscus rising laterally.
- Lung Opacity: ill-defined hazy areas inside a lung field.
- Pleural thickening: a dense band along the lateral or apical pleura.
- Aortic enlargement: a widened aortic knob at the left upper mediastinum.
- Pulmonary fibrosis: a reticular (net-like) pattern in both lower zones.
- Tuberculosis: upper-zone patchy consolidation with a thick-walled cavity.
- Nodule/Mass: a small round dense lesion.

Patients have one to three images (same findings, new position and exposure), the classes are imbalanced,
and each training image is read by three of seventeen readers who each miss or invent findings at
realistic rates; test labels are the truth (the consensus). PatientID, sex and age are written in the DICOM
headers (the real release strips PatientID; the loader falls back to image ids there).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# The 28 label columns of the official CSVs, in order ("Other disease" in the test CSV).
VINDR_LABELS = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD", "Lung tumor", "Pneumonia", "Tuberculosis",
    "Other diseases", "No finding",
]
# Findings the generator plants, with their prevalence among patients.
PREVALENCE = {
    "Aortic enlargement": 0.16,
    "Cardiomegaly": 0.14,
    "Pleural effusion": 0.09,
    "Lung Opacity": 0.12,
    "Pleural thickening": 0.10,
    "Pulmonary fibrosis": 0.08,
    "Tuberculosis": 0.06,
    "Nodule/Mass": 0.07,
}
GLOBAL_FINDINGS = {"Tuberculosis"}  # VinDr has no boxes for global labels
READERS = [f"R{i}" for i in range(1, 18)]


@dataclass(frozen=True)
class SyntheticConfig:
    patients: int = 400
    test_fraction: float = 0.25
    size: int = 256
    seed: int = 0
    reader_sensitivity: float = 0.85
    reader_false_positive: float = 0.01
    images_per_patient: tuple[float, float, float] = (0.55, 0.30, 0.15)


SYNTHETIC_MARKER = "cxrbench-synthetic.json"


def mark_synthetic(root: Path, layout: str, settings: dict) -> None:
    """Leave a marker in a generated dataset's folder: every run on it is labelled synthetic (run identity, tables,
    configs), so that its numbers can never pass for results on the real dataset."""
    root.mkdir(parents=True, exist_ok=True)
    marker = {"synthetic": True, "layout": layout, "settings": settings,
              "note": "written by cxrbench for demos and tests; numbers on it are not comparable with any paper"}
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True), encoding="utf-8")


def synthetic_settings(root: Path) -> dict | None:
    """The generator settings of a dataset folder cxrbench wrote, or None for any other folder."""
    try:
        marker = json.loads((Path(root) / SYNTHETIC_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker.get("settings", {}) if isinstance(marker, dict) else {}


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


def _draw_patients(config: SyntheticConfig, rng: np.random.Generator) -> list[dict]:
    patients = []
    n_test = int(round(config.test_fraction * config.patients))
    for index in range(config.patients):
        findings = {name for name, p in PREVALENCE.items() if rng.random() < p}
        if "Cardiomegaly" in findings and rng.random() < 0.35:
            findings.add("Pleural effusion")  # heart failure brings effusions
        if "Tuberculosis" in findings and rng.random() < 0.4:
            findings.add("Pleural thickening")  # healed TB scars the pleura
        anatomy = {
            "ctr": rng.uniform(0.52, 0.64) if "Cardiomegaly" in findings else rng.uniform(0.38, 0.5),
            "effusion_side": int(rng.integers(2)),
            "opacity_side": int(rng.integers(2)),
            "tb_side": int(rng.integers(2)),
            "thickening_side": int(rng.integers(2)),
            "nodule": (rng.uniform(0.22, 0.78), rng.uniform(0.3, 0.6)),
            "aortic_radius": rng.uniform(0.045, 0.062) if "Aortic enlargement" in findings else rng.uniform(0.028, 0.044),
            "body_scale": rng.uniform(0.9, 1.06),
            "lung_width": rng.uniform(0.13, 0.165),
            "lung_height": rng.uniform(0.27, 0.32),
            "diaphragm": rng.uniform(0.67, 0.73),
            "heart_x": rng.uniform(0.51, 0.55),
            "soft_tissue": rng.uniform(0.4, 0.52),
            "severity": rng.uniform(0.4, 1.0),  # how conspicuous this patient's findings are
        }
        patients.append(
            {
                "id": f"P{config.seed:02d}{index:05d}",
                "split": "test" if index < n_test else "train",
                "findings": sorted(findings),
                "anatomy": anatomy,
                "n_images": int(rng.choice(3, p=config.images_per_patient)) + 1,
                "sex": "F" if rng.random() < 0.47 else "M",
                "age": int(np.clip(rng.normal(55, 16), 18, 95)),
            }
        )
    return patients


def _label_row(image_id: str, findings: set[str]) -> dict:
    row = {name: int(name in findings) for name in VINDR_LABELS}
    row["No finding"] = int(not findings)
    return {"image_id": image_id, **row}


def _box_row(image_id: str, reader: str | None, name: str, box: tuple[float, float, float, float]) -> dict:
    return {"image_id": image_id, "rad_id": reader, "class_name": name, "x_min": box[0], "y_min": box[1], "x_max": box[2], "y_max": box[3]}


def render_chest(
    findings: list[str], anatomy: dict, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[str, tuple[float, float, float, float]]]]:
    """A float image in [0, 1] (bone bright) and pixel boxes of the local findings."""
    shift = rng.normal(0, 0.015, size=2)
    scale = anatomy["body_scale"] * rng.uniform(0.98, 1.02)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    x = (xx - 0.5 - shift[0]) / scale + 0.5
    y = (yy - 0.5 - shift[1]) / scale + 0.5

    def ellipse(cx, cy, rx, ry):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0

    def blob(cx, cy, sigma):
        return np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)))

    def to_box(x0, y0, x1, y1):
        def px(v, s):
            return float(np.clip(((v - 0.5) * scale + 0.5 + s) * size, 0, size - 1))
        return (px(x0, shift[0]), px(y0, shift[1]), px(x1, shift[0]), px(y1, shift[1]))

    image = np.full((size, size), 0.06, np.float32)
    severity = anatomy["severity"]
    lung_rx, lung_ry = anatomy["lung_width"], anatomy["lung_height"]
    image[ellipse(0.5, 0.58, 0.44, 0.55)] = anatomy["soft_tissue"]  # soft tissue of the trunk
    dome = anatomy["diaphragm"] - 0.035 * np.cos((x - 0.5) * np.pi / 0.4)
    centres = {0: 0.5 - 0.04 - lung_rx, 1: 0.5 + 0.04 + lung_rx}  # image-left lung is the patient's right
    lungs = {side: ellipse(cx, 0.45, lung_rx, lung_ry) & (y < dome) for side, cx in centres.items()}
    for mask in lungs.values():
        image[mask] = 0.17
    lung_any = lungs[0] | lungs[1]
    # ribs: thin bright arcs across both lungs
    for i in range(9):
        arc = 0.2 + 0.055 * i + 0.05 * ((x - 0.5) / 0.35) ** 2
        image += 0.07 * (np.abs(y - arc) < 0.006) * lung_any
    image[np.abs(x - 0.5) < 0.03] = 0.72  # spine
    image[(np.abs(x - 0.5) < 0.065) & (y < 0.62)] = np.maximum(image[(np.abs(x - 0.5) < 0.065) & (y < 0.62)], 0.6)
    for side in (-1, 1):  # clavicles
        image += 0.22 * (np.abs(y - (0.17 + 0.08 * np.abs(x - 0.5))) < 0.01) * (np.abs(x - 0.5) < 0.33) * (side * (x - 0.5) > 0)
    thorax_width = 2 * (0.04 + 2 * lung_rx)  # inner thoracic width: lateral edges of both lungs
    heart_rx = anatomy["ctr"] * thorax_width / 2
    heart_x = anatomy["heart_x"]
    image[ellipse(heart_x, 0.62, heart_rx, 0.12)] = 0.63
    knob_r = anatomy["aortic_radius"]
    image[ellipse(0.565, 0.31, knob_r, knob_r * 0.9)] = 0.64
    boxes: list[tuple[str, tuple[float, float, float, float]]] = []
    if "Cardiomegaly" in findings:
        boxes.append(("Cardiomegaly", to_box(heart_x - heart_rx, 0.5, heart_x + heart_rx, 0.74)))
    if "Aortic enlargement" in findings:
        boxes.append(("Aortic enlargement", to_box(0.565 - knob_r, 0.31 - knob_r, 0.565 + knob_r, 0.31 + knob_r)))
    if "Pleural effusion" in findings:
        side = anatomy["effusion_side"]
        cx = centres[side]
        lateral = cx + (lung_rx if side else -lung_rx)
        base = anatomy["diaphragm"] - 0.02 - 0.08 * severity
        level = base - 0.1 * severity * np.abs(x - cx) / lung_rx * (np.sign(x - cx) == np.sign(lateral - cx))
        fluid = lungs[side] & (y > level)
        image[fluid] = 0.3 + 0.2 * severity
        boxes.append(("Pleural effusion", to_box(cx - lung_rx, base - 0.1, cx + lung_rx, anatomy["diaphragm"])))
    if "Lung Opacity" in findings:
        side = anatomy["opacity_side"]
        cx, cy = centres[side] + rng.uniform(-0.05, 0.05), rng.uniform(0.35, 0.55)
        sigma = rng.uniform(0.03, 0.06)
        image += 0.2 * severity * blob(cx, cy, sigma) * lungs[side]
        boxes.append(("Lung Opacity", to_box(cx - 2 * sigma, cy - 2 * sigma, cx + 2 * sigma, cy + 2 * sigma)))
    if "Pleural thickening" in findings:
        side = anatomy["thickening_side"]
        cx = centres[side]
        thickness = 0.012 + 0.015 * severity
        edge = ellipse(cx, 0.45, lung_rx, lung_ry) & ~ellipse(cx, 0.45 + thickness, lung_rx - thickness, lung_ry - thickness) & (y < 0.45)
        image[edge] = np.maximum(image[edge], 0.3 + 0.15 * severity)
        boxes.append(("Pleural thickening", to_box(cx - lung_rx, 0.45 - lung_ry, cx + lung_rx, 0.45)))
    if "Pulmonary fibrosis" in findings:
        net = (np.abs(np.sin(x * 140 + 3 * np.sin(y * 40))) < 0.18) | (np.abs(np.sin(y * 140 + 3 * np.sin(x * 37))) < 0.18)
        lower = lung_any & (y > 0.48)
        image += 0.1 * severity * net * lower
        for cx in centres.values():
            boxes.append(("Pulmonary fibrosis", to_box(cx - lung_rx, 0.48, cx + lung_rx, anatomy["diaphragm"])))
    if "Tuberculosis" in findings:
        side = anatomy["tb_side"]
        cx, cy = centres[side] + rng.uniform(-0.04, 0.04), rng.uniform(0.23, 0.3)
        image += 0.15 * severity * blob(cx, cy, 0.05) * lungs[side]
        outer, inner = 0.015 + 0.02 * severity, 0.008 + 0.01 * severity
        ring = ellipse(cx, cy, outer, outer) & ~ellipse(cx, cy, inner, inner)
        image[ring & lungs[side]] += 0.15 * severity
        image[ellipse(cx, cy, inner, inner) & lungs[side]] = 0.12
    if "Nodule/Mass" in findings:
        cx, cy = anatomy["nodule"]
        radius = rng.uniform(0.015, 0.03)
        image[ellipse(cx, cy, radius, radius)] += 0.15 + 0.15 * severity
        boxes.append(("Nodule/Mass", to_box(cx - radius, cy - radius, cx + radius, cy + radius)))
    image = _blur(image, rng.uniform(0.6, 1.2))
    gamma = rng.uniform(0.85, 1.2)
    image = np.clip(image, 0, 1) ** gamma
    image = image + rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), boxes


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="edge")
    rows = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, rows).astype(np.float32)


def _write_dicom(path: Path, image: np.ndarray, patient: dict, rng: np.random.Generator) -> None:
    """12-bit stored in 16; about a third MONOCHROME1 (stored inverted); most carry a full-range window."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = patient["id"]
    ds.PatientSex = patient["sex"]
    ds.PatientAge = f"{patient['age']:03d}Y"
    stored = np.round(image * 4095).astype(np.uint16)
    monochrome1 = rng.random() < 0.35
    if monochrome1:
        stored = (4095 - stored).astype(np.uint16)
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if rng.random() < 0.8:
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
