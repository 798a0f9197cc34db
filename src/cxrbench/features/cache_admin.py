"""What `cxrbench cache ls` and `cache clear` see: every store under a cache root summarised without trusting any of
its files (damaged stores included, so that they can be seen and cleared), apart from the store that runs read and
write (`cxrbench.features.cache`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cxrbench.features.cache import FORMAT_VERSION, read_manifest
from cxrbench.features.shards import KEYS, ShardArray, shape_problem, verify_shard
from cxrbench.files import is_staging


@dataclass
class StoreSummary:
    """What `cxrbench cache ls` shows of one store, read without trusting any of its files."""

    folder: Path
    encoder: str
    weights: str
    size: str
    arrays: str
    images: int  # distinct images
    bytes: int  # complete shards and the manifest, not staging leftovers
    status: str  # "ok", or what is wrong and how to fix it


def list_stores(root: Path, verify: bool = False) -> list[StoreSummary]:
    """Every store under `root`, damaged ones included (so that they can be seen and cleared).

    `verify` also checks every shard file against its checksum (reads the whole cache)."""
    stores = []
    for folder in sorted(p for p in (root / "features").glob("*/") if not is_staging(p.name)):
        manifest = read_manifest(folder / "manifest.json")
        encoder = str(manifest["identity"].get("encoder")) if manifest else folder.name.rsplit("-", 1)[0]
        problems, keys, size = [], set(), 0
        if manifest is None:
            problems.append("manifest.json missing or unreadable")
        elif manifest.get("format") != FORMAT_VERSION:
            problems.append(f"format {manifest.get('format')} of an older cxrbench")
        shard_root = folder / "shards"
        shards = sorted(p for p in shard_root.iterdir() if p.is_dir()) if shard_root.is_dir() else []
        leftovers = sum(1 for p in shards if is_staging(p.name))
        damaged = misshapen = 0
        for shard in (p for p in shards if not is_staging(p.name)):
            try:
                shard_keys = (shard / KEYS).read_text(encoding="utf-8").split()
            except (OSError, UnicodeDecodeError):
                damaged += 1
                continue
            keys.update(shard_keys)
            size += sum(p.stat().st_size for p in shard.iterdir() if p.is_file())
            if verify and manifest is not None:
                if verify_shard(shard, manifest) is not None:
                    damaged += 1
                elif any(shape_problem(shard, manifest, ShardArray.locate(shard / f"{name}.npy"), len(shard_keys))
                         for name in manifest["arrays"]):
                    misshapen += 1
        if damaged:
            problems.append(f"{damaged} damaged shard(s)")
        if misshapen:
            problems.append(f"{misshapen} shard(s) whose array shapes differ from manifest.json (clear the store)")
        if leftovers:
            problems.append(f"{leftovers} unfinished shard(s) (a run in progress, or interrupted: removed by the next run)")
        if manifest is not None:
            size += (folder / "manifest.json").stat().st_size
        identity = (manifest or {}).get("identity") or {}
        preprocessing = identity.get("preprocessing") or {}
        stores.append(StoreSummary(
            folder=folder, encoder=encoder, weights=str(identity.get("weights", "?")),
            size=str(preprocessing.get("crop") or preprocessing.get("size") or "?"),
            arrays=", ".join((manifest or {}).get("arrays") or {}), images=len(keys), bytes=size,
            status="; ".join(problems) or "ok",
        ))
    return stores


def clear_stores(root: Path, encoder: str | None = None) -> int:
    removed = 0
    for store in list_stores(root):
        if encoder is None or store.encoder == encoder:
            shutil.rmtree(store.folder)
            removed += 1
    return removed
