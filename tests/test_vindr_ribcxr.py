"""VinDr-RibCXR rib masks (vindr-ribcxr): polygons from the release's JSON rasterised on each image's grid in the fixed
rib order, the official split with a validation draw per seed, bad polygons / ribs / images named, and one run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import polygon2mask
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.data.splits import seed_splits
from cxrbench.data.vindr.synthetic import RIBS, write_synthetic_vindr_ribcxr
from cxrbench.study import load_benchmark

runner = CliRunner()
BENCH = "vindr-ribcxr"
TRAIN_JSON = Path("data/train/Vindr_RibCXR_train_mask.json")
VAL_JSON = Path("data/val/Vindr_RibCXR_val_mask.json")
ORDER = [f"R{k}" for k in range(1, 11)] + [f"L{k}" for k in range(1, 11)]


@pytest.fixture(scope="module")
def rib_root(tmp_path_factory) -> Path:
    """Treat as read-only."""
    return write_synthetic_vindr_ribcxr(tmp_path_factory.mktemp("ribs") / "VinDr-RibCXR", train=16, test=6, seed=0)


@pytest.fixture
def rib_copy(rib_root, tmp_path) -> Path:
    return Path(shutil.copytree(rib_root, tmp_path / "copy"))


def labels(root: Path, name: Path = TRAIN_JSON) -> dict:
    return json.loads((root / name).read_text())


def save(root: Path, payload: dict, name: Path = TRAIN_JSON) -> None:
    (root / name).write_text(json.dumps(payload))


def message(result) -> str:
    return " ".join(result.output.split())


def drawn(payload: dict, key: str, rib: str, shape: tuple[int, int]) -> np.ndarray:
    """The rib's polygon from the JSON, filled by skimage's polygon2mask ((row, column) vertices)."""
    points = np.array([[p["y"], p["x"]] for p in payload[rib][key]])
    return polygon2mask(shape, points)


# -- the release, read back ----------------------------------------------------------------------------------------
def test_masks_are_the_json_polygons_in_the_fixed_rib_order(rib_root):
    spec, data = load_benchmark(BENCH, rib_root, {})
    assert list(spec.target("ribs").structures) == ORDER == RIBS
    assert spec.split.scheme == "official" and spec.split.val_fraction == 0.1
    samples = data.samples
    assert data.synthetic and (samples["patient_id"] == samples["image_id"]).all()
    assert list(samples["split"]) == ["train"] * 16 + ["test"] * 6
    assert samples["image_id"].iloc[0] == "VinDr_RibCXR_train_000" and samples["image_id"].iloc[16] == "VinDr_RibCXR_val_000"
    assert (samples["ribs:present"] == 1.0).all()
    shapes = set()
    for name, offset in ((TRAIN_JSON, 0), (VAL_JSON, 16)):
        payload = labels(rib_root, name)
        for key, path in list(payload["img"].items())[:4]:  # both image widths in both files
            sample = samples.iloc[offset + int(key)]
            assert Path(sample["path"]) == rib_root / path
            with Image.open(rib_root / path) as image:
                shape = (image.height, image.width)
            masks = data.mask_reader("ribs", sample["ribs"])
            assert masks.shape == (20, *shape) and masks.dtype == bool
            for channel, rib in enumerate(ORDER):
                assert np.array_equal(masks[channel], drawn(payload, key, rib, shape)), (sample["image_id"], rib)
            shapes.add(shape)
    assert shapes == {(96, 80), (96, 72)}  # masks follow each image's own size
    # the order, independently of the generator: R (patient's right) on the image's left, 1 at the top
    masks = data.mask_reader("ribs", "VinDr_RibCXR_train_001")
    centres = np.array([np.argwhere(m).mean(axis=0) for m in masks])  # (row, column)
    assert (centres[:10, 1] < 40).all() and (centres[10:, 1] > 40).all()
    assert (np.diff(centres[:10, 0]) > 0).all() and (np.diff(centres[10:, 0]) > 0).all()
    assert not (masks.sum(axis=0) > 1).any()  # the synthetic ribs do not overlap
    image = read_image(samples["path"].iloc[1])
    assert image[masks.any(axis=0)].mean() > image[~masks.any(axis=0)].mean() + 0.3  # and are drawn where outlined


def test_data_check_prints_the_official_split(rib_root):
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(rib_root)])
    assert result.exit_code == 0, result.output
    assert "22 images, 22 patients" in message(result)
    assert "train (Vindr_RibCXR_train_mask.json) 16, test (Vindr_RibCXR_val_mask.json) 6" in message(result)
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    # split, task, with_mask, unknown, present, empty, images, patients
    assert "train ribs 16 0 16 0 16 16" in lines and "test ribs 6 0 6 0 6 6" in lines


def test_a_tenth_of_the_training_images_validate_drawn_per_seed(rib_root):
    spec, data = load_benchmark(BENCH, rib_root, {})
    drawn_val = []
    for seed in range(4):
        split = seed_splits(data.samples, BENCH, seed, spec.split).set_index("image_id")["split"]
        assert (split == "val").sum() == 2 and (split == "train").sum() == 14  # round(0.1 * 16)
        assert list(split[split == "test"].index) == [f"VinDr_RibCXR_val_{k:03d}" for k in range(6)]
        drawn_val.append(frozenset(split[split == "val"].index))
    assert len(set(drawn_val)) > 1


def test_images_beside_the_label_file_are_found(rib_copy):
    payload = labels(rib_copy)
    payload["img"] = {key: f"elsewhere/{Path(path).name}" for key, path in payload["img"].items()}
    save(rib_copy, payload)
    _, data = load_benchmark(BENCH, rib_copy, {})
    assert data.samples["path"].iloc[0] == str(rib_copy / "data/train/img/VinDr_RibCXR_train_000.png")


def test_a_vertex_within_a_pixel_outside_is_clipped(rib_copy):
    payload = labels(rib_copy)
    payload["L1"]["0"][5]["x"] = 80 - 1 + 0.6  # the image is 80 columns wide: 0.6 px past the last pixel centre
    payload["R1"]["0"][0]["y"] = -0.9
    save(rib_copy, payload)
    _, data = load_benchmark(BENCH, rib_copy, {})
    assert "2 vertex(es) within 1 px outside their image were clipped onto it" in data.notes
    masks = data.mask_reader("ribs", "VinDr_RibCXR_train_000")
    for channel, rib in ((10, "L1"), (0, "R1")):
        points = np.array([[p["y"], p["x"]] for p in payload[rib]["0"]])
        clipped = np.stack([points[:, 0].clip(0, 95), points[:, 1].clip(0, 79)], axis=1)
        assert np.array_equal(masks[channel], polygon2mask((96, 80), clipped))
        assert masks[channel].any()


# -- bad input, refused at load ----------------------------------------------------------------------------------
def check_refused(root: Path, *expected: str, options: tuple[str, ...] = ()) -> str:
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(root), *options])
    assert result.exit_code == 2, result.output
    text = message(result)
    for part in expected:
        assert part in text, (part, text)
    assert "Traceback" not in text
    return text


def test_a_vertex_beyond_the_tolerance_is_refused(rib_copy):
    payload = labels(rib_copy)
    payload["L1"]["1"][4]["x"] = 80 + 1.5  # image 1 is 80 columns wide: 2.5 px past the last pixel centre (79)
    save(rib_copy, payload)
    check_refused(rib_copy, f"{rib_copy / TRAIN_JSON}, image VinDr_RibCXR_train_001 (entry \"1\"), rib L1: vertex 4 (x=81.5,",
                  "lies 2.5 px outside the 96 x 80 image", "up to 1 px beyond is clipped", "fix the vertex")


def test_a_polygon_of_two_vertices_is_refused(rib_copy):
    payload = labels(rib_copy, VAL_JSON)
    payload["R4"]["1"] = payload["R4"]["1"][:2]
    save(rib_copy, payload, VAL_JSON)
    check_refused(rib_copy, f"{rib_copy / VAL_JSON}, image VinDr_RibCXR_val_001 (entry \"1\"), rib R4: the polygon has 2 "
                            "vertex(es); a rib outline needs 3 or more. Redraw the rib")


def test_a_vertex_that_is_not_a_number_is_refused(rib_copy):
    payload = labels(rib_copy)
    payload["R2"]["3"][1] = {"x": "left", "y": 3}
    save(rib_copy, payload)
    check_refused(rib_copy, "image VinDr_RibCXR_train_003 (entry \"3\"), rib R2: vertex 1 is",
                  'not {"x": <number>, "y": <number>}')


@pytest.mark.parametrize("absent", ["drop", "None", None, []])
def test_a_rib_missing_from_an_image_is_refused_unless_scored_empty(rib_copy, absent):
    payload = labels(rib_copy)
    if absent == "drop":
        del payload["R7"]["5"]
    else:
        payload["R7"]["5"] = absent
    save(rib_copy, payload)
    where = f"{rib_copy / TRAIN_JSON}, image VinDr_RibCXR_train_005 (entry \"5\"), rib R7: the rib is missing"
    # the official loader reads only the string "None" as an empty rib: so does the default; `error` refuses it too
    refusing = ("--dataset-option", "missing_ribs=error") if absent == "None" else ()
    check_refused(rib_copy, where, "restore the polygon", "--dataset-option missing_ribs=empty", options=refusing)
    _, data = load_benchmark(BENCH, rib_copy, {} if absent == "None" else {"missing_ribs": "empty"})
    masks = data.mask_reader("ribs", "VinDr_RibCXR_train_005")
    assert not masks[6].any() and masks[np.arange(20) != 6].any(axis=(1, 2)).all()
    mode = "official" if absent == "None" else "empty"
    assert f"1 rib(s) not outlined on their image are scored as absent there (missing_ribs: {mode})" in data.notes


def test_a_rib_missing_from_the_label_file_is_refused(rib_copy):
    payload = labels(rib_copy)
    payload["R10 "] = payload.pop("R10")  # a key the benchmark does not know
    save(rib_copy, payload)
    check_refused(rib_copy, f"{rib_copy / TRAIN_JSON}: rib R10 is missing for every image",
                  "image VinDr_RibCXR_train_000 (entry \"0\") has none", "name the benchmark's structures after its keys")


def test_a_missing_image_file_is_named(rib_copy):
    missing = rib_copy / "data/val/img/VinDr_RibCXR_val_004.png"
    missing.unlink()
    check_refused(rib_copy, f"1 image file(s) listed in {rib_copy / VAL_JSON} are missing",
                  f"VinDr_RibCXR_val_004 (entry \"4\"): {missing}", "Complete the download")


def test_unreadable_and_escaping_label_files_are_named(rib_copy):
    (rib_copy / VAL_JSON).write_text('{"img": {"0": ')
    check_refused(rib_copy, f"Cannot parse {rib_copy / VAL_JSON} as JSON")
    payload = labels(rib_copy)
    payload["img"]["1"] = "../outside.png"
    save(rib_copy, payload)
    check_refused(rib_copy, f"{rib_copy / TRAIN_JSON}, entry \"1\" of \"img\": '../outside.png' is not a relative image "
                            "path inside the data root")


# -- a run ---------------------------------------------------------------------------------------------------------
def test_run_with_the_pixels_encoder_scores_every_rib(rib_root, tmp_path):
    result = runner.invoke(app, ["run", BENCH, "--encoder", "pixels", "--data-root", str(rib_root), "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1",
                                 "--bootstrap", "50", "--head-param", "epochs=3"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / BENCH / "pixels" / "seg-linear"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"dice", "hd95"}
    for values in metrics["metrics"].values():
        assert set(ORDER) <= set(values) and all(values[rib]["mean"] is not None for rib in ORDER)
    stored = pd.read_parquet(folder / "predictions.parquet")
    assert len(stored) == 6 * 20 and set(stored["task"]) == set(ORDER) and (stored["label"] == 1.0).all()
