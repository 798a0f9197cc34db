"""The CANDID-PTX loader on the released layout: counts, patient ids, image naming, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.candid.synthetic import write_synthetic_candid
from cxrbench.data.common.images import read_image
from cxrbench.data.common.rle import encode_relative_rle
from cxrbench.data.common.synthetic import _write_dicom
from cxrbench.data.splits import POOL, seed_splits
from cxrbench.errors import DataError
from cxrbench.registry import benchmark_spec
from cxrbench.study import load_benchmark, with_split

SPEC = benchmark_spec("candid-ptx")
TASKS = list(SPEC.tasks)


@pytest.fixture(scope="module")
def candid_root(tmp_path_factory) -> Path:
    return write_synthetic_candid(tmp_path_factory.mktemp("candid") / "CANDID-PTX", patients=30, size=32, seed=1)


@pytest.fixture
def candid_copy(candid_root, tmp_path) -> Path:
    return Path(shutil.copytree(candid_root, tmp_path / "copy"))


def reports(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "Pneumothorax_reports.csv", dtype=str)


def direct_positives(root: Path) -> dict[str, int]:
    """Positive images per task straight from the three CSVs, independently of the loader."""
    frame = reports(root)
    return {
        "Pneumothorax": frame.loc[frame["EncodedPixels"] != "-1", "SOPInstanceUID"].nunique(),
        "Chest tube": pd.read_csv(root / "chest_tube.csv", dtype=str)["anon_SOPUID"].nunique(),
        "Rib fracture": pd.read_csv(root / "acute_rib_fracture.csv", dtype=str)["anon_SOPUID"].nunique(),
    }


def test_counts_match_direct_count_of_csvs(candid_root):
    _, data = load_benchmark("candid-ptx", candid_root, {})
    n_images = reports(candid_root)["SOPInstanceUID"].nunique()
    assert len(data.samples) == n_images
    counts = data.label_counts()["binary"].set_index("task")
    assert counts["positive"].to_dict() == direct_positives(candid_root)
    assert (counts["positive"] + counts["negative"]).eq(n_images).all() and counts["unknown"].eq(0).all()
    assert set(data.samples["split"]) == {POOL}
    labels = data.labels()
    assert labels.dtype == np.float32 and set(np.unique(labels)) <= {0.0, 1.0}


def test_several_pneumothorax_rows_count_once(candid_root):
    frame = reports(candid_root)
    several = frame[frame["EncodedPixels"] != "-1"]["SOPInstanceUID"].value_counts()
    assert (several > 1).any()  # the fixture has images with two pneumothoraces
    _, data = load_benchmark("candid-ptx", candid_root, {})
    by_id = data.samples.set_index("image_id")
    assert (by_id.loc[several.index, "Pneumothorax"] == 1).all()
    assert any("several pneumothorax rows" in note for note in data.notes)


def test_patient_ids_are_the_filename_prefix(candid_root):
    frame = reports(candid_root).drop_duplicates("SOPInstanceUID")
    expected = dict(zip(frame["SOPInstanceUID"], frame["filename"].str.split("_").str[0]))
    _, data = load_benchmark("candid-ptx", candid_root, {})
    assert dict(zip(data.samples["image_id"], data.samples["patient_id"])) == expected
    assert data.samples["patient_id"].nunique() == 30 < len(data.samples)
    _, per_image = load_benchmark("candid-ptx", candid_root, {"patient_id": "image_id"})
    assert (per_image.samples["patient_id"] == per_image.samples["image_id"]).all()


def test_random_split_is_by_patient(candid_root):
    _, data = load_benchmark("candid-ptx", candid_root, {})
    manifest = seed_splits(data.samples, SPEC.name, 0, SPEC.split)
    per_patient = manifest.groupby("patient_id")["split"].nunique()
    assert per_patient.max() == 1
    patients = manifest.drop_duplicates("patient_id")["split"].value_counts()
    assert patients.to_dict() == {"train": 18, "val": 6, "test": 6}


def test_default_split_is_rad_dino_five_fold_cross_validation(candid_root):
    """RAD-DINO Table 1b: seed k tests on fold k; over the 5 seeds every patient is tested exactly once; a quarter of
    the other patients validate (60/20/20 per fold), never sharing a patient with train or test."""
    _, data = load_benchmark("candid-ptx", candid_root, {})
    manifests = [seed_splits(data.samples, SPEC.name, seed, SPEC.split) for seed in range(SPEC.seeds)]
    patients = sorted(data.samples["patient_id"].astype(str).unique())
    tested = [sorted(set(m.loc[m["split"] == "test", "patient_id"].astype(str))) for m in manifests]
    assert sorted(p for fold in tested for p in fold) == patients  # each patient in exactly one test fold
    for manifest, test in zip(manifests, tested):
        per_patient = manifest.groupby("patient_id")["split"].agg(set)
        assert all(len(s) == 1 for s in per_patient)  # patient-disjoint
        split = per_patient.map(lambda s: next(iter(s)))
        rest = len(patients) - len(test)
        assert len(test) in (len(patients) // 5, -(-len(patients) // 5))
        assert (split == "val").sum() == round(rest / 4) and (split == "train").sum() == rest - round(rest / 4)
    vals = [set(m.loc[m["split"] == "val", "patient_id"]) for m in manifests]
    assert len({frozenset(v) for v in vals}) == SPEC.seeds  # one draw per fold
    with pytest.raises(DataError, match="at most --seeds 5"):
        seed_splits(data.samples, SPEC.name, 5, SPEC.split)


def test_fixed_test_option_shares_one_test_set(candid_root):
    """`--split scheme=random`: the 60/20/20 split with one test set for every seed."""
    _, data = load_benchmark("candid-ptx", candid_root, {})
    spec = with_split(SPEC, {"scheme": "random"})
    tests = {frozenset(seed_splits(data.samples, spec.name, s, spec.split).query("split == 'test'")["patient_id"])
             for s in range(3)}
    assert len(tests) == 1 and spec.split.fractions == (0.6, 0.2, 0.2)
    with pytest.raises(Exception, match="--split for benchmark 'candid-ptx'"):
        with_split(SPEC, {"schema": "random"})


def test_run_with_split_option_records_the_fixed_test_split(candid_root, tmp_path):
    """`cxrbench run --split scheme=random`: one test set for every seed, and the run records the split it used."""
    result = CliRunner().invoke(app, ["run", "candid-ptx", "--encoder", "pixels", "--head", "logistic", "--data-root",
                                      str(candid_root), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                                      "--seeds", "2", "--bootstrap", "20", "--split", "scheme=random"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out/candid-ptx/pixels/logistic"
    manifest = pd.read_parquet(folder / "splits.parquet")
    tests = [set(part.loc[part["split"] == "test", "patient_id"]) for _, part in manifest.groupby("seed")]
    assert tests[0] == tests[1]
    identity = json.loads((folder / "metrics.json").read_text())["run_identity"]
    assert identity["split"]["scheme"] == "random" and identity["split"]["fractions"] == [0.6, 0.2, 0.2]
    result = CliRunner().invoke(app, ["run", "candid-ptx", "--encoder", "pixels", "--data-root", str(candid_root),
                                      "--split", "scheme=fixed"])
    assert result.exit_code == 2 and "--split for benchmark 'candid-ptx'" in result.output


def test_images_are_jpegs_that_decode(candid_root):
    _, data = load_benchmark("candid-ptx", candid_root, {})
    assert all(path.endswith(".jpg") for path in data.samples["path"])
    image = read_image(data.samples["path"].iloc[0])
    assert image.shape == (32, 32) and 0.0 <= image.min() < image.max() <= 1.0


def test_images_named_by_the_bare_sop_uid_may_be_dicom(candid_copy):
    """The release's file extension is not confirmed: dataset/<SOPInstanceUID> without suffix, as DICOM, also loads."""
    rng = np.random.default_rng(0)
    for path in sorted((candid_copy / "dataset").glob("*.jpg"))[:5]:
        _write_dicom(path.with_suffix(""), read_image(path), {"id": "X", "sex": "F", "age": 50}, rng)
        path.unlink()
    _, data = load_benchmark("candid-ptx", candid_copy, {})
    bare = [p for p in data.samples["path"] if not p.endswith(".jpg")]
    assert len(bare) == 5
    assert read_image(bare[0]).shape == (32, 32)


