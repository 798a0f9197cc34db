"""The NIH ChestX-ray14 and CheXpert loaders: counts on the real metadata torchxrayvision ships, the synthetic
writers, and bad input."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torchxrayvision
from PIL import Image
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.chexpert.loader import LABELS, chexpert_samples
from cxrbench.data.chexpert.synthetic import write_synthetic_chexpert
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.nih.loader import FINDINGS
from cxrbench.data.nih.synthetic import NIH_COLUMNS, write_synthetic_nih_cxr14
from cxrbench.errors import DataError
from cxrbench.registry import benchmark_spec
from cxrbench.study import load_benchmark

TXV_DATA = Path(os.path.dirname(torchxrayvision.__file__)) / "data"
NIH_CSV = "Data_Entry_2017_v2020.csv"
NIH = benchmark_spec("nih-cxr14")
CHEXPERT = benchmark_spec("chexpert")
AGE_GROUPS = {"0-35": (0, 35), "35-60": (35, 60), "60-100": (60, 100)}


def _gunzip(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(source, "rb") as packed, open(target, "wb") as plain:
        shutil.copyfileobj(packed, plain)


def _age_groups(ages: pd.Series) -> dict[str, int]:
    """Images per age group, by direct comparison with the spec's left-closed bins."""
    ages = pd.to_numeric(ages, errors="coerce")
    return {name: int(((ages >= low) & (ages < high)).sum()) for name, (low, high) in AGE_GROUPS.items()}


def test_specs_declare_the_demographic_groups():
    for spec in (NIH, CHEXPERT):
        assert spec.groups["sex"].labels == ("F", "M")
        assert spec.groups["age"].bins == (0, 35, 60, 100) and spec.groups["age"].names == tuple(AGE_GROUPS)
        assert spec.primary_metric == "auroc" and spec.split.scheme == "official"
    assert NIH.tasks == FINDINGS and set(CHEXPERT.tasks) == set(LABELS) - {"Fracture"}


# ------------------------------------------------------------------------------- NIH, real metadata


@pytest.fixture(scope="module")
def nih_real_root(tmp_path_factory) -> Path:
    """The real Data_Entry_2017_v2020.csv with an empty placeholder per image (about 5 s for 112,120 files).

    torchxrayvision does not ship the official train_val_list.txt / test_list.txt, so the lists here are a
    patient-wise partition of our own (every fifth Patient ID tests), in the official format.
    """
    root = tmp_path_factory.mktemp("nih-real")
    _gunzip(TXV_DATA / f"{NIH_CSV}.gz", root / NIH_CSV)
    raw = pd.read_csv(root / NIH_CSV)
    test = raw["Patient ID"] % 5 == 0
    (root / "train_val_list.txt").write_text("\n".join(raw.loc[~test, "Image Index"]) + "\n")
    (root / "test_list.txt").write_text("\n".join(raw.loc[test, "Image Index"]) + "\n")
    (root / "images").mkdir()
    folder = f"{root}/images/"
    for name in raw["Image Index"]:
        open(folder + name, "wb").close()
    return root


def test_nih_real_metadata_counts_match_pandas(nih_real_root):
    raw = pd.read_csv(nih_real_root / NIH_CSV)
    raw["split"] = np.where(raw["Patient ID"] % 5 == 0, "test", "train")
    assert len(raw) == 112120 and int((raw["Patient Age"] > 100).sum()) == 0  # v2020 corrected every age above 100
    _, data = load_benchmark("nih-cxr14", nih_real_root, {})
    counts = data.label_counts()["binary"].set_index(["split", "task"])
    samples = data.samples.set_index("image_id").loc[raw["Image Index"]]
    for split, part in raw.groupby("split"):
        rows = counts.xs(split, level="split")
        assert (rows["images"] == len(part)).all() and (rows["patients"] == part["Patient ID"].nunique()).all()
        for finding in FINDINGS:
            positive = int(part["Finding Labels"].str.contains(rf"(?:^|\|){finding}(?:\||$)").sum())
            assert (rows.loc[finding, "positive"], rows.loc[finding, "negative"], rows.loc[finding, "unknown"]) == (
                positive, len(part) - positive, 0), (split, finding)
    assert int(data.samples["no_finding"].sum()) == int((raw["Finding Labels"] == "No Finding").sum())
    assert data.samples["sex"].value_counts().to_dict() == raw["Patient Gender"].value_counts().to_dict()
    assert _age_groups(data.samples["age_years"]) == _age_groups(raw["Patient Age"])
    assert (samples["patient_id"].to_numpy() == raw["Patient ID"].astype(str).to_numpy()).all()
    if importlib.util.find_spec("cxrbench.data.groups"):  # another loader's summary, once it exists
        from cxrbench.data.groups import group_summary

        summary = group_summary(data, NIH).groupby(["attribute", "group"])["images"].sum()
        assert summary["sex"].reindex(["F", "M"]).to_dict() == raw["Patient Gender"].value_counts().to_dict()
        assert summary["age"].reindex(list(AGE_GROUPS)).to_dict() == _age_groups(raw["Patient Age"])


