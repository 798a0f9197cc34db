"""The RSNA-Pneumonia loader on the released layout: counts (also on the real stage-2 labels), NIH patients, bad input."""

from __future__ import annotations

import json
import shutil
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.data.rsna.loader import read_rsna_labels
from cxrbench.data.rsna.synthetic import write_synthetic_rsna
from cxrbench.data.splits import POOL, seed_splits
from cxrbench.errors import DataError
from cxrbench.registry import benchmark_spec
from cxrbench.study import load_benchmark

SPEC = benchmark_spec("rsna-pneumonia")
MAPPING = "pneumonia-challenge-dataset-mappings_2018.json"
LABELS = "stage_2_train_labels.csv"


@pytest.fixture(scope="module")
def rsna_root(tmp_path_factory) -> Path:
    return write_synthetic_rsna(tmp_path_factory.mktemp("rsna") / "rsna-pneumonia", patients=24, size=32, seed=2)


@pytest.fixture
def rsna_copy(rsna_root, tmp_path) -> Path:
    return Path(shutil.copytree(rsna_root, tmp_path / "copy"))


@pytest.fixture(scope="module")
def real_labels_root(tmp_path_factory) -> Path:
    """An RSNA-layout folder holding the real stage-2 labels CSV that torchxrayvision ships (no images)."""
    root = tmp_path_factory.mktemp("rsna-real")
    with zipfile.ZipFile(resources.files("torchxrayvision") / "data" / "kaggle_stage_2_train_labels.csv.zip") as archive:
        archive.extract(LABELS, root)
    (root / "stage_2_train_images").mkdir()
    return root


def direct_counts(labels_csv: Path) -> tuple[int, int]:
    raw = pd.read_csv(labels_csv)
    per_image = raw.groupby("patientId")["Target"].max()
    return len(per_image), int(per_image.sum())


def test_counts_match_direct_count_of_csv(rsna_root):
    _, data = load_benchmark("rsna-pneumonia", rsna_root, {})
    images, positives = direct_counts(rsna_root / LABELS)
    assert len(data.samples) == images
    counts = data.label_counts()["binary"].set_index("task").loc["Pneumonia"]
    assert (counts["positive"], counts["negative"], counts["unknown"]) == (positives, images - positives, 0)
    assert pd.read_csv(rsna_root / LABELS)["patientId"].duplicated().any()  # several boxes per image in the fixture
    assert set(data.samples["split"]) == {POOL} and data.tasks == ("Pneumonia",)


def test_real_stage2_labels_give_26684_images_6012_positive(real_labels_root):
    labels = read_rsna_labels(real_labels_root / LABELS)
    assert len(labels) == 26684 and int(labels["Target"].sum()) == 6012
    assert (len(labels), int(labels["Target"].sum())) == direct_counts(real_labels_root / LABELS)
    assert labels["image_id"].is_unique


def test_full_loader_still_checks_every_dicom(real_labels_root):
    with pytest.raises(DataError, match=r"26684 of 26684 RSNA-Pneumonia DICOM files .* missing"):
        load_benchmark("rsna-pneumonia", real_labels_root, {})


def test_patients_from_the_nih_mapping(rsna_root):
    entries = json.loads((rsna_root / MAPPING).read_text())
    expected = {e["subset_img_id"]: e["img_id"].split("_")[0] for e in entries}
    _, data = load_benchmark("rsna-pneumonia", rsna_root, {})
    assert all(expected[i] == p for i, p in zip(data.samples["image_id"], data.samples["patient_id"]))
    assert data.samples["patient_id"].nunique() == 24 < len(data.samples)
    assert any("NIH ChestX-ray14 patients" in note for note in data.notes)
    manifest = seed_splits(data.samples, SPEC.name, 0, SPEC.split)
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1


def test_without_mapping_each_image_is_its_own_patient(rsna_copy, rsna_root):
    (rsna_copy / MAPPING).unlink()
    _, data = load_benchmark("rsna-pneumonia", rsna_copy, {})
    assert (data.samples["patient_id"] == data.samples["image_id"]).all()
    assert any(f"one patient per image (no {MAPPING}" in note for note in data.notes)
    _, forced = load_benchmark("rsna-pneumonia", rsna_root, {"patient_id": "image_id"})
    assert (forced.samples["patient_id"] == forced.samples["image_id"]).all()


def test_dicoms_decode_and_class_info_is_reported(rsna_root):
    _, data = load_benchmark("rsna-pneumonia", rsna_root, {})
    assert read_image(data.samples["path"].iloc[0]).shape == (32, 32)
    info = pd.read_csv(rsna_root / "stage_2_detailed_class_info.csv").drop_duplicates("patientId")
    opacity = int((info["class"] == "Lung Opacity").sum())
    assert any(f"Lung Opacity: {opacity}" in note and "disagree" not in note for note in data.notes)


