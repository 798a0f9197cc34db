"""The files of one feature-store shard: their checksums, the finiteness and shape of their arrays, and positioned
reads of their rows. Kept apart from the store (`cxrbench.features.cache`) because this is the one place that knows
the bytes on disk: the store decides which shards exist and which rows to read, this module whether a shard's files can
be trusted and how to read rows without memory maps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from cxrbench.errors import CacheError

STORE_DTYPE = np.float16
CHECKSUMS = "checksums.json"
KEYS = "keys.txt"


def file_checksum(path: Path, on_block: Callable[[memoryview], None] | None = None) -> str:
    """'xxh3_128:<hex>' of a file's bytes, read in blocks (patch-grid shards are gigabytes); `on_block` sees each
    block too, so a second check of the same bytes costs no second read."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
            if on_block is not None:
                on_block(memoryview(block))
    return f"xxh3_128:{digest.hexdigest()}"


class _NonFiniteCount:
    """Counts the NaN / Inf values of an `.npy` array from its file's blocks (fed by `file_checksum`).

    Writes refuse non-finite features, but bytes changed on disk together with their checksum (a hand edit, a copy
    from a damaged store) would otherwise reach the heads as NaN scores with exit 0; counting them while the file is
    hashed reads nothing twice."""

    def __init__(self, array: "ShardArray"):
        self._skip, self._dtype, self._rest, self.count = array.offset, array.dtype, b"", 0

    @classmethod
    def of(cls, path: Path) -> "_NonFiniteCount | None":
        """A counter for the array in `path`; None when its header cannot be read (its checksum then tells)."""
        try:
            return cls(ShardArray.locate(path))
        except (CacheError, OSError, ValueError):
            return None

    def __call__(self, block: memoryview) -> None:
        if self._skip:
            cut = min(self._skip, len(block))
            block, self._skip = block[cut:], self._skip - cut
        data = bytes(self._rest) + bytes(block) if self._rest else block
        usable = len(data) - len(data) % self._dtype.itemsize
        self._rest = data[usable:]
        values = np.frombuffer(data[:usable], dtype=self._dtype)
        if self._dtype == np.float16:  # magnitude bits at or above Inf's: Inf or NaN (np.isfinite on float16 is 5x slower)
            magnitudes = values.view(np.uint16) & 0x7FFF
            if magnitudes.size and magnitudes.max() >= 0x7C00:  # one fast reduction; counted only when some are
                self.count += int(np.count_nonzero(magnitudes >= 0x7C00))
        else:
            self.count += int(values.size - np.count_nonzero(np.isfinite(values)))


# (file, size, mtime_ns, expected checksum) of every file this process has checked: each is hashed once
_VERIFIED: set[tuple[str, int, int, str]] = set()


def remember_verified(file: Path, checksum: str) -> None:
    """Record a file just written from bytes whose checksum is `checksum`: no need to hash it again on read."""
    stat = file.stat()
    _VERIFIED.add((str(file), stat.st_size, stat.st_mtime_ns, checksum))


def verify_shard(shard: Path, manifest: dict, arrays: Iterable[str] | None = None) -> str | None:
    """Why the shard's keys and `arrays` (default: all the store's) cannot be trusted, or None when each file
    matches the checksum written with it and each array holds finite values only."""
    try:
        sums = json.loads((shard / CHECKSUMS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{CHECKSUMS} is missing"
    except (OSError, ValueError):
        return f"{CHECKSUMS} is unreadable"
    for name in _array_files(manifest, arrays):
        expected = sums.get(name) if isinstance(sums, dict) else None
        if not isinstance(expected, str):
            return f"{CHECKSUMS} lists no checksum for {name}"
        file = shard / name
        try:
            stat = file.stat()
        except FileNotFoundError:
            return f"{name} is missing"
        memo = (str(file), stat.st_size, stat.st_mtime_ns, expected)
        if memo in _VERIFIED:
            continue
        non_finite = _NonFiniteCount.of(file) if name.endswith(".npy") else None
        if file_checksum(file, non_finite) != expected:
            return f"{name} does not match its checksum (damaged or truncated)"
        if non_finite is not None and non_finite.count:
            return f"{name} holds {non_finite.count} non-finite value(s) (NaN or Inf) although its checksum matches"
        _VERIFIED.add(memo)
    return None


def shape_problem(shard: Path, manifest: dict, array: ShardArray, rows: int) -> str | None:
    """Why a shard's array disagrees with the store's manifest.json (its row shape) or its keys (its row count):
    either file was edited or copied from elsewhere, and rows would land in the wrong places."""
    name = array.path.stem
    expected = (rows, *manifest["arrays"][name])
    if tuple(array.shape) != expected or array.dtype != np.dtype(STORE_DTYPE):
        return (f"{shard / array.path.name} holds a {np.dtype(array.dtype).name} array of shape {tuple(array.shape)}, "
                f"but manifest.json and keys.txt call for {np.dtype(STORE_DTYPE).name} of shape {expected}")
    return None


def _array_files(manifest: dict, arrays: Iterable[str] | None = None) -> list[str]:
    """The files of a shard that hold `arrays` (default: every array of the store), keys first."""
    names = (manifest.get("arrays") or {}) if arrays is None else arrays
    return [KEYS, *(f"{name}.npy" for name in names)]


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_READ_BYTES = 1 << 24  # bytes read at once at most (whole rows, one at least): the staging buffer stays small


@dataclass(frozen=True)
class ShardArray:
    """Where a shard's `.npy` array lies in its file, from its header: rows are then read by position.

    Holds no open file: a store of 750 shards would otherwise keep 750 descriptors open."""

    path: Path
    offset: int  # bytes before the first row
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def locate(cls, path: Path) -> "ShardArray":
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in _NPY_HEADERS:
                raise CacheError(f"{path} is a .npy file of version {version}, which cxrbench does not write.")
            shape, fortran_order, dtype = _NPY_HEADERS[version](handle)
            if fortran_order:
                raise CacheError(f"{path} holds a Fortran-ordered array, which cxrbench does not write.")
            return cls(path, handle.tell(), shape, dtype)

    def read_into(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """out[at[i]] = this array's row rows[i], for ascending `rows`: a run of consecutive rows is one read."""
        row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])
        chunk = max(1, _READ_BYTES // max(row_bytes, 1))
        buffer = np.empty((min(chunk, len(rows)), *self.shape[1:]), dtype=self.dtype)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        with open(self.path, "rb", buffering=0) as handle:
            for start, stop in zip([0, *breaks], [*breaks, len(rows)]):
                for first in range(start, stop, chunk):
                    count = min(chunk, stop - first)
                    handle.seek(self.offset + int(rows[first]) * row_bytes)
                    self._read_exactly(handle, buffer[:count])
                    out[at[first:first + count]] = buffer[:count]

    def _read_exactly(self, handle, target: np.ndarray) -> None:
        view = memoryview(target.reshape(-1).view(np.uint8))
        while view:
            count = handle.readinto(view)
            if not count:
                raise CacheError(f"{self.path} ends before the rows its header promises (truncated after it was "
                                 "checked?). Rerun the command.")
            view = view[count:]
