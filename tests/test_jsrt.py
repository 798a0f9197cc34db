"""JSRT images (raw big-endian .IMG) with SCR masks: the raw reader's convention, the loader's lazy mask contract and
its errors, on files written at test time (real 2048 x 2048 raw files, 8 MB each: only six of them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.data.jsrt.synthetic import SCR_FOLDERS, jsrt_anatomy, write_synthetic_jsrt
from cxrbench.errors import DataError, ImageReadError
from cxrbench.study import load_benchmark

runner = CliRunner()
STRUCTURES = ["left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle"]
IMAGES = 6
IDS = ["JPCLN001", "JPCLN002", "JPCLN003", "JPCLN004", "JPCNN001", "JPCNN002"]  # 154/247 of six are nodule images


@pytest.fixture(scope="module")
def jsrt_root(tmp_path_factory) -> Path:
    """Treat as read-only (tests that damage it work on a hard-linked copy)."""
    return write_synthetic_jsrt(tmp_path_factory.mktemp("jsrt") / "jsrt", images=IMAGES, seed=0)


def _linked_copy(root: Path, target: Path) -> Path:
    """A copy whose files are hard links (no 48 MB of copying); deleting one of its files leaves `root` intact."""
    return Path(shutil.copytree(root, target, copy_function=os.link))


def _message(result) -> str:
    return " ".join(result.output.split())


# ---------------------------------------------------------------------------------------------- raw reader


def test_raw_reader_is_big_endian_12_bit_inverted(tmp_path):
    """Stored values grow with film density: 0 reads as white (1.0), 4095 as black (0.0), in between 1 - x / 4095."""
    raw = (np.arange(2048 * 2048, dtype=np.int64).reshape(2048, 2048) * 7 % 4096).astype(np.uint16)
    raw[0, :4] = [0, 4095, 0x0102, 2048]  # 0x0102 = 258 reads as 513 if the byte order were wrong
    path = tmp_path / "JPCLN999.IMG"
    raw.astype(">u2").tofile(path)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (2048, 2048)
    assert image[0, 0] == 1.0 and image[0, 1] == 0.0
    assert image[0, 2] == pytest.approx(1 - 258 / 4095, abs=1e-6)
    assert image[0, 3] == pytest.approx(1 - 2048 / 4095, abs=1e-6)
    np.testing.assert_allclose(image, 1 - raw / 4095, atol=1e-6)
    lower = tmp_path / "jpcnn001.img"  # the suffix is matched in any case
    raw.astype(">u2").tofile(lower)
    np.testing.assert_array_equal(read_image(lower), image)


def test_raw_reader_refuses_wrong_size_and_byte_order(tmp_path):
    small = write_synthetic_jsrt(tmp_path / "small", images=1, size=64) / "All247images" / "JPCLN001.IMG"
    with pytest.raises(ImageReadError) as caught:
        read_image(small)
    assert str(small) in str(caught.value) and "8192 bytes" in str(caught.value) and "64 x 64" in str(caught.value)
    assert "8388608 bytes" in str(caught.value)
    truncated = tmp_path / "JPCLN002.IMG"
    truncated.write_bytes(b"\0" * (2048 * 2048 * 2 - 1))
    with pytest.raises(ImageReadError, match="8388607 bytes"):
        read_image(truncated)
    swapped = tmp_path / "JPCLN003.IMG"
    np.full((2048, 2048), 1000, dtype="<u2").tofile(swapped)  # 0x03E8 little-endian reads 0xE803 big-endian
    with pytest.raises(ImageReadError, match="big-endian") as caught:
        read_image(swapped)
    assert str(swapped) in str(caught.value)


def test_synthetic_structures_are_visible(jsrt_root):
    """Lungs darker than the body, heart and clavicles brighter: something a decoder can learn from the image."""
    masks = jsrt_anatomy(1024, np.random.default_rng(0))  # the first image's anatomy (the generator's first draws)
    image = read_image(jsrt_root / "All247images" / "JPCLN001.IMG")[::2, ::2]
    lungs = masks["left_lung"] | masks["right_lung"]
    clavicles = masks["left_clavicle"] | masks["right_clavicle"]
    body = ~(lungs | masks["heart"] | clavicles) & (np.abs(np.mgrid[0:1024, 0:1024][1] - 512) < 100)
    assert image[lungs].mean() + 0.2 < image[body].mean() < image[masks["heart"]].mean() - 0.1
    assert image[clavicles].mean() > image[lungs].mean() + 0.15


# -------------------------------------------------------------------------------------------------- loader


def _drawn(seed: int = 0) -> dict[str, np.ndarray]:
    """Replays the generator: per image its anatomy, then its noise."""
    rng = np.random.default_rng(seed)
    drawn = {}
    for image_id in IDS:
        drawn[image_id] = jsrt_anatomy(1024, rng)
        rng.standard_normal((1024, 1024))
    return drawn


def test_loader_rows_splits_and_lazy_masks(jsrt_root):
    spec, data = load_benchmark("jsrt", jsrt_root, {})
    assert spec.metrics == ("dice", "hd95") and spec.primary_metric == "dice"
    assert list(spec.target("anatomy").structures) == STRUCTURES
    samples = data.samples
    assert list(samples["image_id"]) == IDS and (samples["patient_id"] == samples["image_id"]).all()
    # RayDINO's 80/20 split is cxrbench's: the loader leaves every image to it; SCR's folds (odd numbers in fold1,
    # even in fold2) are recorded
    assert samples["split"].eq("pool").all()
    assert list(samples["fold"]) == ["fold1", "fold2", "fold1", "fold2", "fold1", "fold2"]
    _, folds = load_benchmark("jsrt", jsrt_root, {"scr_folds": True})  # fold2 tests, fold1 is split train / val
    assert list(folds.samples["split"]) == ["pool", "test", "pool", "test", "pool", "test"]
    assert list(samples["anatomy"]) == IDS and (samples["anatomy:present"] == 1.0).all()
    assert list(samples["nodule"]) == [1, 1, 1, 1, 0, 0]
    assert data.synthetic
    drawn = _drawn()
    for image_id in ("JPCLN001", "JPCNN002"):
        masks = data.mask_reader("anatomy", image_id)
        assert masks.dtype == bool and masks.shape == (5, 1024, 1024)  # the masks' own grid, half the image side
        for channel, name in enumerate(STRUCTURES):
            np.testing.assert_array_equal(masks[channel], drawn[image_id][name], err_msg=f"{image_id} {name}")
    # the order, independently of the generator: the patient's left lung is on the image's right, clavicles on top
    masks = data.mask_reader("anatomy", "JPCLN003")
    centre = [np.argwhere(m).mean(axis=0) / 1024 for m in masks]  # (row, column)
    assert centre[0][1] > 0.5 > centre[1][1] and centre[3][1] > 0.5 > centre[4][1]
    assert centre[3][0] < 0.35 and centre[4][0] < 0.35 and centre[2][0] > 0.55
    with pytest.raises(DataError, match="no mask"):
        data.mask_reader("anatomy", float("nan"))


def test_loader_swaps_folds_and_follows_folder_options(jsrt_root, tmp_path):
    _, data = load_benchmark("jsrt", jsrt_root, {"train_fold": "fold2", "test_fold": "fold1", "scr_folds": True})
    assert list(data.samples["split"]) == ["test", "pool", "test", "pool", "test", "pool"]
    root = _linked_copy(jsrt_root, tmp_path / "mirror")
    (root / "scratch").rename(root / "JSRT_segmented")
    (root / "JSRT_segmented" / "fold1" / "masks" / "heart").rename(root / "JSRT_segmented" / "fold1" / "masks" / "Heart")
    (root / "JSRT_segmented" / "fold2" / "masks" / "heart").rename(root / "JSRT_segmented" / "fold2" / "masks" / "Heart")
    _, data = load_benchmark("jsrt", root, {"scr_dir": "JSRT_segmented", "structure_folders": {"heart": "Heart"}})
    assert data.mask_reader("anatomy", "JPCLN002").shape == (5, 1024, 1024)


def test_data_check_prints_counts(jsrt_root):
    result = runner.invoke(app, ["data", "check", "jsrt", "--data-root", str(jsrt_root)])
    assert result.exit_code == 0, result.output
    message = _message(result)
    assert "6 images, 6 patients" in message
    assert "unused (fold1) 3, unused (fold2) 3" in message and "with_mask" in message


def test_missing_mask_is_named_at_load(jsrt_root, tmp_path):
    root = _linked_copy(jsrt_root, tmp_path / "damaged")
    missing = root / "scratch" / "fold2" / "masks" / "left clavicle" / "JPCLN004.gif"
    missing.unlink()
    result = runner.invoke(app, ["data", "check", "jsrt", "--data-root", str(root)])
    assert result.exit_code == 2, result.output
    message = _message(result)
    assert str(missing) in message and "Complete the SCR download" in message and "Traceback" not in message
    # an image without any mask: both folds' expected files are named
    for fold in ("fold1", "fold2"):
        for folder in SCR_FOLDERS.values():
            (root / "scratch" / fold / "masks" / folder / "JPCNN001.gif").unlink(missing_ok=True)
    with pytest.raises(DataError) as caught:
        load_benchmark("jsrt", root, {})
    assert str(root / "scratch" / "fold1" / "masks" / "left lung" / "JPCNN001.gif") in str(caught.value)


def test_wrong_size_image_is_refused_at_load(jsrt_root, tmp_path):
    root = _linked_copy(jsrt_root, tmp_path / "truncated")
    image = root / "All247images" / "JPCLN002.IMG"
    data = image.read_bytes()
    image.unlink()  # a new file, not the shared hard link
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as caught:
        load_benchmark("jsrt", root, {})
    assert str(image) in str(caught.value) and "4194304 bytes" in str(caught.value)


def test_raydino_split_is_80_20_by_patient_and_selects_on_the_training_images(jsrt_root):
    """RayDINO: JSRT split 80/20, validated on the training images. On the 247 ids of the release (as the loader gives
    them: every image its own patient, left to cxrbench's split) and on the loader's own samples."""
    import pandas as pd

    from cxrbench.data.splits import check_patient_disjoint, seed_splits

    spec, data = load_benchmark("jsrt", jsrt_root, {})
    assert spec.split.validation_split == "train"
    ids = [f"JPCLN{k:03d}" for k in range(1, 155)] + [f"JPCNN{k:03d}" for k in range(1, 94)]
    release = pd.DataFrame({"image_id": ids, "patient_id": ids, "split": "pool"})
    tests = []
    for seed in range(5):
        manifest = seed_splits(release, "jsrt", seed, spec.split)
        check_patient_disjoint(manifest)
        counts = manifest["split"].value_counts().to_dict()
        assert counts == {"train": 198, "test": 49}  # 80 / 20 of 247, no held-out validation images
        tests.append(set(manifest.loc[manifest["split"] == "test", "image_id"]))
    assert all(t == tests[0] for t in tests)  # one test set for every seed and encoder
    own = seed_splits(data.samples, "jsrt", 0, spec.split)["split"]
    assert sorted(own.value_counts().to_dict().items()) == [("test", 1), ("train", 5)]
    _, folds = load_benchmark("jsrt", jsrt_root, {"scr_folds": True})
    split = seed_splits(folds.samples, "jsrt", 0, spec.split)
    assert list(split["split"]) == ["train", "test", "train", "test", "train", "test"]  # SCR's folds, one direction
