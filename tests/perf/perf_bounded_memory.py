"""Performance benchmark of reading patch grids from the feature cache (not part of the test run):
`python tests/perf/perf_bounded_memory.py [--images N]`.

On a real feature store of float16 patch grids (defaults: 2,048 images x 14 x 14 x 768, a ViT-B/16 at 224 px,
588 MB in shards of 128 images):
1. memory:     peak RSS growth over the RSS after the imports, each phase in a fresh (spawned) process whose peak
               (VmHWM) is reset after its imports (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0): writing the store
               shard by shard through `FeatureStore.write_shard`; reading every row in shuffled batches through
               `CachedRows` (positioned reads of the rows asked for); the same reads through the shards' memory
               maps (`np.load(mmap_mode="r")`, how the cache read before), whose touched pages stay resident.
               Target: store size / peak growth while reading through `CachedRows` >= 4 (exit 1 otherwise).
2. throughput: MB/s of float16 rows read, through `CachedRows` and through memory maps, in batches of `--batch`
               rows: shuffled (a head's epoch) and in order (a sequential pass), side by side in this process,
               interleaved `--repeats` times, the fastest of each kept (single timings on shared cores vary by 2x).
               The store was just written, so both read from the page cache: the numbers compare the reading
               paths, not the disk. Printed only.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrbench.features.cache import FeatureStore
from cxrbench.features.shards import KEYS

IDENTITY = {"encoder": "perf-bounded-memory"}
MB = 2**20
RATIO_TARGET = 4


# -- the store ------------------------------------------------------------------------------------------------
def keys_of(images: int) -> list[str]:
    return [f"img{i}" for i in range(images)]


def write_store(root: Path, args: argparse.Namespace) -> None:
    store = FeatureStore.open(root, IDENTITY)
    keys, rng = keys_of(args.images), np.random.default_rng(0)
    for start in range(0, args.images, args.shard):
        count = min(args.shard, args.images - start)
        grids = rng.standard_normal((count, args.side, args.side, args.dim), dtype=np.float32)
        store.write_shard(keys[start:start + count], {"patches": grids})
        del grids


def store_bytes(root: Path) -> int:
    return sum(file.stat().st_size for file in root.rglob("patches.npy"))


class MappedRows:
    """Rows read through each shard's memory map, as the cache read before positioned reads replaced the maps."""

    def __init__(self, root: Path, keys: list[str]):
        shards = sorted(p for p in (root / "features").glob("*/shards/*") if p.is_dir())
        where = {key: (number, row) for number, shard in enumerate(shards)
                 for row, key in enumerate((shard / KEYS).read_text(encoding="utf-8").split())}
        self.locations = np.array([where[key] for key in keys])
        self.maps = [np.load(shard / "patches.npy", mmap_mode="r") for shard in shards]

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        wanted = self.locations[indices]
        out = np.empty((len(wanted), *self.maps[0].shape[1:]), dtype=np.float32)
        for shard in np.unique(wanted[:, 0]):
            targets = np.flatnonzero(wanted[:, 0] == shard)
            order = np.argsort(wanted[targets, 1], kind="stable")
            out[targets[order]] = self.maps[shard][wanted[targets, 1][order]]
        return out


def open_reader(root: Path, images: int, kind: str):
    keys = keys_of(images)
    if kind == "mmap":
        return MappedRows(root, keys)
    return FeatureStore.open(root, IDENTITY, create=False).rows(keys, "patches")


def batches(images: int, batch: int, shuffled: bool) -> list[np.ndarray]:
    order = np.random.default_rng(1).permutation(images) if shuffled else np.arange(images)
    return [order[start:start + batch] for start in range(0, images, batch)]


# -- 1. peak memory in fresh processes ------------------------------------------------------------------------
def status(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


def memory_child(root: str, args: argparse.Namespace, phase: str, queue) -> None:
    """Run one phase ("write", or a reader's kind) and report its peak growth over the RSS after the imports."""
    Path("/proc/self/clear_refs").write_text("5")
    baseline = status("VmRSS")
    if phase == "write":
        write_store(Path(root), args)
    else:
        reader = open_reader(Path(root), args.images, phase)
        for indices in batches(args.images, args.batch, shuffled=True):
            reader[indices]
    queue.put({"baseline": baseline, "growth": status("VmHWM") - baseline})


def run_child(root: Path, args: argparse.Namespace, phase: str) -> dict:
    context = mp.get_context("spawn")  # a fresh process: a forked one would start with this one's pages
    queue = context.Queue()
    child = context.Process(target=memory_child, args=(str(root), args, phase, queue))
    child.start()
    result = queue.get()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"memory child ({phase}) exited with {child.exitcode}")
    return result


# -- 2. throughput ----------------------------------------------------------------------------------------------
def read_seconds(reader, plan: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for indices in plan:
        reader[indices]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--side", type=int, default=14, help="patch grid side (14 = ViT-B/16 at 224 px)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--shard", type=int, default=128, help="images per shard")
    parser.add_argument("--batch", type=int, default=64, help="rows per read, as a head's batch")
    parser.add_argument("--repeats", type=int, default=3, help="throughput timings, interleaved; fastest kept")
    args = parser.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("needs Linux's /proc/self/clear_refs to reset the peak RSS of each phase")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        writing = run_child(root, args, "write")
        size = store_bytes(root)
        positioned, mapped = run_child(root, args, "positioned"), run_child(root, args, "mmap")
        batch_mb = args.batch * args.side**2 * args.dim * 4 / MB
        print(f"store: {args.images} images x {args.side}x{args.side}x{args.dim} float16 = {size / MB:.0f} MB in shards "
              f"of {args.shard}; batch of {args.batch} rows = {batch_mb:.0f} MB as float32; RSS after imports "
              f"{writing['baseline'] / MB:.0f} MB")
        print(f"peak RSS growth  writing            {writing['growth'] / MB:7.1f} MB  (store / growth "
              f"{size / writing['growth']:.1f}x)")
        print(f"                 reading, CachedRows {positioned['growth'] / MB:7.1f} MB  (store / growth "
              f"{size / positioned['growth']:.1f}x; target >= {RATIO_TARGET}x)")
        print(f"                 reading, mmap       {mapped['growth'] / MB:7.1f} MB  (store / growth "
              f"{size / mapped['growth']:.1f}x)")
        readers = {kind: open_reader(root, args.images, kind) for kind in ("positioned", "mmap")}
        check = batches(args.images, args.batch, shuffled=True)[0]
        if not np.array_equal(readers["positioned"][check], readers["mmap"][check]):
            sys.exit("CachedRows and the memory maps read different values")
        for shuffled in (True, False):
            plan = batches(args.images, args.batch, shuffled)
            seconds = {kind: float("inf") for kind in readers}
            for _ in range(args.repeats):
                for kind, reader in readers.items():
                    seconds[kind] = min(seconds[kind], read_seconds(reader, plan))
            print(f"read throughput  {'shuffled' if shuffled else 'in order'} batches of {args.batch}: CachedRows "
                  f"{size / MB / seconds['positioned']:7.0f} MB/s, mmap {size / MB / seconds['mmap']:7.0f} MB/s "
                  f"(CachedRows / mmap time {seconds['positioned'] / seconds['mmap']:.2f})")
    if size / positioned["growth"] < RATIO_TARGET:
        sys.exit(f"store / peak growth while reading {size / positioned['growth']:.1f}x < {RATIO_TARGET}x")


if __name__ == "__main__":
    main()
