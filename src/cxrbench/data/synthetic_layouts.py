"""Small synthetic datasets in the released layouts of CANDID-PTX, RSNA-Pneumonia, PadChest, POLCOVID and
AASCE 2019 / BoostNet (spine radiographs with planted Cobb angles), and of the segmentation releases: JSRT + SCR,
SIIM-ACR, CANDID-PTX's masks, VinDr-RibCXR, the MIMIC-CXR lung masks with Chest ImaGenome zones, and PAXRay++
(structures drawn visibly, their masks written in each release's own encoding: GIF, RLE, polygons, COCO RLE).

For tests and demos: the loaders, the image decoders and the pipeline run on them without any download.
Images come from `synthetic.render_chest` (the VinDr generator's renderer). It draws VinDr findings only, so
each task here is drawn as a visible stand-in finding (listed in STAND_INS) that a probe can learn; the
stand-ins are not what the real findings look like. Files are written in the released formats: JPEG for
CANDID-PTX, DICOM for RSNA-Pneumonia, 16-bit PNG for PadChest. Same arguments, same files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.synthetic import SyntheticConfig, _draw_patients, _write_dicom, mark_synthetic, render_chest

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


def _patients(count: int, size: int, seed: int, rng: np.random.Generator) -> list[dict]:
    """Anatomy, sex, age and number of images per patient, from the VinDr generator (its findings are replaced)."""
    return _draw_patients(SyntheticConfig(patients=count, size=size, seed=seed, test_fraction=0.0), rng)


def _render(patient: dict, stand_ins: list[str], size: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    return render_chest(sorted(set(stand_ins)), patient["anatomy"], size, rng)


def _uid(*parts: object) -> str:
    digits = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return f"1.2.826.0.1.3680043.8.498.{digits}"


def relative_rle(mask: np.ndarray) -> str:
    """SIIM-style run-length encoding: (gap, length) pairs over the column-major pixels, gaps since the last run."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    if not len(starts):
        return "-1"
    gaps = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{g} {n}" for g, n in zip(gaps, ends - starts))


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
                reports.append({**row, "EncodedPixels": relative_rle(_blob_mask(size, rng))})
            for present, rows, count in ((tube, tubes, 1 + int(rng.random() < 0.3)), (fracture, fractures, 1)):
                for k in range(count if present else 0):
                    rows.append({"anon_SOPUID": sop, "annotation_ref": f"A{len(rows):05d}",
                                 "mask_rle": relative_rle(_blob_mask(size, rng))})
    _write_candid_csvs(root, reports, tubes, fractures)
    return root


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


# ------------------------------------------------------------------------------------- AASCE 2019 / BoostNet


