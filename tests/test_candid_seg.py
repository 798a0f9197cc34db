"""CANDID-PTX pneumothorax and chest tube masks (candid-ptx-seg): the loader against the CSV rows decoded by an
independent loop, on each DICOM's own grid; the `rle` option; bad input named by file, row and image; one run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.candid.synthetic import write_synthetic_candid_seg
from cxrbench.data.common.images import read_image
from cxrbench.errors import DataError
from cxrbench.registry import benchmark_spec
from cxrbench.study import load_benchmark

runner = CliRunner()
#: the synthetic images are 64 px (some narrower) with masks encoded on their own grid, not the release's 1024 x 1024
SYNTHETIC = {"mask_size": 0}
SYNTHETIC_OPTION = ("--dataset-option", "mask_size=0")
BENCH = "candid-ptx-seg"
REPORTS, TUBES = "Pneumothorax_reports.csv", "chest_tube.csv"


def loop_decode(rle: str, height: int, width: int, absolute: bool = False) -> np.ndarray:
    """One run at a time: the SIIM starter kit's relative loop, or (1-based start, length) pairs; column-major."""
    flat = np.zeros(width * height, dtype=bool)
    values = [int(v) for v in rle.split()]
    position = 0
    for first, length in zip(values[0::2], values[1::2]):
        position = first - 1 if absolute else position + first
        flat[position:position + length] = True
        position += length
    return flat.reshape(width, height).T


