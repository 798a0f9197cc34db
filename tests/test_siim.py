"""SIIM-ACR pneumothorax masks: the relative RLE against the Kaggle starter code's loop on real rows, the loader's
counts on the real label file, lazy masks on the DICOM's own grid, and bad input named by file and row."""

from __future__ import annotations

import gzip
import re
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.data.common.rle import decode_relative_rle, encode_relative_rle
from cxrbench.data.siim.synthetic import write_synthetic_siim
from cxrbench.errors import DataError
from cxrbench.study import load_benchmark

runner = CliRunner()
LABELS = "train-rle.csv"
PRESENT = "pneumothorax:present"


def kaggle_rle2mask(rle: str, width: int, height: int) -> np.ndarray:
    """The challenge's `mask_functions.rle2mask`, one run at a time (an implementation independent of cxrbench's)."""
    mask = np.zeros(width * height, dtype=np.uint8)
    array = np.asarray([int(x) for x in rle.split()])
    starts, lengths = array[0::2], array[1::2]
    current_position = 0
    for start, length in zip(starts, lengths):
        current_position += start
        mask[current_position:current_position + length] = 255
        current_position += length
    return mask.reshape(width, height).T


@pytest.fixture(scope="module")
def real_csv(tmp_path_factory) -> Path:
    """torchxrayvision's copy of the release's label file (siim-pneumothorax-train-rle.csv.gz), unpacked once."""
    xrv = pytest.importorskip("torchxrayvision")
    path = tmp_path_factory.mktemp("siim-real") / LABELS
    with gzip.open(resources.files(xrv.__name__) / "data" / "siim-pneumothorax-train-rle.csv.gz") as source:
        path.write_bytes(source.read())
    return path


@pytest.fixture(scope="module")
def real_labels(real_csv) -> pd.DataFrame:
    """The real label file as plain pandas reads it: ImageId, EncodedPixels (names and values stripped)."""
    return csv_rows(real_csv.parent)


def collapse(text: str) -> str:
    return " ".join(text.split())


# -- the encoding ------------------------------------------------------------------------------------------------
def test_decode_and_encode_match_the_kaggle_loop_on_real_rows(real_labels):
    texts = real_labels["EncodedPixels"]
    texts = texts[texts != "-1"]
    ends = texts.map(lambda t: sum(int(v) for v in t.split()))
    # 300 rows spread over the file, and the 5 whose last run ends nearest the image's end
    chosen = list(texts.iloc[np.linspace(0, len(texts) - 1, 300).astype(int)]) + list(texts[ends.nlargest(5).index])
    for text in chosen:
        ours = decode_relative_rle(text, 1024, 1024, "real row")
        theirs = kaggle_rle2mask(text, 1024, 1024) > 0
        assert ours.shape == (1024, 1024) and ours.dtype == bool
        assert np.array_equal(ours, theirs), text[:60]
        assert encode_relative_rle(ours) == text


def test_round_trip_on_non_square_masks_and_edges():
    rng = np.random.default_rng(0)
    for height, width in ((37, 53), (53, 37), (1, 9)):
        for density in (0.05, 0.5, 0.95):
            mask = rng.random((height, width)) < density
            mask[0, 0], mask[-1, -1] = True, True  # runs that start at pixel 0 and end at the last pixel
            text = encode_relative_rle(mask)
            assert np.array_equal(kaggle_rle2mask(text, width, height) > 0, mask)
            assert np.array_equal(decode_relative_rle(text, height, width, "here"), mask)
    empty = np.zeros((4, 6), dtype=bool)
    assert encode_relative_rle(empty) == "-1"
    for text in ("-1", " -1 ", ""):
        assert np.array_equal(decode_relative_rle(text, 4, 6, "here"), empty)


@pytest.mark.parametrize("text, message", [
    ("3 2 4", "odd number of values (3)"),
    ("3 -2", "'-2', negative"),
    ("3 2.5", "'2.5', not a whole number"),
    ("20 3 1 2", "runs past the 4x6 image (rows x columns): its last run ends at pixel 26, the image has 24"),
])
def test_bad_encodings_name_where_and_the_fix(text, message):
    with pytest.raises(DataError, match="fix or remove") as caught:
        decode_relative_rle(text, 4, 6, "labels.csv, row 7 (ImageId x)")
    assert str(caught.value).startswith("labels.csv, row 7 (ImageId x): ") and message in str(caught.value)


