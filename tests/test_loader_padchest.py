"""The PadChest lateral loader: lateral filter, balanced negatives, counts (also on the real BIMCV CSV), bad input."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.data.padchest.loader import padchest_lateral_labels
from cxrbench.data.padchest.synthetic import PADCHEST_CSV, write_synthetic_padchest
from cxrbench.data.splits import POOL, seed_splits
from cxrbench.errors import DataError
from cxrbench.registry import benchmark_spec
from cxrbench.study import load_benchmark

SPEC = benchmark_spec("padchest-lateral")
TASK_LABELS = SPEC.dataset["task_labels"]
PAPER_N_TEST = {"Vertebral degenerative changes": 373, "Pleural effusion": 542, "Costophrenic angle blunting": 503}


@pytest.fixture(scope="module")
def padchest_root(tmp_path_factory) -> Path:
    return write_synthetic_padchest(tmp_path_factory.mktemp("padchest") / "padchest", patients=30, size=32, seed=3)


@pytest.fixture
def padchest_copy(padchest_root, tmp_path) -> Path:
    return Path(shutil.copytree(padchest_root, tmp_path / "copy"))


@pytest.fixture(scope="module")
def real_csv_root(tmp_path_factory) -> Path:
    """A PadChest-layout folder holding the real labels CSV that torchxrayvision ships (no images)."""
    root = tmp_path_factory.mktemp("padchest-real")
    source = resources.files("torchxrayvision") / "data" / f"{PADCHEST_CSV}.gz"
    (root / f"{PADCHEST_CSV}.gz").symlink_to(Path(str(source)))
    return root


def lateral_positives(csv: Path) -> dict[str, set[str]]:
    """Lateral images per task, by a regular expression on the Labels text (independent of the loader's parsing)."""
    frame = pd.read_csv(csv, dtype=str, usecols=["ImageID", "Projection", "Labels"])
    lateral = frame[frame["Projection"] == "L"]
    return {task: set(lateral.loc[lateral["Labels"].str.contains(rf"'\s*{label}'", na=False), "ImageID"])
            for task, label in TASK_LABELS.items()}


def lateral_ids(csv: Path) -> list[str]:
    frame = pd.read_csv(csv, dtype=str, usecols=["ImageID", "Projection"])
    return frame.loc[frame["Projection"] == "L", "ImageID"].tolist()


def test_balanced_counts_match_direct_count(padchest_root):
    _, data = load_benchmark("padchest-lateral", padchest_root, {})
    frame = pd.read_csv(padchest_root / PADCHEST_CSV, dtype=str)
    lateral = frame[frame["Projection"] == "L"]
    for task, positives in lateral_positives(padchest_root / PADCHEST_CSV).items():
        values = data.samples.set_index("image_id")[task]
        assert set(values.index[values == 1]) == positives
        negatives = set(values.index[values == 0])
        assert len(negatives) == len(positives) > 0
        assert negatives <= set(lateral["ImageID"]) - positives  # lateral images without the finding
    assert set(data.samples["image_id"]) <= set(lateral["ImageID"])  # frontal images never appear
    assert data.labels().dtype == np.float32 and set(data.samples["split"]) == {POOL}


def test_loculated_effusion_is_not_pleural_effusion(padchest_root):
    frame = pd.read_csv(padchest_root / PADCHEST_CSV, dtype=str)
    loculated = frame.loc[frame["Labels"].str.contains("loculated", na=False) & (frame["Projection"] == "L"), "ImageID"]
    assert len(loculated)
    _, data = load_benchmark("padchest-lateral", padchest_root, {})
    values = data.samples.set_index("image_id")["Pleural effusion"]
    assert not (values.reindex(loculated) == 1).any()


def test_patients_and_demographics_come_from_the_csv(padchest_root):
    frame = pd.read_csv(padchest_root / PADCHEST_CSV, dtype={"PatientID": str}).set_index("ImageID")
    _, data = load_benchmark("padchest-lateral", padchest_root, {})
    samples = data.samples.set_index("image_id")
    assert (samples["patient_id"] == frame.loc[samples.index, "PatientID"]).all()
    assert (samples["sex"] == frame.loc[samples.index, "PatientSex_DICOM"]).all()
    age = frame.loc[samples.index, "StudyDate_DICOM"] // 10000 - frame.loc[samples.index, "PatientBirth"]
    assert np.allclose(samples["age_years"], age)
    manifest = seed_splits(data.samples, SPEC.name, 0, SPEC.split)
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1


def test_negatives_are_reproducible_and_seeded(padchest_root):
    _, first = load_benchmark("padchest-lateral", padchest_root, {})
    _, again = load_benchmark("padchest-lateral", padchest_root, {})
    pd.testing.assert_frame_equal(first.samples, again.samples)
    _, other = load_benchmark("padchest-lateral", padchest_root, {"negative_seed": 7})
    assert not first.samples.set_index("image_id").equals(other.samples.set_index("image_id"))


def test_gzipped_csv_and_16_bit_png(tmp_path):
    root = write_synthetic_padchest(tmp_path / "gz", patients=12, size=32, seed=4, compress=True)
    assert not (root / PADCHEST_CSV).exists()
    _, data = load_benchmark("padchest-lateral", root, {})
    path = Path(data.samples["path"].iloc[0])
    assert path.parent.parent == root and path.suffix == ".png"
    image = read_image(path)
    assert image.shape == (32, 32) and len(np.unique(image)) > 256  # 16-bit precision survives


def test_data_check_prints_direct_counts(padchest_root):
    result = CliRunner().invoke(app, ["data", "check", "padchest-lateral", "--data-root", str(padchest_root)])
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    for task, positives in lateral_positives(padchest_root / PADCHEST_CSV).items():
        n = len(positives)
        assert any(line.startswith(f"{POOL} {task} {n} {n} ") for line in lines), (task, n)


def test_real_csv_lateral_positives_match_a_direct_count(real_csv_root):
    expected = lateral_positives(real_csv_root / f"{PADCHEST_CSV}.gz")
    assert {t: len(v) for t, v in expected.items()} == {
        "Vertebral degenerative changes": 1910, "Pleural effusion": 2899, "Costophrenic angle blunting": 2503}
    frame, notes = padchest_lateral_labels(real_csv_root, SPEC, {"exclude_images": []})
    samples = frame.set_index("image_id")
    for task, positives in expected.items():
        assert set(samples.index[samples[task] == 1]) == positives
        assert int((samples[task] == 0).sum()) == len(positives)
        # about a tenth of the balanced set is tested, as in the paper's N test (patients, not images, are split)
        assert abs(0.1 * 2 * len(positives) - PAPER_N_TEST[task]) / PAPER_N_TEST[task] < 0.1
    assert any("24 lateral image(s) without Labels" in note for note in notes)
    # the spec's known-bad images are real lateral images (one of them positive for PE and CAB)
    excluded = set(SPEC.dataset["exclude_images"])
    assert excluded <= set(samples.index) | set(lateral_ids(real_csv_root / f"{PADCHEST_CSV}.gz"))
    assert len(excluded & expected["Pleural effusion"]) == 1


# ---------------------------------------------------------------------------------------------- bad input


def _edit(root: Path, edit) -> pd.DataFrame:
    frame = pd.read_csv(root / PADCHEST_CSV, dtype=str, index_col=0)
    edit(frame)
    frame.to_csv(root / PADCHEST_CSV)
    return frame


def _lateral_row(root: Path, k: int = 2) -> int:
    frame = pd.read_csv(root / PADCHEST_CSV, dtype=str)
    return int(frame.index[(frame["Projection"] == "L") & frame["Labels"].notna()][k])


def test_malformed_labels_name_file_row_and_column(padchest_copy):
    row = _lateral_row(padchest_copy)
    _edit(padchest_copy, lambda f: f.__setitem__("Labels", f["Labels"].mask(f.index == f.index[row], "['pleural effusion', ")))
    with pytest.raises(DataError, match=rf"{PADCHEST_CSV}, row {row + 2} \(ImageID .*\), column 'Labels': .*not a list"):
        load_benchmark("padchest-lateral", padchest_copy, {})


def test_labels_are_never_evaluated_as_code(padchest_copy, tmp_path):
    marker = tmp_path / "pwned"
    row = _lateral_row(padchest_copy)
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    _edit(padchest_copy, lambda f: f.__setitem__("Labels", f["Labels"].mask(f.index == f.index[row], code)))
    with pytest.raises(DataError, match=rf"row {row + 2} .*'Labels'"):
        load_benchmark("padchest-lateral", padchest_copy, {})
    assert not marker.exists()


def test_missing_image_error_and_drop_option(padchest_copy):
    _, data = load_benchmark("padchest-lateral", padchest_copy, {})
    victim = Path(data.samples["path"].iloc[0])
    victim.unlink()
    with pytest.raises(DataError, match=rf"(?s)1 of \d+ selected PadChest images are missing.*{victim.name}.*missing_images: drop"):
        load_benchmark("padchest-lateral", padchest_copy, {})
    _, dropped = load_benchmark("padchest-lateral", padchest_copy, {"missing_images": "drop"})
    assert victim.name not in set(dropped.samples["image_id"])
    assert any("whose file is missing were dropped" in note for note in dropped.notes)
    for task in SPEC.tasks:  # still balanced after the drop
        values = dropped.samples[task]
        assert (values == 1).sum() == (values == 0).sum()


def test_excluded_images_are_left_out(padchest_root):
    _, data = load_benchmark("padchest-lateral", padchest_root, {})
    victim = data.samples["image_id"].iloc[0]
    _, fewer = load_benchmark("padchest-lateral", padchest_root, {"exclude_images": [victim]})
    assert victim not in set(fewer.samples["image_id"])


def test_bad_image_dir_names_the_row(padchest_copy):
    _edit(padchest_copy, lambda f: f.__setitem__("ImageDir", f["ImageDir"].mask(f.index == f.index[5], "x")))
    with pytest.raises(DataError, match=r"row 7 .*column 'ImageDir': is 'x', not a folder number"):
        load_benchmark("padchest-lateral", padchest_copy, {})


def test_missing_projection_column(padchest_copy):
    frame = pd.read_csv(padchest_copy / PADCHEST_CSV, dtype=str, index_col=0).rename(columns={"Projection": "Projections"})
    frame.to_csv(padchest_copy / PADCHEST_CSV)
    with pytest.raises(DataError, match=r"has no column 'Projection' \(found 'Projections'"):
        load_benchmark("padchest-lateral", padchest_copy, {})


def test_missing_csv_lists_both_names(tmp_path):
    with pytest.raises(DataError, match=rf"none of {PADCHEST_CSV}, {PADCHEST_CSV}\.gz exists"):
        load_benchmark("padchest-lateral", tmp_path, {})


def test_published_table_c1():
    published = SPEC.published
    assert published.model_column == "encoder" and published.aggregate_column == "agg" and published.scale == 100
    assert published.task_columns == {"Vertebral degenerative changes": "VDC", "Pleural effusion": "PE",
                                      "Costophrenic angle blunting": "CAB"}
    assert SPEC.split.fractions == (0.8, 0.1, 0.1)