def absolute_encoding(mask: np.ndarray) -> str:
    flat = np.concatenate([[False], mask.T.reshape(-1), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    return " ".join(f"{start + 1} {end - start}" for start, end in zip(edges[0::2], edges[1::2]))


def message(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def candid_root(tmp_path_factory) -> Path:
    """Treat as read-only."""
    return write_synthetic_candid_seg(tmp_path_factory.mktemp("candid-seg") / "CANDID-PTX", patients=30, size=64, seed=0)


@pytest.fixture
def candid_copy(candid_root, tmp_path) -> Path:
    return Path(shutil.copytree(candid_root, tmp_path / "copy"))


def rows(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / name, dtype=str)


def truth(frames: dict[str, pd.DataFrame], image_id: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(pneumothorax, chest tube) masks of one image, the union of its CSV rows decoded by `loop_decode`."""
    out = []
    for name, id_column, column in ((REPORTS, "SOPInstanceUID", "EncodedPixels"), (TUBES, "anon_SOPUID", "mask_rle")):
        frame = frames[name]
        mask = np.zeros((height, width), dtype=bool)
        for text in frame.loc[(frame[id_column] == image_id) & (frame[column] != "-1"), column]:
            mask |= loop_decode(text, height, width)
        out.append(mask)
    return out[0], out[1]


# -- the release, read back ----------------------------------------------------------------------------------------
def test_masks_are_the_csv_rows_on_each_dicoms_grid(candid_root):
    spec, data = load_benchmark(BENCH, candid_root, SYNTHETIC)
    assert [t.name for t in spec.targets] == ["pneumothorax", "chest_tube"]
    assert spec.result_columns == ("pneumothorax", "chest_tube")  # the structures, in this order
    assert spec.split.fractions == (0.7, 0.15, 0.15) and spec.primary_metric == "dice"
    samples = data.samples
    reports = rows(candid_root, REPORTS)
    assert data.synthetic and samples["split"].eq("pool").all()
    assert list(samples["image_id"]) == list(dict.fromkeys(reports["SOPInstanceUID"]))
    by_image = reports.drop_duplicates("SOPInstanceUID").set_index("SOPInstanceUID")["filename"]
    assert (samples["patient_id"] == by_image.loc[samples["image_id"]].str.split("_").str[0].to_numpy()).all()
    assert samples["patient_id"].nunique() == 30 < len(samples)
    assert all(Path(p).name == i for p, i in zip(samples["path"], samples["image_id"]))  # dataset/<SOPInstanceUID>
    frames = {REPORTS: reports, TUBES: rows(candid_root, TUBES)}
    shapes, several = set(), 0
    for _, sample in samples.iterrows():
        pixels = pydicom.dcmread(sample["path"]).pixel_array
        height, width = pixels.shape
        ptx, tube = truth(frames, sample["image_id"], height, width)
        read = {name: data.mask_reader(name, sample[name]) for name in ("pneumothorax", "chest_tube")}
        for name, expected in (("pneumothorax", ptx), ("chest_tube", tube)):
            assert read[name].shape == (1, height, width) and read[name].dtype == bool
            assert np.array_equal(read[name][0], expected), (sample["image_id"], name)
            assert sample[f"{name}:present"] == float(expected.any())
        shapes.add((height, width))
        several += (reports["SOPInstanceUID"] == sample["image_id"]).sum() > 1
        if tube.any():
            image = read_image(sample["path"])
            assert image[tube].mean() > image[~tube & ~ptx].mean() + 0.2  # the tube is drawn where its mask says
    assert shapes == {(64, 64), (64, 48)} and several >= 2
    present = samples[["pneumothorax:present", "chest_tube:present"]].mean()
    assert 0.2 < present["pneumothorax:present"] < 0.7 and 0.15 < present["chest_tube:present"] < 0.7


def test_data_check_prints_the_counts_of_the_csvs(candid_root):
    reports, tubes = rows(candid_root, REPORTS), rows(candid_root, TUBES)
    images = reports["SOPInstanceUID"].nunique()
    with_ptx = reports.loc[reports["EncodedPixels"] != "-1", "SOPInstanceUID"].nunique()
    with_tube = tubes["anon_SOPUID"].nunique()
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(candid_root), *SYNTHETIC_OPTION])
    assert result.exit_code == 0, result.output
    text = message(result)
    assert f"{images} images, 30 patients" in text
    assert f"pneumothorax: {with_ptx} of {images} images have a mask in {REPORTS}" in text
    assert f"chest_tube: {with_tube} of {images} images have a mask in {TUBES} ({len(tubes)} row(s)" in text
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    # split, task, with_mask, unknown, present, empty, images, patients
    assert f"pool pneumothorax {images} 0 {with_ptx} {images - with_ptx} {images} 30" in lines
    assert f"pool chest_tube {images} 0 {with_tube} {images - with_tube} {images} 30" in lines


def test_absolute_encoding_is_an_option(candid_copy):
    _, relative = load_benchmark(BENCH, candid_copy, SYNTHETIC)
    for name, column in ((REPORTS, "EncodedPixels"), (TUBES, "mask_rle")):
        frame = rows(candid_copy, name)
        id_column = frame.columns[0]
        for position, (image_id, text) in enumerate(zip(frame[id_column], frame[column])):
            if text != "-1":
                header = pydicom.dcmread(candid_copy / "dataset" / image_id, stop_before_pixels=True)
                height, width = int(header.Rows), int(header.Columns)
                frame.loc[position, column] = absolute_encoding(loop_decode(text, height, width))
        frame.to_csv(candid_copy / name, index=False)
    _, absolute = load_benchmark(BENCH, candid_copy, {**SYNTHETIC, "rle": "absolute"})
    pd.testing.assert_frame_equal(relative.samples, absolute.samples)
    _, misread = load_benchmark(BENCH, candid_copy, SYNTHETIC)  # the absolute file read as relative
    different = 0
    for image_id in relative.samples.loc[relative.samples["chest_tube:present"] == 1, "image_id"]:
        ours = absolute.mask_reader("chest_tube", image_id)
        assert np.array_equal(ours, relative.mask_reader("chest_tube", image_id)), image_id
        try:
            different += not np.array_equal(ours, misread.mask_reader("chest_tube", image_id))
        except DataError as exc:  # most runs then end past the image
            assert "runs past the" in str(exc)
            different += 1
    assert different > 0  # the option matters
    with pytest.raises(DataError, match=r"rle must be one of \('relative', 'absolute'\), got 'rel'"):
        load_benchmark(BENCH, candid_copy, {**SYNTHETIC, "rle": "rel"})


# -- bad input -----------------------------------------------------------------------------------------------------
def _edit(root: Path, name: str, column: str, change) -> tuple[int, str]:
    """Apply `change` to the first non-empty encoding of `column`; (spreadsheet row, image id) of that row."""
    frame = rows(root, name)
    position = int(np.flatnonzero(frame[column].to_numpy() != "-1")[0])
    frame.loc[position, column] = change(frame.loc[position, column])
    frame.to_csv(root / name, index=False)
    return position + 2, frame.iloc[position, 0]


def test_odd_length_chest_tube_encoding_is_refused_by_data_check(candid_copy):
    row, image_id = _edit(candid_copy, TUBES, "mask_rle", lambda text: text.rsplit(" ", 1)[0])
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(candid_copy), *SYNTHETIC_OPTION])
    assert result.exit_code == 2, result.output
    text = message(result)
    assert f"chest_tube.csv, row {row} (image {image_id}), column 'mask_rle'" in text
    assert "odd number of values" in text and "fix or remove it" in text and "Traceback" not in text


def test_empty_chest_tube_encoding_is_refused_by_data_check(candid_copy):
    row, image_id = _edit(candid_copy, TUBES, "mask_rle", lambda text: "")
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(candid_copy), *SYNTHETIC_OPTION])
    assert result.exit_code == 2, result.output
    assert f"chest_tube.csv, row {row} (image {image_id}), column 'mask_rle': is empty. Write -1" in message(result)


def test_pneumothorax_run_past_the_image_is_refused_when_its_mask_is_read(candid_copy):
    row, image_id = _edit(candid_copy, REPORTS, "EncodedPixels", lambda text: text + " 5000 3")
    _, data = load_benchmark(BENCH, candid_copy, SYNTHETIC)  # the form is fine; the extent needs the image's header
    with pytest.raises(DataError, match=rf"Pneumothorax_reports\.csv, row {row} \(image {re.escape(image_id)}\), column "
                                        r"'EncodedPixels': the RLE runs past the 64x(64|48) image.*fix or remove the row"):
        data.mask_reader("pneumothorax", image_id)
    data.mask_reader("chest_tube", image_id)  # the other target of the image still reads


def test_absolute_start_zero_is_refused_when_read(candid_copy):
    row, image_id = _edit(candid_copy, TUBES, "mask_rle", lambda text: "0 3")
    _, data = load_benchmark(BENCH, candid_copy, {**SYNTHETIC, "rle": "absolute"})
    with pytest.raises(DataError, match=rf"chest_tube\.csv, row {row} \(image {re.escape(image_id)}\).*starts are 1-based"):
        data.mask_reader("chest_tube", image_id)


def test_missing_image_and_unreadable_header_are_named(candid_copy):
    image_ids = list(dict.fromkeys(rows(candid_copy, REPORTS)["SOPInstanceUID"]))
    (candid_copy / "dataset" / image_ids[0]).write_bytes(b"not a dicom")  # the file exists: found at load ...
    _, data = load_benchmark(BENCH, candid_copy, SYNTHETIC)
    with pytest.raises(DataError, match=rf"Cannot read the size of image {re.escape(image_ids[0])}"):
        data.mask_reader("pneumothorax", image_ids[0])  # ... refused when its mask's grid is read
    (candid_copy / "dataset" / image_ids[3]).unlink()
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(candid_copy), *SYNTHETIC_OPTION])
    assert result.exit_code == 2, result.output
    text = message(result)
    assert "1 of" in text and image_ids[3] in text and "Complete the download" in text


def test_missing_mask_column_and_unknown_target_are_named(candid_copy, tmp_path):
    tubes = rows(candid_copy, TUBES).rename(columns={"mask_rle": "mask"})
    tubes.to_csv(candid_copy / TUBES, index=False)
    result = runner.invoke(app, ["data", "check", BENCH, "--data-root", str(candid_copy), *SYNTHETIC_OPTION])
    assert result.exit_code == 2 and "chest_tube.csv has no column 'mask_rle'" in message(result)
    spec = benchmark_spec(BENCH)
    from dataclasses import replace

    from cxrbench.data.candid.seg import load_candid_ptx_seg
    from cxrbench.specs import TargetSpec

    wrong = replace(spec, targets=(TargetSpec("tube", "mask", structures=("tube",)),))
    with pytest.raises(DataError, match=r"target\(s\) \['tube'\] are not CANDID-PTX mask targets.*'chest_tube'"):
        load_candid_ptx_seg(candid_copy, wrong, {})


# -- a run ---------------------------------------------------------------------------------------------------------
def test_run_with_the_pixels_encoder_scores_both_structures(candid_root, tmp_path):
    result = runner.invoke(app, ["run", BENCH, "--encoder", "pixels", "--data-root", str(candid_root), *SYNTHETIC_OPTION, "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1",
                                 "--bootstrap", "50", "--head-param", "epochs=3"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / BENCH / "pixels" / "seg-linear"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"dice", "dice_empty_is_1", "detection_rate", "hd95"}
    for values in metrics["metrics"].values():
        assert {"pneumothorax", "chest_tube"} <= set(values)
        assert values["pneumothorax"]["mean"] is not None and values["chest_tube"]["mean"] is not None
    stored = pd.read_parquet(folder / "predictions.parquet")
    assert set(stored["task"]) == {"pneumothorax", "chest_tube"} and set(stored["label"]) == {0.0, 1.0}


def test_an_image_off_the_releases_mask_grid_is_refused_when_its_mask_is_read(candid_root):
    """The release's masks are decoded on 1024 x 1024 by public code: by default an image of another size is refused
    (its runs would be misplaced), naming the image, its size and the option; a grid side that fits reads the mask."""
    spec, data = load_benchmark(BENCH, candid_root, {})
    assert spec.dataset["mask_size"] == 1024
    first = data.samples.iloc[0]
    with pytest.raises(DataError) as caught:
        data.mask_reader("pneumothorax", first["image_id"])
    text = " ".join(str(caught.value).split())
    assert first["image_id"] in text and "is 64 x 64 pixels" in text and "1024 x 1024" in text and "mask_size=0" in text
    _, sized = load_benchmark(BENCH, candid_root, {"mask_size": 64})
    frames = {REPORTS: rows(candid_root, REPORTS), TUBES: rows(candid_root, TUBES)}
    shapes = {i: pydicom.dcmread(p, stop_before_pixels=True) for i, p in zip(sized.samples["image_id"], sized.samples["path"])}
    square = next(i for i, h in shapes.items() if (h.Rows, h.Columns) == (64, 64))
    narrow = next(i for i, h in shapes.items() if (h.Rows, h.Columns) == (64, 48))
    assert np.array_equal(sized.mask_reader("pneumothorax", square)[0], truth(frames, square, 64, 64)[0])
    with pytest.raises(DataError, match="is 64 x 48 pixels"):
        sized.mask_reader("chest_tube", narrow)
