"""MIMIC-CXR 5x1200: the drawn images checked against an independent reading of the synthetic release's CSVs (one
finding of five, one image per subject, per-class counts, subject-disjoint splits, a fixed draw), too few subjects
refused naming the option, and the benchmark end to end with AUROC (OvR) equal to scikit-learn's."""

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
from cxrbench.data.mimic.five_by_1200 import FINDINGS
from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr
from cxrbench.errors import DataError
from cxrbench.stats.summary import PROBABILITIES
from cxrbench.study import load_benchmark

SMALL = {"per_class": 8, "test_per_class": 3}
JPG = "mimic-cxr-jpg"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_synthetic_mimic_cxr(tmp_path_factory.mktemp("mimic-5x1200") / "root", patients=300, size=16, seed=3)


def _eligible(root: Path) -> pd.DataFrame:
    """Frontal images listed in the split file whose study has exactly one of the five at 1.0, none of them -1.0."""
    metadata = read_gz_csv(root / JPG / "mimic-cxr-2.0.0-metadata.csv.gz")
    listed = set(read_gz_csv(root / JPG / "mimic-cxr-2.0.0-split.csv.gz")["dicom_id"])
    chexpert = read_gz_csv(root / JPG / "mimic-cxr-2.0.0-chexpert.csv.gz").set_index("study_id")
    rows = []
    for _, image in metadata[metadata["ViewPosition"].isin(["PA", "AP"])].iterrows():
        if image["dicom_id"] not in listed or image["study_id"] not in chexpert.index:
            continue
        labels = chexpert.loc[image["study_id"], list(FINDINGS)]
        if (labels == "1.0").sum() == 1 and not (labels == "-1.0").any():
            rows.append({"image_id": image["dicom_id"], "subject": image["subject_id"],
                         "finding": FINDINGS.index(labels[labels == "1.0"].index[0])})
    return pd.DataFrame(rows).set_index("image_id")


def test_the_draw_is_one_eligible_image_per_subject_per_class_counts(root):
    _, data = load_benchmark("mimic-5x1200", root, SMALL)
    eligible = _eligible(root)
    samples = data.samples.set_index("image_id")
    assert set(samples.index) <= set(eligible.index)
    assert (samples["Finding"] == eligible.loc[samples.index, "finding"]).all()
    assert samples["patient_id"].is_unique  # one image per subject: classes and splits subject-disjoint
    counts = samples.groupby(["split", "Finding"]).size()
    assert (counts["test"] == SMALL["test_per_class"]).all() and (counts["train"] == 5).all() and len(counts) == 10
    _, again = load_benchmark("mimic-5x1200", root, SMALL)
    assert again.samples["image_id"].tolist() == data.samples["image_id"].tolist()
    _, other = load_benchmark("mimic-5x1200", root, {**SMALL, "draw_seed": 1})
    assert set(other.samples["image_id"]) != set(data.samples["image_id"])


def test_too_few_subjects_and_bad_counts_are_refused(root):
    eligible = _eligible(root)
    fewest = int(eligible.groupby("finding")["subject"].nunique().min())
    with pytest.raises(DataError, match=r"Only \d+ subjects .* per_class=1200"):
        load_benchmark("mimic-5x1200", root, {})
    with pytest.raises(DataError, match="Only"):
        load_benchmark("mimic-5x1200", root, {"per_class": fewest + 1, "test_per_class": 1})
    with pytest.raises(DataError, match="0 < test_per_class < per_class"):
        load_benchmark("mimic-5x1200", root, {"per_class": 4, "test_per_class": 4})


def test_bad_labels_and_missing_images_are_named(root, tmp_path):
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    path = copy / JPG / "mimic-cxr-2.0.0-chexpert.csv.gz"
    chexpert = read_gz_csv(path)
    write_gz_csv(path, chexpert.assign(Edema=np.where(np.arange(len(chexpert)) == 4, "yes", chexpert["Edema"])))
    with pytest.raises(DataError, match=r"chexpert\.csv\.gz, row 6 .*column 'Edema': is 'yes'"):
        load_benchmark("mimic-5x1200", copy, SMALL)
    write_gz_csv(path, chexpert)
    _, data = load_benchmark("mimic-5x1200", copy, SMALL)
    Path(data.samples["path"].iloc[0]).unlink()
    with pytest.raises(DataError, match="1 of .* images are missing"):
        load_benchmark("mimic-5x1200", copy, SMALL)


def test_mimic_5x1200_runs_end_to_end(root, tmp_path):
    out = tmp_path / "results"
    options = [arg for key, value in SMALL.items() for arg in ("--dataset-option", f"{key}={value}")]
    result = CliRunner().invoke(app, ["run", "mimic-5x1200", "--encoder", "pixels", "--weights", "random", "--head",
                                      "logistic", "--head-param", "C=[0.01]", "--data-root", str(root), "--out", str(out),
                                      "--cache-dir", str(tmp_path / "cache"), "--seeds", "2", "--bootstrap", "20", *options])
    assert result.exit_code == 0, result.output
    folder = next((out / "mimic-5x1200" / "pixels").glob("logistic*"))
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]["auroc_ovr"]["Finding"]
    predictions = pd.read_parquet(folder / "predictions.parquet")
    rows = predictions[predictions["seed"] == 1]
    expected = roc_auc_score(rows["label"].astype(int), np.stack(rows[PROBABILITIES]), multi_class="ovr", average="macro")
    assert metrics["per_seed"]["1"] == pytest.approx(expected, abs=1e-9)
