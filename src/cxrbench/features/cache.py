"""An on-disk feature store: one folder per extractor identity, append-only shards with checksums.

Layout (under the cache root, default ~/.cache/cxrbench or $CXRBENCH_CACHE):

    features/<encoder>-<key>/manifest.json       identity (encoder, weights, preprocessing, request), dtype, shapes
    features/<encoder>-<key>/.lock               held while a process adds shards (others wait, then reuse them)
    features/<encoder>-<key>/shards/<n>-<id>/    keys.txt (one image key per row), <array>.npy (float16),
                                                 checksums.json (xxh3-128 of every file of the shard)

Why each piece:
- The key is a hash of the identity and the format, so changing any part of it never returns stale features.
- A shard is written under a staging name and renamed into place with its checksums, so a killed run leaves only
  complete shards (and staging leftovers, removed once their process is gone) and a rerun encodes just what is
  missing.
- Bytes damaged on disk must never become a silently different number: every shard file is checked against its
  checksum once per process before it is read (xxh3 runs at several GB/s: cheap next to decoding and encoding);
  `extract_features` re-encodes the images of a damaged shard, a reader that meets one says how to repair it.
- Non-finite features (an encoder's NaN, a float16 overflow) are refused when written, and counted while a shard is
  hashed before it is read (bytes edited together with their checksum): such a shard is damaged like any other.
- A shard array whose shape disagrees with manifest.json or with its keys is refused: rows would land in wrong places.
- Rows are read with positioned reads of just the rows asked for (`ShardArray`), not through memory maps: pages a
  map has touched stay in the process's resident set until it is unmapped, so one pass over a patch-grid cache
  larger than RAM grew RSS to the cache's size. Read bytes pass through the page cache, which the kernel reclaims.

This module is the store (its key and manifest, index, lock, writes and lazy row views); the shard files' checksums,
checks and positioned reads are `cxrbench.features.shards`; listing and clearing stores is `cxrbench.features.cache_admin`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrbench.errors import CacheError
from cxrbench.features.shards import (CHECKSUMS, KEYS, STORE_DTYPE, ShardArray, file_checksum, remember_verified,
                                      shape_problem, verify_shard)
from cxrbench.files import atomic_text, folder_lock, is_staging, path_part, remove_stale, staging_name, storage_errors

FORMAT_VERSION = 2  # 2: per-shard checksums
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def default_cache_root() -> Path:
    return Path(os.environ.get("CXRBENCH_CACHE", Path.home() / ".cache" / "cxrbench")).expanduser()


def image_key(path: str | Path) -> str:
    """Identity of an image file: resolved path, size and modification time (cheap for 100k DICOMs)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return hashlib.sha256(f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]


@dataclass
class _Shard:
    path: Path
    keys: list[str]


@dataclass(frozen=True)
class DamagedShard:
    path: Path
    reason: str
    images: int


