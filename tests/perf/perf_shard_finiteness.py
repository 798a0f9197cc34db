"""Cost of refusing non-finite cached features (not part of the test run): `python tests/perf/perf_shard_finiteness.py`.

A shard's `.npy` is hashed once per process before it is read (`cxrbench.features.shards.verify_shard`); the NaN / Inf
count runs on the same blocks. This writes one float16 array of `--mb` megabytes (default 300), warms the page cache
(so the disk does not hide the cost), and prints the fastest of `--repeats` checksum passes without and with the count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrbench.features import shards


def _fastest(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patches.npy"
        rows = args.mb * 1_000_000 // (2 * 37_500)
        np.save(path, np.random.default_rng(0).standard_normal((rows, 37_500), dtype=np.float32).astype(np.float16))
        shards.file_checksum(path)
        plain = _fastest(lambda: shards.file_checksum(path), args.repeats)
        counted = _fastest(lambda: shards.file_checksum(path, shards._NonFiniteCount.of(path)), args.repeats)
        size = path.stat().st_size / 1e6
    print(f"{size:.0f} MB float16: checksum {plain:.3f} s, checksum + non-finite count {counted:.3f} s "
          f"(+{counted - plain:.3f} s, {size / 1e3 / max(counted - plain, 1e-9):.1f} GB/s for the count)")


if __name__ == "__main__":
    main()