def test_nih_real_view_filter_and_data_check(nih_real_root):
    _, pa = load_benchmark("nih-cxr14", nih_real_root, {"views": ["PA"]})
    assert len(pa.samples) == 67310 and any("44810 of 112120 images left out" in n for n in pa.notes)
    result = CliRunner().invoke(app, ["data", "check", "nih-cxr14", "--data-root", str(nih_real_root)])
    assert result.exit_code == 0, result.output
    assert "112120 images, 30805 patients" in " ".join(result.output.split())


def test_nih_15_classes_of_dinov2_radiology_on_the_real_metadata(nih_real_root):
    """nih-cxr14-15 (DINOv2-radiology Table 4, public code): every value of Finding Labels is a binary class, so
    "No Finding" is the 15th; counted with pandas string matching on the real CSV."""
    raw = pd.read_csv(nih_real_root / NIH_CSV)
    spec, data = load_benchmark("nih-cxr14-15", nih_real_root, {})
    assert spec.tasks == (*FINDINGS, "No Finding") and len(spec.tasks) == 15
    values = sorted({v for text in raw["Finding Labels"] for v in text.split("|")})
    assert values == sorted(spec.tasks)  # every value of the column is a class, and nothing else
    labels = data.labels()
    order = data.samples["image_id"].to_numpy()
    text = raw.set_index("Image Index").loc[order, "Finding Labels"]
    for t, task in enumerate(spec.tasks):
        expected = text.str.split("|").map(lambda names: task in names).to_numpy()
        assert (labels[:, t] == expected).all() and not np.isnan(labels[:, t]).any(), task
    assert int(labels[:, -1].sum()) == int((raw["Finding Labels"] == "No Finding").sum()) == 60361


# -------------------------------------------------------------------------- CheXpert, real metadata


def _real_chexpert(root: Path, keep_patients: int | None = None, valid_patients: int = 200) -> pd.DataFrame:
    """The real train.csv (CheXpert-v1.0-small paths) under root, its last `valid_patients` patients moved to a
    valid.csv with paths rewritten to valid/ (torchxrayvision ships no valid.csv). `keep_patients`: only the first
    ones. Returns what was written, with a `split` column."""
    folder = root / "CheXpert-v1.0-small"
    _gunzip(TXV_DATA / "chexpert_train.csv.gz", folder / "train.csv")
    raw = pd.read_csv(folder / "train.csv")
    number = raw["Path"].str.extract(r"patient(\d+)", expand=False).astype(int)
    if keep_patients is not None:
        raw, number = raw[number <= keep_patients].copy(), number[number <= keep_patients]
    valid = number > number.max() - valid_patients
    raw.loc[valid, "Path"] = raw.loc[valid, "Path"].str.replace("/train/", "/valid/", regex=False)
    raw[~valid].to_csv(folder / "train.csv", index=False)
    raw[valid].to_csv(folder / "valid.csv", index=False)
    return raw.assign(split=np.where(valid, "test", "train"))


def _expected_chexpert(raw: pd.DataFrame, uncertain: str, blank: str = "negative") -> dict[tuple[str, str], tuple[int, int, int]]:
    """(positive, negative, unknown) per split and label, counted directly from the CSV values."""
    out = {}
    for split, part in raw.groupby("split"):
        for label in LABELS:
            value = part[label]
            ones, zeros, minus, empty = (int((value == 1).sum()), int((value == 0).sum()), int((value == -1).sum()),
                                         int(value.isna().sum()))
            positive = ones + (minus if uncertain == "positive" else 0)
            negative = zeros + (minus if uncertain == "negative" else 0) + (empty if blank == "negative" else 0)
            out[split, label] = (positive, negative, len(part) - positive - negative)
    return out


