"""A small synthetic MIMIC-IV admissions / diagnoses release on top of the synthetic MIMIC-CXR-JPG one, for the
`mimic-prognosis` loader, its tests and demos: hosp/admissions.csv.gz (with admit and discharge times around the
studies), hosp/diagnoses_icd.csv.gz (ICD-9 and ICD-10 codes, pulmonary hypertension among them) and patients.csv.gz
with anchor_year_group and dod set so that some 12-month outcomes are censored. Outcomes are NOT drawn in the
pixels: they test the linkage, censoring and balancing, not an encoder. Same arguments, same files.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.data.common.synthetic import mark_synthetic
from cxrbench.data.mimic.synthetic import ADMISSIONS_COLUMNS, write_csv_gz, write_synthetic_mimic_cxr

#: diagnoses unrelated to pulmonary hypertension, (code, version)
OTHER_CODES = (("4019", "9"), ("42731", "9"), ("5849", "9"), ("I10", "10"), ("J189", "10"), ("N179", "10"), ("E119", "10"))
PH_CODES = (("4160", "9"), ("41681", "9"), ("I270", "10"), ("I2721", "10"))
DIAGNOSES_COLUMNS = ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"]


def _read(path: Path) -> pd.DataFrame:
    with gzip.open(path, "rt") as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


def _stamp(time: pd.Timestamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _subject_admissions(subject: str, times: list[pd.Timestamp], rng: np.random.Generator) -> list[dict]:
    """Most studies during an admission (discharged 0.5-8 days later); sometimes a readmission 30-330 days after."""
    rows = []
    for time in times:
        if rng.random() < 0.8:
            rows.append({"admittime": time - pd.Timedelta(hours=float(rng.uniform(1, 60))),
                         "dischtime": time + pd.Timedelta(hours=float(rng.uniform(12, 192)))})
    if rng.random() < 0.45:
        start = max(times) + pd.Timedelta(days=float(rng.uniform(30, 330)))
        rows.append({"admittime": start, "dischtime": start + pd.Timedelta(days=float(rng.uniform(1, 6)))})
    return [{"subject_id": subject, **row} for row in rows]


def write_synthetic_mimic_prognosis(root: str | Path, patients: int = 160, size: int = 32, seed: int = 0) -> Path:
    """The synthetic MIMIC-CXR-JPG + MIMIC-IV release (`synthetic_mimic`) with admissions and diagnoses_icd rewritten
    around its studies (see the module doc). One subject in four has anchor_year_group '2017 - 2019' (records end soon
    after their studies: their 12-month 0s are censored), one in eight a dod within a year of a study."""
    root = Path(root)
    write_synthetic_mimic_cxr(root, patients=patients, size=size, seed=seed)
    mark_synthetic(root, "mimic-prognosis", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng([seed, 4])
    jpg, hosp = root / "mimic-cxr-jpg", root / "mimic-iv" / "hosp"
    meta = _read(jpg / "mimic-cxr-2.0.0-metadata.csv.gz")
    meta["time"] = pd.to_datetime(meta["StudyDate"], format="%Y%m%d") + pd.to_timedelta(
        meta["StudyTime"].astype(float).astype(int).map(lambda t: t // 10000 * 3600 + t // 100 % 100 * 60 + t % 100), unit="s")
    people = _read(hosp / "patients.csv.gz")
    races = _read(hosp / "admissions.csv.gz").drop_duplicates("subject_id").set_index("subject_id")["race"]
    admissions, diagnoses = [], []
    for index, (subject, studies) in enumerate(meta.groupby("subject_id", sort=True)):
        times = sorted(studies["time"].unique())
        rows = _subject_admissions(subject, [pd.Timestamp(t) for t in times], rng)
        ph = rng.random() < 0.35
        for k, row in enumerate(rows):
            hadm = f"2{int(subject) % 10000000:07d}{k:02d}"
            admissions.append({**row, "hadm_id": hadm, "race": races.get(subject, "WHITE"),
                               "admittime": _stamp(row["admittime"]), "dischtime": _stamp(row["dischtime"])})
            codes = [OTHER_CODES[int(j)] for j in rng.choice(len(OTHER_CODES), size=2, replace=False)]
            if ph and k == len(rows) - 1:
                codes.append(PH_CODES[int(rng.integers(len(PH_CODES)))])
            diagnoses += [{"subject_id": subject, "hadm_id": hadm, "seq_num": n + 1, "icd_code": code, "icd_version": version}
                          for n, (code, version) in enumerate(codes)]
        person = people["subject_id"] == subject
        if index % 4 == 3:
            people.loc[person, "anchor_year_group"] = "2017 - 2019"
        if index % 8 == 5:
            people.loc[person, "dod"] = (pd.Timestamp(times[0]) + pd.Timedelta(days=200)).strftime("%Y-%m-%d")
    write_csv_gz(hosp / "admissions.csv.gz", pd.DataFrame(admissions).reindex(columns=ADMISSIONS_COLUMNS))
    write_csv_gz(hosp / "diagnoses_icd.csv.gz", pd.DataFrame(diagnoses, columns=DIAGNOSES_COLUMNS))
    write_csv_gz(hosp / "patients.csv.gz", people)
    return root
