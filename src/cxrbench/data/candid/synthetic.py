"""Small synthetic CANDID-PTX releases, for tests and demos: the three label CSVs with JPEG images
(`write_synthetic_candid`, classification) and with pneumothorax / chest tube masks in the release's relative
run-length encoding (`write_synthetic_candid_seg`). Findings are drawn as visible stand-ins. Same arguments, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.rle import encode_relative_rle
from cxrbench.data.common.synthetic import STAND_INS, _patients, _render, _uid, _write_dicom, mark_synthetic, pneumothorax_region

def _blob_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    cx, cy, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.6), rng.uniform(0.05, 0.12)
    return ((xx - cx) ** 2 + (yy - cy) ** 2) <= r**2


# --------------------------------------------------------------------------------------------- CANDID-PTX


def _write_candid_csvs(root: Path, reports: list[dict], tubes: list[dict], fractures: list[dict]) -> None:
    """CANDID-PTX's three label CSVs, with the release's columns."""
    columns = ["SOPInstanceUID", "filename", "EncodedPixels", "StudyInstanceUID", "Report"]
    pd.DataFrame(reports)[columns].to_csv(root / "Pneumothorax_reports.csv", index=False)
    finding_columns = ["anon_SOPUID", "annotation_ref", "mask_rle"]
    pd.DataFrame(tubes, columns=finding_columns).to_csv(root / "chest_tube.csv", index=False)
    pd.DataFrame(fractures, columns=finding_columns).to_csv(root / "acute_rib_fracture.csv", index=False)


def write_synthetic_candid(root: str | Path, patients: int = 30, size: int = 64, seed: int = 0) -> Path:
    """Pneumothorax_reports.csv, chest_tube.csv, acute_rib_fracture.csv and dataset/<SOPInstanceUID>.jpg.

    Patients have 1-3 images; about a third of the pneumothorax-positive images have two pneumothorax rows,
    and some images two chest tube rows. `filename` is "P<patient>_<n>".
    """
    root = Path(root)
    (root / "dataset").mkdir(parents=True, exist_ok=True)
    mark_synthetic(root, "candid-ptx", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    stand_in = STAND_INS["candid-ptx"]
    reports, tubes, fractures = [], [], []
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        ptx = rng.random() < 0.35
        tube = rng.random() < (0.6 if ptx else 0.15)
        fracture = rng.random() < 0.2
        study = _uid(seed, "study", index)
        for visit in range(patient["n_images"]):
            sop = _uid(seed, "image", index, visit)
            found = [name for name, present in (("Pneumothorax", ptx), ("Chest tube", tube), ("Rib fracture", fracture)) if present]
            image, _ = _render(patient, [stand_in[f] for f in found], size, rng)
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / "dataset" / f"{sop}.jpg", quality=92)
            report = f"Chest X-ray, visit {visit + 1}.\nFindings: {', '.join(found) if found else 'no acute abnormality'}."
            row = {"SOPInstanceUID": sop, "StudyInstanceUID": study, "filename": f"P{seed:02d}{index:04d}_{visit + 1}",
                   "Report": report}
            regions = (2 if len(reports) % 3 == 0 else 1) if ptx else 0
            if not regions:
                reports.append({**row, "EncodedPixels": "-1"})
            for _ in range(regions):
                reports.append({**row, "EncodedPixels": encode_relative_rle(_blob_mask(size, rng))})
            for present, rows, count in ((tube, tubes, 1 + int(rng.random() < 0.3)), (fracture, fractures, 1)):
                for k in range(count if present else 0):
                    rows.append({"anon_SOPUID": sop, "annotation_ref": f"A{len(rows):05d}",
                                 "mask_rle": encode_relative_rle(_blob_mask(size, rng))})
    _write_candid_csvs(root, reports, tubes, fractures)
    return root


# ------------------------------------------------------------------------------- CANDID-PTX pneumothorax / chest tube


def chest_tube_region(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A chest-tube-like band [height, width]: a thin curve entering through the lower lateral chest wall of one side
    and running up and medially towards the apex."""
    yy, xx = np.mgrid[0:height, 0:width]
    lateral = 1.0 if rng.random() < 0.5 else -1.0
    start = np.array([0.5 + lateral * rng.uniform(0.36, 0.42), rng.uniform(0.68, 0.78)])
    bend = np.array([0.5 + lateral * rng.uniform(0.3, 0.36), rng.uniform(0.4, 0.5)])
    end = np.array([0.5 + lateral * rng.uniform(0.14, 0.22), rng.uniform(0.16, 0.26)])
    t = np.linspace(0.0, 1.0, 48)[:, None]
    curve = (1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t**2 * end  # [48, (x, y)] in fractions
    points = curve * np.array([width, height]) - 0.5
    distance = np.sqrt((xx[..., None] - points[:, 0]) ** 2 + (yy[..., None] - points[:, 1]) ** 2).min(axis=-1)
    return distance <= max(1.0, 0.02 * min(height, width))


def write_synthetic_candid_seg(root: str | Path, patients: int = 30, size: int = 64, seed: int = 0) -> Path:
    """The CANDID-PTX release with masks: Pneumothorax_reports.csv, chest_tube.csv, acute_rib_fracture.csv and
    dataset/<SOPInstanceUID> (DICOM files without a suffix, as public loaders open them; `size` rows, every third
    image narrower, `size` x 3/4 columns).

    Patients have 1-3 images. About 40% of the images carry a bright pneumothorax-like crescent
    (`pneumothorax_region`), every other one split over two overlapping rows (the mask is their union); the others
    have -1. Chest tubes (`chest_tube_region`, drawn brighter) are more frequent with a pneumothorax, some images have
    two, one row each; images without a tube have no row. Encodings are SIIM-ACR's relative, column-major RLE on each
    image's own Rows x Columns. `filename` is "P<patient>_<n>".
    """
    root = Path(root)
    (root / "dataset").mkdir(parents=True, exist_ok=True)
    mark_synthetic(root, "candid-ptx-seg", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    reports, tubes, fractures, count, positives = [], [], [], 0, 0
    for index, patient in enumerate(_patients(patients, size, seed, rng)):
        study = _uid(seed, "candid-seg-study", index)
        for visit in range(patient["n_images"]):
            sop = _uid(seed, "candid-seg-image", index, visit)
            image, _ = _render(patient, [], size, rng)
            if count % 3 == 2:
                image = image[:, : size * 3 // 4]
            count += 1
            height, width = image.shape
            ptx = rng.random() < 0.4
            regions = [pneumothorax_region(height, width, rng)] if ptx else []
            tube_masks = [chest_tube_region(height, width, rng) for _ in range(
                (1 + int(rng.random() < 0.3)) if rng.random() < (0.6 if ptx else 0.25) else 0)]
            for region in regions:
                image = np.where(region, np.clip(image + 0.35, 0.0, 1.0), image)
            for tube in tube_masks:
                image = np.where(tube, np.clip(image + 0.5, 0.0, 1.0), image)
            _write_dicom(root / "dataset" / sop, image, {**patient, "id": f"P{seed:02d}{index:04d}"}, rng)
            found = [name for name, present in (("pneumothorax", ptx), ("chest tube", bool(tube_masks))) if present]
            row = {"SOPInstanceUID": sop, "StudyInstanceUID": study, "filename": f"P{seed:02d}{index:04d}_{visit + 1}",
                   "Report": f"Chest X-ray.\nFindings: {', '.join(found) if found else 'no acute abnormality'}."}
            if not ptx:
                reports.append({**row, "EncodedPixels": "-1"})
            elif positives % 2:
                region = regions[0]
                cut = int(np.median(np.nonzero(region)[0]))
                upper, lower = region.copy(), region.copy()
                upper[cut + 2:] = False
                lower[: max(cut - 2, 0)] = False
                reports += [{**row, "EncodedPixels": encode_relative_rle(upper)}, {**row, "EncodedPixels": encode_relative_rle(lower)}]
            else:
                reports.append({**row, "EncodedPixels": encode_relative_rle(regions[0])})
            positives += ptx
            for tube in tube_masks:
                tubes.append({"anon_SOPUID": sop, "annotation_ref": f"T{len(tubes):05d}", "mask_rle": encode_relative_rle(tube)})
            if rng.random() < 0.1:
                fractures.append({"anon_SOPUID": sop, "annotation_ref": f"F{len(fractures):05d}",
                                  "mask_rle": encode_relative_rle(_blob_mask(size, rng)[:height, :width])})
    _write_candid_csvs(root, reports, tubes, fractures)
    return root