@pytest.fixture(scope="module")
def chexpert_real_csv(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """All 223,414 rows of the real CSV, no images (placeholders for them would take about 36 s here)."""
    root = tmp_path_factory.mktemp("chexpert-real")
    return root, _real_chexpert(root)


def test_chexpert_real_metadata_counts_match_pandas(chexpert_real_csv):
    root, raw = chexpert_real_csv
    frontal = raw[raw["Frontal/Lateral"] == "Frontal"]
    assert len(raw) == 223414 and len(frontal) == 191027
    spec = dataclasses.replace(CHEXPERT, targets=tuple(dataclasses.replace(CHEXPERT.targets[0], name=n) for n in LABELS))
    frame, _ = chexpert_samples(root, spec, {})
    counts = BenchmarkData(spec.name, root, spec.targets, frame).label_counts()["binary"]
    found = {key: tuple(int(v) for v in row)
             for key, row in counts.set_index(["split", "task"])[["positive", "negative", "unknown"]].iterrows()}
    assert found == _expected_chexpert(frontal, "ignore")
    for split, part in frontal.groupby("split"):
        patients = part["Path"].str.extract(r"(patient\d+)", expand=False).nunique()
        assert counts.loc[counts["split"] == split, "patients"].eq(patients).all()


def test_chexpert_dinov2_trains_on_frontal_ap_with_u_zeros_and_tests_on_every_frontal_image(chexpert_real_csv):
    """chexpert-5-dinov2 (DINOv2-radiology Table 4, public code): train.csv's frontal AP images with -1 and blank as
    0 (U-Zeros); the test set (valid.csv) keeps every frontal image. Counted directly from the real CSV."""
    root, raw = chexpert_real_csv
    spec = benchmark_spec("chexpert-5-dinov2")
    frame, _ = chexpert_samples(root, spec, {})
    frontal = raw["Frontal/Lateral"] == "Frontal"
    train = raw[frontal & (raw["split"] == "train") & (raw["AP/PA"] == "AP")]
    test = raw[frontal & (raw["split"] == "test")]
    assert len(train) == 161590 - int((frontal & (raw["split"] == "test") & (raw["AP/PA"] == "AP")).sum())
    assert (frame["split"] == "train").sum() == len(train) and (frame["split"] == "test").sum() == len(test)
    data = BenchmarkData(spec.name, root, spec.targets, frame)
    counts = data.label_counts()["binary"].set_index(["split", "task"])
    for split, part in (("train", train), ("test", test)):
        for task in spec.tasks:
            positive = int((part[task] == 1).sum())  # U-Zeros: only 1.0 is positive, -1 / blank / 0 are negative
            assert (counts.loc[(split, task), "positive"], counts.loc[(split, task), "negative"],
                    counts.loc[(split, task), "unknown"]) == (positive, len(part) - positive, 0), (split, task)


@pytest.fixture(scope="module")
def chexpert_real_root(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The real CSV's first 3,000 patients (about 10,000 images) with empty placeholder images."""
    root = tmp_path_factory.mktemp("chexpert-placeholders")
    raw = _real_chexpert(root, keep_patients=3000, valid_patients=100)
    for path in raw["Path"]:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    return root, raw


def test_chexpert_real_subset_loads_with_demographics(chexpert_real_root):
    root, raw = chexpert_real_root
    _, data = load_benchmark("chexpert", root, {"views": "all", "blank": "unknown"})
    counts = data.label_counts()["binary"].set_index(["split", "task"])
    expected = _expected_chexpert(raw, "ignore", "unknown")
    for (split, task), row in counts.iterrows():
        assert (row["positive"], row["negative"], row["unknown"]) == expected[split, task], (split, task)
        assert row["images"] == int((raw["split"] == split).sum())
    sexes = raw["Sex"].map({"Female": "F", "Male": "M"}).fillna("")
    assert data.samples["sex"].value_counts().to_dict() == sexes.value_counts().to_dict()
    assert _age_groups(data.samples["age_years"]) == _age_groups(raw["Age"])
    assert (data.samples["no_finding"].fillna(-1) == data.samples["No Finding"].fillna(-1)).all()
    _, pa = load_benchmark("chexpert", root, {"projections": ["PA"]})
    assert len(pa.samples) == int(((raw["Frontal/Lateral"] == "Frontal") & (raw["AP/PA"] == "PA")).sum())


def test_chexpert_real_uncertain_policies_move_exactly_the_minus_ones(chexpert_real_root):
    root, raw = chexpert_real_root
    frontal = raw[raw["Frontal/Lateral"] == "Frontal"]
    tables = {}
    for policy in ("ignore", "positive", "negative"):
        _, data = load_benchmark("chexpert", root, {"uncertain": policy})
        tables[policy] = data.label_counts()["binary"].set_index(["split", "task"])[["positive", "negative", "unknown"]]
        found = {key: tuple(int(v) for v in row) for key, row in tables[policy].iterrows()}
        assert found == {k: v for k, v in _expected_chexpert(frontal, policy).items() if k in found}, policy
    uncertain = frontal.groupby("split")[list(CHEXPERT.tasks)].agg(lambda v: int((v == -1).sum())).stack()
    uncertain = uncertain.rename_axis(["split", "task"]).reindex(tables["ignore"].index)
    assert uncertain.sum() > 5000
    moved = tables["positive"] - tables["ignore"]
    assert (moved["positive"] == uncertain).all() and (moved["negative"] == 0).all()
    moved = tables["negative"] - tables["ignore"]
    assert (moved["negative"] == uncertain).all() and (moved["positive"] == 0).all()
    assert (tables["ignore"]["unknown"] - tables["positive"]["unknown"] == uncertain).all()


# --------------------------------------------------------------------------------------------- synthetic


def test_chexpert_dinov2_keeps_pa_test_images_and_drops_pa_training_images(chexpert_root):
    """Only the training images are limited to AP (the real validation subset above happens to be all AP)."""
    folder = chexpert_root / "CheXpert-v1.0"
    if not folder.is_dir():
        folder = chexpert_root / "CheXpert-v1.0-small"
    train, valid = (pd.read_csv(folder / name) for name in ("train.csv", "valid.csv"))
    frontal_train, frontal_valid = (part[part["Frontal/Lateral"] == "Frontal"] for part in (train, valid))
    assert set(frontal_valid["AP/PA"]) == {"AP", "PA"}
    _, data = load_benchmark("chexpert-5-dinov2", chexpert_root, {})
    split = data.samples["split"].value_counts()
    assert split["train"] == int((frontal_train["AP/PA"] == "AP").sum()) < len(frontal_train)
    assert split["test"] == len(frontal_valid)



@pytest.fixture(scope="module")
def nih_root(tmp_path_factory) -> Path:
    return write_synthetic_nih_cxr14(tmp_path_factory.mktemp("nih") / "nih", size=48, seed=1)


@pytest.fixture(scope="module")
def chexpert_root(tmp_path_factory) -> Path:
    return write_synthetic_chexpert(tmp_path_factory.mktemp("chexpert") / "chexpert", size=48, seed=1, test_patients=16)


def test_synthetic_nih_matches_the_release_format_and_is_learnable(nih_root, tmp_path):
    real_columns = pd.read_csv(TXV_DATA / f"{NIH_CSV}.gz", nrows=0).columns.tolist()
    assert pd.read_csv(nih_root / NIH_CSV, nrows=0).columns.tolist() == real_columns == NIH_COLUMNS
    _, data = load_benchmark("nih-cxr14", nih_root, {})
    assert data.synthetic and data.learnability_problems() == []
    listed = (nih_root / "test_list.txt").read_text().split()
    assert set(data.samples.loc[data.samples["split"] == "test", "image_id"]) == set(listed)
    image = Image.open(data.samples["path"].iloc[0])
    assert image.mode == "L" and image.size == (48, 48) and data.samples["image_id"].iloc[0] == "00000001_000.png"
    assert set(data.samples["sex"]) == {"F", "M"} and all(_age_groups(data.samples.loc[data.samples["split"] == s, "age_years"])[g]
                                                          for s in ("train", "test") for g in AGE_GROUPS)
    kaggle = write_synthetic_nih_cxr14(tmp_path / "kaggle", patients=20, test_patients=5, size=32, kaggle=True)
    assert not (kaggle / "images").exists()
    _, spread = load_benchmark("nih-cxr14", kaggle, {})
    assert {Path(p).parent.parent.name for p in spread.samples["path"]} == {"images_001", "images_002", "images_003"}


def test_synthetic_chexpert_matches_the_release_format_and_is_learnable(chexpert_root, tmp_path):
    folder = chexpert_root / "CheXpert-v1.0"
    real_columns = pd.read_csv(TXV_DATA / "chexpert_train.csv.gz", nrows=0).columns.tolist()
    train = pd.read_csv(folder / "train.csv")
    assert train.columns.tolist() == pd.read_csv(folder / "valid.csv", nrows=0).columns.tolist() == real_columns
    assert (train[list(LABELS)] == -1).any().any() and train[list(LABELS)].isna().any().any()
    assert set(train["Frontal/Lateral"]) == {"Frontal", "Lateral"} and "Unknown" in set(train["Sex"])
    _, data = load_benchmark("chexpert", chexpert_root, {})
    assert data.synthetic and data.learnability_problems() == [] and set(data.samples["split"]) == {"train", "test"}
    assert all(p.endswith("_frontal.jpg") for p in data.samples["path"])
    assert Image.open(data.samples["path"].iloc[0]).format == "JPEG"
    _, test = load_benchmark("chexpert", chexpert_root, {"test_set": "test", "views": "all"})
    assert test.learnability_problems() == [] and any("_lateral.jpg" in p for p in test.samples["path"])
    tested = test.samples[test.samples["split"] == "test"]
    assert tested["image_id"].str.startswith("test/").all() and tested["age_years"].isna().all()
    small = write_synthetic_chexpert(tmp_path / "small", patients=20, valid_patients=5, size=32, small=True)
    _, data = load_benchmark("chexpert", small, {})
    assert "CheXpert-v1.0-small" in data.samples["path"].iloc[0]


def test_synthetic_chexpert_uncertain_policies_move_the_minus_ones(chexpert_root):
    train = pd.read_csv(chexpert_root / "CheXpert-v1.0" / "train.csv")
    frontal = train[train["Frontal/Lateral"] == "Frontal"]
    counts = {p: load_benchmark("chexpert", chexpert_root, {"uncertain": p})[1].label_counts()["binary"]
              .query("split == 'train'").set_index("task") for p in ("ignore", "positive", "negative")}
    for task in CHEXPERT.tasks:
        minus = int((frontal[task] == -1).sum())
        assert counts["positive"].loc[task, "positive"] - counts["ignore"].loc[task, "positive"] == minus
        assert counts["negative"].loc[task, "negative"] - counts["ignore"].loc[task, "negative"] == minus
        assert counts["ignore"].loc[task, "unknown"] == minus


# --------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def nih_copy(nih_root, tmp_path) -> Path:
    return Path(shutil.copytree(nih_root, tmp_path / "nih"))


@pytest.fixture
def chexpert_copy(chexpert_root, tmp_path) -> Path:
    return Path(shutil.copytree(chexpert_root, tmp_path / "chexpert"))


def _edit_csv(path: Path, row: int, column: str, value) -> str:
    frame = pd.read_csv(path, dtype=str)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return frame.iloc[row, 0]


def test_nih_image_in_both_lists(nih_copy):
    name = (nih_copy / "test_list.txt").read_text().split()[0]
    with open(nih_copy / "train_val_list.txt", "a") as handle:
        handle.write(name + "\n")
    lines = len((nih_copy / "train_val_list.txt").read_text().split())
    with pytest.raises(DataError, match=rf"test_list.txt, line 1: {name} is already listed at .*train_val_list.txt, "
                                        rf"line {lines}.*remove one of the two lines"):
        load_benchmark("nih-cxr14", nih_copy, {})


def test_nih_list_entry_missing_from_the_csv(nih_copy):
    with open(nih_copy / "test_list.txt", "a") as handle:
        handle.write("99999999_000.png\n")
    line = len((nih_copy / "test_list.txt").read_text().split())
    with pytest.raises(DataError, match=rf"test_list.txt, line {line}: 99999999_000.png is not in .*{NIH_CSV}.*remove the line"):
        load_benchmark("nih-cxr14", nih_copy, {})


def test_nih_image_in_neither_list(nih_copy):
    names = (nih_copy / "test_list.txt").read_text().split()
    (nih_copy / "test_list.txt").write_text("\n".join(names[1:]) + "\n")
    row = pd.read_csv(nih_copy / NIH_CSV)["Image Index"].tolist().index(names[0]) + 2
    with pytest.raises(DataError, match=rf"{NIH_CSV}, row {row}, column 'Image Index': {names[0]} is in neither split list"):
        load_benchmark("nih-cxr14", nih_copy, {})


def test_nih_missing_image_error_and_drop(nih_copy):
    victim = next((nih_copy / "images").iterdir())
    victim.unlink()
    with pytest.raises(DataError, match=rf"1 of \d+ ChestX-ray14 images .* e\.g\. {victim.name}\. Complete the download"):
        load_benchmark("nih-cxr14", nih_copy, {})
    _, data = load_benchmark("nih-cxr14", nih_copy, {"missing_images": "drop"})
    assert victim.name not in set(data.samples["image_id"])


def test_nih_ages_bad_and_implausible(nih_copy):
    name = _edit_csv(nih_copy / NIH_CSV, 3, "Patient Age", "412")
    _, data = load_benchmark("nih-cxr14", nih_copy, {})
    assert np.isnan(data.samples.set_index("image_id").loc[name, "age_years"])
    assert any(f"row 5 ({name}: 412)" in note for note in data.notes)
    _, kept = load_benchmark("nih-cxr14", nih_copy, {"max_age": 500})
    assert kept.samples.set_index("image_id").loc[name, "age_years"] == 412
    name = _edit_csv(nih_copy / NIH_CSV, 6, "Patient Age", "fifty")
    with pytest.raises(DataError, match=rf"{NIH_CSV}, row 8 \(Image Index {name}\), column 'Patient Age': is 'fifty'.*"
                                        "leave the cell empty"):
        load_benchmark("nih-cxr14", nih_copy, {})


def test_nih_unknown_finding(nih_copy):
    _edit_csv(nih_copy / NIH_CSV, 2, "Finding Labels", "Cardiomegally|Effusion")
    with pytest.raises(DataError, match=r"row 4 .*column 'Finding Labels': is 'Cardiomegally\|Effusion'.*separated by"):
        load_benchmark("nih-cxr14", nih_copy, {})


def test_chexpert_unknown_uncertain_policy(chexpert_root):
    with pytest.raises(DataError, match=r"uncertain='maybe' is not one of \('ignore', 'positive', 'negative'\).*"
                                        r"benchmarks/chexpert.yaml.*--dataset-option uncertain=ignore"):
        load_benchmark("chexpert", chexpert_root, {"uncertain": "maybe"})


def test_chexpert_bad_label_age_and_path(chexpert_copy):
    train = chexpert_copy / "CheXpert-v1.0" / "train.csv"
    original = train.read_text()
    path = _edit_csv(train, 4, "Edema", "2.0")
    with pytest.raises(DataError, match=rf"train.csv, row 6 \(Path {path}\), column 'Edema': is '2.0'.*-1.0 \(uncertain\)"):
        load_benchmark("chexpert", chexpert_copy, {})
    train.write_text(original)
    _edit_csv(train, 1, "Age", "old")
    with pytest.raises(DataError, match=r"train.csv, row 3 .*column 'Age': is 'old', not an age.*leave the cell empty"):
        load_benchmark("chexpert", chexpert_copy, {})
    train.write_text(original)
    _edit_csv(train, 0, "Path", "CheXpert-v1.0/train/study1/view1_frontal.jpg")
    with pytest.raises(DataError, match=r"train.csv, row 2, column 'Path'.*patientNNNNN.*fix or remove the row"):
        load_benchmark("chexpert", chexpert_copy, {})


def test_chexpert_missing_image_and_missing_test_labels(chexpert_copy):
    _, data = load_benchmark("chexpert", chexpert_copy, {})
    victim = Path(data.samples["path"].iloc[-1])
    victim.unlink()
    with pytest.raises(DataError, match=rf"(?s)1 of \d+ CheXpert images .*{victim.name}.*missing_images: drop"):
        load_benchmark("chexpert", chexpert_copy, {})
    (chexpert_copy / "CheXpert-v1.0" / "test_labels.csv").unlink()
    with pytest.raises(DataError, match=r"test_labels.csv does not exist .*CheXlocalize.*test_set: valid"):
        load_benchmark("chexpert", chexpert_copy, {"test_set": "test"})
