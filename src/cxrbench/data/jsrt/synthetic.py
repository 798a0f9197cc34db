"""A small synthetic JSRT + SCR release (headerless 12-bit JSRT images, SCR GIF masks in fold1 / fold2), for tests
and demos; structures are drawn visibly. Same arguments, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrbench.data.common.synthetic import mark_synthetic

# --------------------------------------------------------------------------------------- JSRT images + SCR masks

#: SCR's mask folders (fold*/masks/<folder>/<image>.gif) by the structure names of benchmarks/jsrt.yaml
SCR_FOLDERS = {"left_lung": "left lung", "right_lung": "right lung", "heart": "heart",
               "left_clavicle": "left clavicle", "right_clavicle": "right clavicle"}


def jsrt_anatomy(side: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Boolean [side, side] masks of SCR's five structures drawn as jittered ellipses, in the PA view (the patient's
    left on the image's right); the lungs leave out the heart, the clavicles cross the lung tops as SCR's do."""
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    jitter = lambda scale=0.02: rng.uniform(-scale, scale)  # noqa: E731 - a local shape

    def ellipse(cx, cy, rx, ry, angle=0.0):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0

    heart = ellipse(0.56 + jitter(), 0.66 + jitter(), 0.15 + jitter(0.015), 0.12 + jitter(0.015))
    return {
        "right_lung": ellipse(0.31 + jitter(), 0.50 + jitter(), 0.13 + jitter(0.01), 0.28 + jitter()) & ~heart,
        "left_lung": ellipse(0.69 + jitter(), 0.52 + jitter(), 0.12 + jitter(0.01), 0.27 + jitter()) & ~heart,
        "heart": heart,
        "right_clavicle": ellipse(0.33 + jitter(), 0.24 + jitter(0.01), 0.15, 0.022, 0.25 + jitter(0.05)),
        "left_clavicle": ellipse(0.67 + jitter(), 0.24 + jitter(0.01), 0.15, 0.022, -0.25 + jitter(0.05)),
    }


def jsrt_ids(images: int) -> list[tuple[str, str]]:
    """(image id, SCR fold) of `images` generated images: JPCLN### (154 of 247, as released) then JPCNN###, numbered
    from 001; odd numbers go to fold1 and even ones to fold2, as in SCR."""
    nodules = int(round(images * 154 / 247)) if images > 1 else images
    ids = []
    for index in range(images):
        series, number = ("JPCLN", index + 1) if index < nodules else ("JPCNN", index - nodules + 1)
        ids.append((f"{series}{number:03d}", "fold1" if number % 2 else "fold2"))
    return ids


def write_jsrt_case(root: Path, image_id: str, fold: str, image: np.ndarray, masks: dict[str, np.ndarray]) -> None:
    """One image as JSRT releases it (All247images/<id>.IMG: headerless big-endian words, 12-bit, larger = darker) from
    its brightness in [0, 1], and its SCR masks (scratch/<fold>/masks/<structure>/<id>.gif, 0 / 255)."""
    (root / "All247images").mkdir(parents=True, exist_ok=True)
    raw = np.round((1.0 - np.clip(image, 0.0, 1.0)) * 4095).astype(">u2")
    raw.tofile(root / "All247images" / f"{image_id}.IMG")
    for name, folder in SCR_FOLDERS.items():
        target = root / "scratch" / fold / "masks" / folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(masks[name].astype(np.uint8) * 255).save(target / f"{image_id}.gif")


def write_synthetic_jsrt(root: str | Path, images: int = 6, size: int = 2048, seed: int = 0) -> Path:
    """JSRT's All247images/<id>.IMG and SCR's scratch/fold{1,2}/masks/<structure>/<id>.gif (at half the image side),
    with the structures drawn as visible ellipses (dark lungs, bright heart and clavicles) so that a segmentation
    decoder can learn them. For tests of the layout and its readers; radiographs of real anatomy with exact labels
    come from `phantom.write_anatomy_jsrt`. Ids and folds as `jsrt_ids`. cxrbench reads JSRT files of the
    released 2048 x 2048 only (8 MB each: keep `images` small); another `size` writes files that its reader refuses,
    for tests of that check.
    """
    if size % 2:
        raise ValueError(f"size must be even (masks are written at half of it), got {size}")
    root = Path(root)
    mark_synthetic(root, "jsrt", {"images": images, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    side = size // 2
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / side
    for image_id, fold in jsrt_ids(images):
        masks = jsrt_anatomy(side, rng)
        body = ((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.52) ** 2 <= 1.0
        image = np.where(body, 0.55, 0.05)
        image = np.where(masks["right_lung"] | masks["left_lung"], 0.22, image)
        image = np.where(masks["heart"], 0.78, image)
        image = image + 0.25 * (masks["right_clavicle"] | masks["left_clavicle"])
        image = np.clip(image + 0.03 * rng.standard_normal(image.shape), 0.0, 1.0)
        full = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # masks cover the image's field of view at half size
        write_jsrt_case(root, image_id, fold, full, masks)
    return root
