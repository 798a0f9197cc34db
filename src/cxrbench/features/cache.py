"""An on-disk feature store: one folder per extractor identity, append-only shards.

Layout (under the cache root, default ~/.cache/cxrbench or $CXRBENCH_CACHE):

    features/<encoder>-<key>/manifest.json       identity (encoder, weights, preprocessing, request), dtype, shapes
    features/<encoder>-<key>/shards/<n>-<id>/    keys.txt (one image key per row) + <array>.npy (float16)

The key is a hash of the identity, so changing any part of it never returns stale features. A shard is
written into a temporary folder and renamed into place, so a killed run leaves only complete shards
and a rerun encodes just the images that are missing. An existing store whose manifest disagrees with
the requested identity is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrbench.errors import CacheError

FORMAT_VERSION = 1
STORE_DTYPE = np.float16


def default_cache_root() -> Path:
    return Path(os.environ.get("CXRBENCH_CACHE", Path.home() / ".cache" / "cxrbench")).expanduser()


def image_key(path: str | Path) -> str:
    """Identity of an image file: resolved path, size and modification time (cheap for 100k DICOMs)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return hashlib.sha256(f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class _Shard:
    path: Path
    keys: list[str]


class FeatureStore:
    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        self._shards: list[_Shard] = []
        self._index: dict[str, tuple[int, int]] = {}
        self._scan()

    @classmethod
    def open(cls, root: Path, identity: dict, create: bool = True) -> "FeatureStore":
        text = json.dumps(identity, sort_keys=True, default=list)
        key = hashlib.sha256(text.encode()).hexdigest()
        folder = root / "features" / f"{identity['encoder']}-{key[:16]}"
        manifest_path = folder / "manifest.json"
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("key") != key or manifest.get("format") != FORMAT_VERSION:
                raise CacheError(
                    f"Feature cache {folder} holds features of another identity or format; refusing to overwrite. "
                    f"Remove it with `cxrbench cache clear --encoder {identity['encoder']}`."
                )
            return cls(folder, manifest)
        if not create:
            raise CacheError(f"No cached features at {folder}.")
        (folder / "shards").mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT_VERSION, "key": key, "identity": identity, "dtype": np.dtype(STORE_DTYPE).name, "arrays": {}}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True, default=list))
        return cls(folder, manifest)

    def _scan(self) -> None:
        self._shards, self._index = [], {}
        shard_root = self.folder / "shards"
        for shard_dir in sorted(p for p in shard_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self._add(_Shard(shard_dir, (shard_dir / "keys.txt").read_text(encoding="utf-8").split()))

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

    def write_shard(self, keys: Sequence[str], arrays: dict[str, np.ndarray]) -> None:
        """Add one shard atomically: a temporary folder renamed into place."""
        if any(len(a) != len(keys) for a in arrays.values()):
            raise ValueError("every array needs one row per key")
        shard_root = self.folder / "shards"
        tmp = shard_root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array, dtype=STORE_DTYPE))
        (tmp / "keys.txt").write_text("\n".join(keys) + "\n", encoding="utf-8")
        shapes = {name: list(array.shape[1:]) for name, array in arrays.items()}
        if not self.manifest["arrays"]:
            self.manifest["arrays"] = shapes
            atomic_write_text(self.folder / "manifest.json", json.dumps(self.manifest, indent=2, sort_keys=True, default=list))
        elif self.manifest["arrays"] != shapes:
            shutil.rmtree(tmp)
            raise CacheError(f"Shapes {shapes} differ from the store's {self.manifest['arrays']} in {self.folder}.")
        final = shard_root / f"{len(self._shards):06d}-{uuid.uuid4().hex[:8]}"
        os.rename(tmp, final)
        self._add(_Shard(final, list(keys)))

    def load(self, keys: Sequence[str], array: str = "global") -> np.ndarray:
        """Rows of `array` for `keys`, in order, as float32 (in memory)."""
        return self.rows(keys, array)[np.arange(len(keys))]

    def rows(self, keys: Sequence[str], array: str = "global") -> "CachedRows":
        """Rows of `array` for `keys`, read from the memory-mapped shards only when indexed.

        Patch grids rarely fit in memory (VinDr at 518 px: 18,000 x 37 x 37 x 768 float16 = 38 GB); heads read
        them a batch at a time, once per epoch.
        """
        missing = self.missing(keys)
        if missing:
            raise CacheError(f"{len(missing)} requested images are not in {self.folder}; extract them first.")
        if array not in self.manifest["arrays"]:
            raise CacheError(f"Store {self.folder} has no '{array}' features (it has {list(self.manifest['arrays'])}).")
        locations = np.array([self._index[key] for key in keys], dtype=np.int64).reshape(len(keys), 2)
        files = [shard.path / f"{array}.npy" for shard in self._shards]
        return CachedRows(files, locations, tuple(self.manifest["arrays"][array]))


class CachedRows:
    """A read-only, array-like view of cached rows: `rows[indices]` reads those rows as float32."""

    def __init__(self, files: list[Path], locations: np.ndarray, row_shape: tuple[int, ...]):
        self._files = files
        self._locations = locations  # [N, 2]: shard number, row within the shard
        self._open: dict[int, np.ndarray] = {}
        self.shape = (len(locations), *row_shape)

    def __len__(self) -> int:
        return len(self._locations)

    def select(self, mask_or_indices: np.ndarray) -> "CachedRows":
        """A lazy subset (a boolean mask or indices), sharing the open shards."""
        subset = CachedRows(self._files, self._locations[mask_or_indices], self.shape[1:])
        subset._open = self._open
        return subset

    def __getitem__(self, indices) -> np.ndarray:
        wanted = self._locations[indices]
        single = wanted.ndim == 1
        wanted = wanted.reshape(-1, 2)
        out = np.empty((len(wanted), *self.shape[1:]), dtype=np.float32)
        for shard in np.unique(wanted[:, 0]):
            if shard not in self._open:
                self._open[shard] = np.load(self._files[shard], mmap_mode="r")
            targets = np.flatnonzero(wanted[:, 0] == shard)
            rows = wanted[targets, 1]
            order = np.argsort(rows, kind="stable")  # ascending reads from the memory map
            out[targets[order]] = self._open[shard][rows[order]]
        return out[0] if single else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[np.arange(len(self))]
        return out if dtype is None else out.astype(dtype)


def list_stores(root: Path) -> list[dict]:
    """Summary of every store under `root`: folder, encoder, images, size on disk."""
    stores = []
    for folder in sorted((root / "features").glob("*/")):
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            continue
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        keys = sum(len((s / "keys.txt").read_text().split()) for s in (folder / "shards").iterdir() if not s.name.startswith("."))
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        identity = manifest["identity"]
        stores.append(
            {
                "folder": folder,
                "encoder": identity["encoder"],
                "weights": identity["weights"],
                "size": identity["preprocessing"]["crop"] or identity["preprocessing"]["size"],
                "arrays": ", ".join(manifest["arrays"]),
                "images": keys,
                "bytes": size,
            }
        )
    return stores


def clear_stores(root: Path, encoder: str | None = None) -> int:
    removed = 0
    for store in list_stores(root):
        if encoder is None or store["encoder"] == encoder:
            shutil.rmtree(store["folder"])
            removed += 1
    return removed
