"""The SIIM-ACR Pneumothorax challenge's run-length encoding (Kaggle 2019, `mask_functions.py`), vectorised.

An encoding is space-separated pairs `gap length` over the image's pixels numbered down the columns (column-major,
Fortran order: pixel k is row k % H of column k // H). It is RELATIVE: the first gap counts from pixel 0, every later
gap from the end of the previous run. `-1` (or an empty text) is an empty mask. The starter code's `rle2mask` walks
the runs one by one (`position += gap; mask[position:position + length] = 255; position += length`) and returns
`mask.reshape(width, height).T`; `decode_relative_rle` gives the same pixels as a boolean [H, W] array.

Errors name `where` (the CSV file, row and image, as `data.csvs.row_error` does) and say how to fix the row.
"""

from __future__ import annotations

import re

import numpy as np

from cxrbench.errors import DataError

#: the text of an image without the structure
EMPTY = "-1"
_SHOWN = 60  # characters of a bad encoding quoted in an error
_NUMBERS = re.compile(r"\d+(?:\s+\d+)*")


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def parse_relative_rle(text: str, where: str) -> np.ndarray:
    """The encoding's numbers as int64 (empty for -1 or an empty text), checked: whole numbers >= 0, in pairs."""
    text = "" if text is None else str(text).strip()
    if text in ("", EMPTY):
        return np.zeros(0, dtype=np.int64)
    tokens = text.split()
    if not _NUMBERS.fullmatch(text):  # one match for the whole text; the loop below only names the culprit
        bad = next(t for t in tokens if not re.fullmatch(r"\d+", t))
        kind = "negative" if re.fullmatch(r"-\d+", bad) else "not a whole number"
        raise DataError(f"{where}: the run-length encoding {_quoted(text)} holds {bad!r}, {kind}. An encoding is pairs of "
                        "whole numbers >= 0 (gap, length), or -1 for no mask; fix or remove the row.")
    if max(map(len, tokens)) > 15:
        raise DataError(f"{where}: the run-length encoding {_quoted(text)} holds a number of more than 15 digits, past any "
                        "image; fix or remove the row.")
    if len(tokens) % 2:
        raise DataError(f"{where}: the run-length encoding {_quoted(text)} has an odd number of values ({len(tokens)}); "
                        "it must be (gap, length) pairs. The row may be cut short: fix or remove it.")
    return np.asarray(tokens, dtype=np.int64)


def run_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute (start, end) pixel of every run, end exclusive, from the relative (gap, length) pairs."""
    gaps, lengths = values[0::2], values[1::2]
    ends = np.cumsum(gaps + lengths)
    return ends - lengths, ends


def decode_relative_rle(text: str, height: int, width: int, where: str) -> np.ndarray:
    """Boolean [height, width] mask of a relative, column-major encoding (-1 or empty: all False).

    The result is a transposed view of a [width, height] array (Fortran order), as the encoding numbers pixels."""
    values = parse_relative_rle(text, where)
    height, width = int(height), int(width)
    columns = np.zeros((width, height), dtype=bool)
    if not len(values):
        return columns.T
    starts, ends = run_bounds(values)
    if ends[-1] > height * width:
        raise DataError(f"{where}: the RLE runs past the {height}x{width} image (rows x columns): its last run ends at "
                        f"pixel {int(ends[-1])}, the image has {height * width}. The encoding belongs to another image "
                        "or is corrupt; fix or remove the row.")
    lengths = ends - starts
    before = np.cumsum(lengths) - lengths  # pixels in the runs before each run
    pixels = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)
    columns.reshape(-1)[pixels] = True
    return columns.T


def encode_relative_rle(mask: np.ndarray) -> str:
    """The relative, column-major encoding of a boolean [H, W] mask ([1, H, W] is accepted); "-1" when empty."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"encode_relative_rle takes a 2-D mask, got shape {mask.shape}.")
    flat = mask.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat.size and flat[0]:
        edges = np.concatenate([[0], edges])
    if flat.size and flat[-1]:
        edges = np.concatenate([edges, [flat.size]])
    starts, ends = edges[0::2], edges[1::2]
    if not len(starts):
        return EMPTY
    gaps = starts - np.concatenate([[0], ends[:-1]])
    pairs = np.stack([gaps, ends - starts], axis=1).reshape(-1)
    return " ".join(map(str, pairs.tolist()))
