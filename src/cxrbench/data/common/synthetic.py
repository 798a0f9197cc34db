"""The synthetic chest generator every family's writer draws on, and the marker a generated folder carries.

Why: the demo and the tests must exercise the real loaders, image readers and pipeline without any download.
`render_chest` draws VinDr-CXR findings the way a radiologist sees them:

- Cardiomegaly: cardiothoracic ratio (heart width / inner thoracic width) above 0.5 (normal 0.38-0.48).
- Pleural effusion: fluid at a lung base that blunts the costophrenic angle, with a meniscus rising laterally.
- Lung Opacity: ill-defined hazy areas inside a lung field.
- Pleural thickening: a dense band along the lateral or apical pleura.
- Aortic enlargement: a widened aortic knob at the left upper mediastinum.
- Pulmonary fibrosis: a reticular (net-like) pattern in both lower zones.
- Tuberculosis: upper-zone patchy consolidation with a thick-walled cavity.
- Nodule/Mass: a small round dense lesion.

Patients (`_draw_patients`) have one to three images (same findings, new position and exposure) and imbalanced
classes. Other datasets' writers draw their labels as visible stand-in findings (`STAND_INS`, and `_image` for the
NIH / CheXpert labels) that a probe can learn; the stand-ins are not what the real findings look like.
`mark_synthetic` leaves a marker in every generated folder so that numbers on it never pass for real results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

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


@dataclass(frozen=True)
class _Frame:
    """The image's coordinates in body units: the patient's shift and scale applied, so that the anatomy below is
    drawn at fixed positions and a box maps back to pixels."""

    x: np.ndarray
    y: np.ndarray
    shift: np.ndarray
    scale: float
    size: int

    @classmethod
    def draw(cls, anatomy: dict, size: int, rng: np.random.Generator) -> "_Frame":
        shift = rng.normal(0, 0.015, size=2)
        scale = anatomy["body_scale"] * rng.uniform(0.98, 1.02)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        return cls((xx - 0.5 - shift[0]) / scale + 0.5, (yy - 0.5 - shift[1]) / scale + 0.5, shift, scale, size)

    def ellipse(self, cx, cy, rx, ry):
        return ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2 <= 1.0

    def blob(self, cx, cy, sigma):
        return np.exp(-(((self.x - cx) ** 2 + (self.y - cy) ** 2) / (2 * sigma**2)))

    def to_box(self, x0, y0, x1, y1):
        def px(v, s):
            return float(np.clip(((v - 0.5) * self.scale + 0.5 + s) * self.size, 0, self.size - 1))
        return (px(x0, self.shift[0]), px(y0, self.shift[1]), px(x1, self.shift[0]), px(y1, self.shift[1]))


@dataclass(frozen=True)
class _Body:
    """Where the normal anatomy was drawn, for the findings placed in it."""

    lungs: dict[int, np.ndarray]  # side (0: image left, the patient's right) -> lung field mask
    centres: dict[int, float]  # side -> the lung's centre x
    heart_x: float
    heart_rx: float


Box = tuple[str, tuple[float, float, float, float]]


def render_chest(findings: list[str], anatomy: dict, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    """A float image in [0, 1] (bone bright) and pixel boxes of the local findings."""
    frame = _Frame.draw(anatomy, size, rng)
    image = np.full((size, size), 0.06, np.float32)
    body = _draw_anatomy(image, frame, anatomy)
    boxes: list[Box] = []
    for name, draw in _FINDINGS:  # in this order: findings overlap, and some draw random numbers
        if name in findings:
            boxes += draw(image, frame, anatomy, body, rng)
    return _expose(image, rng), boxes


def _draw_anatomy(image: np.ndarray, frame: _Frame, anatomy: dict) -> _Body:
    """Soft tissue, lungs, ribs, spine, clavicles, heart and aortic knob, drawn into `image`."""
    x, y, ellipse = frame.x, frame.y, frame.ellipse
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
    return _Body(lungs, centres, heart_x, heart_rx)


def _cardiomegaly(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """The heart is already drawn at the patient's cardiothoracic ratio: only its box."""
    return [("Cardiomegaly", frame.to_box(body.heart_x - body.heart_rx, 0.5, body.heart_x + body.heart_rx, 0.74))]


