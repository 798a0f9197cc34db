"""Performance benchmark (not part of the test run): `python tests/perf/perf_pixel_cache.py [--patients N]`.

N encoders on one synthetic VinDr-CXR folder (DICOMs), extracted one after the other as `cxrbench run -e A,B,C`
does, into a fresh cache without and then with the pixel cache (`--pixel-cache`). Prints, side by side, the
decodes per image (`read_image` calls, counted in this process: decoding workers are off, as on the CPU by default;
ideal: N without the cache, 1.0 with it), the wall time of all N extractions and the pixel cache's size on disk.
The encoders are cheap (the pixels baseline and random ViT-S/14 at small sizes) so that decoding weighs as it does
beside a GPU forward pass.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

from cxrbench.data.common.images import read_image
from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.vindr.synthetic import write_synthetic_vindr
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.features.extract import extract_features
from cxrbench.features.pixel_cache import pixel_summary

ENCODERS = (("pixels", None, None), ("dinov2-small", "random", 56), ("dinov2-small", "random", 112))


def extract_all(paths: list[str], cache: Path, pixel_cache: bool) -> tuple[float, Counter]:
    """Wall time of every encoder's extraction and the decodes of each image."""
    decodes: Counter = Counter()

    def counting(path):
        decodes[str(path)] += 1
        return read_image(path)

    encoders = [build_encoder(name, weights, image_size=size) for name, weights, size in ENCODERS]
    for encoder in encoders:
        _ = encoder.model  # built before the clock starts: construction is not what is measured
    with mock.patch("cxrbench.features.extract.read_image", counting), \
            mock.patch("cxrbench.features.pixel_cache.read_image", counting):
        started = time.perf_counter()
        for encoder in encoders:
            extract_features(encoder, FeatureRequest(), paths, cache, num_workers=0, pixel_cache=pixel_cache)
        return time.perf_counter() - started, decodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--size", type=int, default=1024, help="side of the synthetic DICOMs in pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_vindr(Path(tmp) / "vindr", SyntheticConfig(patients=args.patients, size=args.size, seed=1))
        paths = sorted(str(p) for p in root.rglob("*.dicom"))
        plain_seconds, plain = extract_all(paths, Path(tmp) / "plain", pixel_cache=False)
        cached_seconds, cached = extract_all(paths, Path(tmp) / "cached", pixel_cache=True)
        stored = pixel_summary(Path(tmp) / "cached")
    names = ", ".join(f"{n}{f'@{s}px' if s else ''}" for n, _, s in ENCODERS)
    print(f"{len(paths)} DICOMs of {args.size} x {args.size} px, {len(ENCODERS)} encoders ({names}), CPU, no decoding workers")
    print(f"{'':22}{'decodes / image':>16}{'wall s':>9}")
    print(f"{'without pixel cache':22}{sum(plain.values()) / len(paths):16.2f}{plain_seconds:9.1f}")
    print(f"{'with pixel cache':22}{sum(cached.values()) / len(paths):16.2f}{cached_seconds:9.1f}")
    print(f"speed-up {plain_seconds / cached_seconds:.2f}x; pixel cache {stored.images} images, {stored.bytes / 1e6:.1f} MB "
          f"({stored.bytes / stored.images / (args.size * args.size * 2):.3f} x the raw uint16 size)")


if __name__ == "__main__":
    main()
