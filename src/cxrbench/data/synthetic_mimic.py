"""A small synthetic MIMIC-CXR-JPG + MIMIC-IV release, in the released layout and columns, for the `mimic-cxr` and
`mimic-demographics` loaders, their tests and demos.

Findings are drawn in the pixels by `synthetic.render_chest` as stand-ins (`STAND_INS`: CheXpert label -> the VinDr
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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.mimic_cxr import CHEXPERT_LABELS
from cxrbench.data.mimic_iv import POUNDS_TO_KG
from cxrbench.data.synthetic import mark_synthetic, render_chest
from cxrbench.data.synthetic_layouts import MIMIC_METADATA_COLUMNS, _dicom_id, _patients

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