def _aortic_enlargement(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """The aortic knob is already drawn at the patient's radius: only its box."""
    knob_r = anatomy["aortic_radius"]
    return [("Aortic enlargement", frame.to_box(0.565 - knob_r, 0.31 - knob_r, 0.565 + knob_r, 0.31 + knob_r))]


def _pleural_effusion(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """Fluid at one lung's base, its meniscus rising laterally."""
    x, y, severity, lung_rx = frame.x, frame.y, anatomy["severity"], anatomy["lung_width"]
    side = anatomy["effusion_side"]
    cx = body.centres[side]
    lateral = cx + (lung_rx if side else -lung_rx)
    base = anatomy["diaphragm"] - 0.02 - 0.08 * severity
    level = base - 0.1 * severity * np.abs(x - cx) / lung_rx * (np.sign(x - cx) == np.sign(lateral - cx))
    fluid = body.lungs[side] & (y > level)
    image[fluid] = 0.3 + 0.2 * severity
    return [("Pleural effusion", frame.to_box(cx - lung_rx, base - 0.1, cx + lung_rx, anatomy["diaphragm"]))]


def _lung_opacity(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """A hazy blob inside one lung field."""
    side = anatomy["opacity_side"]
    cx, cy = body.centres[side] + rng.uniform(-0.05, 0.05), rng.uniform(0.35, 0.55)
    sigma = rng.uniform(0.03, 0.06)
    image += 0.2 * anatomy["severity"] * frame.blob(cx, cy, sigma) * body.lungs[side]
    return [("Lung Opacity", frame.to_box(cx - 2 * sigma, cy - 2 * sigma, cx + 2 * sigma, cy + 2 * sigma))]


def _pleural_thickening(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """A dense band along the upper pleura of one lung."""
    ellipse, severity = frame.ellipse, anatomy["severity"]
    lung_rx, lung_ry = anatomy["lung_width"], anatomy["lung_height"]
    cx = body.centres[anatomy["thickening_side"]]
    thickness = 0.012 + 0.015 * severity
    edge = ellipse(cx, 0.45, lung_rx, lung_ry) & ~ellipse(cx, 0.45 + thickness, lung_rx - thickness, lung_ry - thickness) & (frame.y < 0.45)
    image[edge] = np.maximum(image[edge], 0.3 + 0.15 * severity)
    return [("Pleural thickening", frame.to_box(cx - lung_rx, 0.45 - lung_ry, cx + lung_rx, 0.45))]


def _pulmonary_fibrosis(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """A reticular pattern in both lower zones, one box per lung."""
    x, y, lung_rx = frame.x, frame.y, anatomy["lung_width"]
    net = (np.abs(np.sin(x * 140 + 3 * np.sin(y * 40))) < 0.18) | (np.abs(np.sin(y * 140 + 3 * np.sin(x * 37))) < 0.18)
    lower = (body.lungs[0] | body.lungs[1]) & (y > 0.48)
    image += 0.1 * anatomy["severity"] * net * lower
    return [("Pulmonary fibrosis", frame.to_box(cx - lung_rx, 0.48, cx + lung_rx, anatomy["diaphragm"]))
            for cx in body.centres.values()]


def _tuberculosis(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """Upper-zone consolidation with a thick-walled cavity; no box (VinDr-CXR boxes no tuberculosis)."""
    ellipse, severity = frame.ellipse, anatomy["severity"]
    side = anatomy["tb_side"]
    lung = body.lungs[side]
    cx, cy = body.centres[side] + rng.uniform(-0.04, 0.04), rng.uniform(0.23, 0.3)
    image += 0.15 * severity * frame.blob(cx, cy, 0.05) * lung
    outer, inner = 0.015 + 0.02 * severity, 0.008 + 0.01 * severity
    ring = ellipse(cx, cy, outer, outer) & ~ellipse(cx, cy, inner, inner)
    image[ring & lung] += 0.15 * severity
    image[ellipse(cx, cy, inner, inner) & lung] = 0.12
    return []


def _nodule(image: np.ndarray, frame: _Frame, anatomy: dict, body: _Body, rng: np.random.Generator) -> list[Box]:
    """A small round dense lesion."""
    cx, cy = anatomy["nodule"]
    radius = rng.uniform(0.015, 0.03)
    image[frame.ellipse(cx, cy, radius, radius)] += 0.15 + 0.15 * anatomy["severity"]
    return [("Nodule/Mass", frame.to_box(cx - radius, cy - radius, cx + radius, cy + radius))]


#: each finding and how it is drawn, in drawing order
_FINDINGS = (
    ("Cardiomegaly", _cardiomegaly),
    ("Aortic enlargement", _aortic_enlargement),
    ("Pleural effusion", _pleural_effusion),
    ("Lung Opacity", _lung_opacity),
    ("Pleural thickening", _pleural_thickening),
    ("Pulmonary fibrosis", _pulmonary_fibrosis),
    ("Tuberculosis", _tuberculosis),
    ("Nodule/Mass", _nodule),
)


def _expose(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The exposure: blur, a gamma and detector noise, clipped to [0, 1]."""
    image = _blur(image, rng.uniform(0.6, 1.2))
    gamma = rng.uniform(0.85, 1.2)
    image = np.clip(image, 0, 1) ** gamma
    image = image + rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


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

STAND_INS = {
    "candid-ptx": {"Pneumothorax": "Pleural thickening", "Chest tube": "Nodule/Mass", "Rib fracture": "Pulmonary fibrosis"},
    "rsna-pneumonia": {"Pneumonia": "Lung Opacity"},
    "padchest-lateral": {
        "vertebral degenerative changes": "Aortic enlargement",
        "pleural effusion": "Pleural effusion",
        "costophrenic angle blunting": "Pleural thickening",
    },
    # a class -> the findings drawn for it
    "polcovid": {"NORMAL": [], "PNEUMONIA": ["Pleural effusion"], "COVID-19": ["Cardiomegaly", "Lung Opacity"]},
}


def _patients(count: int, size: int, seed: int, rng: np.random.Generator) -> list[dict]:
    """Anatomy, sex, age and number of images per patient, from the VinDr generator (its findings are replaced)."""
    return _draw_patients(SyntheticConfig(patients=count, size=size, seed=seed, test_fraction=0.0), rng)


def _render(patient: dict, stand_ins: list[str], size: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    return render_chest(sorted(set(stand_ins)), patient["anatomy"], size, rng)


def _uid(*parts: object) -> str:
    digits = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return f"1.2.826.0.1.3680043.8.498.{digits}"

def pneumothorax_region(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A pneumothorax-like crescent [height, width]: the lateral upper rim of one hemithorax, between the chest wall
    (an ellipse) and a smaller, medially shifted ellipse (the collapsed lung's edge)."""
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = (yy + 0.5) / height, (xx + 0.5) / width
    lateral = 1.0 if rng.random() < 0.5 else -1.0  # image right / image left
    cx, cy = 0.5 + lateral * rng.uniform(0.17, 0.22), rng.uniform(0.38, 0.45)
    rx, ry = rng.uniform(0.12, 0.15), rng.uniform(0.24, 0.3)
    wall = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
    shrink = rng.uniform(0.55, 0.8)
    ix, iy = cx - lateral * rx * (1 - shrink), cy + ry * (1 - shrink)
    lung = ((x - ix) / (rx * shrink)) ** 2 + ((y - iy) / (ry * shrink)) ** 2 <= 1.0
    outer = (lateral * (x - ix) > 0) | (y < iy - 0.5 * ry * shrink)  # lateral of the lung's centre, or above it
    return wall & ~lung & outer