# -- the real label file -----------------------------------------------------------------------------------------
def test_data_check_counts_the_real_label_file_without_reading_images(real_csv, real_labels, tmp_path):
    ids = real_labels["ImageId"]
    images, with_ptx = ids.nunique(), ids[real_labels["EncodedPixels"] != "-1"].nunique()
    assert (images, with_ptx) == (12_047, 2_669)  # counted directly from the CSV
    root = tmp_path / "siim"
    root.mkdir()
    shutil.copy(real_csv, root / LABELS)
    for k, image_id in enumerate(ids.unique()):  # EMPTY placeholders: the loader must not open them
        folder = root / "dicom-images-train" / f"1.2.3.{k % 50}" / f"1.2.4.{k % 7}"  # few folders: quick to delete
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{image_id}.dcm").touch()
    result = runner.invoke(app, ["data", "check", "siim-acr", "--data-root", str(root)])
    output = collapse(result.output)
    assert result.exit_code == 0, result.output
    assert "12047 images, 12047 patients" in output
    assert "2669 of 12047 images with pneumothorax (9378 with -1)" in output
    assert "624 image(s) have several pneumothorax rows" in output
    assert "pool pneumothorax 12047 0 2669 9378 12047 12047" in output  # with_mask unknown present empty images patients
    # masks are read when asked, one image at a time: an empty placeholder fails there, naming the file
    _, data = load_benchmark("siim-acr", root, {})
    assert int(data.samples[PRESENT].sum()) == 2_669
    with pytest.raises(DataError, match=r"Cannot read Rows and Columns from the DICOM header of .*\.dcm"):
        data.mask_reader("pneumothorax", data.samples["pneumothorax"].iloc[0])


# -- synthetic release -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def siim_root(tmp_path_factory) -> Path:
    return write_synthetic_siim(tmp_path_factory.mktemp("siim") / "siim-acr", patients=30, size=64, seed=0)


@pytest.fixture
def siim_copy(siim_root, tmp_path) -> Path:
    return Path(shutil.copytree(siim_root, tmp_path / "copy"))


def csv_rows(root: Path, name: str = LABELS) -> pd.DataFrame:
    frame = pd.read_csv(root / name, dtype=str)
    frame.columns = [c.strip() for c in frame.columns]
    return frame.assign(ImageId=frame["ImageId"].str.strip(), EncodedPixels=frame["EncodedPixels"].str.strip())


def test_synthetic_masks_are_the_planted_regions_on_each_dicoms_grid(siim_root):
    _, data = load_benchmark("siim-acr", siim_root, {})
    assert data.synthetic and data.samples["split"].eq("pool").all()
    assert (data.samples["patient_id"] == data.samples["image_id"]).all()
    rows = csv_rows(siim_root)
    assert list(data.samples["image_id"]) == list(dict.fromkeys(rows["ImageId"]))
    shapes, split = set(), 0
    for _, sample in data.samples.iterrows():
        mine = rows[rows["ImageId"] == sample["image_id"]]["EncodedPixels"]
        pixels = pydicom.dcmread(sample["path"]).pixel_array  # the whole file, not just the header
        height, width = pixels.shape
        truth = np.zeros((height, width), dtype=bool)
        for text in mine[mine != "-1"]:
            truth |= kaggle_rle2mask(text, width, height) > 0
        mask = data.mask_reader("pneumothorax", sample["pneumothorax"])
        assert mask.shape == (1, height, width) and mask.dtype == bool
        assert np.array_equal(mask[0], truth), sample["image_id"]
        assert sample[PRESENT] == float(truth.any())
        shapes.add((height, width))
        if truth.any():
            split += len(mine) > 1
            image = read_image(sample["path"])
            assert image[truth].mean() > image[~truth].mean() + 0.1  # the planted region is bright
            assert np.nonzero(truth)[0].mean() < 0.6 * height  # in the upper chest
    assert shapes == {(64, 64), (64, 48)}  # square and narrower images: masks follow each DICOM's Rows x Columns
    present = data.samples[PRESENT]
    assert 0.15 < present.mean() < 0.5 and split >= 2
    counts = data.label_counts()["mask"].iloc[0]
    assert (counts["present"], counts["empty"]) == (int(present.sum()), int((present == 0).sum()))
    assert any("have no row in train-rle.csv and are not used" in note for note in data.notes)  # dicom-images-test


def test_stage_2_label_file_reads_the_same(siim_copy):
    rows = csv_rows(siim_copy)
    rows.to_csv(siim_copy / "stage_2_train.csv", index=False)  # header ImageId,EncodedPixels; no leading spaces
    _, first = load_benchmark("siim-acr", siim_copy, {})
    _, second = load_benchmark("siim-acr", siim_copy, {"labels_csv": "stage_2_train.csv"})
    pd.testing.assert_frame_equal(first.samples, second.samples)
    image = first.samples.loc[first.samples[PRESENT] == 1, "image_id"].iloc[0]
    assert np.array_equal(first.mask_reader("pneumothorax", image), second.mask_reader("pneumothorax", image))


