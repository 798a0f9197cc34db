"""Data-parallel extraction: `torchrun --nproc-per-node 2 -m cxrbench extract` (gloo, two CPU processes) fills the
feature cache with exactly the features one process writes, and a run resumed with another number of ranks encodes
only what is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrbench.features.cache import FeatureStore, image_key
from cxrbench.features.distributed import Ranks, rank_device
from cxrbench.files import staging_name

SHARD = 48  # images per shard: the synthetic VinDr-CXR folder's ~330 images make 7 shards, shared by both ranks


#: a random ViT-S at 56 px (batches of 16 differ between ranks: its features must not depend on the batch) and, in
#: the default suite, the pixels baseline (cheap: the test is about the ranks, not the network)
VIT = ("--encoder", "dinov2-small", "--weights", "random:3", "--image-size", "56")
PIXELS = ("--encoder", "pixels")


def _extract(root: Path, cache: Path, ranks: int, encoder: tuple[str, ...] = PIXELS) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cxrbench", "extract", "vindr", *encoder, "--data-root", str(root), "--cache-dir",
               str(cache), "--shard-size", str(SHARD), "--batch-size", "16", "--device", "cpu"]
    if ranks > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                   "-m", *command[2:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _features(cache: Path) -> dict[str, np.ndarray]:
    """Every cached row by image key, read back through the store."""
    (folder,) = (cache / "features").iterdir()
    identity = json.loads((folder / "manifest.json").read_text())["identity"]
    store = FeatureStore.open(cache, identity, create=False)
    keys = [k for shard in sorted((folder / "shards").iterdir()) for k in (shard / "keys.txt").read_text().split()]
    return dict(zip(keys, store.load(keys, "global")))


@pytest.fixture(scope="module")
def caches(vindr_root, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("ranks")
    _extract(vindr_root, base / "one", 1)
    two = _extract(vindr_root, base / "two", 2)
    return base / "one", base / "two", two


def test_two_ranks_write_the_features_one_process_writes_bit_for_bit(caches, vindr_root):
    one, two, done = caches
    single, ranked = _features(one), _features(two)
    images = sorted({image_key(p) for p in (vindr_root).rglob("*.dicom")})
    assert sorted(single) == sorted(ranked) == images
    for key in images:
        assert np.array_equal(single[key], ranked[key]), key
    shards = sorted((next((two / "features").iterdir()) / "shards").iterdir())
    assert len(shards) == -(-len(images) // SHARD)  # whole chunks, none encoded twice
    assert "images cached by 2 ranks" in done.stdout


def test_a_rerun_with_one_rank_encodes_only_the_shards_a_killed_rank_left_missing(caches, vindr_root, tmp_path):
    _, two, _ = caches
    cache = Path(shutil.copytree(two, tmp_path / "cache"))
    shards = sorted((next((cache / "features").iterdir()) / "shards").iterdir())
    lost = shards[1::2]  # as if the rank that owned these chunks had been killed before writing them
    kept = {p: p.stat().st_mtime_ns for p in shards if p not in lost}
    missing = sum(len((p / "keys.txt").read_text().split()) for p in lost)
    for shard in lost:
        shutil.rmtree(shard)
    # the killed rank's half-written shard, named by a process that no longer runs
    (shards[0].parent / staging_name("shard").replace(f"-{os.getpid()}-", f"-{_dead_pid()}-")).mkdir()
    done = _extract(vindr_root, cache, 1)
    assert f"encoded {missing} images" in " ".join(done.stdout.split())
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards untouched
    assert not [p for p in shards[0].parent.iterdir() if p.name.startswith(".")]  # the leftover is cleared
    resumed, reference = _features(cache), _features(two)
    assert resumed.keys() == reference.keys() and all(np.array_equal(resumed[k], reference[k]) for k in reference)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.slow  # about 80 s on 2 cores: building and running a random ViT-S in three processes
def test_a_vit_writes_the_same_features_from_two_ranks_as_from_one(vindr_root, tmp_path):
    _extract(vindr_root, tmp_path / "one", 1, VIT)
    _extract(vindr_root, tmp_path / "two", 2, VIT)
    single, ranked = _features(tmp_path / "one"), _features(tmp_path / "two")
    assert single.keys() == ranked.keys() and all(np.array_equal(single[k], ranked[k]) for k in single)


def test_each_rank_gets_its_own_gpu_and_round_robin_chunks():
    ranks = Ranks(rank=1, world=3, local_rank=1)
    assert [n for n in range(7) if ranks.owns(n)] == [1, 4]
    assert rank_device("cuda", ranks) == "cuda:1" and rank_device("cpu", ranks) == "cpu"
    assert rank_device("cuda", Ranks()) == "cuda"
