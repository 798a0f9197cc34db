"""Performance benchmark (not part of the test run): `python tests/perf/perf_distributed_extraction.py [--ranks 2]`.

Data-parallel extraction against one process, side by side on one synthetic VinDr-CXR folder with the same encoder
(a random ViT-S/14 at 224 px by default, so that encoding dominates): `cxrbench extract` in one process, then under
`torchrun --standalone --nproc-per-node N` with OMP_NUM_THREADS = cores / N, each into a fresh cache. Prints each
wall time (process start-up included, as a user pays it) and N-rank throughput / 1-rank throughput; the ideal is ~N
when the encoder dominates and the machine has N free cores. Both caches are checked to hold identical features.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.vindr.synthetic import write_synthetic_vindr
from cxrbench.features.cache import FeatureStore


def extract(root: Path, cache: Path, ranks: int, encoder: list[str], threads: int) -> float:
    command = ["-m", "cxrbench", "extract", "vindr", *encoder, "--data-root", str(root), "--cache-dir", str(cache),
               "--device", "cpu", "--shard-size", "64"]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks > 1 else []
    started = time.perf_counter()
    subprocess.run([sys.executable, *launcher, *command], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - started


def features(cache: Path) -> dict[str, np.ndarray]:
    (folder,) = (cache / "features").iterdir()
    store = FeatureStore.open(cache, json.loads((folder / "manifest.json").read_text())["identity"], create=False)
    keys = [k for shard in sorted((folder / "shards").iterdir()) for k in (shard / "keys.txt").read_text().split()]
    return dict(zip(keys, store.load(keys, "global")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--patients", type=int, default=160)
    parser.add_argument("--encoder", default="dinov2-small")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    encoder = ["--encoder", args.encoder, "--weights", "random", "--image-size", str(args.image_size)]
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_vindr(Path(tmp) / "vindr", SyntheticConfig(patients=args.patients, size=256))
        images = len(list(root.rglob("*.dicom")))
        one = extract(root, Path(tmp) / "one", 1, encoder, cores)
        many = extract(root, Path(tmp) / "many", args.ranks, encoder, max(1, cores // args.ranks))
        same = features(Path(tmp) / "one")
        other = features(Path(tmp) / "many")
        identical = same.keys() == other.keys() and all(np.array_equal(same[k], other[k]) for k in same)
    print(f"{images} images, {args.encoder} (random) at {args.image_size} px, {cores} cores")
    print(f"1 rank:  {one:.1f} s ({images / one:.1f} images/s, {cores} threads)")
    print(f"{args.ranks} ranks: {many:.1f} s ({images / many:.1f} images/s, {max(1, cores // args.ranks)} thread(s) each)")
    print(f"throughput ratio {args.ranks} ranks / 1 rank: {one / many:.2f} (ideal ~{args.ranks} when encoding dominates)")
    print(f"features identical: {identical}")


if __name__ == "__main__":
    main()
