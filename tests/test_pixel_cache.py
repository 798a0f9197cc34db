"""The pixel cache (`--pixel-cache`): N encoders decode each image once, 8/16-bit rasters come back bit for bit,
DICOMs within the 1/65535 quantisation, damaged files are decoded again and a full disk is a StorageError."""

from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.data.nih.synthetic import write_synthetic_nih_cxr14
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import ImageReadError, StorageError
from cxrbench.features import extract as extract_module
from cxrbench.features import pixel_cache as pixel_cache_module
from cxrbench.features.extract import extract_features, store_identity
from cxrbench.features.pixel_cache import PixelCache, dequantise, pixel_summary, quantise


def _encoders():
    """Two cheap encoders with different preprocessing: the pixels baseline and a random ViT-S at 56 px."""
    return [build_encoder("pixels"), build_encoder("dinov2-small", weights="random", image_size=56)]


@pytest.fixture
def decodes(monkeypatch) -> dict[str, int]:
    """Counts `read_image` calls by image, wherever extraction decodes (workers are off in these tests)."""
    counts: dict[str, int] = {}

    def counting(path):
        counts[str(path)] = counts.get(str(path), 0) + 1
        return read_image(path)

    monkeypatch.setattr(extract_module, "read_image", counting)
    monkeypatch.setattr(pixel_cache_module, "read_image", counting)
    return counts


@pytest.fixture(scope="module")
def dicoms(vindr_root) -> list[str]:
    return sorted(str(p) for p in (vindr_root / "train").glob("*.dicom"))[:20]


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> list[str]:
    root = write_synthetic_nih_cxr14(tmp_path_factory.mktemp("nih") / "nih", patients=12, size=64)
    return sorted(str(p) for p in (root / "images").glob("*.png"))


def _extract(encoder, paths, cache: Path, pixel_cache: bool):
    return extract_features(encoder, FeatureRequest(), paths, cache, batch_size=8, num_workers=0, pixel_cache=pixel_cache)


def test_8_and_16_bit_values_round_trip_bit_for_bit(tmp_path):
    k = np.arange(256)
    assert np.array_equal(np.float32(k / 255), np.float32(257 * k / 65535))  # 65535 = 255 * 257
    rasters = {"8bit.png": Image.fromarray(k.astype(np.uint8).reshape(16, 16), mode="L"),
               "16bit.png": Image.fromarray(np.arange(65536, dtype=np.uint16).reshape(256, 256))}
    cache = PixelCache(tmp_path / "cache")
    for name, image in rasters.items():
        image.save(tmp_path / name)
        decoded = read_image(tmp_path / name)
        first, again = cache.read(tmp_path / name), cache.read(tmp_path / name)  # decoded, then read from its file
        assert first.dtype == again.dtype == np.float32
        assert np.array_equal(first, decoded) and np.array_equal(again, decoded), name
    assert np.array_equal(dequantise(quantise(np.float32(np.arange(65536) / 65535))), np.float32(np.arange(65536) / 65535))


def test_two_encoders_decode_each_image_once(dicoms, tmp_path, decodes):
    for encoder in _encoders():
        assert _extract(encoder, dicoms, tmp_path, pixel_cache=True).encoded == len(dicoms)
    assert sorted(decodes) == sorted(dicoms) and set(decodes.values()) == {1}
    assert pixel_summary(tmp_path).images == len(dicoms)
    decodes.clear()
    for encoder in _encoders():  # without the pixel cache each encoder decodes every image (other stores)
        _extract(encoder, dicoms, tmp_path, pixel_cache=False)
    assert set(decodes.values()) == {2}


def test_png_features_are_bit_identical_and_dicom_features_close(pngs, dicoms, tmp_path):
    for encoder in _encoders():
        for paths, exact in ((pngs, True), (dicoms, False)):
            plain = _extract(encoder, paths, tmp_path, pixel_cache=False)
            cached = _extract(encoder, paths, tmp_path, pixel_cache=True)
            assert plain.store.folder != cached.store.folder
            assert json.loads((cached.store.folder / "manifest.json").read_text())["identity"]["pixel_cache"] == "uint16"
            a, b = plain.store.load(plain.keys), cached.store.load(cached.keys)
            if exact:
                assert np.array_equal(a, b), encoder.spec.name
            else:  # pixels within 8e-6 of the window; float16 storage rounds at ~5e-4 relative
                np.testing.assert_allclose(b, a, rtol=2e-3, atol=2e-3)


def test_default_store_identity_is_the_encoders(dicoms):
    encoder = build_encoder("pixels")
    assert store_identity(encoder, FeatureRequest()) == encoder.identity(FeatureRequest())
    assert store_identity(encoder, FeatureRequest(), pixel_cache=True) == {**encoder.identity(FeatureRequest()),
                                                                           "pixel_cache": "uint16"}


def test_damaged_pixel_files_are_decoded_again(dicoms, tmp_path, decodes):
    cache = PixelCache(tmp_path)
    originals = [cache.read(path) for path in dicoms[:3]]
    truncated, flipped, missing = (cache.file(path) for path in dicoms[:3])
    truncated.write_bytes(truncated.read_bytes()[:1000])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the pixels: the container's CRC-32 catches it
    flipped.write_bytes(bytes(data))
    missing.unlink()
    decodes.clear()
    for path, original in zip(dicoms[:3], originals):
        assert np.array_equal(cache.read(path), original)
    assert decodes == {path: 1 for path in dicoms[:3]}
    decodes.clear()
    assert all(np.array_equal(cache.read(p), o) for p, o in zip(dicoms[:3], originals)) and not decodes  # repaired


def test_a_full_disk_is_a_storage_error_not_an_image_error(dicoms, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pixel_cache_module.np, "savez", full)
    with pytest.raises(StorageError, match="No space left.*--pixel-cache") as excinfo:
        _extract(build_encoder("pixels"), dicoms[:2], tmp_path, pixel_cache=True)
    assert "Re-download" not in str(excinfo.value)
    assert pixel_summary(tmp_path).images == 0 and pixel_summary(tmp_path).leftovers == 0


def test_an_undecodable_image_stays_an_image_error(tmp_path):
    bad = tmp_path / "bad.dicom"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\1" * 64)
    with pytest.raises(ImageReadError, match="bad.dicom.*Re-download the file"):
        _extract(build_encoder("pixels"), [str(bad)], tmp_path / "cache", pixel_cache=True)
    assert pixel_summary(tmp_path / "cache") is None  # nothing cached for it


def test_the_cache_is_picklable_for_dataloader_workers(tmp_path):
    cache = PixelCache(tmp_path)
    assert pickle.loads(pickle.dumps(cache)) == cache


def test_cli_extracts_through_the_pixel_cache_then_lists_and_clears_it(vindr_root, tmp_path):
    runner = CliRunner()
    cache = tmp_path / "cache"
    done = runner.invoke(app, ["extract", "vindr", "-e", "pixels", "--data-root", str(vindr_root), "--cache-dir", str(cache),
                               "--device", "cpu", "--pixel-cache", "--batch-size", "auto"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "batch size 32 (--batch-size auto" in done.output
    images = len(list(vindr_root.rglob("*.dicom")))
    listed = runner.invoke(app, ["cache", "ls", "--cache-dir", str(cache)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and f"{images} decoded images" in listed.output, listed.output
    cleared = runner.invoke(app, ["cache", "clear", "--pixels", "--yes", "--cache-dir", str(cache)])
    assert cleared.exit_code == 0 and f"{images} decoded image(s)" in cleared.output
    assert pixel_summary(cache) is None and len(list((cache / "features").iterdir())) == 1  # the store stays
