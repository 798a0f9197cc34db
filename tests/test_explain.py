"""RayDINO-style explainability: box geometry through the preprocessing, the half-patch hit rule, macro accuracy,
PNG overlays, annotation-CSV errors, and `cxrbench explain` end to end on a synthetic VinDr-CXR folder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.vindr.boxes import read_boxes, read_test_boxes
from cxrbench.encoders.geometry import CLIPPED, CROPPED_AWAY, EMPTY, KEPT, InputGeometry, PatchGrid
from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.errors import CxrbenchError, DataError
from cxrbench.evaluations.localisation import LocalisationEvaluation
from cxrbench.explain.hits import argmax_cells, finding_accuracy, macro_accuracy, score_boxes
from cxrbench.explain.runner import run_explain
from cxrbench.runs.pipeline import EncoderOptions, MachineOptions, evaluate
from cxrbench.specs import PreprocessSpec
from cxrbench.study import StudyOptions

SHORT_CROP = PreprocessSpec(size=224, resize="shortest_edge", crop=224, interpolation="nearest", antialias=False, channels=1)
SQUARE = PreprocessSpec(size=32, resize="square", interpolation="nearest", antialias=False, channels=1)
LETTERBOX = PreprocessSpec(size=224, resize="square", letterbox=320, interpolation="nearest", antialias=False,
                           channels=1, quantize_bits=8)


# ---------------------------------------------------------------------------------------------------------------
# geometry: hand-computed maps


def test_shortest_edge_crop_floor_and_round_on_an_odd_margin():
    # 300 x 503 (H x W): short edge 300 -> 224, long edge int(224 * 503 / 300) = int(375.57) = 375; the crop's
    # horizontal margin is 375 - 224 = 151: floor puts the crop at 75, round at round(75.5) = 76 (half to even).
    floor = InputGeometry.from_spec(SHORT_CROP, 300, 503)
    rnd = InputGeometry.from_spec(dataclasses.replace(SHORT_CROP, crop_offset="round"), 300, 503)
    assert floor.input == rnd.input == (224, 224)
    box = [300.0, 30.0, 480.0, 150.0]
    sx, sy = 375 / 503, 224 / 300
    expect_floor = [300 * sx - 75, 30 * sy, 480 * sx - 75, 150 * sy]
    expect_round = [300 * sx - 76, 30 * sy, 480 * sx - 76, 150 * sy]
    np.testing.assert_allclose(floor.to_input([box])[0], expect_floor)
    np.testing.assert_allclose(rnd.to_input([box])[0], expect_round)
    np.testing.assert_allclose(floor.to_input([box])[0], [148.6580517, 22.4, 282.8528827, 112.0], atol=1e-3)
    # x_max 282.9 lies beyond the 224-px crop: clipped, not dropped
    mapped, status = floor.map_boxes([box])
    assert status[0] == CLIPPED and mapped[0, 2] == 224.0
    # round trip back to the original pixels
    np.testing.assert_allclose(floor.to_original(floor.to_input([box]))[0], box)


def test_shortest_edge_crop_on_a_portrait_image_crops_vertically():
    geometry = InputGeometry.from_spec(SHORT_CROP, 503, 300)
    np.testing.assert_allclose(geometry.to_input([[30.0, 300.0, 150.0, 480.0]])[0],
                               [30 * 224 / 300, 300 * 375 / 503 - 75, 150 * 224 / 300, 480 * 375 / 503 - 75])


def test_boxes_in_a_cropped_away_margin_are_excluded_and_partial_ones_clipped():
    geometry = InputGeometry.from_spec(SHORT_CROP, 300, 503)  # visible x: original [75, 299] * 503 / 375 ~ [100.6, 401.0]
    boxes = [[0.0, 10.0, 90.0, 50.0], [90.0, 10.0, 120.0, 50.0], [150.0, 10.0, 250.0, 50.0], [420.0, 0.0, 503.0, 300.0],
             [200.0, 40.0, 200.0, 90.0]]
    mapped, status = geometry.map_boxes(boxes)
    assert list(status) == [CROPPED_AWAY, CLIPPED, KEPT, CROPPED_AWAY, EMPTY]
    assert np.isnan(mapped[0]).all() and np.isnan(mapped[3]).all() and np.isnan(mapped[4]).all()
    np.testing.assert_allclose(mapped[1], [0.0, 10 * 224 / 300, 120 * 375 / 503 - 75, 50 * 224 / 300])


def test_square_resize_scales_each_axis_on_its_own():
    geometry = InputGeometry.from_spec(SQUARE, 400, 200)
    np.testing.assert_allclose(geometry.to_input([[50.0, 100.0, 150.0, 300.0]])[0], [8.0, 8.0, 24.0, 24.0])


def test_letterbox_then_square_resize():
    # 1000 x 800 (H x W): ratio 320 / 1000, pasted 256 x 320 at x = (320 - 256) // 2 = 32; then 320 -> 224 (x 0.7)
    geometry = InputGeometry.from_spec(LETTERBOX, 1000, 800)
    np.testing.assert_allclose(geometry.to_input([[0.0, 0.0, 800.0, 1000.0]])[0], [22.4, 0.0, 201.6, 224.0])
    np.testing.assert_allclose(geometry.to_input([[100.0, 200.0, 500.0, 700.0]])[0],
                               [(100 * 0.32 + 32) * 0.7, 200 * 0.32 * 0.7, (500 * 0.32 + 32) * 0.7, 700 * 0.32 * 0.7])
    # 700 x 1001: int(700 * 320 / 1001) = 223 rows, pasted at y = (320 - 223) // 2 = 48 (truncation, as PIL's caller)
    wide = InputGeometry.from_spec(LETTERBOX, 700, 1001)
    np.testing.assert_allclose(wide.y.scale, 223 / 700 * 0.7)
    np.testing.assert_allclose(wide.y.offset, 48 * 0.7)


def test_a_crop_larger_than_the_resized_image_pads_first():
    spec = PreprocessSpec(size=20, resize="shortest_edge", crop=32, interpolation="nearest", antialias=False, channels=1)
    geometry = InputGeometry.from_spec(spec, 40, 50)  # -> 20 x 25, padded by (7, 6) on the left/top
    np.testing.assert_allclose(geometry.to_input([[10.0, 10.0, 30.0, 30.0]])[0], [10 * 0.5 + 3, 10 * 0.5 + 6, 30 * 0.5 + 3, 30 * 0.5 + 6])


@pytest.mark.parametrize("spec, shape, box", [
    (SHORT_CROP, (300, 503), (300, 30, 480, 150)),
    (dataclasses.replace(SHORT_CROP, crop_offset="round"), (300, 503), (300, 30, 480, 150)),
    (dataclasses.replace(SHORT_CROP, crop_offset="round"), (503, 300), (30, 100, 150, 200)),
    (SQUARE, (400, 200), (50, 100, 150, 300)),
    (LETTERBOX, (700, 1001), (100, 200, 500, 600)),
])
def test_geometry_matches_the_preprocessor_on_a_painted_box(spec, shape, box):
    """Paint the box white, run the real Preprocessor, and find the white pixels where the geometry says."""
    image = np.zeros(shape, np.float32)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 1.0
    out = Preprocessor(spec)(image)[0].numpy()
    ys, xs = np.nonzero(out > 0.5)
    mapped, _ = InputGeometry.from_spec(spec, *shape).map_boxes([box])
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], mapped[0], atol=1.0)


def test_patch_grid_must_fit_the_input():
    assert PatchGrid.for_input(14, 14, 16, (224, 224)).cell_box(1, 2) == (32, 16, 48, 32)
    with pytest.raises(CxrbenchError, match="patch grid"):
        PatchGrid.for_input(15, 14, 16, (224, 224))
    grid = PatchGrid(4, 4, 16)
    assert grid.cells([40, 0, 60, 100])[:, 2].all() and not grid.cells([40.5, 0, 60, 100])[:, 2].any()


# ---------------------------------------------------------------------------------------------------------------
# the hit rule and the accuracies


def _peaked(n, t, h, w, cells):
    """Attention maps [n, t, h, w] peaked at cells[(i, j)] = (row, col)."""
    maps = np.full((n, t, h, w), 0.1 / (h * w - 1), np.float32)
    for (i, j), (r, c) in cells.items():
        maps[i, j] = 0.1 / (h * w - 1)
        maps[i, j, r, c] = 0.9
    return maps


def _boxes(rows):
    frame = pd.DataFrame(rows, columns=["image_id", "finding", "image_index", "finding_index", "in_x_min", "in_y_min", "in_x_max", "in_y_max"])
    return frame


def test_a_box_covering_exactly_half_the_argmax_patch_is_a_hit():
    attention = _peaked(1, 1, 4, 4, {(0, 0): (1, 2)})  # argmax cell x [32, 48), y [16, 32) at stride 16
    rows, cols = argmax_cells(attention)
    assert (rows[0, 0], cols[0, 0]) == (1, 2)
    boxes = _boxes([
        ("a", "F", 0, 0, 40.0, 0.0, 60.0, 100.0),  # 8 x 16 = 128 = half of 256: hit
        ("a", "F", 0, 0, 40.5, 0.0, 60.0, 100.0),  # 7.5 x 16 = 120: miss
        ("a", "F", 0, 0, 32.0, 24.0, 48.0, 32.0),  # 16 x 8 = 128 from below: hit
        ("a", "F", 0, 0, 0.0, 0.0, 32.0, 64.0),  # touches the cell's edge only: miss
        ("a", "F", 0, 0, np.nan, np.nan, np.nan, np.nan),  # cropped away: not scored
    ])
    scored = score_boxes(boxes, attention, stride=16)
    assert scored["hit"].tolist()[:4] == [True, False, True, False] and pd.isna(scored["hit"].iloc[4])
    np.testing.assert_allclose(scored["overlap_fraction"].to_numpy()[:4], [0.5, 120 / 256, 0.5, 0.0])
    # the threshold is configurable
    assert score_boxes(boxes, attention, stride=16, min_overlap=0.4)["hit"].tolist()[:4] == [True, True, True, False]


def test_half_patch_boundary_through_the_preprocessing():
    # 64 x 64 original, square resize to 32 (x 0.5), stride 4: original x in [2*20, ...) maps to the boundary
    spec = PreprocessSpec(size=32, resize="square", interpolation="area", antialias=False, channels=1)
    geometry = InputGeometry.from_spec(spec, 64, 64)
    attention = _peaked(1, 1, 8, 8, {(0, 0): (3, 5)})  # cell x [20, 24), y [12, 16)
    for x_min, expected in ((44.0, True), (44.2, False)):  # 44 -> 22: overlap 2 x 4 = half a patch
        mapped, _ = geometry.map_boxes([[x_min, 0.0, 60.0, 64.0]])
        boxes = _boxes([("a", "F", 0, 0, *mapped[0])])
        assert bool(score_boxes(boxes, attention, stride=4)["hit"].iloc[0]) is expected


def test_macro_accuracy_equals_a_hand_count():
    # images 0-2, findings A, B, C; argmax cells chosen so that the hits are known
    attention = _peaked(3, 3, 4, 4, {(0, 0): (0, 0), (1, 0): (3, 3), (2, 0): (0, 0), (0, 1): (2, 2), (1, 1): (0, 0), (2, 1): (0, 0), (0, 2): (0, 0), (1, 2): (0, 0), (2, 2): (0, 0)})
    boxes = _boxes([
        ("i0", "A", 0, 0, 0, 0, 16, 16),  # hit
        ("i0", "A", 0, 0, 32, 32, 64, 64),  # same image, second box of A: miss (counted separately)
        ("i1", "A", 1, 0, 48, 48, 64, 64),  # hit
        ("i2", "A", 2, 0, 0, 0, 8, 16),  # exactly half: hit
        ("i0", "B", 0, 1, 0, 0, 16, 16),  # argmax (2, 2): miss
        ("i1", "B", 1, 1, 0, 0, 64, 64),  # hit
    ])  # A: 3 of 4, B: 1 of 2, C: no box -> macro (0.75 + 0.5) / 2
    per = finding_accuracy(score_boxes(boxes, attention, stride=16), ["A", "B", "C"])
    assert per.loc["A", ["boxes", "images", "hits"]].tolist() == [4, 3, 3]
    assert per.loc["B", "accuracy"] == 0.5 and per.loc["C", "boxes"] == 0 and np.isnan(per.loc["C", "accuracy"])
    assert macro_accuracy(per) == pytest.approx(0.625)


# ---------------------------------------------------------------------------------------------------------------
# run_explain on a tiny hand-made folder: files, numbers, PNGs


@pytest.fixture
def tiny(tmp_path) -> tuple[BenchmarkData, Path]:
    root = tmp_path / "tiny"
    (root / "test").mkdir(parents=True)
    (root / "annotations").mkdir()
    ids = ["img0", "img1", "img2"]
    for image_id, (h, w) in zip(ids, [(64, 64), (48, 80), (64, 64)]):
        Image.fromarray((np.random.default_rng(0).random((h, w)) * 255).astype(np.uint8)).save(root / "test" / f"{image_id}.png")
    pd.DataFrame([
        ("img0", "A", 0, 0, 8, 8), ("img0", "A", 40, 40, 64, 64), ("img1", "A", 0, 0, 30, 48), ("img1", "B", 70, 0, 80, 10),
        ("img2", "No finding", None, None, None, None), ("other", "A", 0, 0, 5, 5), ("img2", "Z", 0, 0, 10, 10),
    ], columns=["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"]).to_csv(root / "annotations/annotations_test.csv", index=False)
    samples = pd.DataFrame({"image_id": ids, "patient_id": ["p0", "p1", "p2"], "path": [str(root / "test" / f"{i}.png") for i in ids],
                            "split": "test", "A": [1.0, 1.0, 0.0], "B": [0.0, 1.0, 0.0]})
    return BenchmarkData("vindr", root, ("A", "B"), samples, boxes=read_test_boxes(root)), root


def test_run_explain_writes_json_csv_and_valid_pngs(tiny, tmp_path):
    data, root = tiny
    spec = PreprocessSpec(size=32, resize="shortest_edge", crop=32, interpolation="bilinear", channels=1)
    # img1 (48 x 80) -> 32 x 53, crop x offset (53 - 32) // 2 = 10: its B box (x 70..80 -> 36.7..43.3) is cropped away
    attention = {0: _peaked(3, 2, 8, 8, {(0, 0): (0, 0), (1, 0): (0, 0), (1, 1): (0, 7)}),
                 1: _peaked(3, 2, 8, 8, {(0, 0): (7, 7), (1, 0): (7, 7), (1, 1): (0, 7)})}
    folder = tmp_path / "out/vindr/enc/explain"
    result = run_explain(data, ["A", "B"], attention, spec, 4, folder, images_per_finding=2, info={"encoder": "enc"})
    summary = json.loads((folder / "metrics.json").read_text())["explain"]
    # seed 0: img0's two A boxes -> argmax (0, 0) hits the first only; img1's A box (x 0..30 -> 0..10, y 0..32) hits
    # seed 1: argmax (7, 7): img0's second A box (20..32) hits; img1's A box misses
    assert summary["findings"]["A"]["boxes"] == 3 and summary["findings"]["A"]["hits"] == {"0": 2, "1": 1}
    assert summary["findings"]["B"]["boxes"] == 0 and summary["left_out"]["boxes_cropped_away"] == 1
    assert summary["left_out"]["boxes_of_images_outside_test_split"] == 1
    assert summary["left_out"]["boxes_of_findings_not_evaluated"] == {"Z": 1}
    assert summary["macro_accuracy"]["per_seed"] == {"0": pytest.approx(2 / 3), "1": pytest.approx(1 / 3)}
    assert summary["macro_accuracy"]["mean"] == pytest.approx(0.5) and summary["macro_accuracy"]["findings_averaged"] == 1
    assert summary["macro_accuracy"]["ci_low"] == pytest.approx(0.5) == summary["macro_accuracy"]["ci_high"]  # hand count: always 1/2
    csv = pd.read_csv(folder / "explain.csv")
    assert len(csv) == 2 * 4 and set(csv["status"]) == {"kept", "clipped", "cropped_away"}
    assert csv.loc[csv["status"] == "cropped_away", "hit"].isna().all()
    assert result.display.loc["macro", "accuracy"].startswith("50.0")
    # the macro row counts distinct images with a scored box (img0, img1), not every test image (3)
    assert summary["n_images_with_boxes"] == 2 and result.display.loc["macro", "images"] == 2
    pngs = sorted(folder.glob("heatmaps/*/*.png"))
    assert [p.relative_to(folder).as_posix() for p in pngs] == ["heatmaps/a/img0.png", "heatmaps/a/img1.png"]
    for png in pngs:
        with Image.open(png) as picture:
            picture.verify()
        with Image.open(png) as picture:
            assert picture.format == "PNG" and picture.mode == "RGB" and picture.width >= 256
    assert not list(folder.parent.glob(".*partial*"))


def test_run_explain_refuses_maps_of_the_wrong_shape(tiny, tmp_path):
    data, _ = tiny
    spec = PreprocessSpec(size=32, resize="square", channels=1)
    with pytest.raises(CxrbenchError, match="findings"):
        run_explain(data, ["A", "B"], np.ones((3, 1, 8, 8)) / 64, spec, 4, tmp_path / "x")
    with pytest.raises(CxrbenchError, match="patch grid"):
        run_explain(data, ["A", "B"], np.ones((3, 2, 9, 9)) / 81, spec, 4, tmp_path / "x")


# ---------------------------------------------------------------------------------------------------------------
# annotation CSV errors


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("body, message", [
    ("a,Nodule/Mass,1,2,3,4\nb,Cardiomegaly,1,x,3,4\n", r"row 3 \(image b, Cardiomegaly\): y_min is 'x'"),
    ("a,Nodule/Mass,1,2,3,4\nb,No finding,,,,\nc,Aortic enlargement,,,,\n", r"row 4 \(image c, Aortic enlargement\): x_min is empty"),
    ("a,Nodule/Mass,10,2,3,4\n", r"row 2 \(image a, Nodule/Mass\): x_min = 10 is greater than x_max = 3"),
    ("a,,1,2,3,4\n", r"row 2 \(image a\): class_name is empty"),
])
def test_annotation_errors_name_the_file_and_row(tmp_path, body, message):
    path = _write(tmp_path / "annotations/annotations_test.csv", "image_id,class_name,x_min,y_min,x_max,y_max\n" + body)
    with pytest.raises(DataError, match=message) as info:
        read_test_boxes(tmp_path)
    assert str(path) in str(info.value)


def test_annotation_csv_missing_column_and_no_finding_rows(tmp_path):
    path = _write(tmp_path / "annotations/annotations_test.csv", "image_id,class,x_min,y_min,x_max,y_max\na,A,1,2,3,4\n")
    with pytest.raises(DataError, match="no column 'class_name'"):
        read_test_boxes(tmp_path)
    _write(path, "image_id,class_name,x_min,y_min,x_max,y_max\n001,No finding,,,,\n002,Nodule/Mass,1.5,2,3,4\n")
    boxes = read_test_boxes(tmp_path)
    assert boxes.to_dict("records") == [{"image_id": "002", "finding": "Nodule/Mass", "x_min": 1.5, "y_min": 2.0,
                                         "x_max": 3.0, "y_max": 4.0, "csv_row": 3}]
    train = _write(tmp_path / "annotations/annotations_train.csv",
                   "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\na,R1,Nodule/Mass,1,2,3,4\n")
    assert read_boxes(train, with_reader=True)["rad_id"].tolist() == ["R1"]


# ---------------------------------------------------------------------------------------------------------------
# end to end: synthetic VinDr-CXR, pixels encoder, the real attentive head


FAST_HEAD = {"lr": 0.1, "epochs": 2, "min_steps": 10, "batch_size": 64}


def test_explain_benchmark_on_synthetic_vindr(vindr_root, tmp_path):
    evaluation = LocalisationEvaluation(tmp_path / "out", images_per_finding=1, head_overrides=FAST_HEAD,
                                        one_head_per_finding=False)  # one head, a query per finding (the CLI test: one per finding)
    (result,) = evaluate(StudyOptions("vindr", vindr_root, seeds=2, bootstrap_resamples=50), evaluation,
                         EncoderOptions(["pixels"]), MachineOptions(tmp_path / "cache"))
    folder = tmp_path / "out/vindr/pixels/explain"
    assert result.folder == folder
    metrics = json.loads((folder / "metrics.json").read_text())
    summary = metrics["explain"]
    assert metrics["kind"] == "explain" and metrics["run_identity"]["seeds"] == [0, 1]
    boxed = set(pd.read_csv(vindr_root / "annotations/annotations_test.csv")["class_name"])
    assert set(summary["findings"]) == boxed and "Tuberculosis" not in boxed  # the generator draws no TB boxes
    assert summary["protocol"]["grid"] == [8, 8] and summary["protocol"]["patch_stride"] == 4
    for name, item in summary["findings"].items():
        assert item["boxes"] > 0 and 0.0 <= item["accuracy_mean"] <= 1.0, name
    macro = summary["macro_accuracy"]
    assert macro["mean"] == pytest.approx(np.mean(list(macro["per_seed"].values())))
    assert summary["published"]["macro_accuracy"] == pytest.approx(0.526)
    csv = pd.read_csv(folder / "explain.csv")
    assert set(csv["seed"]) == {0, 1} and len(csv) == 2 * sum(i["boxes"] for i in summary["findings"].values())
    assert len(list(folder.glob("heatmaps/*/*.png"))) == len(boxed)
    assert (folder / "config.yaml").is_file() and not (folder / "explain.json").exists()


def test_explain_command(vindr_root, tmp_path):
    args = ["explain", "vindr", "--encoder", "pixels", "--data-root", str(vindr_root), "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--seeds", "1", "--images-per-finding", "0", "--bootstrap", "20",
            *[a for k, v in FAST_HEAD.items() for a in ("--head-param", f"{k}={v}")]]
    result = CliRunner().invoke(app, [*args, "--findings", "Cardiomegaly,Nodule/Mass"])
    assert result.exit_code == 0, result.output
    assert "Cardiomegaly" in result.output and "macro accuracy" in result.output and "52.6" in result.output
    assert "vindr explainability · pixels (synthetic data) / attentive" in " ".join(result.output.split())  # its label
    summary = json.loads((tmp_path / "out/vindr/pixels/explain/metrics.json").read_text())["explain"]
    assert list(summary["findings"]) == ["Cardiomegaly", "Nodule/Mass"] and summary["heatmaps"] == []
    bad = CliRunner().invoke(app, [*args, "--findings", "Tuberculosis"])
    assert bad.exit_code == 2 and "no box" in bad.output
