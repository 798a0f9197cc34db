"""JSRT chest radiographs (Shiraishi et al., AJR 2000) with the SCR anatomy masks (van Ginneken et al., Medical Image
Analysis 2006, "Segmentation in Chest Radiographs"), in the layouts of the two downloads placed side by side:

    ROOT/All247images/JPCLN001.IMG ... JPCNN093.IMG          JSRT: 154 nodule (JPCLN) + 93 non-nodule (JPCNN) PA images,
                                                             headerless 2048 x 2048, 12-bit values in big-endian words
    ROOT/scratch/fold1/masks/<structure>/JPCLN001.gif        SCR: one 1024 x 1024 GIF (0 / 255) per image and structure;
    ROOT/scratch/fold2/masks/<structure>/JPCLN002.gif        fold1 holds the odd-numbered images, fold2 the even ones

<structure> is SCR's folder name ("left lung", "right lung", "heart", "left clavicle", "right clavicle"; left and
right are the patient's). Every folder name is a dataset option (benchmarks/jsrt.yaml), for mirrors laid out otherwise.

Rows: one per JSRT image found in the images folder; each image is its own patient (JSRT has no patient ids). Its
fold is the SCR fold whose mask folders hold it; under `split.scheme: official` the spec's train / test folds become
the train / test splits, under `random` (RayDINO's 80/20, the default) every image is left to cxrbench's split. A mask
target's column holds the image id, which `mask_reader(target, image_id)` opens (one image at a time) as a boolean
[S, H, W] array, one channel per structure in the target's order, on the masks' own 1024 x 1024 grid (the image's
field of view at half its resolution). Nothing is decoded here: the files' presence (and the images' sizes) is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cxrbench.data.common.images import JSRT_SIDE, JSRT_SUFFIX
from cxrbench.data.common.masks import MaskReader
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings, require_masks
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError, ImageReadError
from cxrbench.specs import BenchmarkSpec
from cxrbench.targets.mask import present_column

SHOWN = 5  # missing files named in an error


def _listing(folder: Path) -> dict[str, str]:
    """The files of `folder` by lower-cased name (one listing, no stat per file); empty when it is not a folder."""
    if not folder.is_dir():
        return {}
    return {entry.name.lower(): entry.name for entry in os.scandir(folder) if not entry.is_dir()}


def _shown(paths: list[Path]) -> str:
    return "\n  ".join(str(p) for p in paths[:SHOWN])


def _structures(spec: BenchmarkSpec, folders: Mapping[str, Any]) -> list[str]:
    """Every structure of the spec's (mask) targets, each with an SCR folder."""
    require_masks(spec, "JSRT/SCR")
    structures = [s for t in spec.targets for s in t.structures]
    unmapped = [s for s in structures if s not in folders]
    if unmapped:
        raise DataError(f"benchmark '{spec.name}': structure(s) {unmapped} have no SCR mask folder in the dataset option "
                        f"structure_folders (it maps {sorted(folders)}); add them, e.g. "
                        f"--dataset-option 'structure_folders={{{unmapped[0]}: <folder name>, ...}}'.")
    return structures


def _images(folder: Path, images_dir: str) -> dict[str, Path]:
    """JSRT image id -> file, for every .IMG file of the images folder."""
    if not folder.is_dir():
        raise DataError(f"JSRT image folder {folder} is missing. Unpack the JSRT download so that ROOT/{images_dir}/ holds "
                        "JPCLN001.IMG ... JPCNN093.IMG, or name your folder with --dataset-option images_dir=<folder>.")
    found = {Path(name).stem: folder / name for name in _listing(folder).values() if Path(name).suffix.lower() == JSRT_SUFFIX}
    if not found:
        raise DataError(f"JSRT image folder {folder} holds no .IMG file; JSRT's images are JPCLN001.IMG ... JPCNN093.IMG.")
    return found


def _check_sizes(paths: list[Path]) -> None:
    """Each image must be a full JSRT raw file (a stat, no decoding): truncated downloads fail here, not mid-run."""
    expected = JSRT_SIDE * JSRT_SIDE * 2
    sizes = [(p, p.stat().st_size) for p in paths]
    wrong = [(p, size) for p, size in sizes if size != expected]
    if wrong:
        shown = "\n  ".join(f"{p} ({size} bytes)" for p, size in wrong[:SHOWN])
        raise DataError(f"{len(wrong)} of {len(paths)} JSRT images are not {JSRT_SIDE} x {JSRT_SIDE} 16-bit raw files "
                        f"({expected} bytes), e.g.:\n  {shown}\nRe-download them (a truncated or converted file cannot be read).")


