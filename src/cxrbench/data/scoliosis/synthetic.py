"""A small synthetic AASCE 2019 / BoostNet release (spine radiographs with planted Cobb angles), for tests and demos.
Same arguments, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrbench.data.common.synthetic import mark_synthetic

# ------------------------------------------------------------------------------------- AASCE 2019 / BoostNet


def spine_image(angles: np.ndarray, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A posterior-anterior spine radiograph stand-in: a bright, blurred column of 17 vertebrae whose lateral
    shift in three zones (upper, middle, lower) grows with the proximal-thoracic, main-thoracic and lumbar angles
    (`angles`: MT, PT, TL/L in degrees). Returns the image in [0, 1] and the 68 vertebra corners (x, y) in pixels,
    in the release's order (17 vertebrae x top-left, top-right, bottom-left, bottom-right)."""
    mt, pt, tl = angles
    yy = np.linspace(0.05, 0.95, 17)
    bump = lambda centre, spread: np.exp(-((yy - centre) / spread) ** 2)  # noqa: E731 - a local shape
    offset = (pt * bump(0.2, 0.1) - mt * bump(0.5, 0.15) + tl * bump(0.8, 0.12)) / 90.0
    centres = width * (0.5 + 0.35 * offset)
    rows, cols = np.mgrid[0:height, 0:width]
    image = 0.15 + 0.05 * rng.standard_normal((height, width))
    half_w, half_h = width * 0.09, height * 0.022
    corners = []
    for centre, y in zip(centres, yy * height):
        image += 0.7 * np.exp(-(((cols - centre) / (half_w * 1.6)) ** 2 + ((rows - y) / (half_h * 1.6)) ** 2))
        corners += [(centre - half_w, y - half_h), (centre + half_w, y - half_h), (centre - half_w, y + half_h), (centre + half_w, y + half_h)]
    return np.clip(image, 0, 1), np.array(corners)


def write_synthetic_scoliosis(root: str | Path, train: int = 48, test: int = 16, height: int = 96, width: int = 48,
                              seed: int = 0) -> Path:
    """boostnet_labeldata's layout: data/{training,test}/*.jpg (8-bit grey) and labels/{training,test}/ with
    filenames.csv, angles.csv (MT, PT, TL/L in degrees) and landmarks.csv (68 x, then 68 y, in [0, 1]), no headers."""
    root = Path(root)
    mark_synthetic(root, "scoliosis", {"train": train, "test": test, "height": height, "width": width, "seed": seed})
    rng = np.random.default_rng(seed)
    for folder, count in (("training", train), ("test", test)):
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
        (root / "labels" / folder).mkdir(parents=True, exist_ok=True)
        names, angles, landmarks = [], [], []
        for index in range(count):
            mt = rng.uniform(5, 60)
            values = np.array([mt, rng.uniform(0, 0.5) * mt + rng.uniform(0, 10), rng.uniform(0.3, 0.9) * mt])
            image, corners = spine_image(values, height, width, rng)
            name = f"sunhl-1th-{seed:02d}-{folder[:2]}-{index:03d} A AP.jpg"  # the release's names have spaces
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(root / "data" / folder / name, quality=95)
            names.append(name)
            angles.append(np.round(values, 3))
            landmarks.append(np.concatenate([corners[:, 0] / width, corners[:, 1] / height]))
        pd.DataFrame(names).to_csv(root / "labels" / folder / "filenames.csv", header=False, index=False)
        pd.DataFrame(angles).to_csv(root / "labels" / folder / "angles.csv", header=False, index=False)
        pd.DataFrame(landmarks).to_csv(root / "labels" / folder / "landmarks.csv", header=False, index=False)
    return root
