"""Decode each image once for every encoder: decoded intensities kept as uint16 under `<cache root>/pixels/`.

N encoders on one benchmark otherwise decode every DICOM N times (pydicom, the modality LUT and the window in
float64: often more time than a small encoder's forward pass). With `--pixel-cache` the first encoder to meet an
image stores `round(read_image(path) * 65535)` as `pixels/<k[:2]>/<k>.npz` (k = `cache.image_key`: the file's path,
size and modification time, so an edited file is decoded again); the others read it back as `q / 65535` in float32.

- 8-bit and 16-bit PNG / JPEG / TIFF round-trip bit for bit: `read_image` gives float32(k / 255) or
  float32(v / 65535), which `round(x * 65535)` maps back to 257 k or v exactly, and 257 k / 65535 is k / 255.
- DICOMs (and 12-bit JSRT files, float TIFFs) are quantised to 1/65535 of their window (an error below 8e-6 of the
  display range, far below the 8-bit steps most encoders were trained on). Because of it, features encoded through
  the pixel cache get a store of their own (`IDENTITY` in the store identity).
- Files are written atomically (a staging name renamed over the target), so processes decoding the same image
  at once are safe: each writes the same bytes and the last rename wins. The `.npz` container carries a CRC-32 of
  the pixels: a damaged or truncated file is decoded again from the original, never read as other pixels.
- Storage: the full-resolution originals as 16-bit values (about 18 MB for a 3000 x 3000 radiograph);
  `cxrbench cache ls` shows the size, `cxrbench cache clear --pixels` removes it.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrbench.data.common.images import read_image
from cxrbench.features.cache import image_key
from cxrbench.files import atomic_write, is_staging

FOLDER = "pixels"
LEVELS = 65535
#: recorded in the identity of feature stores encoded through this cache
IDENTITY = "uint16"
_ARRAY = "pixels"
_SUFFIX = ".npz"
_FIX = "Free some space, point --cache-dir (or $CXRBENCH_CACHE) at a disk with room, or drop --pixel-cache, then rerun."


def quantise(image: np.ndarray) -> np.ndarray:
    """A decoded image (float in [0, 1]) as uint16 steps of 1/65535."""
    return np.rint(np.clip(image.astype(np.float64), 0.0, 1.0) * LEVELS).astype(np.uint16)


def dequantise(steps: np.ndarray) -> np.ndarray:
    """uint16 steps back to float32 in [0, 1], rounded as `read_image` rounds k / 255 and v / 65535 (through float64),
    so that 8- and 16-bit rasters come back bit for bit."""
    return (steps.astype(np.float64) / LEVELS).astype(np.float32)


@dataclass(frozen=True)
class PixelCache:
    """The decoded-pixel cache under a cache root (picklable: DataLoader workers read through it)."""

    root: Path

    @property
    def folder(self) -> Path:
        return self.root / FOLDER

    def file(self, path: str | Path) -> Path:
        key = image_key(path)
        return self.folder / key[:2] / f"{key}{_SUFFIX}"

    def read(self, path: str | Path) -> np.ndarray:
        """The image as `read_image` gives it, through the cache: decoded (and stored) only when no intact cached
        copy exists. Raises ImageReadError as `read_image` does, StorageError when the copy cannot be written."""
        try:
            cached = self.file(path)
        except OSError:
            return read_image(path)  # a missing or unreadable original: raises its ImageReadError naming the file
        steps = _load(cached)
        if steps is None:
            steps = quantise(read_image(path))
            atomic_write(cached, lambda tmp: _save(tmp, steps), _FIX)
        return dequantise(steps)


def _save(target: Path, steps: np.ndarray) -> None:
    with open(target, "wb") as handle:  # a handle: np.savez would append ".npz" to a staging name
        np.savez(handle, **{_ARRAY: steps})


def _load(cached: Path) -> np.ndarray | None:
    """The stored steps, or None when the file is missing, truncated, fails its CRC or holds anything else."""
    try:
        with np.load(cached, allow_pickle=False) as stored:
            steps = stored[_ARRAY]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    return steps if steps.dtype == np.uint16 and steps.ndim == 2 else None


@dataclass
class PixelSummary:
    """What `cxrbench cache ls` shows of the pixel cache."""

    folder: Path
    images: int
    bytes: int  # leftovers included: they take space too
    leftovers: int  # staging files of writes in progress, or of killed processes


def pixel_summary(root: Path) -> PixelSummary | None:
    """The pixel cache under `root`, or None when there is none."""
    folder = root / FOLDER
    if not folder.is_dir():
        return None
    images = size = leftovers = 0
    for file in folder.glob("*/*"):
        try:
            size += file.stat().st_size
        except FileNotFoundError:  # renamed or removed by a run meanwhile
            continue
        leftovers += is_staging(file.name)
        images += not is_staging(file.name)
    return PixelSummary(folder, images, size, leftovers)


def clear_pixels(root: Path) -> int:
    """Remove the pixel cache under `root`; returns how many images it held."""
    summary = pixel_summary(root)
    if summary is None:
        return 0
    shutil.rmtree(summary.folder)
    return summary.images
