"""A small synthetic MIMIC-CXR-JPG + MIMIC-IV release, in the released layout and columns, for the `mimic-cxr` and
`mimic-demographics` loaders, and the MIMIC-CXR lung masks with Chest ImaGenome zones for `mimic-lungs` /
`mimic-lung-zones`; for their tests and demos.

Findings are drawn in the pixels by `render_chest` as stand-ins (`STAND_INS`: CheXpert label -> the VinDr
finding drawn); the other CheXpert labels are written to the labels only. Sex is PLANTED in the image (male chests
are wider and their soft tissue brighter), so a probe on downsampled pixels finds it; race is drawn independently
of everything in the image, so a probe on any image feature stays at chance. Age, weight and BMI are drawn across
every bin of mimic-demographics but are not planted.

Bad or awkward input that the real release has, on purpose: uncertain (-1) and blank labels, a study without a CheXpert
row, LATERAL images, MIMIC-IV subjects without images, an image subject missing from patients, subjects whose
admissions name different races (`PLANTED`), OMR weights in pounds at several dates (some outside a year of any
study), one without a date and one that is not a number. Same arguments, same files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.synthetic import _patients, mark_synthetic, render_chest
from cxrbench.data.mimic.cxr import CHEXPERT_LABELS
from cxrbench.data.mimic.iv import POUNDS_TO_KG

#: CheXpert label -> the finding `render_chest` draws for it (a visible stand-in, not what the finding looks like)
STAND_INS = {"Cardiomegaly": "Cardiomegaly", "Pleural Effusion": "Pleural effusion", "Lung Opacity": "Lung Opacity",
             "Lung Lesion": "Nodule/Mass", "Pleural Other": "Pleural thickening",
             "Enlarged Cardiomediastinum": "Aortic enlargement", "Edema": "Pulmonary fibrosis"}
ABNORMAL = [label for label in CHEXPERT_LABELS if label != "No Finding"]
RACE_STRINGS = {
    "white": ["WHITE", "WHITE - OTHER EUROPEAN", "PORTUGUESE"], "black/african american": ["BLACK/AFRICAN AMERICAN", "BLACK/CAPE VERDEAN"],
    "hispanic/latino": ["HISPANIC/LATINO - PUERTO RICAN", "SOUTH AMERICAN"], "asian": ["ASIAN", "ASIAN - CHINESE"],
    "american indian/alaska native": ["AMERICAN INDIAN/ALASKA NATIVE"],
    "other": ["OTHER", "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", "MULTIPLE RACE/ETHNICITY"],
}
RACE_SHARES = {"white": 0.62, "black/african american": 0.14, "hispanic/latino": 0.08, "asian": 0.07,
               "american indian/alaska native": 0.03, "other": 0.06}
#: subjects (by index) whose admissions are set: a tie (unknown), a majority (asian), only "unable to obtain"
PLANTED = {0: ["WHITE", "BLACK/AFRICAN AMERICAN"], 1: ["ASIAN - CHINESE", "ASIAN", "WHITE"], 2: ["UNABLE TO OBTAIN"]}
SPLIT_COLUMNS = ["dicom_id", "study_id", "subject_id", "split"]
PATIENTS_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
ADMISSIONS_COLUMNS = ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
                      "admission_location", "discharge_location", "insurance", "language", "marital_status", "race",
                      "edregtime", "edouttime", "hospital_expire_flag"]
OMR_COLUMNS = ["subject_id", "chartdate", "seq_num", "result_name", "result_value"]
AGE_STARTS = (12, 25, 45, 65, 82)  # an anchor age in each age bin
NORMAL_SHARE = 0.6


def write_csv_gz(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as handle:
        frame.to_csv(handle, index=False)


def _subject_id(seed: int, index: int) -> str:
    return f"{10000000 + 7919 * (seed * 1000 + index) % 9000000:08d}"


def _plant_sex(anatomy: dict, sex: str, rng: np.random.Generator) -> dict:
    """Male chests wider (body_scale) with brighter soft tissue than female ones: a signal in the downsampled image."""
    male = sex == "M"
    return {**anatomy, "body_scale": rng.uniform(1.0, 1.06) if male else rng.uniform(0.86, 0.92),
            "soft_tissue": rng.uniform(0.5, 0.56) if male else rng.uniform(0.36, 0.42)}


def _study_labels(rng: np.random.Generator) -> dict[str, float]:
    """One study's CheXpert row: No Finding 1.0 (and sometimes an explicit 0.0), or 1-2 findings with blanks, a negative
    and an uncertain (-1) label."""
    row = dict.fromkeys(CHEXPERT_LABELS, np.nan)
    if rng.random() < NORMAL_SHARE:
        row["No Finding"] = 1.0
        if rng.random() < 0.3:
            row["Pneumothorax"] = 0.0
        return row
    for label in rng.choice(ABNORMAL, size=int(rng.integers(1, 3)), replace=False):
        row[str(label)] = 1.0
    others = [label for label in ABNORMAL if np.isnan(row[label])]
    uncertain, negative = rng.choice(others, size=2, replace=False)
    row[str(negative)] = 0.0
    if rng.random() < 0.6:
        row[str(uncertain)] = -1.0
    return row


def _date(year: int, day_of_year: int) -> pd.Timestamp:
    return pd.Timestamp(year=year, month=1, day=1) + pd.Timedelta(days=day_of_year)


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path, quality=95)


def _omr_rows(subject: str, dates: Sequence[pd.Timestamp], kg: float, bmi: float, rng: np.random.Generator) -> list[dict]:
    """Per study: a weight (lbs) within 200 days and one 400-700 days away (outside a year), a BMI within 30 days."""
    rows = []
    for date in dates:
        for offset, weight in ((rng.integers(-200, 201), kg + rng.normal(0, 1.5)), (rng.choice([-1, 1]) * rng.integers(400, 701), kg + 25)):
            rows.append({"chartdate": date + pd.Timedelta(days=int(offset)), "result_name": "Weight (Lbs)",
                         "result_value": f"{weight / POUNDS_TO_KG:.1f}"})
        rows.append({"chartdate": date + pd.Timedelta(days=int(rng.integers(-30, 31))), "result_name": "BMI (kg/m2)",
                     "result_value": f"{bmi + rng.normal(0, 0.3):.1f}"})
    for seq, row in enumerate(rows, start=1):
        row.update(subject_id=subject, seq_num=seq, chartdate=row["chartdate"].strftime("%Y-%m-%d"))
    return rows


def write_mimic_iv(folder: Path, patients: list[dict], admissions: list[dict], omr: list[dict]) -> None:
    """MIMIC-IV hosp/{patients,admissions,omr}.csv.gz with the released columns (absent columns left empty)."""
    for name, rows, columns in (("patients", patients, PATIENTS_COLUMNS), ("admissions", admissions, ADMISSIONS_COLUMNS),
                                ("omr", omr, OMR_COLUMNS)):
        write_csv_gz(folder / "hosp" / f"{name}.csv.gz", pd.DataFrame(rows).reindex(columns=columns))


def _admissions(subject: str, index: int, race: str, rng: np.random.Generator, year: int) -> list[dict]:
    strings = PLANTED.get(index) or [str(rng.choice(RACE_STRINGS[race])) for _ in range(int(rng.integers(1, 3)))]
    if index not in PLANTED and rng.random() < 0.2:
        strings.append("UNKNOWN")
    return [{"subject_id": subject, "hadm_id": 20000000 + 100 * index + k, "admittime": f"{year}-02-0{k + 1} 10:00:00",
             "admission_type": "EW EMER.", "race": text} for k, text in enumerate(strings)]


def write_synthetic_mimic_cxr(root: str | Path, patients: int = 120, size: int = 64, seed: int = 0) -> Path:
    """ROOT/mimic-cxr-jpg (metadata, chexpert and split CSVs gzipped, JPEGs under files/) and ROOT/mimic-iv/hosp; see
    the module doc. Subjects have 1-2 studies, each a frontal (PA or AP) image and sometimes a LATERAL one; subject i
    is in test when (i // 5) % 7 == 0 (five consecutive subjects: one of each age bin), validate when i % 35 == 7, else
    train. The last subject is missing from patients, and
    four MIMIC-IV subjects have no image. Subject 3 has an OMR weight without a date, subject 4 one that is no number."""
    root = Path(root)
    mark_synthetic(root, "mimic-cxr", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    jpg = root / "mimic-cxr-jpg"
    metadata, chexpert, split, people, admissions, omr = [], [], [], [], [], []
    for index, person in enumerate(_patients(patients, size, seed, rng)):
        subject = _subject_id(seed, index)
        anatomy = _plant_sex(person["anatomy"], person["sex"], rng)
        anchor_age, anchor_year = AGE_STARTS[index % 5] + int(rng.integers(0, 8)), 2110 + int(rng.integers(0, 70))
        official = "test" if (index // 5) % 7 == 0 else "validate" if index % 35 == 7 else "train"
        dates = []
        for study_index in range(1 + int(rng.random() < 0.5)):
            study = f"{50000000 + int(rng.integers(0, 9999999)):08d}"
            date = _date(anchor_year + int(rng.integers(0, 3)), int(rng.integers(0, 360)))
            dates.append(date)
            labels = _study_labels(rng)
            if not (index == 5 and study_index == 0):  # one study the labeller left out
                chexpert.append({"subject_id": subject, "study_id": study, **labels})
            planted = sorted(STAND_INS[label] for label in STAND_INS if labels[label] == 1.0)
            views = ["PA" if rng.random() < 0.6 else "AP"] + (["LATERAL"] if rng.random() < 0.4 else [])
            for view in views:
                dicom_id = _dicom_id(seed, subject, study, view)
                image, _ = render_chest(planted, anatomy, size, rng)
                _write_image(jpg / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg", image)
                metadata.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study,
                                 "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                                 "Rows": size, "Columns": size, "StudyDate": int(date.strftime("%Y%m%d")),
                                 "StudyTime": 101010.5, "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                                 "ViewCodeSequence_CodeMeaning": "lateral" if view == "LATERAL" else "postero-anterior",
                                 "PatientOrientationCodeSequence_CodeMeaning": "Erect"})
                split.append({"dicom_id": dicom_id, "study_id": study, "subject_id": subject, "split": official})
        if index < patients - 1:
            people.append({"subject_id": subject, "gender": person["sex"], "anchor_age": anchor_age,
                           "anchor_year": anchor_year, "anchor_year_group": "2014 - 2016"})
        race = str(rng.choice(list(RACE_SHARES), p=list(RACE_SHARES.values())))
        admissions += _admissions(subject, index, race, rng, anchor_year)
        omr += _omr_rows(subject, dates, rng.uniform(40, 120), rng.uniform(16, 40), rng)
        if index in (3, 4):
            omr.append({"subject_id": subject, "chartdate": "" if index == 3 else dates[0].strftime("%Y-%m-%d"),
                        "seq_num": 99, "result_name": "Weight (Lbs)", "result_value": "150" if index == 3 else "see note"})
    for extra in range(patients, patients + 4):  # MIMIC-IV subjects never imaged
        people.append({"subject_id": _subject_id(seed, extra), "gender": "F", "anchor_age": 40, "anchor_year": 2150,
                       "anchor_year_group": "2017 - 2019"})
    write_csv_gz(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", pd.DataFrame(metadata, columns=MIMIC_METADATA_COLUMNS))
    write_csv_gz(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz", pd.DataFrame(chexpert, columns=["subject_id", "study_id", *CHEXPERT_LABELS]))
    write_csv_gz(jpg / "mimic-cxr-2.0.0-split.csv.gz", pd.DataFrame(split, columns=SPLIT_COLUMNS))
    write_mimic_iv(root / "mimic-iv", people, admissions, omr)
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
    """Three releases side by side, as `cxrbench.data.mimic.lungs` reads them:

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
