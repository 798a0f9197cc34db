"""The VinDr-CXR loader on the official layout: label rules, counts, patient ids, and bad input."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.vindr.cxr import combine_readers
from cxrbench.errors import DataError
from cxrbench.registry import benchmark_spec
from cxrbench.study import load_benchmark

TASKS = list(benchmark_spec("vindr").tasks)


def direct_counts(root, rule: str) -> dict[tuple[str, str], int]:
    """Positives per (split, task) computed straight from the CSVs, independently of the loader."""
    train = pd.read_csv(root / "annotations/image_labels_train.csv")
    test = pd.read_csv(root / "annotations/image_labels_test.csv")
    votes = train.groupby("image_id")[TASKS].sum()
    readers = train.groupby("image_id").size()
    positive = votes.ge(1) if rule == "any" else votes.ge(2).where(readers.eq(3), votes.gt(readers / 2, axis=0))
    counts = {("train", t): int(positive[t].sum()) for t in TASKS}
    counts.update({("test", t): int(test[t].sum()) for t in TASKS})
    return counts


@pytest.mark.parametrize("rule", ["majority", "any"])
def test_label_counts_match_direct_count_of_csvs(vindr_root, rule):
    _, data = load_benchmark("vindr", vindr_root, {"label_rule": rule})
    counts = data.label_counts()["binary"].set_index(["split", "task"])["positive"].to_dict()
    assert counts == direct_counts(vindr_root, rule)
    n_train = pd.read_csv(vindr_root / "annotations/image_labels_train.csv")["image_id"].nunique()
    assert (data.samples["split"] == "train").sum() == n_train


@pytest.mark.parametrize("rule", ["majority", "any"])
def test_data_check_prints_the_direct_counts(vindr_root, rule):
    result = CliRunner().invoke(app, ["data", "check", "vindr", "--data-root", str(vindr_root), "--dataset-option", f"label_rule={rule}"])
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    for (split, task), positive in direct_counts(vindr_root, rule).items():
        assert any(line.startswith(f"{split} {task} {positive} ") for line in lines), (split, task, positive)


def test_rules_differ_and_any_dominates(vindr_root):
    _, majority = load_benchmark("vindr", vindr_root, {"label_rule": "majority"})
    _, any_reader = load_benchmark("vindr", vindr_root, {"label_rule": "any"})
    m, a = majority.labels(), any_reader.labels()
    assert (m <= a).all() and (m < a).any()


def test_combine_readers_on_real_vindr_annotations():
    """torchxrayvision ships VinBigData's real box annotations (15,000 images x 3 readers)."""
    path = resources.files("torchxrayvision") / "data" / "vinbigdata-train.csv.gz"
    boxes = pd.read_csv(path)
    local = [t for t in TASKS if t in set(boxes["class_name"])]  # Tuberculosis is a global label, without boxes
    assert len(local) == 6
    marked = boxes.assign(hit=1).pivot_table(index=["image_id", "rad_id"], columns="class_name", values="hit", aggfunc="max")
    per_reader = marked.reindex(columns=local).fillna(0).reset_index()
    assert per_reader.groupby("image_id").size().eq(3).all()
    for rule, needed in (("any", 1), ("majority", 2)):
        combined = combine_readers(per_reader, local, rule)
        readers_marking = boxes[boxes["class_name"].isin(local)].groupby(["image_id", "class_name"])["rad_id"].nunique()
        expected = readers_marking[readers_marking >= needed].groupby("class_name").size()
        assert combined.sum().astype(int).to_dict() == expected.reindex(local).astype(int).to_dict()
        assert len(combined) == 15000


def test_patient_ids_come_from_dicom_headers(vindr_root):
    _, data = load_benchmark("vindr", vindr_root, {})
    per_patient = data.samples.groupby("patient_id").size()
    assert per_patient.max() > 1 and data.samples["patient_id"].nunique() < len(data.samples)
    assert set(data.samples["sex"]) <= {"M", "F"} and data.samples["age_years"].between(18, 95).all()
    _, by_image = load_benchmark("vindr", vindr_root, {"patient_id": "image_id"})
    assert (by_image.samples["patient_id"] == by_image.samples["image_id"]).all()


def test_test_csv_spelling_other_disease_is_accepted(vindr_root):
    header = (vindr_root / "annotations/image_labels_test.csv").read_text().splitlines()[0]
    assert "Other disease," in header and "Other diseases" not in header


def test_missing_column_names_file_and_column(vindr_copy):
    path = vindr_copy / "annotations/image_labels_train.csv"
    pd.read_csv(path).rename(columns={"Cardiomegaly": "Cardiomegally"}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"image_labels_train\.csv has no column 'Cardiomegaly' \(found 'Cardiomegally'"):
        load_benchmark("vindr", vindr_copy, {})


def test_missing_image_file_is_reported(vindr_copy):
    victim = sorted((vindr_copy / "test").glob("*.dicom"))[0]
    victim.unlink()
    with pytest.raises(DataError, match=victim.name):
        load_benchmark("vindr", vindr_copy, {})


def test_bad_label_value_names_row(vindr_copy):
    path = vindr_copy / "annotations/image_labels_test.csv"
    frame = pd.read_csv(path)
    frame.loc[4, "Tuberculosis"] = 2
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"image_labels_test\.csv, row 6 .*'Tuberculosis' is 2"):
        load_benchmark("vindr", vindr_copy, {})


def test_duplicate_reader_row_is_refused(vindr_copy):
    path = vindr_copy / "annotations/image_labels_train.csv"
    frame = pd.read_csv(path)
    pd.concat([frame, frame.iloc[[7]]]).to_csv(path, index=False)
    with pytest.raises(DataError, match="duplicate entry"):
        load_benchmark("vindr", vindr_copy, {})


def test_missing_annotations_folder(tmp_path):
    with pytest.raises(DataError, match="image_labels_train.csv does not exist"):
        load_benchmark("vindr", tmp_path, {})


def test_unknown_label_rule(vindr_root):
    with pytest.raises(DataError, match="Unknown label rule 'some'"):
        load_benchmark("vindr", vindr_root, {"label_rule": "some"})


def test_labels_are_float_with_nan_contract(vindr_root):
    _, data = load_benchmark("vindr", vindr_root, {})
    labels = data.labels()
    assert labels.dtype == np.float32 and set(np.unique(labels)) <= {0.0, 1.0}


def test_release_without_patient_ids_falls_back_to_image_ids(vindr_copy):
    """The PhysioNet release strips PatientID (and sex/age may be 'O'); each image is then its own patient."""
    import pydicom

    for path in vindr_copy.glob("*/*.dicom"):
        ds = pydicom.dcmread(path)
        del ds.PatientID
        ds.PatientSex = "O"
        ds.save_as(path)
    _, data = load_benchmark("vindr", vindr_copy, {})
    assert (data.samples["patient_id"] == data.samples["image_id"]).all()
    assert (data.samples["sex"] == "").all()
    assert any("image id for the rest" in note for note in data.notes)
