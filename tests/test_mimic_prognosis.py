"""MIMIC prognosis: the three targets checked image by image against a brute-force reading of the synthetic MIMIC-IV
tables (discharge within 3 days, PH codes and readmissions within 12 months, censored 0s removed, the 12-month targets
balanced), bad admissions / diagnoses / patients rows named by file and row, and the benchmark end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from gz_csv import read_gz_csv, write_gz_csv
from cxrbench.cli import app
from cxrbench.data.mimic.prognosis import DISCHARGE, PH, READMISSION
from cxrbench.data.mimic.synthetic_prognosis import write_synthetic_mimic_prognosis
from cxrbench.errors import DataError
from cxrbench.study import load_benchmark

HOSP = "mimic-iv/hosp"
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Treat as read-only (tests that damage it work on a copy)."""
    return write_synthetic_mimic_prognosis(tmp_path_factory.mktemp("prognosis") / "root", patients=200, size=16, seed=1)


@pytest.fixture
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


@pytest.fixture(scope="module")
def tables(root) -> dict[str, pd.DataFrame]:
    """The synthetic release's tables as text, read once."""
    return {"meta": read_gz_csv(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz").set_index("dicom_id"),
            "admissions": read_gz_csv(root / HOSP / "admissions.csv.gz"), "diagnoses": read_gz_csv(root / HOSP / "diagnoses_icd.csv.gz"),
            "people": read_gz_csv(root / HOSP / "patients.csv.gz").set_index("subject_id")}


def _expected(tables: dict[str, pd.DataFrame], image: str) -> dict[str, float | None]:
    """One image's three outcomes and whether its 12-month horizon is observed, read straight from the tables."""
    meta = tables["meta"].loc[image]
    clock = int(float(meta["StudyTime"]))
    time = pd.Timestamp(meta["StudyDate"]) + pd.Timedelta(hours=clock // 10000, minutes=clock // 100 % 100,
                                                          seconds=clock % 100 + float(meta["StudyTime"]) % 1)
    admissions = tables["admissions"][tables["admissions"]["subject_id"] == meta["subject_id"]]
    diagnoses, people = tables["diagnoses"], tables["people"]
    discharge, ph, readmitted = None, 0.0, 0.0
    for _, admission in admissions.sort_values("admittime").iterrows():
        start, end = pd.Timestamp(admission["admittime"]), pd.Timestamp(admission["dischtime"])
        if discharge is None and start <= time <= end:
            discharge = float(end - time <= 3 * DAY)
        if time < start <= time + 365 * DAY:
            readmitted = 1.0
        codes = diagnoses[diagnoses["hadm_id"] == admission["hadm_id"]]
        has_ph = any((v == "9" and c[:4] in ("4160", "4168")) or (v == "10" and c[:4] in ("I270", "I272"))
                     for c, v in zip(codes["icd_code"], codes["icd_version"]))
        if has_ph and end > time and start <= time + 365 * DAY:
            ph = 1.0
    until, observed = time + 365 * DAY, False  # a subject absent from patients: never observed
    if meta["subject_id"] in people.index:
        person = people.loc[meta["subject_id"]]
        shift = int(person["anchor_year"]) - int(person["anchor_year_group"][-4:])
        died = bool(person["dod"]) and pd.Timestamp(person["dod"]) < until
        observed = until <= pd.Timestamp(f"{2019 + shift}-12-31") and not died
    return {DISCHARGE: discharge, PH: ph, READMISSION: readmitted, "observed": observed}


def test_targets_equal_a_brute_force_reading_of_the_tables(root, tables):
    _, data = load_benchmark("mimic-prognosis", root, {})
    samples = data.samples.set_index("image_id")
    for image, row in samples.iterrows():
        expected = _expected(tables, image)
        if expected[DISCHARGE] is None:
            assert np.isnan(row[DISCHARGE]), image
        else:
            assert row[DISCHARGE] == expected[DISCHARGE], image
        for target in (PH, READMISSION):
            if not np.isnan(row[target]):
                assert row[target] == expected[target], (image, target)
                assert row[target] == 1.0 or expected["observed"], (image, target)  # a kept 0 saw the whole year
    assert samples[[DISCHARGE, PH, READMISSION]].notna().any(axis=1).all()


def test_censored_zeros_are_removed_and_the_twelve_month_targets_balanced(root, tables):
    _, data = load_benchmark("mimic-prognosis", root, {})
    samples = data.samples
    for target in (PH, READMISSION):
        positive, negative = (samples[target] == 1).sum(), (samples[target] == 0).sum()
        largest = samples.groupby("patient_id").size().max()
        assert positive > 0 and abs(int(negative) - int(positive)) <= largest or negative < positive, target
        negatives_only = samples.groupby("patient_id")[target].max() == 0
        assert negatives_only.any(), target
    censored = [i for i in samples["image_id"] if not _expected(tables, i)["observed"]]
    assert censored and all(samples.set_index("image_id").loc[i, PH] != 0 for i in censored)


def _edit(copy: Path, table: str, row: int, column: str, value: str) -> Path:
    path = copy / HOSP / f"{table}.csv.gz"
    frame = read_gz_csv(path)
    frame.loc[row, column] = value
    write_gz_csv(path, frame)
    return path


@pytest.mark.parametrize("table, column, value, problem", [
    ("diagnoses_icd", "icd_version", "11", "an ICD version other than 9 or 10"),
    ("diagnoses_icd", "icd_code", "", "empty"),
    ("diagnoses_icd", "hadm_id", "99999999", "an admission absent from admissions"),
    ("admissions", "dischtime", "soon", "not a date and time"),
    ("patients", "anchor_year_group", "2014", "'2014'"),
])
def test_bad_rows_name_the_file_row_and_column(copy, table, column, value, problem):
    path = _edit(copy, table, 3, column, value)
    with pytest.raises(DataError) as error:
        load_benchmark("mimic-prognosis", copy, {})
    message = str(error.value)
    assert str(path) in message and "row 5" in message and f"column '{column}'" in message and problem in message


def test_repeated_admissions_bad_study_times_and_missing_tables_are_refused(copy):
    path = copy / HOSP / "admissions.csv.gz"
    admissions = read_gz_csv(path)
    write_gz_csv(path, pd.concat([admissions, admissions.iloc[[2]]]))
    with pytest.raises(DataError, match=r"admissions\.csv\.gz, row \d+: duplicate entry \(hadm_id="):
        load_benchmark("mimic-prognosis", copy, {})
    write_gz_csv(path, admissions)
    meta_path = copy / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz"
    meta = read_gz_csv(meta_path)
    row = int(np.flatnonzero((meta["ViewPosition"] != "LATERAL").to_numpy())[0])
    write_gz_csv(meta_path, meta.assign(StudyTime=np.where(np.arange(len(meta)) == row, "256000", meta["StudyTime"])))
    with pytest.raises(DataError, match=rf"row {row + 2} .*column 'StudyTime': is '256000', not a time"):
        load_benchmark("mimic-prognosis", copy, {})
    write_gz_csv(meta_path, meta)
    (copy / HOSP / "diagnoses_icd.csv.gz").unlink()
    with pytest.raises(DataError, match="diagnoses_icd"):
        load_benchmark("mimic-prognosis", copy, {})
    shutil.rmtree(copy / "mimic-iv")
    with pytest.raises(DataError, match="needs MIMIC-IV's hosp tables"):
        load_benchmark("mimic-prognosis", copy, {})


def test_mimic_prognosis_runs_end_to_end(root, tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", "mimic-prognosis", "--encoder", "pixels", "--weights", "random", "--head",
                                      "logistic", "--head-param", "C=[0.01]", "--data-root", str(root), "--out", str(out),
                                      "--cache-dir", str(tmp_path / "cache"), "--seeds", "2", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    folder = next((out / "mimic-prognosis" / "pixels").glob("logistic*"))
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]["auroc"]
    predictions = pd.read_parquet(folder / "predictions.parquet")
    splits = pd.read_parquet(folder / "splits.parquet")
    tests = [set(splits.loc[(splits["seed"] == s) & (splits["split"] == "test"), "patient_id"]) for s in (0, 1)]
    assert tests[0] != tests[1]  # the 25% drawn anew per seed
    for task in (DISCHARGE, PH, READMISSION):
        rows = predictions[(predictions["seed"] == 0) & (predictions["task"] == task)].dropna(subset=["label"])
        assert metrics[task]["per_seed"]["0"] == pytest.approx(roc_auc_score(rows["label"], rows["score"]), abs=1e-9)


@pytest.mark.parametrize("benchmark", ["mimic-prognosis", "mimic-5x1200"])
def test_a_bad_omr_window_is_refused_by_every_mimic_loader(root, benchmark):
    """The fault as found: mimic-5x1200 and mimic-prognosis read MIMIC-CXR's options by a copy of its settings reader
    that left out the OMR window's check, so a negative window was taken (and matched no measurement)."""
    with pytest.raises(DataError, match=rf"benchmark '{benchmark}': omr_window_days must be a number of days"):
        load_benchmark(benchmark, root, {"omr_window_days": -5})