class FeatureStore:
    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        self._shards: list[_Shard] = []
        self._index: dict[str, tuple[int, int]] = {}
        #: shards whose keys could not even be read (found by a scan; their images count as missing)
        self.unreadable: list[DamagedShard] = []
        self._scan()

    @property
    def encoder(self) -> str:
        return str(self.manifest["identity"]["encoder"])

    @property
    def repair_hint(self) -> str:
        return (f"Rerun the command (cxrbench re-encodes the images of damaged shards), or remove the store with "
                f"`cxrbench cache clear --encoder {self.encoder}`.")

    @classmethod
    def open(cls, root: Path, identity: dict, create: bool = True) -> "FeatureStore":
        text = json.dumps({"format": FORMAT_VERSION, "identity": identity}, sort_keys=True, default=list)
        key = hashlib.sha256(text.encode()).hexdigest()
        folder = root / "features" / f"{path_part(identity['encoder'])}-{key[:16]}"
        manifest_path = folder / "manifest.json"
        if manifest_path.is_file():
            manifest = read_manifest(manifest_path)
            if manifest is None:
                raise CacheError(
                    f"Feature cache {folder} is damaged: {manifest_path} is unreadable. Remove the store with "
                    f"`cxrbench cache clear --encoder {identity['encoder']}` and rerun (its images are encoded again)."
                )
            if manifest.get("key") != key or manifest.get("format") != FORMAT_VERSION:
                raise CacheError(
                    f"Feature cache {folder} holds features of another identity or format; refusing to overwrite. "
                    f"Remove it with `cxrbench cache clear --encoder {identity['encoder']}`."
                )
            return cls(folder, manifest)
        if not create:
            raise CacheError(f"No cached features at {folder}.")
        manifest = {"format": FORMAT_VERSION, "key": key, "identity": identity, "dtype": np.dtype(STORE_DTYPE).name, "arrays": {}}
        with storage_errors(folder, _CACHE_FIX):
            (folder / "shards").mkdir(parents=True, exist_ok=True)
            if not manifest_path.is_file():  # another process may have created it meanwhile: same content
                atomic_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=list))
        return cls(folder, manifest)

    # -- index ----------------------------------------------------------------------------------------------
    def _scan(self) -> None:
        self._shards, self._index, self.unreadable = [], {}, []
        shard_root = self.folder / "shards"
        for shard_dir in sorted(p for p in shard_root.iterdir() if p.is_dir() and not is_staging(p.name)):
            try:
                keys = (shard_dir / KEYS).read_text(encoding="utf-8").split()
            except (OSError, UnicodeDecodeError):
                self.unreadable.append(DamagedShard(shard_dir, f"{KEYS} is missing or unreadable", 0))
                continue
            self._add(_Shard(shard_dir, keys))

    def refresh(self) -> None:
        """Read the shard list again (another process may have added shards) and the manifest's array shapes."""
        manifest = read_manifest(self.folder / "manifest.json")
        if manifest is not None:
            self.manifest = manifest
        self._scan()

    def _add(self, shard: _Shard) -> None:
        number = len(self._shards)
        self._shards.append(shard)
        for row, key in enumerate(shard.keys):
            self._index.setdefault(key, (number, row))

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self._index]

    # -- integrity ------------------------------------------------------------------------------------------
    def check(self, keys: Iterable[str]) -> list[DamagedShard]:
        """The shards holding any of `keys` that fail their checksums or hold non-finite values (re-encoded by the
        caller), plus shards whose keys were unreadable. Arrays whose shapes disagree with manifest.json are refused
        (CacheError): one of the two was edited, and re-encoding against a wrong manifest cannot repair it."""
        holding = sorted({self._index[k][0] for k in keys if k in self._index})
        damaged = list(self.unreadable)
        for number in holding:
            shard = self._shards[number]
            reason = verify_shard(shard.path, self.manifest)
            if reason is not None:
                damaged.append(DamagedShard(shard.path, reason, len(shard.keys)))
            else:
                for name in self.manifest["arrays"]:
                    self.open_array(shard.path, name, len(shard.keys))  # a store-wide inconsistency: refused
        return damaged

    def discard(self, damaged: Sequence[DamagedShard]) -> None:
        """Delete damaged shards (call under `lock`): their images become missing and are encoded again."""
        for shard in damaged:
            shutil.rmtree(shard.path, ignore_errors=True)
        self._scan()

    def lock(self, on_wait: Callable[[str], None] | None = None):
        """Exclusive right to add shards: a second process waits here, then finds the first one's shards."""
        return folder_lock(self.folder / ".lock", f"features into {self.folder}", on_wait)

    def remove_stale_work(self) -> int:
        """Staging folders of killed processes (call under `lock`)."""
        return remove_stale(self.folder / "shards", ".")

    # -- writing --------------------------------------------------------------------------------------------
    def write_shard(self, keys: Sequence[str], arrays: dict[str, np.ndarray], names: Sequence[str] | None = None) -> None:
        """Add one shard atomically (a staging folder with checksums, renamed into place). `names` are the rows'
        images as a user knows them, for the message when an encoder's output is not finite."""
        if any(len(a) != len(keys) for a in arrays.values()):
            raise ValueError("every array needs one row per key")
        for name, array in arrays.items():
            _refuse_non_finite(self, name, array, names or keys)
        stored = {name: np.ascontiguousarray(array, dtype=STORE_DTYPE) for name, array in arrays.items()}
        shapes = {name: list(array.shape[1:]) for name, array in stored.items()}
        known = self.manifest["arrays"]
        if known and known != shapes:
            raise CacheError(f"Shapes {shapes} differ from the store's {known} in {self.folder}.")
        shard_root = self.folder / "shards"
        tmp = shard_root / staging_name("shard")
        with storage_errors(tmp, _CACHE_FIX):
            try:
                tmp.mkdir()
                sums = {}
                for name, array in stored.items():
                    np.save(tmp / f"{name}.npy", array)
                    sums[f"{name}.npy"] = file_checksum(tmp / f"{name}.npy")
                (tmp / KEYS).write_text("\n".join(keys) + "\n", encoding="utf-8")
                sums[KEYS] = file_checksum(tmp / KEYS)
                (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True), encoding="utf-8")
                if not known:
                    self.manifest["arrays"] = shapes
                    atomic_text(self.folder / "manifest.json", json.dumps(self.manifest, indent=2, sort_keys=True, default=list))
                final = shard_root / f"{len(self._shards):06d}-{uuid.uuid4().hex[:8]}"
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        for name, checksum in sums.items():
            remember_verified(final / name, checksum)
        self._add(_Shard(final, list(keys)))

    # -- reading --------------------------------------------------------------------------------------------
    def load(self, keys: Sequence[str], array: str = "global") -> np.ndarray:
        """Rows of `array` for `keys`, in order, as float32 (in memory)."""
        return self.rows(keys, array)[np.arange(len(keys))]

    def rows(self, keys: Sequence[str], array: str = "global") -> "CachedRows":
        """Rows of `array` for `keys`, read from the shards only when indexed, and then only those rows.

        Patch grids rarely fit in memory (VinDr at 518 px: 18,000 x 37 x 37 x 768 float16 = 38 GB); heads read
        them a batch at a time, once per epoch, and memory holds the batch, not what was read before. Each shard is
        checked against its checksums when first opened.
        """
        missing = self.missing(keys)
        if missing:
            raise CacheError(f"{len(missing)} requested images are not in {self.folder}; extract them first.")
        if array not in self.manifest["arrays"]:
            raise CacheError(f"Store {self.folder} has no '{array}' features (it has {list(self.manifest['arrays'])}).")
        locations = np.array([self._index[key] for key in keys], dtype=np.int64).reshape(len(keys), 2)
        return CachedRows(self, list(self._shards), array, locations, tuple(self.manifest["arrays"][array]))

    def open_array(self, shard: Path, array: str, rows: int) -> "ShardArray":
        """A shard's array of `rows` rows, located in its file, after its checksum (and that of its keys), its
        finiteness and its shape are confirmed."""
        reason = verify_shard(shard, self.manifest, [array])
        if reason is not None:
            raise CacheError(f"Feature cache shard {shard} is damaged: {reason}. {self.repair_hint}")
        located = ShardArray.locate(shard / f"{array}.npy")
        reason = shape_problem(shard, self.manifest, located, rows)
        if reason is not None:
            raise CacheError(f"Feature cache {self.folder} is inconsistent: {reason}. Remove the store with "
                             f"`cxrbench cache clear --encoder {self.encoder}` and rerun (its images are encoded again).")
        return located