def spine_image(angles: np.ndarray, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A posterior-anterior spine radiograph stand-in: a bright, blurred column of 17 vertebrae whose lateral
    shift in three zones (upper, middle, lower) grows with the proximal-thoracic, main-thoracic and lumbar angles
    (`angles`: MT, PT, TL/L in degrees). Returns the image in [0, 1] and the 68 vertebra corners (x, y) in pixels,
    in the release's order (17 vertebrae x top-left, top-right, bottom-left, bottom-right)."""
    mt, pt, tl = angles
    yy = np.linspace(0.05, 0.95, 17)
    bump = lambda centre, spread: np.exp(-((yy - centre) / spread) ** 2)  # noqa: E731 - a local shape
    offset = (pt * bump(0.2, 0.1) - mt * bump(0.5, 0.15) + tl * bump(0.8, 0.12)) / 90.0
    centres = width * (0.5 + 0.35 * offset)
    rows, cols = np.mgrid[0:height, 0:width]
    image = 0.15 + 0.05 * rng.standard_normal((height, width))
    half_w, half_h = width * 0.09, height * 0.022
    corners = []
    for centre, y in zip(centres, yy * height):
        image += 0.7 * np.exp(-(((cols - centre) / (half_w * 1.6)) ** 2 + ((rows - y) / (half_h * 1.6)) ** 2))
        corners += [(centre - half_w, y - half_h), (centre + half_w, y - half_h), (centre - half_w, y + half_h), (centre + half_w, y + half_h)]
    return np.clip(image, 0, 1), np.array(corners)


def write_synthetic_scoliosis(root: str | Path, train: int = 48, test: int = 16, height: int = 96, width: int = 48,
                              seed: int = 0) -> Path:
    """boostnet_labeldata's layout: data/{training,test}/*.jpg (8-bit grey) and labels/{training,test}/ with
    filenames.csv, angles.csv (MT, PT, TL/L in degrees) and landmarks.csv (68 x, then 68 y, in [0, 1]), no headers."""
    root = Path(root)
    mark_synthetic(root, "scoliosis", {"train": train, "test": test, "height": height, "width": width, "seed": seed})
    rng = np.random.default_rng(seed)
    for folder, count in (("training", train), ("test", test)):
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
        (root / "labels" / folder).mkdir(parents=True, exist_ok=True)
        names, angles, landmarks = [], [], []
        for index in range(count):
            mt = rng.uniform(5, 60)
            values = np.array([mt, rng.uniform(0, 0.5) * mt + rng.uniform(0, 10), rng.uniform(0.3, 0.9) * mt])
            image, corners = spine_image(values, height, width, rng)
            name = f"sunhl-1th-{seed:02d}-{folder[:2]}-{index:03d} A AP.jpg"  # the release's names have spaces
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / "data" / folder / name, quality=95)
            names.append(name)
            angles.append(np.round(values, 3))
            landmarks.append(np.concatenate([corners[:, 0] / width, corners[:, 1] / height]))
        pd.DataFrame(names).to_csv(root / "labels" / folder / "filenames.csv", header=False, index=False)
        pd.DataFrame(angles).to_csv(root / "labels" / folder / "angles.csv", header=False, index=False)
        pd.DataFrame(landmarks).to_csv(root / "labels" / folder / "landmarks.csv", header=False, index=False)
    return root


# --------------------------------------------------------------------------------------- JSRT images + SCR masks

#: SCR's mask folders (fold*/masks/<folder>/<image>.gif) by the structure names of benchmarks/jsrt.yaml
SCR_FOLDERS = {"left_lung": "left lung", "right_lung": "right lung", "heart": "heart",
               "left_clavicle": "left clavicle", "right_clavicle": "right clavicle"}


