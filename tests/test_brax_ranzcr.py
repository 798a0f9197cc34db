"""BRAX and RANZCR CLiP: the synthetic releases read back against direct counts of their CSVs, bad input named by
file and row, and both benchmarks run end to end (`pixels`, `--weights random`) with AUPRC equal to scikit-learn's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.brax.loader import LABELS as BRAX_LABELS
from cxrbench.data.brax.synthetic import FOLDER as BRAX, age_group, write_synthetic_brax
from cxrbench.data.mimic.cxr import CHEXPERT_LABELS
from cxrbench.data.ranzcr.loader import GROUPS, LABEL_COLUMNS
from cxrbench.data.ranzcr.synthetic import FOLDER as RANZCR, write_synthetic_ranzcr
from cxrbench.errors import DataError
from cxrbench.study import load_benchmark

runner = CliRunner()
#: enough patients that every target has positives in the fixed test split (BRAX's 13 findings are rarer)
WRITERS = {"brax": lambda root: write_synthetic_brax(root, patients=400, size=16, seed=1),
           "ranzcr-catheters": lambda root: write_synthetic_ranzcr(root, patients=200, size=32, seed=1)}
CSV = {"brax": f"{BRAX}/master_spreadsheet_update.csv", "ranzcr-catheters": f"{RANZCR}/train.csv"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """Treat as read-only."""
    base = tmp_path_factory.mktemp("brax-ranzcr")
    return {name: write(base / name) for name, write in WRITERS.items()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    """Small releases for the tests that damage a copy."""
    base = tmp_path_factory.mktemp("brax-ranzcr-small")
    return {"brax": write_synthetic_brax(base / "brax", patients=20, size=16, seed=2),
            "ranzcr-catheters": write_synthetic_ranzcr(base / "ranzcr", patients=20, size=16, seed=2)}


def _csv(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / CSV[name], dtype=str, keep_default_na=False)


# ------------------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("uncertain", ["ignore", "positive"])
def test_brax_reads_frontal_images_with_the_label_policies(roots, uncertain):
    root = roots["brax"]
    _, data = load_benchmark("brax", root, {"uncertain": uncertain})
    raw = _csv(root, "brax")
    frontal = raw[raw["ViewPosition"].isin(["PA", "AP"])].set_index("PngPath")
    samples = data.samples.set_index("image_id")
    assert data.synthetic and set(samples.index) == set(frontal.index) and (raw["ViewPosition"] == "LL").any()
    assert BRAX_LABELS == CHEXPERT_LABELS  # BRAX releases CheXpert's 14 findings
    assert (samples["patient_id"] == frontal.loc[samples.index, "PatientID"]).all() and (samples["split"] == "pool").all()
    for label in CHEXPERT_LABELS:
        text = frontal.loc[samples.index, label]
        positive = (text == "1") | ((text == "-1") & (uncertain == "positive"))
        negative = (text == "0") | (text == "")
        values = samples[label].to_numpy()
        assert (values == 1).sum() == positive.sum() and (values == 0).sum() == negative.sum(), label
        assert np.isnan(values).sum() == len(values) - positive.sum() - negative.sum()
    assert (frontal[list(CHEXPERT_LABELS)] == "-1").any().any() and (frontal["PatientAge"] == "85 or more").any()
    sex = frontal.loc[samples.index, "PatientSex"].map({"M": "M", "F": "F", "O": ""})
    assert (samples["sex"] == sex).all() and (frontal["PatientSex"] == "O").any()
    assert all(age_group(int(age)) == group for age, group in zip(samples["age_years"], frontal.loc[samples.index, "PatientAge"]))


def test_ranzcr_targets_are_the_release_columns_and_groups_their_means(roots):
    root = roots["ranzcr-catheters"]
    spec, data = load_benchmark("ranzcr-catheters", root, {})
    raw = _csv(root, "ranzcr-catheters").set_index("StudyInstanceUID")
    samples = data.samples.set_index("image_id")
    assert set(samples.index) == set(raw.index) and (samples["patient_id"] == raw.loc[samples.index, "PatientID"]).all()
    for column in LABEL_COLUMNS:
        assert (samples[column] == raw.loc[samples.index, column].astype(float)).all(), column
    assert sorted(spec.tasks) == sorted(c for members in GROUPS.values() for c in members)
    shares = {g: 100 * np.mean([(raw[c] == "1").mean() for c in members]) for g, members in GROUPS.items()}
    assert any(f"Normal {shares['Normal']:.1f}%" in note for note in data.notes)
    assert all(Path(p).name == f"{i}.jpg" for i, p in zip(samples.index, samples["path"]))


# ------------------------------------------------------------------------------------------------ bad input


def _no_images(folder: str, names: list[str]) -> list[str]:
    """Copy no images (a damaged label file is refused before any image is looked at)."""
    return [n for n in names if n.endswith((".png", ".jpg"))]


def _damage(root: Path, name: str, tmp_path: Path, edit) -> tuple[Path, int]:
    copy = Path(shutil.copytree(root, tmp_path / name, ignore=_no_images))
    frame = _csv(copy, name)
    row = edit(frame)
    frame.to_csv(copy / CSV[name], index=False)
    return copy, row


def _set(column: str, value: str, row: int = 4):
    def edit(frame: pd.DataFrame) -> int:
        frame.loc[row, column] = value
        return row
    return edit


def _duplicate(column: str):
    def edit(frame: pd.DataFrame) -> int:
        frame.loc[5, column] = frame.loc[2, column]
        return 5
    return edit


@pytest.mark.parametrize("name, edit, column, problem", [
    ("brax", _set("Edema", "2"), "Edema", "'2'"),
    ("brax", _set("PatientAge", "forty"), "PatientAge", "not an age group"),
    ("brax", _set("PngPath", "../../etc/passwd"), "PngPath", "'../../etc/passwd'"),
    ("brax", _set("PatientID", ""), "PatientID", "is empty"),
    ("ranzcr-catheters", _set("CVC - Normal", "yes"), "CVC - Normal", "'yes'"),
    ("ranzcr-catheters", _set("PatientID", ""), "PatientID", "is empty"),
    ("ranzcr-catheters", _set("StudyInstanceUID", "a/b"), "StudyInstanceUID", "not a plain file name"),
])
def test_bad_values_name_the_file_row_and_column(small, tmp_path, name, edit, column, problem):
    copy, row = _damage(small[name], name, tmp_path, edit)
    if name == "brax":  # the damaged row must be a frontal image to be read at all
        frame = _csv(copy, name)
        frame.loc[row, "ViewPosition"] = "PA"
        frame.to_csv(copy / CSV[name], index=False)
    with pytest.raises(DataError) as error:
        load_benchmark(name, copy, {})
    message = str(error.value)
    assert str(copy / CSV[name]) in message and f"row {row + 2}" in message and f"column '{column}'" in message
    assert problem in message


@pytest.mark.parametrize("name, key", [("brax", "PngPath"), ("ranzcr-catheters", "StudyInstanceUID")])
def test_duplicates_missing_columns_and_images_are_refused(small, tmp_path, name, key):
    copy, row = _damage(small[name], name, tmp_path, _duplicate(key))
    with pytest.raises(DataError, match=rf"row {row + 2}: duplicate entry \({key}="):
        load_benchmark(name, copy, {})
    shutil.rmtree(copy)
    label = "Cardiomegaly" if name == "brax" else "NGT - Borderline"
    copy = Path(shutil.copytree(small[name], tmp_path / name, ignore=_no_images))
    _csv(small[name], name).drop(columns=label).to_csv(copy / CSV[name], index=False)
    with pytest.raises(DataError, match=f"has no column '{label}'"):
        load_benchmark(name, copy, {})
    shutil.rmtree(copy)
    copy = Path(shutil.copytree(small[name], tmp_path / f"{name}-image"))
    _, data = load_benchmark(name, copy, {})
    Path(data.samples["path"].iloc[3]).unlink()
    with pytest.raises(DataError, match="1 of .* missing"):
        load_benchmark(name, copy, {})


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("name", list(WRITERS))
def test_benchmark_runs_end_to_end(roots, tmp_path, name):
    out = tmp_path / "results"
    result = runner.invoke(app, ["run", name, "--encoder", "pixels", "--weights", "random", "--head", "logistic",
                                 "--data-root", str(roots[name]), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                                 "--head-param", "C=[0.01]", "--seeds", "2", "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    folder = next((out / name / "pixels").glob("logistic*"))
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]["auprc"]
    predictions = pd.read_parquet(folder / "predictions.parquet")
    _, data = load_benchmark(name, roots[name], {})
    assert set(predictions["task"]) == set(data.tasks)
    for task in data.tasks:
        rows = predictions[(predictions["seed"] == 1) & (predictions["task"] == task)].dropna(subset=["label"])
        assert metrics[task]["per_seed"]["1"] == pytest.approx(average_precision_score(rows["label"], rows["score"]), abs=1e-9)


@pytest.mark.parametrize("name, note", [("brax", "images have ViewPosition PA / AP"),
                                        ("ranzcr-catheters", "position groups' mean tube prevalence")])
def test_data_check_reads_through_the_loader(small, name, note):
    result = runner.invoke(app, ["data", "check", name, "--data-root", str(small[name])])
    assert result.exit_code == 0, result.output
    assert note in " ".join(result.output.split())
