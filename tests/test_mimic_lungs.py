"""MIMIC-CXR lung masks (mimic-lungs) and Chest ImaGenome lung zones (mimic-lung-zones): synthetic releases in their
layouts read back (masks equal the drawn fields, the patient's right on the image's left, zones in the spec's order),
the shared test subjects, bad input named by file, and one run of each benchmark."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.mimic.lungs import split_sides
from cxrbench.data.mimic.synthetic import write_synthetic_mimic_lungs
from cxrbench.data.splits import seed_splits
from cxrbench.errors import DataError
from cxrbench.study import load_benchmark

runner = CliRunner()
ZONES = ["right_upper", "right_mid", "right_lower", "left_upper", "left_mid", "left_lower"]
ZONE_NAMES = ["right upper lung zone", "right mid lung zone", "right lower lung zone", "left upper lung zone",
              "left mid lung zone", "left lower lung zone"]
MASKS = "lung-segment-mimic-cxr/masks"
GRAPHS = "chest-imagenome/silver_dataset/scene_graph"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Treat as read-only (tests that damage it work on a copy)."""
    return write_synthetic_mimic_lungs(tmp_path_factory.mktemp("mimic") / "mimic", patients=24, size=64, seed=0)


@pytest.fixture
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _metadata(root: Path) -> pd.DataFrame:
    with gzip.open(root / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz", "rt") as handle:
        return pd.read_csv(handle, dtype=str).set_index("dicom_id")


def _message(result) -> str:
    return " ".join(result.output.split())


def _drawn(root: Path, dicom_id: str) -> np.ndarray:
    """The mask file as written: the whole lung field."""
    return np.asarray(Image.open(root / MASKS / f"{dicom_id}.png")) > 0


# ------------------------------------------------------------------------------------------------ lungs


def test_lung_masks_are_the_drawn_fields_on_each_images_grid(root):
    spec, data = load_benchmark("mimic-lungs", root, {})
    assert spec.split.scheme == "random" and spec.split.fractions == (0.7, 0.15, 0.15) and spec.split.test == "fixed"
    assert list(spec.target("lungs").structures) == ["left_lung", "right_lung"]
    metadata = _metadata(root)
    masked = sorted(p.stem for p in (root / MASKS).glob("*.png"))
    samples = data.samples
    assert list(samples["image_id"]) == masked and data.synthetic and (samples["split"] == "pool").all()
    assert list(samples["patient_id"]) == list(metadata.loc[masked, "subject_id"])
    assert (metadata.loc[masked, "ViewPosition"] != "LATERAL").all()
    several = 0
    for _, row in samples.iterrows():
        subject, study = metadata.loc[row["image_id"], ["subject_id", "study_id"]]
        assert row["path"] == str(root / "mimic-cxr-jpg/files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
                                  / f"{row['image_id']}.jpg")
        field = _drawn(root, row["image_id"])
        height, width = Image.open(row["path"]).size[::-1]
        mask = data.mask_reader("lungs", row["lungs"])
        assert mask.shape == (2, height, width) and mask.dtype == bool and field.shape == (height, width)
        image_left = np.arange(width)[None, :] < width / 2
        np.testing.assert_array_equal(mask[0], field & ~image_left, err_msg=f"{row['image_id']} left lung")
        np.testing.assert_array_equal(mask[1], field & image_left, err_msg=f"{row['image_id']} right lung")
        several += ndimage.label(field)[1] > 2
    assert several >= 3  # fields whose right lung is in two pieces: the small piece joins its side
    assert len({Image.open(p).size for p in samples["path"]}) == 3  # square, wide and tall images


def test_split_sides_of_fused_fragmented_and_empty_fields():
    field = np.zeros((20, 30), dtype=bool)
    field[4:16, 3:12] = True
    field[4:16, 18:27] = True
    field[9:11, 12:18] = True  # a bridge: one piece, cut at its narrowest column (inside the bridge)
    right, left = split_sides(field)
    assert right[:, :12].sum() == field[:, :12].sum() and left[:, 18:].sum() == field[:, 18:].sum()
    assert not (right & left).any() and np.array_equal(right | left, field)
    field[9:11, 12:18] = False
    field[17:19, 24:27] = True  # a small piece under the left lung (image right) joins it
    right, left = split_sides(field)
    assert left[17:19, 24:27].all() and not right[:, 15:].any()
    empty = np.zeros((5, 5), dtype=bool)
    assert not any(m.any() for m in split_sides(empty))


def test_data_check_counts_both_benchmarks(root):
    metadata = _metadata(root)
    masked = sorted(p.stem for p in (root / MASKS).glob("*.png"))
    result = runner.invoke(app, ["data", "check", "mimic-lungs", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    text = _message(result)
    assert f"{len(masked)} images, {metadata.loc[masked, 'subject_id'].nunique()} patients" in text
    assert f"{len(masked)} file(s) matching '**/*.png'" in text and "image left = right lung" in text
    graphs = {p.name[: -len("_SceneGraph.json")] for p in (root / GRAPHS).glob("*_SceneGraph.json")}
    zoned = [d for d in masked if d in graphs]
    assert 0 < len(zoned) < len(masked)
    result = runner.invoke(app, ["data", "check", "mimic-lung-zones", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    text = _message(result)
    assert f"{len(zoned)} images, {metadata.loc[zoned, 'subject_id'].nunique()} patients" in text
    assert f"{len(masked) - len(zoned)} image(s) with a lung mask but no scene graph are left out" in text


# ------------------------------------------------------------------------------------------------ zones


def test_zones_are_boxes_cut_by_the_lung_of_their_side_in_the_specs_order(root):
    spec, data = load_benchmark("mimic-lung-zones", root, {})
    assert list(spec.target("lung_zones").structures) == ZONES
    for _, row in data.samples.iterrows():
        field = _drawn(root, row["image_id"])
        width = field.shape[1]
        image_left = np.arange(width)[None, :] < width / 2
        graph = json.loads((root / GRAPHS / f"{row['image_id']}_SceneGraph.json").read_text())
        boxes = {o["bbox_name"]: o for o in graph["objects"]}
        zones = data.mask_reader("lung_zones", row["lung_zones"])
        assert zones.shape == (6, *field.shape) and zones.dtype == bool
        for k, name in enumerate(ZONE_NAMES):
            box = np.zeros_like(field)
            o = boxes[name]
            box[o["original_y1"]:o["original_y2"], o["original_x1"]:o["original_x2"]] = True
            side = image_left if name.startswith("right") else ~image_left
            np.testing.assert_array_equal(zones[k], box & field & side, err_msg=f"{row['image_id']} {name}")
        centres = [np.argwhere(z).mean(axis=0) / field.shape for z in zones]  # (row, column) of each zone
        assert all(c[1] < 0.5 for c in centres[:3]) and all(c[1] > 0.5 for c in centres[3:])
        assert centres[0][0] < centres[1][0] < centres[2][0] and centres[3][0] < centres[4][0] < centres[5][0]


def test_zones_share_the_lung_test_subjects(root):
    lung_spec, lungs = load_benchmark("mimic-lungs", root, {})
    _, zones = load_benchmark("mimic-lung-zones", root, {})
    lung_split = seed_splits(lungs.samples, lung_spec.name, 0, lung_spec.split)
    test_subjects = set(lung_split.loc[lung_split["split"] == "test", "patient_id"])
    expected = np.where(zones.samples["patient_id"].isin(test_subjects), "test", "train")
    assert list(zones.samples["split"]) == list(expected)
    assert (zones.samples["split"] == "test").any() and set(zones.samples["image_id"]) < set(lungs.samples["image_id"])


# ------------------------------------------------------------------------------------------------ bad input


def test_a_mask_of_another_size_than_its_image_is_named_when_read(copy):
    _, data = load_benchmark("mimic-lungs", copy, {})
    row = data.samples.iloc[0]
    mask_file = copy / MASKS / f"{row['image_id']}.png"
    field = _drawn(copy, row["image_id"])
    Image.fromarray(field[::2, ::2].astype(np.uint8) * 255).save(mask_file)  # half the size: same field of view
    with pytest.raises(DataError) as caught:
        data.mask_reader("lungs", row["image_id"])
    message = str(caught.value)
    assert str(mask_file) in message and row["path"] in message and "allow_resized_masks=true" in message
    h, w = field.shape
    assert f"is {(h + 1) // 2} x {(w + 1) // 2} px but its image" in message and f"is {h} x {w}" in message
    _, resized = load_benchmark("mimic-lungs", copy, {"allow_resized_masks": True})
    assert resized.mask_reader("lungs", row["image_id"]).shape == (2, (h + 1) // 2, (w + 1) // 2)


def test_an_undecodable_mask_is_named_when_read(copy):
    _, data = load_benchmark("mimic-lungs", copy, {})
    dicom_id = data.samples["image_id"].iloc[1]
    mask_file = copy / MASKS / f"{dicom_id}.png"
    mask_file.write_bytes(mask_file.read_bytes()[:60])  # cut short
    with pytest.raises(DataError, match="Cannot decode the mask") as caught:
        data.mask_reader("lungs", dicom_id)
    assert str(mask_file) in str(caught.value) and "Re-download it" in str(caught.value)


def test_a_missing_zone_is_named_at_load_or_skipped(copy):
    graph_file = sorted((copy / GRAPHS).glob("*_SceneGraph.json"))[2]
    graph = json.loads(graph_file.read_text())
    graph["objects"] = [o for o in graph["objects"] if o["bbox_name"] != "left mid lung zone"]
    graph_file.write_text(json.dumps(graph))
    result = runner.invoke(app, ["data", "check", "mimic-lung-zones", "--data-root", str(copy)])
    assert result.exit_code == 2
    text = _message(result)
    assert str(graph_file) in text and "has no object 'left mid lung zone'" in text and "missing_zones=skip" in text
    _, full = load_benchmark("mimic-lungs", copy, {})
    _, data = load_benchmark("mimic-lung-zones", copy, {"missing_zones": "skip"})
    dicom_id = graph_file.name[: -len("_SceneGraph.json")]
    assert dicom_id not in set(data.samples["image_id"]) and dicom_id in set(full.samples["image_id"])
    assert any("left out (missing_zones: skip)" in note and dicom_id in note for note in data.notes)


def test_a_damaged_scene_graph_or_box_is_named(copy):
    graph_file = sorted((copy / GRAPHS).glob("*_SceneGraph.json"))[0]
    text = graph_file.read_text()
    graph_file.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match="Cannot read the scene graph") as caught:
        load_benchmark("mimic-lung-zones", copy, {})
    assert str(graph_file) in str(caught.value)
    graph = json.loads(text)
    box = next(o for o in graph["objects"] if o["bbox_name"] == "right upper lung zone")
    box["original_x2"] = box["original_x1"]
    graph_file.write_text(json.dumps(graph))
    with pytest.raises(DataError, match=r"object 'right upper lung zone': the box .* is empty") as caught:
        load_benchmark("mimic-lung-zones", copy, {})
    assert str(graph_file) in str(caught.value)


def test_two_masks_of_one_image_and_a_missing_image_are_named(copy):
    _, data = load_benchmark("mimic-lungs", copy, {})
    dicom_id, path = data.samples[["image_id", "path"]].iloc[3]
    rest = copy / MASKS / "rest" / f"{dicom_id}_rest.png"  # the other half of a lung / rest pair
    rest.parent.mkdir()
    shutil.copy(copy / MASKS / f"{dicom_id}.png", rest)
    with pytest.raises(DataError, match="Two lung mask files for image") as caught:
        load_benchmark("mimic-lungs", copy, {})
    assert str(rest) in str(caught.value) and "mask_glob" in str(caught.value)
    _, narrowed = load_benchmark("mimic-lungs", copy, {"mask_glob": "masks/*.png"})
    assert len(narrowed.samples) == len(data.samples)
    Path(path).unlink()
    result = runner.invoke(app, ["data", "check", "mimic-lungs", "--data-root", str(copy), "--dataset-option", "mask_glob=masks/*.png"])
    assert result.exit_code == 2 and path in _message(result) and "MIMIC-CXR-JPG images with a lung mask are missing" in _message(result)


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("benchmark", ["mimic-lungs", "mimic-lung-zones"])
def test_a_run_with_the_pixels_encoder(root, tmp_path, benchmark):
    result = runner.invoke(app, ["run", benchmark, "--encoder", "pixels", "--data-root", str(root), "--out", str(tmp_path / "out"),
                                 "--cache-dir", str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "50",
                                 "--head-param", "epochs=3"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / benchmark / "pixels/seg-linear/metrics.json").read_text())
    structures = ["left_lung", "right_lung"] if benchmark == "mimic-lungs" else ZONES
    assert set(metrics["metrics"]) == {"dice", "hd95"} and set(structures) <= set(metrics["metrics"]["dice"])