def test_data_check_prints_direct_counts(candid_root):
    result = CliRunner().invoke(app, ["data", "check", "candid-ptx", "--data-root", str(candid_root)])
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    for task, positive in direct_positives(candid_root).items():
        assert any(line.startswith(f"{POOL} {task} {positive} ") for line in lines), (task, positive)


def test_data_check_warns_of_a_task_that_run_would_refuse(candid_copy):
    header = (candid_copy / "chest_tube.csv").read_text().splitlines()[0]
    (candid_copy / "chest_tube.csv").write_text(header + "\n")  # no chest tube anywhere
    result = CliRunner().invoke(app, ["data", "check", "candid-ptx", "--data-root", str(candid_copy)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "warning: task 'Chest tube' has no positive example in the train split" in flat
    assert "warning: task 'Pneumothorax'" not in flat


def test_published_columns_map_every_task():
    published = SPEC.published
    assert published.task_columns == {"Pneumothorax": "PTX_auprc", "Chest tube": "chest_tube_auprc",
                                      "Rib fracture": "rib_fracture_auprc"}
    assert published.encoders["rad-dino"] == "RAD-DINO" and SPEC.metrics == ("auprc",)
    assert (SPEC.split.scheme, SPEC.split.folds, SPEC.split.val_fraction) == ("kfold", 5, 0.25)


def test_relative_rle_round_trip():
    mask = np.zeros((6, 5), dtype=bool)
    mask[1:3, 2] = mask[4, 4] = True
    flat = np.zeros(30, dtype=bool)
    position = 0
    values = [int(v) for v in encode_relative_rle(mask).split()]
    for gap, length in zip(values[0::2], values[1::2]):
        position += gap
        flat[position:position + length] = True
        position += length
    assert (flat.reshape(5, 6).T == mask).all()


# ---------------------------------------------------------------------------------------------- bad input


def _edit_reports(root: Path, edit) -> pd.DataFrame:
    frame = reports(root)
    edit(frame)
    frame.to_csv(root / "Pneumothorax_reports.csv", index=False)
    return frame


def test_empty_mask_names_file_row_and_column(candid_copy):
    _edit_reports(candid_copy, lambda f: f.__setitem__("EncodedPixels", f["EncodedPixels"].mask(f.index == 7, "")))
    with pytest.raises(DataError, match=r"Pneumothorax_reports\.csv, row 9 \(image .*\), column 'EncodedPixels': is empty\. .*-1"):
        load_benchmark("candid-ptx", candid_copy, {})


def test_malformed_rle_is_refused(candid_copy):
    _edit_reports(candid_copy, lambda f: f.__setitem__("EncodedPixels", f["EncodedPixels"].mask(f.index == 3, "12 34 x")))
    with pytest.raises(DataError, match=r"row 5 .*'EncodedPixels': is '12 34 x', neither -1 nor pairs"):
        load_benchmark("candid-ptx", candid_copy, {})


def test_image_with_two_patients_is_refused(candid_copy):
    frame = reports(candid_copy)
    twice = frame["SOPInstanceUID"].duplicated(keep="first")
    row = int(twice.to_numpy().nonzero()[0][0])
    frame.loc[row, "filename"] = "P9999_1"
    frame.to_csv(candid_copy / "Pneumothorax_reports.csv", index=False)
    with pytest.raises(DataError, match=rf"row {row + 2} .*column 'filename': gives patient 'P9999' where row {row + 1} gives"):
        load_benchmark("candid-ptx", candid_copy, {})


def test_missing_column_names_the_closest(candid_copy):
    frame = reports(candid_copy).rename(columns={"EncodedPixels": "EncodedPixel"})
    frame.to_csv(candid_copy / "Pneumothorax_reports.csv", index=False)
    with pytest.raises(DataError, match=r"has no column 'EncodedPixels' \(found 'EncodedPixel'"):
        load_benchmark("candid-ptx", candid_copy, {})


def test_missing_image_is_reported(candid_copy):
    victim = sorted((candid_copy / "dataset").glob("*.jpg"))[3]
    victim.unlink()
    with pytest.raises(DataError, match=rf"(?s)1 of \d+ CANDID-PTX images .* missing .*{victim.stem}"):
        load_benchmark("candid-ptx", candid_copy, {})


def test_missing_finding_csv_and_renamed_release(candid_copy):
    expected = direct_positives(candid_copy)["Rib fracture"]
    (candid_copy / "acute_rib_fracture.csv").rename(candid_copy / "Rib_fracture_mask_rle.csv")
    with pytest.raises(DataError, match=r"acute_rib_fracture\.csv does not exist"):
        load_benchmark("candid-ptx", candid_copy, {})
    _, data = load_benchmark("candid-ptx", candid_copy, {"rib_fracture_csv": "Rib_fracture_mask_rle.csv"})
    assert data.label_counts()["binary"].set_index("task").loc["Rib fracture", "positive"] == expected


def test_finding_rows_outside_the_reports_and_minus_one_masks(candid_copy):
    tubes = pd.read_csv(candid_copy / "chest_tube.csv", dtype=str)
    extra = pd.DataFrame([{"anon_SOPUID": "9.9.9", "annotation_ref": "X", "mask_rle": "1 2"},
                          {"anon_SOPUID": reports(candid_copy)["SOPInstanceUID"].iloc[0], "annotation_ref": "Y", "mask_rle": "-1"}])
    pd.concat([tubes, extra]).to_csv(candid_copy / "chest_tube.csv", index=False)
    _, data = load_benchmark("candid-ptx", candid_copy, {})
    assert "9.9.9" not in set(data.samples["image_id"])
    assert any("not in Pneumothorax_reports.csv and are ignored" in note for note in data.notes)
    assert any("with mask -1 do not count" in note for note in data.notes)


def test_unknown_patient_id_option(candid_root):
    with pytest.raises(DataError, match="patient_id must be one of"):
        load_benchmark("candid-ptx", candid_root, {"patient_id": "dicom"})
