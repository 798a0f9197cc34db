"""A small synthetic PAXRay++ release (images and COCO-style JSON labels with COCO RLE masks of anatomy classes), for
tests and demos; structures are drawn visibly. Same arguments, same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from cxrbench.data.common.synthetic import mark_synthetic
from cxrbench.data.paxray.coco_rle import encode_coco_rle

# ----------------------------------------------------------------------------------------------------- PAXRay++

PAXRAY_RIBS = {side: [f"posterior 12th rib {side}"] + [f"{part} {n} rib {side}" for n in
                      ("11th", "10th", "9th", "8th", "7th", "6th", "5th", "4th", "3rd", "2nd", "1st")
                      for part in ("anterior", "posterior")] for side in ("right", "left")}
#: the classes the synthetic PAXRay++ draws (a subset of the release's 157, named as CXAS names them)
PAXRAY_SYNTHETIC_CLASSES = ["spine", "clavicles", "clavicle left", "clavicle right", *PAXRAY_RIBS["right"],
                            *PAXRAY_RIBS["left"], "diaphragm", "heart", "lung", "right lung", "left lung", "trachea"]
_ORDINALS = {"1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "6th": 6, "7th": 7, "8th": 8, "9th": 9, "10th": 10,
             "11th": 11, "12th": 12}


def paxray_anatomy(size: int, view: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Boolean [size, size] masks of PAXRAY_SYNTHETIC_CLASSES for one projected view: overlapping like projected CT
    labels (the heart over the left lung, ribs over the lungs); a lateral view has no clavicles or ribs drawn."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    jitter = lambda scale=0.02: rng.uniform(-scale, scale)  # noqa: E731 - a local shape
    band = max(0.02, 1.6 / size)

    def ellipse(cx, cy, rx, ry, angle=0.0):
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0

    empty = np.zeros((size, size), dtype=bool)
    masks = dict.fromkeys(PAXRAY_SYNTHETIC_CLASSES, empty)
    if view == "frontal":
        masks["right lung"] = ellipse(0.31 + jitter(), 0.47 + jitter(), 0.14, 0.29 + jitter())
        masks["left lung"] = ellipse(0.69 + jitter(), 0.49 + jitter(), 0.13, 0.28 + jitter())
        masks["heart"] = ellipse(0.56 + jitter(), 0.64 + jitter(), 0.15, 0.12)
        masks["clavicle right"] = ellipse(0.32 + jitter(), 0.2 + jitter(0.01), 0.16, 0.025, 0.25)
        masks["clavicle left"] = ellipse(0.68 + jitter(), 0.2 + jitter(0.01), 0.16, 0.025, -0.25)
        masks["spine"] = (np.abs(xx - 0.5 - jitter(0.01)) < 0.045) & (yy > 0.08)
        for side, sign in (("right", -1.0), ("left", 1.0)):
            for name in PAXRAY_RIBS[side]:
                part, number = name.split()[0], _ORDINALS[name.split()[1]]
                lateral = np.clip(sign * (xx - 0.5), 0, None)  # 0 at the spine, growing outwards
                if part == "posterior":
                    centre = 0.16 + 0.056 * (number - 1) + 0.5 * lateral ** 2
                    within = (lateral > 0.05) & (lateral < 0.36)
                else:
                    centre = 0.24 + 0.05 * (number - 1) + 0.35 * (0.36 - lateral)
                    within = (lateral > 0.12) & (lateral < 0.34)
                masks[name] = within & (np.abs(yy - centre) < band)
    else:
        masks["right lung"] = ellipse(0.52 + jitter(), 0.47 + jitter(), 0.25, 0.3)
        masks["left lung"] = ellipse(0.5 + jitter(), 0.5 + jitter(), 0.24, 0.29)
        masks["heart"] = ellipse(0.38 + jitter(), 0.6 + jitter(), 0.14, 0.13)
        masks["spine"] = (np.abs(xx - 0.8 - jitter(0.01)) < 0.05) & (yy > 0.1)
    masks["lung"] = masks["right lung"] | masks["left lung"]
    masks["clavicles"] = masks["clavicle right"] | masks["clavicle left"]
    masks["diaphragm"] = (np.abs(yy - 0.8 - 0.1 * (xx - 0.5) ** 2) < 0.03) & (np.abs(xx - 0.5) < 0.4)
    masks["trachea"] = (np.abs(xx - (0.5 if view == "frontal" else 0.55)) < 0.03) & (yy < 0.3)
    return masks


def write_synthetic_paxray(root: str | Path, volumes: int = 16, test_volumes: int = 4, size: int = 64, seed: int = 0) -> Path:
    """PAXRay++'s layout: paxray_train_val.json and paxray_test.json (COCO: images, categories with a trailing space in
    one name as in the release, annotations whose segmentation is a COCO RLE, compressed text or, every fifth, a plain
    count list) and paxray_images_unfiltered/images_patlas/<volume>_frontal.png and <volume>_lateral.png (8-bit).

    Each CT volume gives a frontal and a lateral projection; `test_volumes` of them form the test file. A right lung is
    sometimes written as two overlapping annotations (its mask is their union). The drawn classes
    (PAXRAY_SYNTHETIC_CLASSES) of every image are also saved, as the truth for tests, in synthetic_truth/<stem>.npy
    (bool [C, H, W], C in that order); the loader does not read them.
    """
    root = Path(root)
    mark_synthetic(root, "paxray", {"volumes": volumes, "test_volumes": test_volumes, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    images_dir, truth_dir = root / "paxray_images_unfiltered" / "images_patlas", root / "synthetic_truth"
    for folder in (images_dir, truth_dir):
        folder.mkdir(parents=True, exist_ok=True)
    categories = [{"id": k + 1, "name": name + (" " if name == "heart" else ""), "supercategory": "anatomy"}
                  for k, name in enumerate(PAXRAY_SYNTHETIC_CLASSES)]
    files = {"train": {"info": "PAX-Ray++, v2 (cxrbench synthetic)", "images": [], "categories": categories, "annotations": []},
             "test": {"info": "PAX-Ray++, v2 (cxrbench synthetic)", "images": [], "categories": categories, "annotations": []}}
    image_id = annotation_id = 0
    for volume in range(volumes):
        split = "test" if volume >= volumes - test_volumes else "train"
        name = f"{('ribfrac', 'lidc', 'rsnape')[volume % 3]}_{seed:02d}{volume:04d}"
        for view in ("frontal", "lateral"):
            image_id += 1
            masks = paxray_anatomy(size, view, rng)
            yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
            image = np.where(((xx - 0.5) / 0.46) ** 2 + ((yy - 0.55) / 0.52) ** 2 <= 1, 0.5, 0.1)
            image = np.where(masks["lung"], 0.25, image)
            image = np.where(masks["heart"], 0.7, image)
            bones = masks["spine"] | masks["clavicles"] | np.any([masks[n] for n in PAXRAY_RIBS["right"] + PAXRAY_RIBS["left"]], axis=0)
            image = np.clip(image + 0.2 * bones + 0.03 * rng.standard_normal(image.shape), 0, 1)
            file_name = f"{name}_{view}.png"
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(images_dir / file_name)
            np.save(truth_dir / f"{name}_{view}.npy", np.stack([masks[c] for c in PAXRAY_SYNTHETIC_CLASSES]))
            files[split]["images"].append({"id": image_id, "file_name": file_name, "height": size, "width": size})
            for category in categories:
                mask = masks[category["name"].strip()]
                if not mask.any():
                    continue
                parts = [mask]
                if category["name"] == "right lung" and image_id % 3 == 0:  # two overlapping annotations of one class
                    rows = np.flatnonzero(mask.any(axis=1))
                    middle = (rows[0] + rows[-1]) // 2
                    upper, lower = mask.copy(), mask.copy()
                    upper[middle + 2:], lower[: middle - 1] = False, False
                    parts = [upper, lower]
                for part in parts:
                    annotation_id += 1
                    ys, xs = np.nonzero(part)
                    files[split]["annotations"].append({
                        "id": annotation_id, "image_id": image_id, "category_id": category["id"], "iscrowd": 0,
                        "area": int(part.sum()), "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                        "segmentation": encode_coco_rle(part, compressed=annotation_id % 5 != 0),
                    })
    (truth_dir / "classes.json").write_text(json.dumps(PAXRAY_SYNTHETIC_CLASSES))
    (root / "paxray_train_val.json").write_text(json.dumps(files["train"]))
    (root / "paxray_test.json").write_text(json.dumps(files["test"]))
    return root