def test_data_check_prints_direct_counts(rsna_root):
    result = CliRunner().invoke(app, ["data", "check", "rsna-pneumonia", "--data-root", str(rsna_root)])
    assert result.exit_code == 0, result.output
    images, positives = direct_counts(rsna_root / LABELS)
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    assert any(line.startswith(f"{POOL} Pneumonia {positives} {images - positives} 0 {images} ") for line in lines)


def test_spec_matches_the_paper_protocol():
    assert [t.kind for t in SPEC.targets] == ["binary"] and SPEC.metrics == ("auprc", "auroc")
    # RAD-DINO Table 1b: 5-fold cross-validation, 60/20/20 by subject per fold (the split itself: test_loader_candid.py)
    assert (SPEC.split.scheme, SPEC.split.folds, SPEC.split.val_fraction, SPEC.seeds) == ("kfold", 5, 0.25, 5)
    assert SPEC.split.fractions == (0.6, 0.2, 0.2) and SPEC.split.test == "fixed"  # the fixed-test option
    assert SPEC.published.task_columns == {"Pneumonia": "rsna_auprc"}


# ---------------------------------------------------------------------------------------------- bad input


def _labels(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / LABELS, dtype={"patientId": str})


def test_inconsistent_target_within_an_image_names_the_row(rsna_copy):
    frame = _labels(rsna_copy)
    second = frame["patientId"].duplicated(keep="first")
    row = int(second.to_numpy().nonzero()[0][0])
    first = int(frame.index[frame["patientId"] == frame.loc[row, "patientId"]][0])
    frame.loc[row, ["x", "y", "width", "height"]] = np.nan
    frame.loc[row, "Target"] = 0
    frame.to_csv(rsna_copy / LABELS, index=False)
    with pytest.raises(DataError, match=rf"stage_2_train_labels\.csv, row {row + 2} \(patientId .*\), column 'Target': "
                                        rf"is 0 but row {first + 2} gives Target 1 for the same image"):
        load_benchmark("rsna-pneumonia", rsna_copy, {})


def test_target_outside_zero_one_names_the_row(rsna_copy):
    frame = _labels(rsna_copy)
    frame.loc[4, "Target"] = 2
    frame.to_csv(rsna_copy / LABELS, index=False)
    with pytest.raises(DataError, match=r"stage_2_train_labels\.csv, row 6 .*'Target' is 2"):
        load_benchmark("rsna-pneumonia", rsna_copy, {})


def test_positive_row_without_box_names_the_column(rsna_copy):
    frame = _labels(rsna_copy)
    row = int(frame.index[frame["Target"] == 1][0])
    frame.loc[row, "width"] = np.nan
    frame.to_csv(rsna_copy / LABELS, index=False)
    with pytest.raises(DataError, match=rf"row {row + 2} .*column 'width': is empty on a row with Target 1"):
        load_benchmark("rsna-pneumonia", rsna_copy, {})


def test_missing_dicom_is_reported(rsna_copy):
    victim = sorted((rsna_copy / "stage_2_train_images").glob("*.dcm"))[0]
    victim.unlink()
    with pytest.raises(DataError, match=rf"(?s)1 of \d+ RSNA-Pneumonia DICOM files .*{victim.name}"):
        load_benchmark("rsna-pneumonia", rsna_copy, {})


def test_malformed_mapping_names_the_entry(rsna_copy):
    entries = json.loads((rsna_copy / MAPPING).read_text())
    del entries[3]["img_id"]
    (rsna_copy / MAPPING).write_text(json.dumps(entries))
    with pytest.raises(DataError, match=rf"{MAPPING}, entry 3: no 'img_id'"):
        load_benchmark("rsna-pneumonia", rsna_copy, {})


def test_missing_labels_csv(tmp_path):
    with pytest.raises(DataError, match="stage_2_train_labels.csv does not exist"):
        load_benchmark("rsna-pneumonia", tmp_path, {})


def test_data_check_on_the_full_stage2_labels(real_labels_root, tmp_path):
    """`cxrbench data check` on the real labels: 26,684 images, 6,012 positive (placeholder files stand in for the
    DICOMs: the loader checks that every image exists, it decodes none)."""
    root = Path(shutil.copytree(real_labels_root, tmp_path / "full"))
    for image_id in pd.read_csv(root / LABELS)["patientId"].unique():
        (root / "stage_2_train_images" / f"{image_id}.dcm").touch()
    result = CliRunner().invoke(app, ["data", "check", "rsna-pneumonia", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "26684 images" in result.output
    pool = next(line for line in result.output.splitlines() if line.strip().startswith("pool"))
    assert "6012" in pool and "20672" in pool
