"""Original image sizes (height, width) without decoding pixels: DICOM Rows/Columns, a raster's header, or JSRT's
fixed size."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from cxrbench.data.common.images import DICOM_SUFFIXES, JSRT_SIDE, JSRT_SUFFIX, has_dicom_preamble
from cxrbench.errors import ImageReadError


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) in pixels of the image `read_image` would decode (the first frame of a DICOM)."""
    path = Path(path)
    try:
        if path.suffix.lower() == JSRT_SUFFIX and not has_dicom_preamble(path):  # headerless: one size (read_image checks it)
            return JSRT_SIDE, JSRT_SIDE
        if path.suffix.lower() in DICOM_SUFFIXES or has_dicom_preamble(path):
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
            if "Rows" not in ds or "Columns" not in ds:
                raise ImageReadError(f"DICOM file {path} has no Rows/Columns; cannot place its boxes.")
            return int(ds.Rows), int(ds.Columns)
        with Image.open(path) as img:
            width, height = img.size
            return int(height), int(width)
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"Cannot read the size of image {path}: {type(exc).__name__}: {exc}.") from exc


def image_sizes(paths: Sequence[str | Path], threads: int = 8) -> np.ndarray:
    """[N, 2] int (height, width) for `paths`, in order."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        sizes = list(pool.map(image_size, paths))
    return np.asarray(sizes, dtype=np.int64).reshape(len(sizes), 2)