def _positive_row(root: Path) -> tuple[list[str], int]:
    lines = (root / LABELS).read_text().splitlines()
    index = next(k for k, line in enumerate(lines) if k and not line.endswith(",-1") and not line.endswith(", -1"))
    return lines, index


def test_odd_length_encoding_is_refused_by_data_check(siim_copy):
    lines, index = _positive_row(siim_copy)
    lines[index] = lines[index].rsplit(" ", 1)[0]
    (siim_copy / LABELS).write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["data", "check", "siim-acr", "--data-root", str(siim_copy)])
    message = collapse(result.output)
    assert result.exit_code == 2
    assert f"train-rle.csv, row {index + 1} (ImageId {lines[index].split(',')[0]}), column 'EncodedPixels'" in message
    assert "odd number of values" in message and "fix or remove it" in message


def test_run_past_the_image_is_refused_when_its_mask_is_read(siim_copy):
    lines, index = _positive_row(siim_copy)
    lines[index] += " 5000 3"
    (siim_copy / LABELS).write_text("\n".join(lines) + "\n")
    _, data = load_benchmark("siim-acr", siim_copy, {})  # the encoding's form is fine; its extent needs the DICOM
    image_id = lines[index].split(",")[0]
    with pytest.raises(DataError, match=rf"train-rle\.csv, row {index + 1} \(ImageId {re.escape(image_id)}\).*runs past "
                                        r"the 64x(64|48) image.*fix or remove the row"):
        data.mask_reader("pneumothorax", image_id)


def test_missing_image_file_is_named(siim_copy):
    image_id = csv_rows(siim_copy)["ImageId"].iloc[3]
    next((siim_copy / "dicom-images-train").rglob(f"{image_id}.dcm")).unlink()
    result = runner.invoke(app, ["data", "check", "siim-acr", "--data-root", str(siim_copy)])
    message = collapse(result.output)
    assert result.exit_code == 2
    assert "have no DICOM file (<ImageId>.dcm)" in message and f"{image_id}.dcm" in message
    assert "Complete the download, or remove their rows" in message


def test_missing_column_is_named(siim_copy):
    text = (siim_copy / LABELS).read_text()
    (siim_copy / LABELS).write_text(text.replace("ImageId, EncodedPixels", "ImageId, EncodedPixel", 1))
    with pytest.raises(DataError, match=r"train-rle\.csv has no column 'EncodedPixels' \(found 'EncodedPixel'; rename it\)"):
        load_benchmark("siim-acr", siim_copy, {})


def test_empty_encoding_is_named(siim_copy):
    lines = (siim_copy / LABELS).read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ","
    (siim_copy / LABELS).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"train-rle\.csv, row 3 \(ImageId .*\), column 'EncodedPixels': is empty\. Write -1"):
        load_benchmark("siim-acr", siim_copy, {})


def test_stage_1_test_images_labelled_in_stage_2_are_the_test_split(siim_root):
    """RayDINO tests on the stage-1 test images, which stage_2_train.csv labels: those (the DICOMs under
    dicom-images-test, listed here by walking the folder) are the test split of every seed; the rest train / val."""
    from cxrbench.data.splits import check_patient_disjoint, seed_splits

    stage_1_test = {p.stem for p in (siim_root / "dicom-images-test").rglob("*.dcm")}
    labelled = set(csv_rows(siim_root, "stage_2_train.csv")["ImageId"])
    assert stage_1_test and stage_1_test <= labelled and not stage_1_test & set(csv_rows(siim_root)["ImageId"])
    options = {"labels_csv": "stage_2_train.csv", "stage_1_test": True}
    spec, data = load_benchmark("siim-acr", siim_root, options)
    assert set(data.samples.loc[data.samples["split"] == "test", "image_id"]) == stage_1_test
    for seed in range(2):
        manifest = seed_splits(data.samples, "siim-acr", seed, spec.split)
        check_patient_disjoint(manifest)
        assert set(manifest.loc[manifest["split"] == "test", "image_id"]) == stage_1_test
        rest = manifest[manifest["split"] != "test"]
        share = spec.split.fractions[1] / (spec.split.fractions[0] + spec.split.fractions[1])
        assert (rest["split"] == "val").sum() == round(share * len(rest)) and set(rest["split"]) == {"train", "val"}
    with pytest.raises(DataError, match="labels_csv=stage_2_train.csv"):  # train-rle.csv does not label them
        load_benchmark("siim-acr", siim_root, {"stage_1_test": True})
