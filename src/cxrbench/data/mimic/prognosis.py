"""MIMIC prognosis (`mimic-prognosis`): the reports paper's prognostic targets (Appendix A.1) built from MIMIC-CXR-JPG
images linked to MIMIC-IV 2.x / 3.x hosp tables (`mimic-cxr` layout, and):

    ROOT/mimic-iv/hosp/admissions.csv.gz       subject_id, hadm_id, admittime, dischtime, ...
    ROOT/mimic-iv/hosp/diagnoses_icd.csv.gz    subject_id, hadm_id, seq_num, icd_code (no dot), icd_version (9 / 10)
    ROOT/mimic-iv/hosp/patients.csv.gz         subject_id, anchor_year, anchor_year_group, dod

A study's time is its StudyDate + StudyTime (MIMIC-CXR and MIMIC-IV shift a subject's dates alike). Per image:
- 3-Day Discharge: for an image taken during an admission (admittime <= study <= dischtime), 1 when the discharge
  comes within `discharge_days` of the study, else 0; an image outside every admission is unknown.
- 12-Month PH: 1 when an admission overlapping (study, study + horizon] carries a pulmonary hypertension code
  (`ph_icd9` / `ph_icd10`, prefixes of the code written without its dot), else 0.
- 12-Month Readmission: 1 when another admission starts within (study, study + horizon], else 0.
Censoring (the paper removes censored patients without saying how; this is our rule): a 0 of the two 12-month targets
needs the whole horizon observed. It is unknown when the subject died (dod) before study + horizon, or when
study + horizon passes the earliest date the subject's records are sure to reach: MIMIC-IV's last collection year
(`collection_end_year`) carried into the subject's shifted years by the last year of their anchor_year_group.
Balancing: per 12-month target, subjects without a positive image are subsampled (fixed `draw_seed`) until their
images match the positive images in number; the others are unknown for that target.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import check_unique, first_existing, read_csv, row_error
from cxrbench.data.mimic.cxr import (COMMON, DEMOGRAPHIC_COLUMNS, attach_demographics, cxr_settings, frontal_images,
                                     jpg_folder)
from cxrbench.data.mimic.iv import table_path
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, require_labels
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

DISCHARGE, PH, READMISSION = "3-Day Discharge", "12-Month PH", "12-Month Readmission"
TARGETS = (DISCHARGE, PH, READMISSION)
DEFAULTS: dict[str, Any] = {**COMMON, "discharge_days": 3, "horizon_days": 365, "collection_end_year": 2019,
                            "ph_icd9": ["4160", "4168"], "ph_icd10": ["I270", "I272"], "draw_seed": 0}


def _time(frame: pd.DataFrame, column: str, path: Path, ident: str) -> pd.Series:
    """A datetime column; an empty or unparsable cell is refused, naming the row."""
    values = pd.to_datetime(frame[column].fillna("").str.strip(), errors="coerce", format="mixed")
    if values.isna().any():
        position = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise row_error(path, position, column, f"is {frame[column].iloc[position]!r}, not a date and time",
                        "Re-download the table, or remove the row", f"{ident} {frame[ident].iloc[position]}")
    return values


def read_admissions(folder: Path) -> pd.DataFrame:
    """subject_id, hadm_id, admittime, dischtime; a repeated hadm_id, a missing time or a discharge before the
    admission is refused by row."""
    path = table_path(folder, "admissions")
    columns = ["subject_id", "hadm_id", "admittime", "dischtime"]
    frame = read_csv(path, columns, "MIMIC-IV admissions", text_columns=columns, only=columns).reset_index(drop=True)
    frame["subject_id"], frame["hadm_id"] = frame["subject_id"].fillna("").str.strip(), frame["hadm_id"].fillna("").str.strip()
    check_unique(frame, ["hadm_id"], path)
    frame["admittime"] = _time(frame, "admittime", path, "hadm_id")
    frame["dischtime"] = _time(frame, "dischtime", path, "hadm_id")
    backwards = frame["dischtime"] < frame["admittime"]
    if backwards.any():
        position = int(np.flatnonzero(backwards.to_numpy())[0])
        raise row_error(path, position, "dischtime", "is before admittime", "Re-download the table",
                        f"hadm_id {frame['hadm_id'].iloc[position]}")
    return frame


def ph_admissions(folder: Path, admissions: pd.DataFrame, settings: Mapping[str, Any]) -> set[str]:
    """The hadm_ids with a pulmonary hypertension code; an ICD version other than 9 / 10, an empty code or an
    admission absent from admissions is refused by row."""
    path = table_path(folder, "diagnoses_icd")
    columns = ["subject_id", "hadm_id", "icd_code", "icd_version"]
    frame = read_csv(path, columns, "MIMIC-IV diagnoses_icd", text_columns=columns, only=columns).reset_index(drop=True)
    frame = frame.assign(**{c: frame[c].fillna("").str.strip() for c in columns})
    code = frame["icd_code"].str.replace(".", "", regex=False).str.upper()
    checks = (("icd_version", ~frame["icd_version"].isin(["9", "10"]), "an ICD version other than 9 or 10"),
              ("icd_code", code.eq(""), "empty"),
              ("hadm_id", ~frame["hadm_id"].isin(admissions["hadm_id"]), "an admission absent from admissions"))
    for column, bad, problem in checks:
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, column, f"is {frame[column].iloc[position]!r}: {problem}",
                            "Use the diagnoses_icd and admissions of one MIMIC-IV release, or remove the row",
                            f"hadm_id {frame['hadm_id'].iloc[position]}")
    prefixes = {"9": tuple(str(p) for p in settings["ph_icd9"]), "10": tuple(str(p).upper() for p in settings["ph_icd10"])}
    ph = np.array([c.startswith(prefixes[v]) for c, v in zip(code, frame["icd_version"])], dtype=bool)
    return set(frame.loc[ph, "hadm_id"])


def followed_until(folder: Path) -> pd.DataFrame:
    """subject_id -> `shift` (anchor_year less the last year of anchor_year_group: a real year plus it is the
    subject's shifted year, at the latest) and `dod`; an anchor_year_group that is not 'YYYY - YYYY' is refused by row."""
    path = table_path(folder, "patients")
    columns = ["subject_id", "anchor_year", "anchor_year_group", "dod"]
    frame = read_csv(path, columns[:3], "MIMIC-IV patients", text_columns=columns, only=columns).reset_index(drop=True)
    frame["subject_id"] = frame["subject_id"].fillna("").str.strip()
    last = pd.to_numeric(frame["anchor_year_group"].fillna("").str.extract(r"^\s*\d{4}\s*-\s*(\d{4})\s*$", expand=False))
    anchor = pd.to_numeric(frame["anchor_year"], errors="coerce")
    for column, bad in (("anchor_year_group", last.isna()), ("anchor_year", anchor.isna())):
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, column, f"is {frame[column].iloc[position]!r}",
                            "MIMIC-IV writes a year and a group 'YYYY - YYYY'; re-download the table",
                            f"subject_id {frame['subject_id'].iloc[position]}")
    dod = (pd.to_datetime(frame["dod"].fillna("").str.strip(), errors="coerce") if "dod" in frame
           else pd.Series(pd.NaT, index=frame.index))
    return pd.DataFrame({"shift": (anchor - last).to_numpy(), "dod": dod.to_numpy()},
                        index=pd.Index(frame["subject_id"], name="subject_id"))