def jsrt_anatomy(side: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Boolean [side, side] masks of SCR's five structures drawn as jittered ellipses, in the PA view (the patient's
    left on the image's right); the lungs leave out the heart, the clavicles cross the lung tops as SCR's do."""
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    jitter = lambda scale=0.02: rng.uniform(-scale, scale)  # noqa: E731 - a local shape

    def ellipse(cx, cy, rx, ry, angle=0.0):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0

    heart = ellipse(0.56 + jitter(), 0.66 + jitter(), 0.15 + jitter(0.015), 0.12 + jitter(0.015))
    return {
        "right_lung": ellipse(0.31 + jitter(), 0.50 + jitter(), 0.13 + jitter(0.01), 0.28 + jitter()) & ~heart,
        "left_lung": ellipse(0.69 + jitter(), 0.52 + jitter(), 0.12 + jitter(0.01), 0.27 + jitter()) & ~heart,
        "heart": heart,
        "right_clavicle": ellipse(0.33 + jitter(), 0.24 + jitter(0.01), 0.15, 0.022, 0.25 + jitter(0.05)),
        "left_clavicle": ellipse(0.67 + jitter(), 0.24 + jitter(0.01), 0.15, 0.022, -0.25 + jitter(0.05)),
    }


def jsrt_ids(images: int) -> list[tuple[str, str]]:
    """(image id, SCR fold) of `images` generated images: JPCLN### (154 of 247, as released) then JPCNN###, numbered
    from 001; odd numbers go to fold1 and even ones to fold2, as in SCR."""
    nodules = int(round(images * 154 / 247)) if images > 1 else images
    ids = []
    for index in range(images):
        series, number = ("JPCLN", index + 1) if index < nodules else ("JPCNN", index - nodules + 1)
        ids.append((f"{series}{number:03d}", "fold1" if number % 2 else "fold2"))
    return ids


def write_jsrt_case(root: Path, image_id: str, fold: str, image: np.ndarray, masks: dict[str, np.ndarray]) -> None:
    """One image as JSRT releases it (All247images/<id>.IMG: headerless big-endian words, 12-bit, larger = darker) from
    its brightness in [0, 1], and its SCR masks (scratch/<fold>/masks/<structure>/<id>.gif, 0 / 255)."""
    (root / "All247images").mkdir(parents=True, exist_ok=True)
    raw = np.round((1.0 - np.clip(image, 0.0, 1.0)) * 4095).astype(">u2")
    raw.tofile(root / "All247images" / f"{image_id}.IMG")
    for name, folder in SCR_FOLDERS.items():
        target = root / "scratch" / fold / "masks" / folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(masks[name].astype(np.uint8) * 255).save(target / f"{image_id}.gif")


def write_synthetic_jsrt(root: str | Path, images: int = 6, size: int = 2048, seed: int = 0) -> Path:
    """JSRT's All247images/<id>.IMG and SCR's scratch/fold{1,2}/masks/<structure>/<id>.gif (at half the image side),
    with the structures drawn as visible ellipses (dark lungs, bright heart and clavicles) so that a segmentation
    decoder can learn them. For tests of the layout and its readers; radiographs of real anatomy with exact labels
    come from `synthetic_anatomy.write_anatomy_jsrt`. Ids and folds as `jsrt_ids`. cxrbench reads JSRT files of the
    released 2048 x 2048 only (8 MB each: keep `images` small); another `size` writes files that its reader refuses,
    for tests of that check.
    """
    if size % 2:
        raise ValueError(f"size must be even (masks are written at half of it), got {size}")
    root = Path(root)
    mark_synthetic(root, "jsrt", {"images": images, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    side = size // 2
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    for image_id, fold in jsrt_ids(images):
        masks = jsrt_anatomy(side, rng)
        body = ((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.52) ** 2 <= 1.0
        image = np.where(body, 0.55, 0.05)
        image = np.where(masks["right_lung"] | masks["left_lung"], 0.22, image)
        image = np.where(masks["heart"], 0.78, image)
        image = image + 0.25 * (masks["right_clavicle"] | masks["left_clavicle"])
        image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0.0, 1.0)
        full = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # masks cover the image's field of view at half size
        write_jsrt_case(root, image_id, fold, full, masks)
    return root


# ---------------------------------------------------------------------------------------------- SIIM-ACR


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


def write_synthetic_siim(root: str | Path, patients: int = 60, size: int = 64, seed: int = 0) -> Path:
    """train-rle.csv and dicom-images-train/<study>/<series>/<ImageId>.dcm as released (DICOMs of `size` rows; every
    third image is narrower, `size` x 3/4 columns), plus a few stage-1 test images in dicom-images-test/, which only
    stage_2_train.csv labels (it lists every image, header "ImageId,EncodedPixels", as the stage-2 file does).

    About 30% of the images carry a planted bright pneumothorax-like crescent (`pneumothorax_region`) whose relative
    run-length encoding, on the DICOM's own Rows x Columns, is the truth; every other such image has it split over
    two rows that overlap (the mask is their union). The others have -1. The CSV is written like the release: header
    "ImageId, EncodedPixels" and values with a leading space. Each DICOM carries its image id as PatientID (the
    release's anonymisation gave every image its own patient id).
    """
    root = Path(root)
    mark_synthetic(root, "siim-acr", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    rows, test_rows, count, positives = [], [], 0, 0
    drawn = _patients(patients, size, seed, rng)
    extra = max(2, patients // 10)  # images of the stage-1 test set (labelled in stage 2 only)
    for index, patient in enumerate(drawn):
        folder = "dicom-images-test" if index >= len(drawn) - extra else "dicom-images-train"
        for visit in range(patient["n_images"]):
            image_id = _uid(seed, "siim-image", index, visit)
            study, series = _uid(seed, "siim-study", index, visit), _uid(seed, "siim-series", index, visit)
            image, _ = _render(patient, [], size, rng)
            if count % 3 == 2:
                image = image[:, : size * 3 // 4]
            count += 1
            # the test images come last, so drawing for them leaves the training images as they were
            positive = rng.random() < 0.3
            if positive:
                region = pneumothorax_region(*image.shape, rng)
                image = np.where(region, np.clip(image + 0.35, 0.0, 1.0), image)
            _write_dicom(root / folder / study / series / f"{image_id}.dcm", image, {**patient, "id": image_id}, rng)
            kept = rows if folder == "dicom-images-train" else test_rows
            if not positive:
                kept.append((image_id, "-1"))
            elif positives % 2:
                cut = int(np.median(np.nonzero(region)[0]))
                upper, lower = region.copy(), region.copy()
                upper[cut + 2:] = False
                lower[: max(cut - 2, 0)] = False
                kept += [(image_id, relative_rle(upper)), (image_id, relative_rle(lower))]
            else:
                kept.append((image_id, relative_rle(region)))
            positives += positive
    pd.DataFrame({"ImageId": [r[0] for r in rows], " EncodedPixels": [" " + r[1] for r in rows]}).to_csv(
        root / "train-rle.csv", index=False)
    stage_2 = rows + test_rows
    pd.DataFrame({"ImageId": [r[0] for r in stage_2], "EncodedPixels": [r[1] for r in stage_2]}).to_csv(
        root / "stage_2_train.csv", index=False)
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
                reports += [{**row, "EncodedPixels": relative_rle(upper)}, {**row, "EncodedPixels": relative_rle(lower)}]
            else:
                reports.append({**row, "EncodedPixels": relative_rle(regions[0])})
            positives += ptx
            for tube in tube_masks:
                tubes.append({"anon_SOPUID": sop, "annotation_ref": f"T{len(tubes):05d}", "mask_rle": relative_rle(tube)})
            if rng.random() < 0.1:
                fractures.append({"anon_SOPUID": sop, "annotation_ref": f"F{len(fractures):05d}",
                                  "mask_rle": relative_rle(_blob_mask(size, rng)[:height, :width])})
    _write_candid_csvs(root, reports, tubes, fractures)
    return root


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


# ------------------------------------------------------------------- MIMIC-CXR lung masks + Chest ImaGenome zones

MIMIC_METADATA_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                          "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                          "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]


def _dicom_id(*parts: object) -> str:
    digest = hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()
    return "-".join(digest[k:k + 8] for k in range(0, 40, 8))


def mimic_lung_fields(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(right lung, left lung) as boolean [height, width] ellipses, the patient's right on the image's left, apart by a
    mediastinum; every third field has its right lung cut in two pieces (a small lower piece), as masks can be."""
    yy, xx = (np.mgrid[0:height, 0:width] + 0.5) / np.array([height, width])[:, None, None]
    jitter = lambda scale=0.02: rng.uniform(-scale, scale)  # noqa: E731 - a local shape
    right = ((xx - 0.30 - jitter()) / (0.12 + jitter(0.01))) ** 2 + ((yy - 0.50 - jitter()) / (0.28 + jitter())) ** 2 <= 1
    left = ((xx - 0.70 - jitter()) / (0.11 + jitter(0.01))) ** 2 + ((yy - 0.52 - jitter()) / (0.27 + jitter())) ** 2 <= 1
    if rng.random() < 1 / 3:
        rows = np.flatnonzero(right.any(axis=1))
        cut = rows[0] + int(0.8 * (rows[-1] - rows[0]))
        right[cut:cut + max(1, height // 32)] = False
    return right, left


def _zone_objects(dicom_id: str, right: np.ndarray, left: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Chest ImaGenome-style objects: per side, the lung's extent (wider by a margin) in thirds from top to bottom."""
    height, width = right.shape
    objects = []
    for side, lung in (("right", right), ("left", left)):
        rows, cols = np.flatnonzero(lung.any(axis=1)), np.flatnonzero(lung.any(axis=0))
        margin = max(1, width // 16)
        x1, x2 = max(0, int(cols[0]) - margin), min(width, int(cols[-1]) + 1 + margin)
        top, bottom = max(0, int(rows[0]) - 1), min(height, int(rows[-1]) + 2)
        cuts = [top, top + (bottom - top) // 3 + int(rng.integers(-1, 2)), top + 2 * (bottom - top) // 3, bottom]
        boxes = {f"{side} lung": (x1, top, x2, bottom)}
        for k, level in enumerate(("upper", "mid", "lower")):
            boxes[f"{side} {level} lung zone"] = (x1, cuts[k], x2, cuts[k + 1])
        for name, (bx1, by1, bx2, by2) in boxes.items():
            objects.append({
                "object_id": f"{dicom_id}_{name}", "bbox_name": name, "name": name.capitalize(), "synsets": ["C0024109"],
                "x1": round(bx1 * 224 / width), "y1": round(by1 * 224 / height), "x2": round(bx2 * 224 / width),
                "y2": round(by2 * 224 / height), "width": round((bx2 - bx1) * 224 / width),
                "height": round((by2 - by1) * 224 / height), "original_x1": bx1, "original_y1": by1, "original_x2": bx2,
                "original_y2": by2, "original_width": bx2 - bx1, "original_height": by2 - by1,
            })
    return objects


def write_synthetic_mimic_lungs(root: str | Path, patients: int = 24, size: int = 64, seed: int = 0) -> Path:
    """Three releases side by side, as `cxrbench.data.mimic_lungs` reads them:

    mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz and files/p<2>/p<subject>/s<study>/<dicom_id>.jpg (MIMIC-CXR-JPG:
    frontal images with and without a lung mask, and lateral ones); lung-segment-mimic-cxr/masks/<dicom_id>.png (0 / 255,
    the whole lung field on the image's grid, for most frontal images); chest-imagenome/silver_dataset/scene_graph/
    <dicom_id>_SceneGraph.json (the six lung zones and both lungs, boxes in the image's pixels) for most masked images.
    Images are `size` rows, some wider or taller; lungs dark in a brighter body. Subjects have 1-2 studies.
    """
    root = Path(root)
    mark_synthetic(root, "mimic-lungs", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    jpg, masks = root / "mimic-cxr-jpg", root / "lung-segment-mimic-cxr" / "masks"
    graphs = root / "chest-imagenome" / "silver_dataset" / "scene_graph"
    for folder in (jpg, masks, graphs):
        folder.mkdir(parents=True, exist_ok=True)
    shapes = [(size, size), (size, size + size // 4), (size + size // 4, size)]
    rows, count = [], 0
    for patient in range(patients):
        subject = f"{10000000 + 7919 * (seed * 1000 + patient) % 9000000:08d}"
        for study_index in range(1 + int(rng.random() < 0.4)):
            study = f"{50000000 + int(rng.integers(0, 9999999)):08d}"
            folder = jpg / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
            folder.mkdir(parents=True, exist_ok=True)
            for view in ("PA" if rng.random() < 0.6 else "AP", "LATERAL"):
                if view == "LATERAL" and rng.random() < 0.5:
                    continue
                dicom_id = _dicom_id(seed, subject, study, view)
                height, width = shapes[count % len(shapes)]
                count += 1
                yy, xx = (np.mgrid[0:height, 0:width] + 0.5) / np.array([height, width])[:, None, None]
                image = np.where(((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.52) ** 2 <= 1, 0.55, 0.08)
                if view != "LATERAL":
                    right, left = mimic_lung_fields(height, width, rng)
                    image = np.where(right | left, 0.2, image)
                image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0, 1)
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{dicom_id}.jpg", quality=95)
                rows.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study,
                             "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                             "Rows": height, "Columns": width, "StudyDate": 21500101 + study_index, "StudyTime": 101010.5,
                             "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                             "ViewCodeSequence_CodeMeaning": "lateral" if view == "LATERAL" else "postero-anterior",
                             "PatientOrientationCodeSequence_CodeMeaning": "Erect"})
                if view == "LATERAL" or count % 7 == 0:  # lateral images, and some frontal ones, have no lung mask
                    continue
                Image.fromarray((right | left).astype(np.uint8) * 255).save(masks / f"{dicom_id}.png")
                if count % 5 == 0:  # Chest ImaGenome has no scene graph for some images
                    continue
                graph = {"image_id": dicom_id, "viewpoint": view, "patient_id": int(subject), "study_id": int(study),
                         "gender": "F", "age_decile": "60-70", "reason_for_exam": "", "StudyOrder": study_index + 1,
                         "StudyDateTime": "2150-01-01 10:10:10 UTC", "objects": _zone_objects(dicom_id, right, left, rng),
                         "attributes": [], "relationships": [], "phrases": []}
                (graphs / f"{dicom_id}_SceneGraph.json").write_text(json.dumps(graph, indent=1))
    frame = pd.DataFrame(rows, columns=MIMIC_METADATA_COLUMNS)
    with gzip.open(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", "wt", newline="") as handle:
        frame.to_csv(handle, index=False)
    return root


# ----------------------------------------------------------------------------------------------------- PAXRay++

PAXRAY_RIBS = {side: [f"posterior 12th rib {side}"] + [f"{part} {n} rib {side}" for n in
                      ("11th", "10th", "9th", "8th", "7th", "6th", "5th", "4th", "3rd", "2nd", "1st")
                      for part in ("anterior", "posterior")] for side in ("right", "left")}
#: the classes the synthetic PAXRay++ draws (a subset of the release's 157, named as CXAS names them)
PAXRAY_SYNTHETIC_CLASSES = ["spine", "clavicles", "clavicle left", "clavicle right", *PAXRAY_RIBS["right"],
                            *PAXRAY_RIBS["left"], "diaphragm", "heart", "lung", "right lung", "left lung", "trachea"]
_ORDINALS = {"1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7, "8th": 8, "9th": 9, "10th": 10,
             "11th": 11, "12th": 12}


def paxray_anatomy(size: int, view: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Boolean [size, size] masks of PAXRAY_SYNTHETIC_CLASSES for one projected view: overlapping like projected CT
    labels (the heart over the left lung, ribs over the lungs); a lateral view has no clavicles or ribs drawn."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    jitter = lambda scale=0.02: rng.uniform(-scale, scale)  # noqa: E731 - a local shape
    band = max(0.02, 1.6 / size)

    def ellipse(cx, cy, rx, ry, angle=0.0):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0

    empty = np.zeros((size, size), dtype=bool)
    masks = dict.fromkeys(PAXRAY_SYNTHETIC_CLASSES, empty)
    if view == "frontal":
        masks["right lung"] = ellipse(0.31 + jitter(), 0.47 + jitter(), 0.14, 0.29 + jitter())
        masks["left lung"] = ellipse(0.69 + jitter(), 0.49 + jitter(), 0.13, 0.28 + jitter())
        masks["heart"] = ellipse(0.56 + jitter(), 0.64 + jitter(), 0.15, 0.12)
        masks["clavicle right"] = ellipse(0.32 + jitter(), 0.2 + jitter(0.01), 0.16, 0.025, 0.25)
        masks["clavicle left"] = ellipse(0.68 + jitter(), 0.2 + jitter(0.01), 0.16, 0.025, -0.25)
        masks["spine"] = (np.abs(xx - 0.5 - jitter(0.01)) < 0.045) & (yy > 0.08)
        for side, sign in (("right", -1.0), ("left", 1.0)):
            for name in PAXRAY_RIBS[side]:
                part, number = name.split()[0], _ORDINALS[name.split()[1]]
                lateral = np.clip(sign * (xx - 0.5), 0, None)  # 0 at the spine, growing outwards
                if part == "posterior":
                    centre = 0.16 + 0.056 * (number - 1) + 0.5 * lateral ** 2
                    within = (lateral > 0.05) & (lateral < 0.36)
                else:
                    centre = 0.24 + 0.05 * (number - 1) + 0.35 * (0.36 - lateral)
                    within = (lateral > 0.12) & (lateral < 0.34)
                masks[name] = within & (np.abs(yy - centre) < band)
    else:
        masks["right lung"] = ellipse(0.52 + jitter(), 0.47 + jitter(), 0.25, 0.3)
        masks["left lung"] = ellipse(0.5 + jitter(), 0.5 + jitter(), 0.24, 0.29)
        masks["heart"] = ellipse(0.38 + jitter(), 0.6 + jitter(), 0.14, 0.13)
        masks["spine"] = (np.abs(xx - 0.8 - jitter(0.01)) < 0.05) & (yy > 0.1)
    masks["lung"] = masks["right lung"] | masks["left lung"]
    masks["clavicles"] = masks["clavicle right"] | masks["clavicle left"]
    masks["diaphragm"] = (np.abs(yy - 0.8 - 0.1 * (xx - 0.5) ** 2) < 0.03) & (np.abs(xx - 0.5) < 0.4)
    masks["trachea"] = (np.abs(xx - (0.5 if view == "frontal" else 0.55)) < 0.03) & (yy < 0.3)
    return masks


def write_synthetic_paxray(root: str | Path, volumes: int = 16, test_volumes: int = 4, size: int = 64, seed: int = 0) -> Path:
    """PAXRay++'s layout: paxray_train_val.json and paxray_test.json (COCO: images, categories with a trailing space in
    one name as in the release, annotations whose segmentation is a COCO RLE, compressed text or, every fifth, a plain
    count list) and paxray_images_unfiltered/images_patlas/<volume>_frontal.png and <volume>_lateral.png (8-bit).

    Each CT volume gives a frontal and a lateral projection; `test_volumes` of them form the test file. A right lung is
    sometimes written as two overlapping annotations (its mask is their union). The drawn classes
    (PAXRAY_SYNTHETIC_CLASSES) of every image are also saved, as the truth for tests, in synthetic_truth/<stem>.npy
    (bool [C, H, W], C in that order); the loader does not read them.
    """
    from cxrbench.data.paxray import encode_coco_rle

    root = Path(root)
    mark_synthetic(root, "paxray", {"volumes": volumes, "test_volumes": test_volumes, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    images_dir, truth_dir = root / "paxray_images_unfiltered" / "images_patlas", root / "synthetic_truth"
    for folder in (images_dir, truth_dir):
        folder.mkdir(parents=True, exist_ok=True)
    categories = [{"id": k + 1, "name": name + (" " if name == "heart" else ""), "supercategory": "anatomy"}
                  for k, name in enumerate(PAXRAY_SYNTHETIC_CLASSES)]
    files = {"train": {"info": "PAX-Ray++, v2 (cxrbench synthetic)", "images": [], "categories": categories, "annotations": []},
             "test": {"info": "PAX-Ray++, v2 (cxrbench synthetic)", "images": [], "categories": categories, "annotations": []}}
    image_id = annotation_id = 0
    for volume in range(volumes):
        split = "test" if volume >= volumes - test_volumes else "train"
        name = f"{('ribfrac', 'lidc', 'rsnape')[volume % 3]}_{seed:02d}{volume:04d}"
        for view in ("frontal", "lateral"):
            image_id += 1
            masks = paxray_anatomy(size, view, rng)
            yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
            image = np.where(((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.52) ** 2 <= 1, 0.5, 0.1)
            image = np.where(masks["lung"], 0.25, image)
            image = np.where(masks["heart"], 0.7, image)
            bones = masks["spine"] | masks["clavicles"] | np.any([masks[n] for n in PAXRAY_RIBS["right"] + PAXRAY_RIBS["left"]], axis=0)
            image = np.clip(image + 0.2 * bones + 0.03 * rng.standard_normal(image.shape), 0, 1)
            file_name = f"{name}_{view}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(images_dir / file_name)
            np.save(truth_dir / f"{name}_{view}.npy", np.stack([masks[c] for c in PAXRAY_SYNTHETIC_CLASSES]))
            files[split]["images"].append({"id": image_id, "file_name": file_name, "height": size, "width": size})
            for category in categories:
                mask = masks[category["name"].strip()]
                if not mask.any():
                    continue
                parts = [mask]
                if category["name"] == "right lung" and image_id % 3 == 0:  # two overlapping annotations of one class
                    rows = np.flatnonzero(mask.any(axis=1))
                    middle = (rows[0] + rows[-1]) // 2
                    upper, lower = mask.copy(), mask.copy()
                    upper[middle + 2:], lower[: middle - 1] = False, False
                    parts = [upper, lower]
                for part in parts:
                    annotation_id += 1
                    ys, xs = np.nonzero(part)
                    files[split]["annotations"].append({
                        "id": annotation_id, "image_id": image_id, "category_id": category["id"], "iscrowd": 0,
                        "area": int(part.sum()), "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                        "segmentation": encode_coco_rle(part, compressed=annotation_id % 5 != 0),
                    })
    (truth_dir / "classes.json").write_text(json.dumps(PAXRAY_SYNTHETIC_CLASSES))
    (root / "paxray_train_val.json").write_text(json.dumps(files["train"]))
    (root / "paxray_test.json").write_text(json.dumps(files["test"]))
    return root