_CACHE_FIX = "Free some space, or point --cache-dir (or $CXRBENCH_CACHE) at a disk with room, then rerun."


def _refuse_non_finite(store: FeatureStore, array_name: str, array: np.ndarray, names: Sequence[str]) -> None:
    """Refuse NaN / Inf features and values beyond float16's range (they would be stored as Inf)."""
    if array.size == 0:
        return
    low, high = float(np.min(array)), float(np.max(array))  # NaN propagates: both comparisons below fail
    if -_FLOAT16_MAX <= low and high <= _FLOAT16_MAX:
        return
    flat = np.asarray(array, dtype=np.float64).reshape(len(array), -1)
    bad = np.flatnonzero(~(np.isfinite(flat) & (np.abs(flat) <= _FLOAT16_MAX)).all(axis=1))
    shown = ", ".join(str(names[i]) for i in bad[:3])
    fp16 = (" --precision fp16 overflows beyond 65504 inside some networks: use --precision bf16 or fp32."
            if store.manifest["identity"].get("precision") == "fp16" else "")
    raise CacheError(
        f"Encoder '{store.encoder}' produced non-finite or out-of-float16-range '{array_name}' features for "
        f"{len(bad)} image(s), e.g. {shown}; nothing was cached for them. Check the weights (a damaged checkpoint "
        f"gives NaN) and these images.{fp16}"
    )


def read_manifest(path: Path) -> dict | None:
    """A store's manifest.json, or None when it is missing or not a manifest (a damaged store)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("identity"), dict):
        return None
    arrays = manifest.get("arrays")
    if not isinstance(arrays, dict) or not all(
            isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
            for shape in arrays.values()):
        return None  # array shapes that are not lists of sizes: unreadable as a manifest
    return manifest


class CachedRows:
    """A read-only, array-like view of cached rows: `rows[indices]` reads those rows as float32."""

    def __init__(self, store: FeatureStore, shards: list[_Shard], array: str, locations: np.ndarray, row_shape: tuple[int, ...]):
        self._store, self._shards, self._array = store, shards, array
        self._locations = locations  # [N, 2]: shard number, row within the shard
        self._arrays: dict[int, ShardArray] = {}  # shard number -> its array, checked and located once
        self.shape = (len(locations), *row_shape)

    def __len__(self) -> int:
        return len(self._locations)

    def select(self, mask_or_indices: np.ndarray) -> "CachedRows":
        """A lazy subset (a boolean mask or indices), sharing the located shards."""
        subset = CachedRows(self._store, self._shards, self._array, self._locations[mask_or_indices], self.shape[1:])
        subset._arrays = self._arrays
        return subset

    def __getitem__(self, indices) -> np.ndarray:
        wanted = self._locations[indices]
        single = wanted.ndim == 1
        wanted = wanted.reshape(-1, 2)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=np.float32)
        for shard in np.unique(wanted[:, 0]):
            if shard not in self._arrays:
                held = self._shards[shard]
                self._arrays[shard] = self._store.open_array(held.path, self._array, len(held.keys))
            targets = np.flatnonzero(wanted[:, 0] == shard)
            rows = wanted[targets, 1]
            order = np.argsort(rows, kind="stable")  # ascending: consecutive rows are read together
            self._arrays[shard].read_into(rows[order], out, targets[order])
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)