def study_times(root: Path, settings: Mapping[str, Any], frame: pd.DataFrame) -> pd.Series:
    """Each image's study date and time (StudyDate + StudyTime, HHMMSS.ffffff); a time that does not parse is
    refused, naming the metadata row."""
    folder = jpg_folder(root, settings["images_dir"])
    path = first_existing(folder, list(settings["metadata_csv"]), "MIMIC-CXR-JPG metadata (dicom_id, StudyTime)")
    meta = read_csv(path, ["dicom_id", "StudyTime"], "MIMIC-CXR-JPG metadata", text_columns=["dicom_id", "StudyTime"],
                    only=["dicom_id", "StudyTime"]).reset_index(drop=True)
    meta["dicom_id"] = meta["dicom_id"].fillna("").str.strip().str.lower()
    value = pd.to_numeric(meta["StudyTime"], errors="coerce")
    whole = value.fillna(-1).astype(np.int64)
    hours, minutes, seconds = whole // 10000, whole // 100 % 100, whole % 100 + (value - whole)
    wanted = meta["dicom_id"].isin(set(frame["image_id"]))
    bad = wanted & (value.isna() | (hours > 23) | (minutes > 59) | (seconds >= 60) | (value < 0))
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(path, position, "StudyTime", f"is {meta['StudyTime'].iloc[position]!r}, not a time HHMMSS",
                        "It times the study against admissions; correct it from the DICOM header, or remove the row",
                        f"dicom_id {meta['dicom_id'].iloc[position]}")
    offset = pd.to_timedelta(hours * 3600 + minutes * 60 + seconds, unit="s")
    return frame["study_date"] + pd.Series(offset.to_numpy(), index=meta["dicom_id"]).reindex(frame["image_id"]).to_numpy()


def _pairs(images: pd.DataFrame, admissions: pd.DataFrame) -> pd.DataFrame:
    """Every (image, admission of the same subject): image row `row`, time, hadm_id, admittime, dischtime."""
    left = images[["patient_id", "time"]].rename(columns={"patient_id": "subject_id"}).rename_axis("row").reset_index()
    return left.merge(admissions, on="subject_id", how="inner")


