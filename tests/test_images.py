"""Pin `cxrbench.data.common.images.read_image` on files written at test time with known pixel values.

The DICOM expectations are computed independently of pydicom's VOI code: the LINEAR window of
DICOM PS3.3 C.11.2.1.2 is

    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin, clipped to [ymin, ymax]

so after normalising by the output range (ymax - ymin) the expected value in [0, 1] is
clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1), where x is the modality value (slope * stored + intercept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cxrbench.data.common.images import read_image
from cxrbench.errors import DataError, ImageReadError

# Every 12-bit value exactly once, as a 64 x 64 image.
ALL_12BIT = np.arange(4096, dtype=np.uint16).reshape(64, 64)


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    signed: bool = False,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    pixel_data: bool = True,
    voi_lut: tuple[list[int], list[int]] | None = None,
) -> Path:
    """A minimal uncompressed DX/SC DICOM: 16 bits allocated, `bits_stored` stored."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "P0001"
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if voi_lut is not None:
        descriptor, data = voi_lut
        item = pydicom.Dataset()
        item.LUTDescriptor = descriptor
        item.LUTData = np.asarray(data, dtype=np.uint16).tobytes()  # OW in explicit VR
        ds.VOILUTSequence = Sequence([item])
    if pixel_data:
        dtype = np.int16 if signed else np.uint16
        ds.PixelData = np.ascontiguousarray(stored, dtype=dtype).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 LINEAR window, normalised to [0, 1] by its output range."""
    x = np.asarray(x, dtype=np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


# --------------------------------------------------------------------------------------------- DICOM


def test_monochrome2_without_window_is_min_max_scaled(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(100, 3001, size=(40, 50)).astype(np.uint16)
    stored[0, 0], stored[-1, -1] = 100, 3000  # pin the extremes
    path = write_dicom(tmp_path / "m2.dicom", stored)

    image = read_image(path)

    assert image.dtype == np.float32
    assert image.shape == (40, 50)
    expected = (stored.astype(np.float64) - 100.0) / (3000.0 - 100.0)
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-7)
    assert image[0, 0] == 0.0 and image[-1, -1] == 1.0
    # Not scaled by the 12-bit range: 3000 would be 0.7326 then.
    assert image.max() == 1.0


def test_monochrome1_without_window_is_inverted(tmp_path):
    rng = np.random.default_rng(1)
    stored = rng.integers(200, 4001, size=(30, 20)).astype(np.uint16)
    stored[0, 0], stored[1, 1] = 200, 4000
    path = write_dicom(tmp_path / "m1.dicom", stored, photometric="MONOCHROME1")

    image = read_image(path)

    expected = 1.0 - (stored.astype(np.float64) - 200.0) / (4000.0 - 200.0)
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-7)
    assert image[0, 0] == 1.0  # the lowest stored value is white in MONOCHROME1
    assert image[1, 1] == 0.0


def test_constant_dicom_without_window_is_all_zero(tmp_path):
    path = write_dicom(tmp_path / "flat.dicom", np.full((8, 8), 777, dtype=np.uint16))
    image = read_image(path)
    assert image.shape == (8, 8)
    assert np.all(image == 0.0)


def test_monochrome2_window_named_pixels(tmp_path):
    # The brief's pixel values, on a 2 x 5 image whose other values span a different range.
    stored = np.array([[0, 1000, 2048, 3000, 4095], [1100, 1500, 2047, 2500, 3047]], dtype=np.uint16)
    path = write_dicom(tmp_path / "win.dicom", stored, window=(2048, 2000))

    image = read_image(path)

    # Hand values of ((x - 2047.5) / 1999 + 0.5), clipped.
    hand = np.array(
        [
            [0.0, 0.0, 0.5 + 0.5 / 1999, 0.5 + 952.5 / 1999, 1.0],
            [0.5 - 947.5 / 1999, 0.5 - 547.5 / 1999, 0.5 - 0.5 / 1999, 0.5 + 452.5 / 1999, 1.0],
        ]
    )
    np.testing.assert_allclose(image, hand, rtol=0, atol=1e-6)
    np.testing.assert_allclose(image, linear_window(stored, 2048, 2000), rtol=0, atol=1e-6)


def test_monochrome2_window_every_12bit_value(tmp_path):
    path = write_dicom(tmp_path / "win_all.dcm", ALL_12BIT, window=(2048, 2000))
    image = read_image(path)
    np.testing.assert_allclose(image, linear_window(ALL_12BIT, 2048, 2000), rtol=0, atol=1e-6)
    # The window, not min-max: values below c - w/2 are black, above c + w/2 white.
    assert np.all(image[ALL_12BIT <= 1047] == 0.0)
    assert np.all(image[ALL_12BIT >= 3048] == 1.0)


def test_full_range_window_is_nearly_identity(tmp_path):
    # The synthetic data's window (2048, 4096) on a 12-bit image: value ~ x / 4095.
    path = write_dicom(tmp_path / "full.dcm", ALL_12BIT, window=(2048, 4096))
    image = read_image(path)
    np.testing.assert_allclose(image, linear_window(ALL_12BIT, 2048, 4096), rtol=0, atol=1e-6)
    np.testing.assert_allclose(image, ALL_12BIT / 4095.0, rtol=0, atol=1e-3)


def test_window_with_rescale_slope_and_intercept(tmp_path):
    # Modality values 2 * stored - 1024 span -1024..7166; the window is given in modality units.
    path = write_dicom(tmp_path / "rescale.dcm", ALL_12BIT, window=(1000, 3000), rescale=(2, -1024))

    image = read_image(path)

    modality = 2.0 * ALL_12BIT.astype(np.float64) - 1024.0
    expected = linear_window(modality, 1000, 3000)
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)
    assert 0.0 <= image.min() and image.max() <= 1.0
    # Both clipped ends and the ramp are present, so the test sees the whole mapping.
    assert (image == 0.0).sum() > 100 and (image == 1.0).sum() > 100
    assert ((image > 0.01) & (image < 0.99)).sum() > 1000
    # Stored 1012 -> modality 1000 = the window centre -> just above one half.
    np.testing.assert_allclose(image.ravel()[1012], 0.5 + 0.5 / 2999, rtol=0, atol=1e-6)
    # Window applied to stored values instead of modality values would put stored 1000 near 0.5.
    assert image.ravel()[1000] < 0.495


def test_rescale_without_window_is_min_max_of_modality_values(tmp_path):
    stored = np.array([[10, 20], [30, 110]], dtype=np.uint16)  # modality -1004, -984, -964, -804
    path = write_dicom(tmp_path / "rescale_nowin.dcm", stored, rescale=(2, -1024))
    image = read_image(path)
    np.testing.assert_allclose(image, [[0.0, 0.1], [0.2, 1.0]], rtol=0, atol=1e-7)


def test_monochrome1_with_window_is_inverted(tmp_path):
    path = write_dicom(tmp_path / "m1win.dcm", ALL_12BIT, photometric="MONOCHROME1", window=(2048, 2000))
    image = read_image(path)
    np.testing.assert_allclose(image, 1.0 - linear_window(ALL_12BIT, 2048, 2000), rtol=0, atol=1e-6)
    assert image.ravel()[0] == 1.0 and image.ravel()[4095] == 0.0


def test_monochrome1_with_window_and_rescale(tmp_path):
    path = write_dicom(
        tmp_path / "m1win_rescale.dcm", ALL_12BIT, photometric="MONOCHROME1", window=(500, 3000), rescale=(2, -1024)
    )
    image = read_image(path)
    modality = 2.0 * ALL_12BIT.astype(np.float64) - 1024.0
    np.testing.assert_allclose(image, 1.0 - linear_window(modality, 500, 3000), rtol=0, atol=1e-6)


def test_signed_pixels_with_window(tmp_path):
    # PixelRepresentation 1, 12 bits stored: values -2048..2047; the window output spans that range.
    stored = (ALL_12BIT.astype(np.int32) - 2048).astype(np.int16)
    path = write_dicom(tmp_path / "signed.dcm", stored, signed=True, window=(0, 1000))
    image = read_image(path)
    np.testing.assert_allclose(image, linear_window(stored, 0, 1000), rtol=0, atol=1e-6)
    assert image.ravel()[0] == 0.0 and image.ravel()[-1] == 1.0


def test_voi_lut_sequence_maps_to_lut_output_range(tmp_path):
    # Note: read_image casts the modality output to float64 before apply_voi_lut, so pydicom warns
    # "Applying a VOI LUT on a float input array may give incorrect results" here (left visible on purpose).
    # 12-bit LUT output (descriptor [entries, first mapped value, bits]): entry i = 4 * i for 1024 entries,
    # first mapped stored value 1000. Below 1000 -> first entry, above 2023 -> last entry.
    lut = [4 * i for i in range(1024)]
    stored = np.array([[0, 1000, 1001], [1500, 2023, 4095]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut.dcm", stored, voi_lut=([1024, 1000, 12], lut))
    image = read_image(path)
    expected = np.array([[0, 0, 4], [2000, 4 * 1023, 4 * 1023]]) / 4095.0
    np.testing.assert_allclose(image, expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- suffixes and detection


@pytest.mark.parametrize("name", ["scan.dcm", "scan.DCM", "scan.dic", "scan.dicom", "scan_without_suffix", "scan.img"])
def test_dicom_is_recognised_by_suffix_or_preamble(tmp_path, name):
    stored = np.array([[0, 100], [200, 400]], dtype=np.uint16)
    path = write_dicom(tmp_path / name, stored)
    with open(path, "rb") as handle:
        handle.seek(128)
        assert handle.read(4) == b"DICM"
    image = read_image(path)
    np.testing.assert_allclose(image, [[0.0, 0.25], [0.5, 1.0]], rtol=0, atol=1e-7)


def test_accepts_str_path(tmp_path):
    path = write_dicom(tmp_path / "s.dcm", np.array([[0, 4], [2, 1]], dtype=np.uint16))
    np.testing.assert_allclose(read_image(str(path)), [[0.0, 1.0], [0.5, 0.25]], rtol=0, atol=1e-7)


# --------------------------------------------------------------------------------------------- raster


def test_png_8bit_divides_by_255(tmp_path):
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "grey.png"
    Image.fromarray(values, mode="L").save(path)
    with Image.open(path) as img:
        assert img.mode == "L"

    image = read_image(path)

    assert image.dtype == np.float32 and image.shape == (16, 16)
    np.testing.assert_array_equal(image, (values / 255.0).astype(np.float32))
    assert image[0, 0] == 0.0 and image[-1, -1] == 1.0


def test_png_16bit_divides_by_65535(tmp_path):
    values = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # 16-bit, not silently reduced to 8 bits

    image = read_image(path)

    np.testing.assert_array_equal(image, (values / 65535.0).astype(np.float32))
    # 4095 / 65535 ~ 0.0625: a 12-bit image saved in a 16-bit PNG is dark, not rescaled.
    assert abs(image[1, 0] - 4095 / 65535) < 1e-7


def test_rgb_png_is_converted_to_luma(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, 0] = (255, 255, 255)
    rgb[1, 1] = (100, 100, 100)
    rgb[1, 2] = (10, 200, 50)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb, mode="RGB").save(path)

    image = read_image(path)

    assert image.shape == (2, 3)
    # ITU-R BT.601 luma, which PIL's "L" conversion implements in 8-bit integer arithmetic.
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    np.testing.assert_allclose(image, luma, rtol=0, atol=0.5 / 255 + 1e-7)
    assert abs(image[0, 0] - 76 / 255) < 1e-6  # red is dark, not the channel mean 85/255
    assert abs(image[0, 1] - 150 / 255) < 1e-6
    assert abs(image[0, 2] - 29 / 255) < 1e-6
    assert image[1, 0] == 1.0 and abs(image[1, 1] - 100 / 255) < 1e-6


def test_jpeg_reads_approximately(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    values = np.round(20 + 200 * (0.6 * xx / 95 + 0.4 * yy / 63)).astype(np.uint8)
    path = tmp_path / "smooth.jpg"
    Image.fromarray(values, mode="L").save(path, quality=95)

    image = read_image(path)

    assert image.shape == (64, 96) and image.dtype == np.float32
    diff = np.abs(image.astype(np.float64) - values / 255.0)
    assert diff.mean() < 1.0 / 255
    assert diff.max() < 6.0 / 255


# --------------------------------------------------------------------------------------------- errors


def _assert_read_error_names(path: Path, *fragments: str) -> ImageReadError:
    with pytest.raises(ImageReadError) as excinfo:
        read_image(path)
    message = str(excinfo.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert isinstance(excinfo.value, DataError)
    return excinfo.value


@pytest.mark.parametrize("suffix", [".dicom", ".dcm", ".png", ".jpg", ""])
def test_corrupt_file_raises_image_read_error(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    data = np.random.default_rng(42).integers(0, 256, size=2000, dtype=np.uint8).tobytes()
    assert data[128:132] != b"DICM"
    path.write_bytes(data)
    _assert_read_error_names(path)


def test_truncated_png_raises_image_read_error(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, size=(64, 64), dtype=np.uint8)).save(good)
    path = tmp_path / "truncated.png"
    path.write_bytes(good.read_bytes()[:200])
    _assert_read_error_names(path)


def test_empty_file_raises_image_read_error(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_read_error_names(path)


@pytest.mark.parametrize("name", ["missing.dcm", "missing.png", "missing"])
def test_missing_file_raises_image_read_error(tmp_path, name):
    path = tmp_path / name
    _assert_read_error_names(path, "does not exist")


def test_dicom_without_pixel_data_raises_image_read_error(tmp_path):
    path = write_dicom(tmp_path / "nopixels.dcm", np.zeros((4, 4), dtype=np.uint16), pixel_data=False)
    assert "PixelData" not in pydicom.dcmread(path)
    _assert_read_error_names(path, "no pixel data")


def test_single_row_image_is_refused(tmp_path):
    path = tmp_path / "row.png"
    Image.fromarray(np.arange(10, dtype=np.uint8)[None, :], mode="L").save(path)
    _assert_read_error_names(path, "shape")
