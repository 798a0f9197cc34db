"""MIMIC-IV (2.x / 3.x, PhysioNet) linked to MIMIC-CXR subjects: sex, age at a study, race group, and the weight and
BMI recorded nearest a study, from three tables of the `hosp` module:

    ROOT/mimic-iv/hosp/patients.csv.gz     subject_id, gender (F / M), anchor_age, anchor_year, anchor_year_group, dod
    ROOT/mimic-iv/hosp/admissions.csv.gz   subject_id, hadm_id, admittime, ..., race (`ethnicity` in MIMIC-IV 1.0)
    ROOT/mimic-iv/hosp/omr.csv.gz          subject_id, chartdate, seq_num, result_name, result_value

(.csv as well as .csv.gz.) MIMIC-CXR and MIMIC-IV shift a subject's dates by the same offset, so a study's (shifted)
year and the subject's anchor_year are on one scale: age at the study = anchor_age + (study year - anchor_year).
MIMIC-IV writes anchor_age 91 for every subject older than 89, so ages above 90 are that floor, not the age.

Race: each admission's string is mapped to RAD-DINO's six groups (`RACE_PREFIXES`, first matching prefix; the strings
that declare it unknown give no group); a subject's group is the most frequent known group of their admissions, a tie
is unknown (counted). Weight ("Weight (Lbs)", converted to kg) and BMI ("BMI (kg/m2)"): the record whose chartdate is
nearest the study date within a window of days; equally near before and after, the earlier; several on one date, the
highest seq_num. Records without a date or with a value that is not a number are left out, counted in the notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import check_unique, first_existing, read_csv, row_error

RACE_GROUPS = ("white", "asian", "black/african american", "hispanic/latino", "american indian/alaska native", "other")
#: MIMIC-IV race strings (upper case) -> group, by prefix, first match: WHITE - RUSSIAN, ASIAN - CHINESE, BLACK/CAPE
#: VERDEAN, HISPANIC/LATINO - PUERTO RICAN ... PORTUGUESE is listed apart from WHITE in MIMIC-IV and grouped with it
#: here (a European origin); SOUTH AMERICAN with hispanic/latino; NATIVE HAWAIIAN and multiple races with other.
RACE_PREFIXES = (
    ("WHITE", "white"), ("PORTUGUESE", "white"), ("ASIAN", "asian"), ("BLACK", "black/african american"),
    ("HISPANIC", "hispanic/latino"), ("SOUTH AMERICAN", "hispanic/latino"),
    ("AMERICAN INDIAN", "american indian/alaska native"), ("NATIVE HAWAIIAN", "other"), ("MULTIPLE RACE", "other"),
    ("OTHER", "other"),
)
#: strings that say the race is not known: no group
UNKNOWN_RACE = ("UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER")
POUNDS_TO_KG = 0.45359237
WEIGHT_RESULT = "Weight (Lbs)"
BMI_RESULT = "BMI (kg/m2)"
DEMOGRAPHIC_COLUMNS = ("sex", "age_years", "race", "weight_kg", "bmi")


def table_path(folder: Path, name: str) -> Path:
    """hosp/<name>.csv.gz or hosp/<name>.csv of a MIMIC-IV folder."""
    return first_existing(folder / "hosp", [f"{name}.csv.gz", f"{name}.csv"], f"MIMIC-IV table hosp/{name}")


def race_group(text: object) -> str | None:
    """The group of one admission's race string: one of RACE_GROUPS, "" when it declares no race, None when unknown
    to the mapping."""
    value = str(text).strip().upper() if isinstance(text, str) else ""
    if value in ("", *UNKNOWN_RACE):
        return ""
    return next((group for prefix, group in RACE_PREFIXES if value.startswith(prefix)), None)


# ------------------------------------------------------------------------------------------------ tables


def read_patients(folder: Path) -> pd.DataFrame:
    """subject_id -> sex ("F" / "M" / ""), anchor_age, anchor_year (floats). A missing or non-numeric anchor is an error
    naming the row: every MIMIC-IV subject has both."""
    path = table_path(folder, "patients")
    frame = read_csv(path, ["subject_id", "gender", "anchor_age", "anchor_year"], "MIMIC-IV patients",
                     text_columns=["subject_id", "gender", "anchor_age", "anchor_year"],
                     only=["subject_id", "gender", "anchor_age", "anchor_year"]).reset_index(drop=True)
    frame["subject_id"] = frame["subject_id"].fillna("").str.strip()
    check_unique(frame, ["subject_id"], path)
    out = pd.DataFrame({"subject_id": frame["subject_id"]})
    for column in ("anchor_age", "anchor_year"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0))
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            raise row_error(path, position, column, f"is {frame[column].iloc[position]!r}, not a number",
                            "MIMIC-IV gives every subject an anchor_age and an anchor_year (years); re-download the "
                            "table, or remove the row to leave the subject's demographics unknown",
                            f"subject_id {frame['subject_id'].iloc[position]}")
        out[column] = values.astype(np.float64)
    gender = frame["gender"].fillna("").str.strip().str.upper()
    out["sex"] = gender.where(gender.isin(["F", "M"]), "")
    return out.set_index("subject_id")


def subject_races(folder: Path) -> tuple[pd.Series, list[str]]:
    """subject_id -> race group ("" unknown) over the subject's admissions (see the module doc), and notes."""
    path = table_path(folder, "admissions")
    header = [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
    column = "race" if "race" in header or "ethnicity" not in header else "ethnicity"
    frame = read_csv(path, ["subject_id", column], "MIMIC-IV admissions", text_columns=["subject_id", column],
                     only=["subject_id", column])
    groups = {text: race_group(text) for text in frame[column].fillna("").unique()}
    unmapped = sorted(t for t, g in groups.items() if g is None)
    frame = frame.assign(subject_id=frame["subject_id"].fillna("").str.strip(),
                         group=frame[column].fillna("").map(lambda t: groups[t] or ""))
    counts = frame[frame["group"] != ""].groupby(["subject_id", "group"]).size().rename("n").reset_index()
    top = counts.groupby("subject_id")["n"].transform("max")
    leaders = counts[counts["n"] == top]
    tied = leaders["subject_id"].duplicated(keep=False)
    races = leaders[~tied].set_index("subject_id")["group"]
    notes = [f"race: admissions' {column} mapped to six groups; a subject's group is the most frequent known one"]
    if tied.any():
        notes.append(f"race: {leaders.loc[tied, 'subject_id'].nunique()} subject(s) whose admissions name different "
                     "groups equally often are unknown")
    if unmapped:
        shown = ", ".join(repr(t) for t in unmapped[:5])
        notes.append(f"race: {len(unmapped)} {column} string(s) map to no group and count as unknown ({shown}); add "
                     "them to cxrbench.data.mimic.iv.RACE_PREFIXES if they name one")
    return races, notes


def read_measures(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """OMR weights (kg) and BMIs: subject_id, date, seq_num, result_name, value, sorted by date and seq_num; notes
    counting the records left out."""
    path = table_path(folder, "omr")
    columns = ["subject_id", "chartdate", "seq_num", "result_name", "result_value"]
    frame = read_csv(path, columns, "MIMIC-IV omr", text_columns=columns, only=columns)
    frame = frame[frame["result_name"].fillna("").str.strip().isin([WEIGHT_RESULT, BMI_RESULT])].copy()
    frame["result_name"] = frame["result_name"].str.strip()
    frame["date"] = pd.to_datetime(frame["chartdate"].fillna("").str.strip(), format="%Y-%m-%d", errors="coerce")
    value = pd.to_numeric(frame["result_value"], errors="coerce")
    frame["value"] = value.where(np.isfinite(value) & (value > 0))
    undated, unparsed = frame["date"].isna(), frame["date"].notna() & frame["value"].isna()
    notes = []
    if undated.any():
        notes.append(f"omr: {int(undated.sum())} weight / BMI record(s) without a valid chartdate are left out")
    if unparsed.any():
        notes.append(f"omr: {int(unparsed.sum())} weight / BMI record(s) whose result_value is not a positive number are "
                     f"left out, e.g. {frame.loc[unparsed, 'result_value'].iloc[0]!r}")
    frame = frame[~undated & ~unparsed]
    weight = frame["result_name"] == WEIGHT_RESULT
    frame.loc[weight, "value"] = frame.loc[weight, "value"] * POUNDS_TO_KG
    frame["subject_id"] = frame["subject_id"].fillna("").str.strip()
    frame["seq_num"] = pd.to_numeric(frame["seq_num"], errors="coerce").fillna(0)
    return frame.sort_values(["date", "seq_num"], kind="stable")[["subject_id", "date", "result_name", "value"]], notes


def nearest_measure(studies: pd.DataFrame, measures: pd.DataFrame, name: str, window_days: float) -> pd.Series:
    """Per study row (subject_id, date), the `name` record nearest its date within `window_days`, else NaN."""
    left = studies[["subject_id", "date"]].reset_index().sort_values("date", kind="stable")
    right = measures.loc[measures["result_name"] == name, ["subject_id", "date", "value"]]
    merged = pd.merge_asof(left, right, on="date", by="subject_id", direction="nearest",
                           tolerance=pd.Timedelta(days=float(window_days)))
    return merged.set_index("index")["value"].reindex(studies.index).astype(np.float64)


# ------------------------------------------------------------------------------------------------ linking


def link_demographics(subjects: pd.Series, dates: pd.Series, folder: Path, window_days: float,
                      wanted: Sequence[str] = DEMOGRAPHIC_COLUMNS) -> tuple[pd.DataFrame, list[str]]:
    """The `wanted` demographic columns (`DEMOGRAPHIC_COLUMNS`) of images given by subject_id and study date, same
    index; unknown everywhere (with a note) when the MIMIC-IV folder is absent."""
    unknown = pd.DataFrame({"sex": "", "age_years": np.nan, "race": "", "weight_kg": np.nan, "bmi": np.nan},
                           index=subjects.index)
    if not folder.is_dir():
        return unknown[list(wanted)], [f"demographics: no MIMIC-IV folder {folder}; sex, age, race, weight and BMI are "
                                       "unknown (place MIMIC-IV's hosp tables there, or set mimic_iv_dir)"]
    patients = read_patients(folder)
    out, notes = unknown.copy(), []
    known = subjects.isin(patients.index)
    rows = patients.reindex(subjects)
    out["sex"] = rows["sex"].fillna("").to_numpy()
    out["age_years"] = (rows["anchor_age"] + dates.dt.year.to_numpy() - rows["anchor_year"]).to_numpy()
    image_subjects = set(subjects)
    notes.append(f"demographics: MIMIC-IV {folder.name}/hosp; {int(known.sum())} of {len(subjects)} images linked to "
                 f"patients; {len(set(patients.index) - image_subjects)} MIMIC-IV subject(s) have no image here")
    if not known.all():
        notes.append(f"demographics: {int((~known).sum())} image(s) of {subjects[~known].nunique()} subject(s) absent from "
                     f"patients are of unknown sex, age, race, weight and BMI, e.g. subject {subjects[~known].iloc[0]}")
    if "race" in wanted:
        races, race_notes = subject_races(folder)
        out["race"] = races.reindex(subjects).fillna("").to_numpy()
        notes += race_notes
    if {"weight_kg", "bmi"} & set(wanted):
        measures, measure_notes = read_measures(folder)
        studies = pd.DataFrame({"subject_id": subjects, "date": dates})
        for column, name in (("weight_kg", WEIGHT_RESULT), ("bmi", BMI_RESULT)):
            out[column] = nearest_measure(studies, measures, name, window_days).where(known)
        notes += measure_notes
        notes.append(f"omr: weight / BMI nearest the study date within {window_days:g} days; known for "
                     f"{int(out['weight_kg'].notna().sum())} / {int(out['bmi'].notna().sum())} of {len(subjects)} images")
    out.loc[~known, ["race"]] = ""
    return out[list(wanted)], notes
