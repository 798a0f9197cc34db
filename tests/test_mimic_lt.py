"""MIMIC-CXR Long-Tail (CXR-LT 2023 labels on MIMIC-CXR-JPG): the synthetic release read back against a direct join
of its files, its prevalence bins counted by hand on the training split, bad input named by file and row, and the
benchmark end to end (`pixels`, `--weights random`)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.mimic.long_tail import LABELS
from cxrbench.data.mimic.synthetic_long_tail import write_synthetic_mimic_lt
from cxrbench.errors import DataError
from cxrbench.study import load_benchmark

LT = "cxr-lt-2023"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Treat as read-only (tests that damage it work on a copy)."""
    return write_synthetic_mimic_lt(tmp_path_factory.mktemp("mimic-lt") / "root", patients=200, size=16, seed=1)


@pytest.fixture
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy", ignore=lambda _, names: [n for n in names if n.endswith(".jpg")]))


def _files(root: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(root / LT / f"{name}.csv", dtype=str) for name in ("train", "development", "test")}


def test_images_labels_and_splits_equal_a_direct_join(root):
    spec, data = load_benchmark("mimic-lt", root, {})
    with gzip.open(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz", "rt") as handle:
        metadata = pd.read_csv(handle, dtype=str).set_index("dicom_id")
    samples = data.samples.set_index("image_id")
    files = _files(root)
    for name, split in (("train", "train"), ("development", "train"), ("test", "test")):
        frame = files[name].set_index("dicom_id")
        assert (samples.loc[frame.index, "split"] == split).all()
        assert (samples.loc[frame.index, "patient_id"] == metadata.loc[frame.index, "subject_id"]).all()
        for label in LABELS:
            assert (samples.loc[frame.index, label] == frame[label].astype(float)).all(), (name, label)
    assert len(samples) == sum(len(f) for f in files.values()) and spec.tasks == LABELS
    assert all(Path(p).name == f"{i}.jpg" and f"/p{s[:2]}/p{s}/" in p
               for i, p, s in zip(samples.index, samples["path"], samples["patient_id"]))


def test_prevalence_bins_on_the_training_split_are_nine_eleven_six(root):
    """RayDINO's bins (common > 10%, uncommon 1-10%, rare < 1%), counted by hand on the training images."""
    _, data = load_benchmark("mimic-lt", root, {})
    train = data.samples[data.samples["split"] == "train"]
    counts = {label: (train[label] == 1).sum() / len(train) for label in LABELS}
    bins = [sum(p > 0.1 for p in counts.values()), sum(0.01 <= p <= 0.1 for p in counts.values()),
            sum(p < 0.01 for p in counts.values())]
    assert bins == [9, 11, 6]
    test = data.samples[data.samples["split"] == "test"]
    assert (test[list(LABELS)].sum() >= 1).all() and (train[list(LABELS)].sum() >= 2).all()


def _edit(copy: Path, name: str, row: int, column: str, value: str) -> Path:
    path = copy / LT / f"{name}.csv"
    frame = pd.read_csv(path, dtype=str)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name, column, value, problem", [
    ("train", "Hernia", "2", "is '2'"),
    ("test", "dicom_id", "0000-not-an-image", "absent from the MIMIC-CXR-JPG metadata"),
    ("development", "subject_id", "19999999", "but MIMIC-CXR-JPG gives image"),
])
def test_bad_values_name_the_file_row_and_column(copy, name, column, value, problem):
    path = _edit(copy, name, 3 if name != "development" else 0, column, value)
    with pytest.raises(DataError) as error:
        load_benchmark("mimic-lt", copy, {})
    row = 3 if name != "development" else 0
    message = str(error.value)
    assert str(path) in message and f"row {row + 2}" in message and f"column '{column}'" in message and problem in message


def test_repeated_images_shared_patients_and_missing_parts_are_refused(root, copy):
    files = _files(copy)
    _edit(copy, "train", 5, "dicom_id", files["train"].loc[1, "dicom_id"])
    with pytest.raises(DataError, match=r"train\.csv, row 7: duplicate entry \(dicom_id="):
        load_benchmark("mimic-lt", copy, {})
    train = files["train"].copy()
    train.loc[5] = files["test"].loc[0]  # the test file's first image, labelled for training too
    train.to_csv(copy / LT / "train.csv", index=False)
    with pytest.raises(DataError, match=r"test\.csv, row 2, column .dicom_id.: .*already in train\.csv"):
        load_benchmark("mimic-lt", copy, {})
    train = files["train"]
    subject = train["subject_id"][train["subject_id"].duplicated()].iloc[0]  # a subject with two training images
    moved = train.index[train["subject_id"] == subject][0]
    train.drop(index=moved).to_csv(copy / LT / "train.csv", index=False)
    pd.concat([files["test"], train.loc[[moved]]]).to_csv(copy / LT / "test.csv", index=False)
    with pytest.raises(DataError, match=f"Subject {subject} has images in both"):
        load_benchmark("mimic-lt", copy, {})
    files["test"].to_csv(copy / LT / "test.csv", index=False)
    files["train"].drop(columns="Mass").to_csv(copy / LT / "train.csv", index=False)
    with pytest.raises(DataError, match="has no column 'Mass'"):
        load_benchmark("mimic-lt", copy, {})
    _, data = load_benchmark("mimic-lt", root, {})
    missing = Path(shutil.copytree(root, copy.parent / "images"))
    (missing / Path(data.samples["path"].iloc[0]).relative_to(root)).unlink()
    with pytest.raises(DataError, match="1 of .* CXR-LT images are missing"):
        load_benchmark("mimic-lt", missing, {})


def test_mimic_lt_runs_end_to_end(root, tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["run", "mimic-lt", "--encoder", "pixels", "--weights", "random", "--head", "logistic",
                                      "--head-param", "C=[0.01]", "--data-root", str(root), "--out", str(out),
                                      "--cache-dir", str(tmp_path / "cache"), "--seeds", "2", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    folder = next((out / "mimic-lt" / "pixels").glob("logistic*"))
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]["auprc"]
    predictions = pd.read_parquet(folder / "predictions.parquet")
    for task in ("Hernia", "Cardiomegaly"):  # a rare and a common class
        rows = predictions[(predictions["seed"] == 0) & (predictions["task"] == task)]
        assert metrics[task]["per_seed"]["0"] == pytest.approx(average_precision_score(rows["label"], rows["score"]), abs=1e-9)
    assert np.isfinite([metrics[t]["mean"] for t in LABELS]).all()
