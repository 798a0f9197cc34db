"""COCO run-length encoding (pycocotools' format), as PAXRay++ stores its masks: {"size": [H, W], "counts": ...}.

Counts are alternating runs of 0s and 1s down the columns (column-major), starting with 0s, either a plain list or
pycocotools' compressed text. Decoding checks everything a damaged annotation can get wrong (characters, cut-short
numbers, negative runs, runs that do not cover the size) and names the annotation (`where`) with the fix; pycocotools
itself is not needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cxrbench.errors import DataError


def _counts_from_text(text: str, where: str) -> np.ndarray:
    """pycocotools' compressed counts (`rleFrString`): 5 bits a character (offset 48), 0x20 = more characters follow,
    0x10 on the last one = negative; from the fourth count on, each is stored as its difference to the count two
    before."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise DataError(f"{where}: its compressed RLE ends inside a number (the text is cut short). Restore the "
                                "annotation from the release, or remove it.")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise DataError(f"{where}: its compressed RLE holds {text[position]!r}, not a character of the COCO "
                                "encoding (ASCII '0' to 'o'). Restore the annotation from the release, or remove it.")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return np.asarray(counts, dtype=np.int64)


def _counts_to_text(counts: Sequence[int]) -> str:
    """The inverse of `_counts_from_text` (pycocotools' `rleToString`)."""
    out = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            code = value & 0x1F
            value >>= 5
            more = value != -1 if code & 0x10 else value != 0
            if more:
                code |= 0x20
            out.append(chr(code + 48))
    return "".join(out)


def encode_coco_rle(mask: np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """The COCO run-length encoding of a boolean [H, W] mask: counts of alternating 0 / 1 runs down the columns
    (column-major), starting with 0s; as pycocotools' compressed text, or a plain list (`compressed=False`)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"encode_coco_rle takes a 2-D mask, got shape {mask.shape}")
    flat = mask.T.reshape(-1)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    height, width = mask.shape
    return {"size": [int(height), int(width)], "counts": _counts_to_text(counts) if compressed else counts}


def decode_coco_rle(segmentation: Any, where: str) -> np.ndarray:
    """Boolean [H, W] mask of a COCO RLE {"size": [H, W], "counts": text or list}; DataErrors name `where`."""
    if not isinstance(segmentation, Mapping) or "size" not in segmentation or "counts" not in segmentation:
        kind = "a polygon list" if isinstance(segmentation, list) else type(segmentation).__name__
        raise DataError(f"{where}: its segmentation is {kind}, not a run-length encoding {{'size': [H, W], 'counts': ...}} "
                        "as PAXRay++ writes them. Restore the annotation from the release, or remove it.")
    height, width = rle_size(segmentation["size"], where)
    raw = segmentation["counts"]
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", errors="replace")
    if isinstance(raw, str):
        counts = _counts_from_text(raw, where)
    elif isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        counts = np.asarray(raw, dtype=np.int64)
    else:
        raise DataError(f"{where}: its RLE counts are {type(raw).__name__}, neither compressed text nor a list of whole "
                        "numbers. Restore the annotation from the release, or remove it.")
    if (counts < 0).any():
        raise DataError(f"{where}: its RLE has a negative run ({int(counts[counts < 0][0])}); the encoding is corrupt. "
                        "Restore the annotation from the release, or remove it.")
    if int(counts.sum()) != height * width:
        raise DataError(f"{where}: its RLE runs cover {int(counts.sum())} pixels but its size is {height} x {width} = "
                        f"{height * width}; the encoding is cut short or belongs to another mask. Restore the annotation "
                        "from the release, or remove it.")
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return flat.reshape(width, height).T


def rle_size(value: Any, where: str) -> tuple[int, int]:
    """(height, width) of an RLE's `size`, checked: two whole, positive pixel counts."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise DataError(f"{where}: its RLE size is {value!r}, not [height, width] in whole pixels.")
    return int(value[0]), int(value[1])
