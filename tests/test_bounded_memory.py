"""Patch-grid caches larger than memory stream through it: a process writing and then reading back a store several
times larger than a stated bound stays under that bound of resident memory (issue 13, bounded memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cxrbench.features import shards
from cxrbench.features.cache import FeatureStore

MB = 2**20
BOUND = 96 * MB  # growth of peak RSS over the process's RSS after its imports
ROWS, SHARD_ROWS, BATCH = 4096, 64, 64
ROW_SHAPE = (16, 16, 256)  # 128 kB of float16 a row: 512 MB in 64 shards of 8 MB, 5.3 times the bound

# The child: resets its peak (VmHWM) after its imports, writes the store shard by shard, then reads every row back
# as a head does (in batches, in order, then shuffled), as a new process would (each shard checksummed first),
# checks every value, and prints its peak growth while writing and while reading.
CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np
from cxrbench.features import shards
from cxrbench.features.cache import FeatureStore

root, rows, shard_rows, batch, row_shape = json.loads(sys.argv[1])
identity = {"encoder": "bounded-memory"}
keys = [f"img{row}" for row in range(rows)]

def values(row):
    return np.random.default_rng(row).integers(-1024, 1024, size=row_shape, dtype=np.int16)  # exact in float16

def status(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")

reset_peak()
baseline = status("VmRSS")
store = FeatureStore.open(Path(root), identity)
for start in range(0, rows, shard_rows):
    block = np.stack([values(row) for row in range(start, start + shard_rows)]).astype(np.float32)
    store.write_shard(keys[start:start + shard_rows], {"patches": block})
    del block
writing = status("VmHWM") - baseline
shards._VERIFIED.clear()
reset_peak()
features = FeatureStore.open(Path(root), identity, create=False).rows(keys, "patches")
for order in (np.arange(rows), np.random.default_rng(0).permutation(rows)):
    for start in range(0, rows, batch):
        wanted = order[start:start + batch]
        if not np.array_equal(features[wanted], np.stack([values(row) for row in wanted])):
            sys.exit(f"rows {wanted[:4].tolist()}... read back differ from those written")
reading = status("VmHWM") - baseline
print(json.dumps({"baseline": baseline, "writing": writing, "reading": reading}))
"""


def test_peak_memory_stays_bounded_on_a_store_several_times_larger(tmp_path):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs (writable) to reset the peak RSS after the imports")
    settings = [str(tmp_path), ROWS, SHARD_ROWS, BATCH, list(ROW_SHAPE)]
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr
    peaks = json.loads(child.stdout)
    size = sum(file.stat().st_size for file in tmp_path.rglob("*.npy"))
    print(f"store {size / MB:.0f} MB; RSS after imports {peaks['baseline'] / MB:.0f} MB; peak growth writing "
          f"{peaks['writing'] / MB:.1f} MB, reading {peaks['reading'] / MB:.1f} MB; bound {BOUND / MB:.0f} MB")
    assert size >= 4 * BOUND
    assert peaks["writing"] < BOUND
    assert peaks["reading"] < BOUND


def test_rows_read_by_position_match_the_stored_arrays(tmp_path, monkeypatch):
    """Any order, repeats, a single index and a subset read what is stored, also when a run of consecutive rows
    takes several reads (the staging buffer is bounded)."""
    monkeypatch.setattr(shards, "_READ_BYTES", 3 * 5 * 2)  # three rows of 5 float16 values a read
    store = FeatureStore.open(tmp_path, {"encoder": "positioned"})
    stored = np.random.default_rng(1).normal(size=(23, 5)).astype(np.float16)
    keys = [f"img{row}" for row in range(len(stored))]
    for start in range(0, len(stored), 10):
        store.write_shard(keys[start:start + 10], {"global": stored[start:start + 10]})
    order = np.random.default_rng(2).permutation(len(keys))
    rows = store.rows([keys[i] for i in order])
    expected = stored[order].astype(np.float32)
    for indices in (np.arange(len(keys)), np.array([5, 5, 0, 22, 9, 10, 11, 12, 13, 14]), 7):
        np.testing.assert_array_equal(rows[indices], expected[indices])
    mask = np.arange(len(keys)) % 3 == 0
    np.testing.assert_array_equal(np.asarray(rows.select(mask)), expected[mask])
    assert rows[np.array([], dtype=int)].shape == (0, 5)
