"""Decode X-ray files into float intensities in [0, 1], 0 = black (air), whatever the file format.

DICOM: the modality LUT (rescale slope/intercept) is applied, then the VOI LUT or window when the file
carries one (the output range of the window maps to [0, 1]); without one, the image's own min..max maps
to [0, 1]. MONOCHROME1 images are inverted so that bone is always bright. PNG/JPEG/TIFF: 8-bit divides by
255 and 16-bit by 65535; colour images are converted to luma.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError

from cxrbench.errors import ImageReadError

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pragma: no cover - pydicom 2.4
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
# What to do about an unreadable image of a benchmark (callers with other inputs, e.g. `cxrbench embed`, say their own)
DATASET_FIX = "Re-download the file, or remove its row from the dataset's label CSV to leave it out."


def read_image(path: str | Path) -> np.ndarray:
    """A 2-D float32 array in [0, 1]. Raises ImageReadError naming the file and the problem on any decoding failure
    (the caller adds what the user should do, which depends on where the file came from)."""
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(path):  # a DICOM whatever its name
            image = _read_dicom(path)
        elif path.suffix.lower() == JSRT_SUFFIX:
            image = read_jsrt_raw(path)
        else:
            image = _read_raster(path)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"Image file {path} does not exist; check the data root and the dataset's CSV.") from None
    except Exception as exc:  # decoders raise many types; the user needs the file name either way
        raise ImageReadError(
            f"Cannot decode image {path}: {type(exc).__name__}: {exc} (compressed DICOMs need "
            "`pip install cxrbench[dicom]`)."
        ) from exc
    if image.ndim != 2 or min(image.shape) < 2:
        raise ImageReadError(f"Image {path} has shape {image.shape}; expected a single 2-D grey image.")
    if not np.isfinite(image).all():
        raise ImageReadError(f"Image {path} contains NaN or infinite values after decoding.")
    return image


def has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _read_dicom(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise ImageReadError(f"DICOM file {path} has no pixel data.")
    stored = ds.pixel_array
    if stored.ndim == 3 and int(getattr(ds, "SamplesPerPixel", 1)) == 1:
        stored = stored[0]  # multi-frame: the first frame is the radiograph
    if stored.ndim != 2:
        raise ImageReadError(f"DICOM file {path} has pixel array shape {stored.shape}; expected one grey frame.")
    modality = apply_modality_lut(stored, ds)
    low, high = _voi_output_range(ds)
    if low is not None:  # pydicom's VOI step wants the modality values as they are (LUT look-ups need integers)
        values = np.asarray(apply_voi_lut(modality, ds), dtype=np.float64)
    else:
        values = np.asarray(modality, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    scaled = np.clip(scaled, 0.0, 1.0)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip().upper() == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def _voi_output_range(ds: pydicom.Dataset) -> tuple[float | None, float | None]:
    """The range pydicom's VOI step maps into, or (None, None) when the file has no VOI LUT or window."""
    has_lut = "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if not (has_lut or has_window):
        return None, None
    if has_lut:
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        return 0.0, float(2 ** int(descriptor[2]) - 1)
    # Mirrors pydicom's apply_windowing: the output spans the stored (or modality-LUT) range, rescaled.
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence) > 0:
        low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(getattr(ds, "PixelRepresentation", 0)) == 1:
        bits = int(ds.BitsStored)
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    else:
        low, high = 0.0, float(2 ** int(ds.BitsStored) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def _read_raster(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img, dtype=np.float64)
                scale = 65535.0
            elif mode in ("L", "P", "RGB", "RGBA", "LA", "CMYK", "1"):
                array = np.asarray(img.convert("L"), dtype=np.float64)
                scale = 255.0
            elif mode == "F":
                array = np.asarray(img, dtype=np.float64)
                scale = 1.0
            else:
                raise ImageReadError(f"Image {path} has unsupported PIL mode '{mode}'.")
    except UnidentifiedImageError:
        raise ImageReadError(f"Cannot decode image {path}: not a DICOM, PNG, JPEG or TIFF file.") from None
    return np.clip(array / scale, 0.0, 1.0).astype(np.float32)


# JSRT (Shiraishi et al., AJR 2000): headerless raw files, 2048 x 2048, 12-bit values in big-endian 16-bit words.
# The stored value grows with film density (air, dark on the film, is near 4095), as common readers assume when they
# display `1 - x / 4096` (e.g. imlab-uiip/lung-segmentation-2d); cxrbench maps x to 1 - x / 4095, so 0 = black (air).
JSRT_SUFFIX = ".img"
JSRT_SIDE = 2048


def read_jsrt_raw(path: Path, side: int = JSRT_SIDE) -> np.ndarray:
    """A JSRT `.IMG` file as float32 in [0, 1], bone bright; ImageReadError naming the file when its size or values
    are not those of a JSRT image (`side` x `side` 12-bit values, big-endian)."""
    expected = side * side * 2
    found = path.stat().st_size
    if found != expected:
        square = int(round((found / 2) ** 0.5))
        hint = f" ({square} x {square} 16-bit words)" if square * square * 2 == found else ""
        raise ImageReadError(f"JSRT image {path} has {found} bytes{hint}; a JSRT .IMG file is headerless {side} x {side} "
                             f"16-bit words, {expected} bytes. Re-download it (the archive may be truncated or converted).")
    raw = np.fromfile(path, dtype=">u2").reshape(side, side)
    above = raw > 4095
    if above.mean() > 0.01:  # a little-endian copy puts the low byte high: most values exceed 12 bits
        raise ImageReadError(f"JSRT image {path}: {above.mean():.0%} of its values exceed 4095; JSRT images hold 12-bit "
                             "values in big-endian words (was the file byte-swapped?). Re-download it.")
    return (1.0 - np.minimum(raw, 4095).astype(np.float32) / 4095.0).astype(np.float32)