def _mask_paths(root: Path, settings: Mapping[str, Any], structures: list[str], images: dict[str, Path]
                ) -> tuple[dict[str, str], dict[str, list[Path]]]:
    """Each image's fold and its mask files (one per structure, in order); DataErrors name the files missing."""
    folds = [settings["train_fold"], settings["test_fold"]]
    if folds[0] == folds[1]:
        raise DataError(f"JSRT: train_fold and test_fold are both '{folds[0]}'; SCR's two folds are fold1 and fold2.")
    scr = root / settings["scr_dir"]
    folders = settings["structure_folders"]
    suffix = settings["mask_suffix"]
    listings: dict[str, dict[str, dict[str, str]]] = {}
    for fold in folds:
        masks = scr / fold / "masks"
        if not masks.is_dir():
            raise DataError(f"SCR mask folder {masks} is missing. Unpack the SCR download so that ROOT/{settings['scr_dir']}/"
                            f"{fold}/masks/<structure>/<image>{suffix} exist, or point the dataset options scr_dir / "
                            "train_fold / test_fold at your copy (benchmarks/jsrt.yaml).")
        listings[fold] = {s: _listing(masks / folders[s]) for s in structures}
    fold_of: dict[str, str] = {}
    paths: dict[str, list[Path]] = {}
    missing: list[Path] = []
    for image_id in sorted(images):
        name = (image_id + suffix).lower()
        holding = [f for f in folds if any(name in listings[f][s] for s in structures)]
        if len(holding) > 1:
            raise DataError(f"SCR masks of image {image_id} are in both {holding[0]} and {holding[1]} under {scr}; an image "
                            "belongs to one fold. Remove the copy from the wrong fold.")
        if not holding:
            missing += [scr / f / "masks" / folders[structures[0]] / (image_id + suffix) for f in folds]
            continue
        fold = holding[0]
        folder = scr / fold / "masks"
        fold_of[image_id] = fold
        paths[image_id] = [folder / folders[s] / listings[fold][s].get(name, image_id + suffix) for s in structures]
        missing += [folder / folders[s] / (image_id + suffix) for s in structures if name not in listings[fold][s]]
    if missing:
        raise DataError(
            f"{len(missing)} SCR mask file(s) of the JSRT images in {root / settings['images_dir']} are missing "
            f"(every structure of the benchmark needs one per image), e.g.:\n  {_shown(missing)}\nComplete the SCR "
            "download (fold1 and fold2, every structure), point the dataset options scr_dir / structure_folders / "
            "mask_suffix at your copy, or move the image out of the images folder to leave it out."
        )
    masked = {Path(n).stem.upper() for f in folds for s in structures for n in listings[f][s].values()
              if n.lower().endswith(suffix.lower())}
    orphans = sorted(masked - {i.upper() for i in images})
    if orphans:
        raise DataError(f"SCR has masks for {len(orphans)} image(s) missing from {root / settings['images_dir']}, e.g. "
                        f"{', '.join(orphans[:SHOWN])}. Complete the JSRT download (247 .IMG files), or delete those "
                        "images' masks to leave them out.")
    return fold_of, paths


class SCRMasks(MaskReader):
    """Opens an image's SCR masks when asked: `reader(target, image_id)` -> bool [S, H, W] (structures in the target's
    order, on the masks' grid)."""

    dataset = "JSRT"

    def __init__(self, paths: dict[str, dict[str, list[Path]]]):
        self.paths = paths

    def targets(self) -> list[str]:
        return list(self.paths)

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.paths[target]

    def read(self, target: str, reference: str) -> np.ndarray:
        channels = [_read_mask(path) for path in self.paths[target][reference]]
        shapes = {c.shape for c in channels}
        if len(shapes) > 1:
            listed = ", ".join(f"{p.name} in {p.parent.name}: {c.shape}" for p, c in zip(self.paths[target][reference], channels))
            raise ImageReadError(f"SCR masks of image {reference} differ in size ({listed}); re-download them.")
        return np.stack(channels)


def _read_mask(path: Path) -> np.ndarray:
    """One SCR GIF as booleans (the structure is white, 255; grey levels above half count)."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127
    except FileNotFoundError:
        raise ImageReadError(f"SCR mask {path} does not exist (it did when the benchmark was loaded).") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"Cannot decode SCR mask {path}: {exc}. Re-download it.") from exc


def _split_of(fold: str, folds: Mapping[str, str], official: bool, scr_folds: bool) -> str:
    """The loader's split of an image of SCR fold `fold`: the fold's split under scheme official; under random the
    test fold's images are the released test set when `scr_folds` asks for it, every other image is left to cxrbench."""
    if official:
        return folds[fold]
    return "test" if scr_folds and folds[fold] == "test" else POOL


def load_jsrt(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "JSRT/SCR", "All247images/ (JSRT) and scratch/fold1, scratch/fold2 (SCR masks)")
    settings = dataset_settings(spec, options)
    # a structure_folders option renames some folders; the spec's names hold for the others
    settings["structure_folders"] = {**spec.dataset.get("structure_folders", {}), **settings["structure_folders"]}
    structures = _structures(spec, settings["structure_folders"])
    images = _images(root / settings["images_dir"], settings["images_dir"])
    fold_of, paths = _mask_paths(root, settings, structures, images)
    ids = sorted(images)
    _check_sizes([images[i] for i in ids])
    split = {settings["train_fold"]: "train", settings["test_fold"]: "test"}
    official = spec.split.scheme == "official"
    samples = pd.DataFrame({
        "image_id": ids,
        "patient_id": ids,
        "path": [str(images[i]) for i in ids],
        "fold": [fold_of[i] for i in ids],
        "split": [_split_of(fold_of[i], split, official, bool(settings["scr_folds"])) for i in ids],
        "nodule": [1.0 if i.upper().startswith("JPCLN") else 0.0 for i in ids],
    })
    per_target: dict[str, dict[str, list[Path]]] = {}
    start = 0
    for target in spec.targets:
        stop = start + len(target.structures)
        per_target[target.name] = {i: paths[i][start:stop] for i in ids}
        samples[target.name] = pd.Series(ids, dtype=object)
        samples[present_column(target.name)] = 1.0  # SCR outlines every structure on every image
        start = stop
    used = official or bool(settings["scr_folds"])
    counts = ", ".join(f"{name if used else 'unused'} ({fold}) {int((samples['fold'] == fold).sum())}"
                       for fold, name in split.items())
    notes = [f"images: {counts}; patients: one per image (JSRT has no patient ids); nodule images (JPCLN) "
             f"{int(samples['nodule'].sum())}, non-nodule (JPCNN) {int((samples['nodule'] == 0).sum())}",
             f"masks: SCR {', '.join(structures)}, read per image on the masks' grid (half the image side); "
             "predictions are resized to it"]
    return BenchmarkData(spec.name, root, spec.targets, samples, notes, mask_reader=SCRMasks(per_target))
