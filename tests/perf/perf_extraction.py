"""Performance benchmark (not part of the test run): `python tests/perf/perf_extraction.py [--images N]`.

Measured side by side in one process:
1. harness extraction (decode DICOM + preprocess in workers, encode, write float16 shards) versus a bare
   forward loop of the same model over the same, already preprocessed tensors. Target: ratio <= 1.10.
2. cached-probe training: the linear head on VinDr-sized cached features (15,000 x 768, 7 tasks, 100 epochs),
   versus the encoder time those features would cost, to show where the time goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrbench.data.common.images import read_image
from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.vindr.synthetic import write_synthetic_vindr
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.features.shards import file_checksum
from cxrbench.features.extract import extract_features
from cxrbench.heads.base import FeatureSet
from cxrbench.heads.linear import LinearProbe
from cxrbench.registry import head_spec


def bare_forward_seconds(encoder, pixels: torch.Tensor, batch_size: int, device: str) -> float:
    """The model alone on already preprocessed tensors (copied to the device per batch, as the harness does)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            encoder.model(pixel_values=pixels[i : i + batch_size].to(device))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--encoder", default="dinov2-small")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: the harness's choice)")
    parser.add_argument("--patches", action="store_true", help="also cache the patch-token grids (large shards to checksum)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=None, help="a synthetic VinDr folder to reuse (written there if absent)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "data"
        if not (root / "annotations").is_dir():
            write_synthetic_vindr(root, SyntheticConfig(patients=args.images, size=512, seed=1))
        paths = sorted(str(p) for p in root.glob("*/*.dicom"))[: args.images]
        encoder = build_encoder(args.encoder, weights="random", image_size=args.image_size)
        encoder.to(args.device)
        pixels = torch.stack([encoder.preprocessor(read_image(p)) for p in paths])
        bare_forward_seconds(encoder, pixels[: args.batch_size], args.batch_size, args.device)  # warm-up
        bare_before = bare_forward_seconds(encoder, pixels, args.batch_size, args.device)
        start = time.perf_counter()
        result = extract_features(encoder, FeatureRequest(patch_tokens=args.patches), paths, Path(tmp) / "cache", batch_size=args.batch_size,
                                   num_workers=args.workers, device=args.device)
        harness = time.perf_counter() - start
        assert result.encoded == len(paths)
        bare_after = bare_forward_seconds(encoder, pixels, args.batch_size, args.device)
        bare = min(bare_before, bare_after)  # the bare loop is timed on both sides of the harness: drift shows
        shard_files = [f for f in (result.store.folder / "shards").glob("*/*") if f.name != "checksums.json"]
        start = time.perf_counter()
        for file in shard_files:  # what the checksums cost: hashed once when written, once per process when read
            file_checksum(file)
        hashing = time.perf_counter() - start
        shard_bytes = sum(f.stat().st_size for f in shard_files)

    rng = np.random.default_rng(0)
    features = rng.standard_normal((15000, 768)).astype(np.float32)
    labels = (features[:, :7] + rng.standard_normal((15000, 7)) > 1.5).astype(np.float32)
    probe = LinearProbe(head_spec("linear"))
    start = time.perf_counter()
    probe.fit(FeatureSet(features, labels), FeatureSet(features[:1500], labels[:1500]), seed=0)
    probe_seconds = time.perf_counter() - start

    per_image = bare / len(paths)
    print(f"encoder {args.encoder} at {args.image_size}px on {args.device}, {len(paths)} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch threads, patch grids cached: {args.patches}")
    print(f"bare forward loop      {bare:8.2f} s  ({len(paths) / bare:6.1f} images/s; before {bare_before:.2f} s, after {bare_after:.2f} s)")
    print(f"harness extraction     {harness:8.2f} s  ({len(paths) / harness:6.1f} images/s)")
    print(f"ratio harness / bare   {harness / bare:8.3f}   (target <= 1.10)")
    print(f"shard checksums        {hashing:8.4f} s  to hash {shard_bytes / 1e6:.1f} MB once ({shard_bytes / 1e9 / max(hashing, 1e-9):.1f} GB/s) "
          f"= {100 * hashing / harness:.2f}% of the harness time; paid at write and again at the first read of a process")
    print(f"linear probe, 15000x768 cached features, 100 epochs: {probe_seconds:.2f} s "
          f"= {probe_seconds / (per_image * 15000):.3f} x the encoder time of those 15000 images")


if __name__ == "__main__":
    main()