def outcomes(images: pd.DataFrame, admissions: pd.DataFrame, ph: set[str], settings: Mapping[str, Any]) -> pd.DataFrame:
    """The three targets per image before censoring: 1.0 / 0.0, NaN (3-Day Discharge outside every admission)."""
    pairs = _pairs(images, admissions)
    horizon = pd.Timedelta(days=float(settings["horizon_days"]))
    during = pairs[(pairs["admittime"] <= pairs["time"]) & (pairs["time"] <= pairs["dischtime"])]
    current = during.sort_values(["row", "admittime"], kind="stable").drop_duplicates("row")
    left = (current["dischtime"] - current["time"]) <= pd.Timedelta(days=float(settings["discharge_days"]))
    out = pd.DataFrame(np.nan, index=images.index, columns=list(TARGETS))
    out.loc[current["row"].to_numpy(), DISCHARGE] = left.astype(float).to_numpy()
    later = (pairs["admittime"] > pairs["time"]) & (pairs["admittime"] <= pairs["time"] + horizon)
    overlapping = (pairs["dischtime"] > pairs["time"]) & (pairs["admittime"] <= pairs["time"] + horizon)
    out[READMISSION] = 0.0
    out.loc[pairs.loc[later, "row"].unique(), READMISSION] = 1.0
    out[PH] = 0.0
    out.loc[pairs.loc[overlapping & pairs["hadm_id"].isin(ph), "row"].unique(), PH] = 1.0
    return out


def censor(labels: pd.DataFrame, images: pd.DataFrame, follow: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The 12-month targets' 0s without the whole horizon observed (death, or past the sure end of records) unknown;
    a subject absent from patients is unknown for both."""
    rows = follow.reindex(images["patient_id"])
    end_year = rows["shift"].to_numpy() + float(settings["collection_end_year"])
    sure_end = pd.to_datetime([f"{int(y)}-12-31" if np.isfinite(y) else None for y in end_year])
    until = images["time"].to_numpy() + pd.Timedelta(days=float(settings["horizon_days"]))
    unseen = ~(until <= sure_end.to_numpy()) | (rows["dod"].to_numpy() < until)
    out = labels.copy()
    for target in (PH, READMISSION):
        out.loc[(out[target] == 0.0).to_numpy() & unseen, target] = np.nan
    return out


def balance(labels: pd.DataFrame, patients: pd.Series, seed: int) -> pd.DataFrame:
    """Per 12-month target, the subjects with no positive image subsampled until their images match the positives."""
    out = labels.copy()
    for k, target in enumerate((PH, READMISSION)):
        values = out[target]
        positive_patients = set(patients[values == 1.0])
        needed = int((values == 1.0).sum()) - int(((values == 0.0) & patients.isin(positive_patients)).sum())
        negative = np.sort(patients[(values == 0.0) & ~patients.isin(positive_patients)].unique())
        order = np.random.default_rng([seed, k]).permutation(negative)
        sizes = patients[values == 0.0].value_counts().reindex(order).to_numpy()
        kept = set(order[: int(np.searchsorted(np.cumsum(sizes), needed) + 1)]) if needed > 0 and len(order) else set()
        out.loc[(values == 0.0) & ~patients.isin(positive_patients) & ~patients.isin(kept), target] = np.nan
    return out


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = cxr_settings(spec, options, DEFAULTS)
    require_labels(spec, TARGETS, "prognostic target")
    for key in ("ph_icd9", "ph_icd10"):
        if isinstance(settings[key], str):
            settings[key] = [v.strip() for v in settings[key].split(",")]
    return settings


def load_mimic_prognosis(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR-JPG + MIMIC-IV", "mimic-cxr-jpg/ and mimic-iv/")
    settings = _settings(spec, options)
    hosp = root / settings["mimic_iv_dir"]
    if not hosp.is_dir():
        raise DataError(f"mimic-prognosis needs MIMIC-IV's hosp tables: {hosp} is missing. Place MIMIC-IV there, or set "
                        "--dataset-option mimic_iv_dir=<folder relative to the data root>.")
    frame, notes = frontal_images(root, settings)
    frame["time"] = study_times(root, settings, frame)
    admissions = read_admissions(hosp)
    raw = outcomes(frame, admissions, ph_admissions(hosp, admissions, settings), settings)
    labels = balance(censor(raw, frame, followed_until(hosp), settings), frame["patient_id"], int(settings["draw_seed"]))
    for target in TARGETS:
        before, kept = (raw[target] == 1).sum(), (labels[target] == 1).sum()
        notes.append(f"{target}: {int(before)} positive / {int((raw[target] == 0).sum())} negative images before censoring "
                     f"and balancing; kept {int(kept)} / {int((labels[target] == 0).sum())}")
    frame = pd.concat([frame, labels], axis=1)
    known = labels.notna().any(axis=1)
    notes.append(f"{int(known.sum())} of {len(frame)} frontal images are known for at least one target and kept; "
                 "split: cxrbench draws the subjects per seed (the paper's 75 / 25)")
    frame, demographic_notes = attach_demographics(frame[known].reset_index(drop=True), root, settings)
    frame["split"] = POOL
    columns = ["image_id", "patient_id", "path", "split", *DEMOGRAPHIC_COLUMNS, *TARGETS]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes + demographic_notes)
