"""MIMIC-CXR lung masks and lung zones: RAD-DINO's Table 3 "lungs" (`mimic-lungs`) and "lung zones"
(`mimic-lung-zones`), read from three PhysioNet releases placed side by side in the data root:

    ROOT/mimic-cxr-jpg/                                  MIMIC-CXR-JPG 2.0.0 / 2.1.0 (dataset option images_dir)
        mimic-cxr-2.0.0-metadata.csv.gz                 dicom_id, subject_id, study_id, ..., ViewPosition, Rows, Columns
        files/p10/p10000032/s50414267/<dicom_id>.jpg    p<first 2 digits of subject_id>/p<subject_id>/s<study_id>/
    ROOT/lung-segment-mimic-cxr/                         "Chest X-ray segmentation images based on MIMIC-CXR" 1.0.0
        .../<file or folder named by the dicom_id>.png   (Chen, Kuo, Wang, Gichoya, Celi 2022; masks_dir, mask_glob)
    ROOT/chest-imagenome/silver_dataset/scene_graph/     Chest ImaGenome 1.0.0, for mimic-lung-zones (scene_graph_dir)
        <dicom_id>_SceneGraph.json

What is confirmed and what is assumed (benchmarks/mimic-lungs.yaml says the same): the MIMIC-CXR-JPG layout and
metadata columns, and the scene graphs' file names and keys (`objects` with `bbox_name`, `original_x1` ... `original_y2`
in the JPG's pixels, `original_x2 - original_x1 == original_width`) are as public code reads them. Of the lung release,
its PhysioNet page says: 1,141 frontal radiographs drawn at random from MIMIC-CXR, each "processed into a pair of
segmented images with the lung lobes and the rest parts" by a deep network, wrong ones filtered out by hand. Its file
names and the masks' encoding could not be read here. So the loader finds the lung images by `mask_glob` under
masks_dir and names each by the MIMIC dicom id in its file name (else in its folders' names); two files of one dicom id
are refused (narrow the glob, e.g. to the lung half of each pair). A pixel above `mask_threshold` is lung: a binary mask
(0/1, 0/255) and a lung-only segmented image (0 outside the lungs) read alike.

Left and right: the masks are one lung field. The loader splits it by connected components: the two largest are the
lungs, the one on the image's left is the patient's right lung (PA / AP views), and every smaller piece goes to the
side whose main lung it lies nearer to. A field of one piece is cut at its narrowest column in its middle half.

Rows: one per lung mask whose dicom id is in the metadata; patient = subject_id. `mimic-lungs` leaves the split to
cxrbench (70/15/15 of the subjects, test fixed). `mimic-lung-zones` keeps the images that also have a scene graph and
draws the same test subjects as `mimic-lungs` (the same draw over all lung-mask subjects), so that the two tables are
scored on one test set; its zones are each Chest ImaGenome box intersected with the lung of its side.
Masks are read when asked, one image at a time, on the mask file's grid (checked against the image's size).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from cxrbench.data.common.csvs import first_existing
from cxrbench.data.common.masks import MaskReader
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings, require_masks
from cxrbench.data.common.sizes import image_size
from cxrbench.data.mimic.cxr import image_path, jpg_folder, read_metadata, study_dates
from cxrbench.data.mimic.iv import link_demographics
from cxrbench.data.splits import POOL, seed_splits
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec, SplitSpec

DEFAULTS: dict[str, Any] = {
    "images_dir": "mimic-cxr-jpg",
    "metadata_csv": ["mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-metadata.csv"],
    "masks_dir": "lung-segment-mimic-cxr",
    "mask_glob": "**/*.png",
    "mask_threshold": 0,
    "allow_resized_masks": False,
    "mimic_iv_dir": "mimic-iv",
}
ZONE_DEFAULTS: dict[str, Any] = {
    "scene_graph_dir": "chest-imagenome/silver_dataset/scene_graph",
    "missing_zones": "error",
    # the mimic-lungs split whose test subjects the zones share (benchmarks/mimic-lungs.yaml)
    "split_benchmark": "mimic-lungs",
    "split_fractions": [0.7, 0.15, 0.15],
    "zone_objects": {},
}
LUNG_STRUCTURES = ("left_lung", "right_lung", "lungs")
MISSING_ZONES = ("error", "skip")
#: a MIMIC-CXR dicom id: five groups of eight hexadecimal digits
DICOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", re.IGNORECASE)
SCENE_GRAPH_SUFFIX = "_SceneGraph.json"
BOX_KEYS = ("original_x1", "original_y1", "original_x2", "original_y2")
_SHOWN = 5


# ---------------------------------------------------------------------------------------------- files


def index_masks(folder: Path, pattern: str) -> dict[str, Path]:
    """dicom id -> mask file, for the files under `folder` matching `pattern` whose path (below `folder`: the file's name,
    else its folders') holds a dicom id."""
    found: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        parts = path.relative_to(folder).parts
        match = next((m for m in map(DICOM_ID.search, reversed(parts)) if m), None)
        if match is None or not path.is_file() or any(part.startswith(".") for part in parts):
            continue
        dicom_id = match.group(0).lower()
        if dicom_id in found:
            raise DataError(f"Two lung mask files for image {dicom_id} under {folder}: {found[dicom_id]} and {path}. Keep one "
                            f"mask per image, or narrow the dataset option mask_glob (now {pattern!r}) to the lung files, "
                            "e.g. --dataset-option 'mask_glob=**/*lung*.png'.")
        found[dicom_id] = path
    return found


def read_binary_mask(path: Path, threshold: float, fix: str) -> np.ndarray:
    """bool [H, W]: the pixels of an image file above `threshold` (colour: its brightest channel)."""
    try:
        with Image.open(path) as img:
            values = np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"Mask {path} does not exist (it did when the benchmark was loaded).") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"Cannot decode the mask {path}: {exc}. {fix}") from None
    if values.ndim == 3:
        values = values[..., :3].max(axis=2) if values.shape[2] >= 3 else values[..., 0]
    if values.ndim != 2 or not values.size:
        raise DataError(f"Mask {path} has shape {values.shape}, not a 2-D image. {fix}")
    return values > threshold


def split_sides(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right lung, left lung) of one lung field: the patient's right is on the image's left. See the module doc."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    right, left = np.zeros_like(mask), np.zeros_like(mask)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return right, left
    if count == 1:
        columns = np.flatnonzero(mask.any(axis=0))
        first, last = int(columns[0]), int(columns[-1])
        lo, hi = first + (last - first) // 4, last - (last - first) // 4
        cut = lo + int(np.argmin(mask[:, lo:hi + 1].sum(axis=0))) if hi > lo else (first + last + 1) // 2
        right[:, :cut] = mask[:, :cut]
        left[:, cut:] = mask[:, cut:]
        return right, left
    index = np.arange(1, count + 1)
    sizes = np.asarray(ndimage.sum(mask, labels, index))
    centres = np.asarray([c[1] for c in ndimage.center_of_mass(mask, labels, index)])
    largest = np.argsort(-sizes, kind="stable")[:2]
    middle = centres[largest].mean()
    on_right = np.zeros(count + 1, dtype=bool)
    on_right[1:] = centres < middle
    right = on_right[labels] & mask
    return right, mask & ~right


# ----------------------------------------------------------------------------------------------- masks


class LungMasks(MaskReader):
    """`reader(target, dicom_id)` -> bool [S, H, W] on the mask file's grid: `left_lung`, `right_lung` (its side of the
    field, `split_sides`) or `lungs` (the whole field), in the target's order."""

    dataset = "MIMIC-CXR lung masks"
    reference_kind = "a dicom id of the benchmark"

    def __init__(self, structures: dict[str, tuple[str, ...]], images: dict[str, str], masks: dict[str, Path],
                 threshold: float, strict: bool):
        self.structures = structures
        self.images = images
        self.masks = masks
        self.threshold = threshold
        self.strict = strict

    def targets(self) -> list[str]:
        return list(self.structures)

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.masks

    def field(self, dicom_id: str) -> tuple[np.ndarray, tuple[int, int]]:
        """The image's lung field on the mask's grid, and the image's (height, width), read from its header."""
        path = self.masks[dicom_id]
        fix = f"Re-download it, or move it out of {path.parent} to leave image {dicom_id} out."
        mask = read_binary_mask(path, self.threshold, fix)
        size = image_size(self.images[dicom_id])
        if self.strict and mask.shape != size:
            raise DataError(f"Lung mask {path} is {mask.shape[0]} x {mask.shape[1]} px but its image {self.images[dicom_id]} "
                            f"is {size[0]} x {size[1]}: a mask must be on its image's pixel grid. Check that the file is this "
                            "image's mask (its name holds the dicom id), or, if your copy's masks were resized with the whole "
                            "image, set --dataset-option allow_resized_masks=true.")
        return mask, size

    def read(self, target: str, dicom_id: str) -> np.ndarray:
        mask, _ = self.field(dicom_id)
        right, left = split_sides(mask)
        parts = {"left_lung": left, "right_lung": right, "lungs": mask}
        return np.stack([parts[s] for s in self.structures[target]])


class LungZoneMasks(LungMasks):
    """The zones of `zone_boxes` (per image: structure -> (side, x1, y1, x2, y2) in the image's pixels, end exclusive),
    each intersected with the lung of its side."""

    def __init__(self, structures, images, masks, threshold, strict, boxes: dict[str, dict[str, tuple]]):
        super().__init__(structures, images, masks, threshold, strict)
        self.boxes = boxes

    def read(self, target: str, dicom_id: str) -> np.ndarray:
        mask, (height, width) = self.field(dicom_id)
        sides = dict(zip(("right", "left"), split_sides(mask)))
        scale_y, scale_x = mask.shape[0] / height, mask.shape[1] / width
        out = np.zeros((len(self.structures[target]), *mask.shape), dtype=bool)
        for k, structure in enumerate(self.structures[target]):
            side, x1, y1, x2, y2 = self.boxes[dicom_id][structure]
            r0, r1 = (int(np.clip(round(v * scale_y), 0, mask.shape[0])) for v in (y1, y2))
            c0, c1 = (int(np.clip(round(v * scale_x), 0, mask.shape[1])) for v in (x1, x2))
            out[k, r0:r1, c0:c1] = sides[side][r0:r1, c0:c1]
        return out


# ---------------------------------------------------------------------------------------------- loading


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    settings = dataset_settings(spec, options, {**DEFAULTS, **(extra or {})})
    if isinstance(settings["metadata_csv"], str):
        settings["metadata_csv"] = [settings["metadata_csv"]]
    if isinstance(settings["allow_resized_masks"], str):
        settings["allow_resized_masks"] = settings["allow_resized_masks"].strip().lower() in ("1", "true", "yes")
    try:
        settings["mask_threshold"] = float(settings["mask_threshold"])
    except (TypeError, ValueError):
        raise DataError(f"benchmark '{spec.name}': mask_threshold must be a number, got {settings['mask_threshold']!r}.") from None
    require_masks(spec, "the MIMIC-CXR lung-mask release")
    return settings


def _metadata(folder: Path, names: list[str]) -> pd.DataFrame:
    """dicom_id (lower case) -> subject_id, study_id, ViewPosition, StudyDate, position, from MIMIC-CXR-JPG's metadata."""
    jpg_folder(folder.parent, folder.name)
    return read_metadata(folder, names)[0].drop_duplicates("dicom_id").set_index("dicom_id")


def lung_demographics(root: Path, samples: pd.DataFrame, settings: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """`samples` with MIMIC-IV's sex, age_years and race (for stratified results); unknown, with a note, when the
    mimic_iv_dir folder does not exist (StudyDate is then not read)."""
    folder = root / settings["mimic_iv_dir"]
    dates = pd.Series(pd.NaT, index=samples.index, dtype="datetime64[ns]")
    if folder.is_dir():
        path = first_existing(root / settings["images_dir"], list(settings["metadata_csv"]), "MIMIC-CXR-JPG metadata")
        dates = study_dates(samples, path)
    demographics, notes = link_demographics(samples["patient_id"], dates, folder, 0.0, ("sex", "age_years", "race"))
    return pd.concat([samples, demographics], axis=1), notes


def _lung_images(root: Path, settings: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Path], list[str]]:
    """One row per lung mask of an image in the metadata (image_id, patient_id, path, study_id, view), the mask files,
    and notes."""
    masks_dir = root / settings["masks_dir"]
    if not masks_dir.is_dir():
        raise DataError(f"Lung mask folder {masks_dir} is missing. Unpack the PhysioNet release lung-segment-mimic-cxr there, "
                        "or name its folder with --dataset-option masks_dir=<folder relative to the data root>.")
    masks = index_masks(masks_dir, str(settings["mask_glob"]))
    if not masks:
        raise DataError(f"No lung mask found under {masks_dir}: no file matching {settings['mask_glob']!r} has a MIMIC dicom id "
                        "(five groups of 8 hexadecimal digits) in its name or folder. Set --dataset-option mask_glob=<pattern> to "
                        "match your copy's mask files.")
    folder = root / settings["images_dir"]
    metadata = _metadata(folder, list(settings["metadata_csv"]))
    known = [d for d in masks if d in metadata.index]
    unknown = sorted(set(masks) - set(known))
    if not known:
        raise DataError(f"None of the {len(masks)} lung masks under {masks_dir} names an image of the MIMIC-CXR-JPG metadata in "
                        f"{folder} (e.g. {unknown[0]}). Check that images_dir points at MIMIC-CXR-JPG.")
    rows = metadata.loc[known]
    paths = [image_path(folder, s, t, d) for d, s, t in zip(known, rows["subject_id"], rows["study_id"])]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = "\n  ".join(str(p) for p in missing[:_SHOWN])
        raise DataError(f"{len(missing)} of {len(paths)} MIMIC-CXR-JPG images with a lung mask are missing, e.g.:\n  {shown}\n"
                        "Download them (only the images with a mask are needed), or move their masks out of "
                        f"{masks_dir} to leave them out.")
    samples = pd.DataFrame({"image_id": known, "patient_id": list(rows["subject_id"]), "path": [str(p) for p in paths],
                            "study_id": list(rows["study_id"]), "view": list(rows["ViewPosition"]),
                            "dicom_id": known, "StudyDate": list(rows["StudyDate"]), "position": list(rows["position"])})
    notes = [f"lung masks: {len(masks)} file(s) matching {settings['mask_glob']!r} under {masks_dir.name}/; a pixel above "
             f"{settings['mask_threshold']:g} is lung; left / right: the field's connected parts (image left = right lung)"]
    if unknown:
        notes.append(f"{len(unknown)} lung mask(s) name images absent from the MIMIC-CXR-JPG metadata and are left out, "
                     f"e.g. {', '.join(unknown[:3])}")
    views = samples["view"].replace("", "unknown").value_counts()
    notes.append("views: " + ", ".join(f"{v} {int(n)}" for v, n in views.items()))
    samples, demographic_notes = lung_demographics(root, samples, settings)
    samples = samples.drop(columns=["dicom_id", "StudyDate", "position"])
    return samples.sort_values("image_id", kind="stable").reset_index(drop=True), masks, notes + demographic_notes


def _lung_structures(spec: BenchmarkSpec) -> dict[str, tuple[str, ...]]:
    wrong = [s for t in spec.targets for s in t.structures if s not in LUNG_STRUCTURES]
    if wrong:
        raise DataError(f"benchmark '{spec.name}': structure(s) {wrong} are not lung masks; the MIMIC-CXR lung masks give "
                        f"{', '.join(LUNG_STRUCTURES)}.")
    return {t.name: tuple(t.structures) for t in spec.targets}


def _columns(samples: pd.DataFrame, spec: BenchmarkSpec) -> pd.DataFrame:
    for target in spec.targets:
        samples[target.name] = pd.Series(list(samples["image_id"]), dtype=object)
        samples[f"{target.name}:present"] = 1.0  # every image has its lung mask (an empty file reads as empty masks)
    return samples


def load_mimic_lungs(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR lungs", "mimic-cxr-jpg/ and lung-segment-mimic-cxr/")
    settings = _settings(spec, options)
    structures = _lung_structures(spec)
    samples, masks, notes = _lung_images(root, settings)
    samples["split"] = POOL
    notes.append("split: none released; cxrbench splits the subjects (split.fractions of the spec)")
    reader = LungMasks(structures, dict(zip(samples["image_id"], samples["path"])), masks, settings["mask_threshold"],
                       not settings["allow_resized_masks"])
    return BenchmarkData(spec.name, root, spec.targets, _columns(samples, spec), notes, mask_reader=reader)


# ------------------------------------------------------------------------------------------------- zones


def read_zone_boxes(path: Path, dicom_id: str, objects: Mapping[str, str]) -> dict[str, tuple] | str:
    """structure -> (side, x1, y1, x2, y2) from one scene graph (`objects`: structure -> Chest ImaGenome bbox_name), or
    the name of the first zone the graph lacks. A damaged file or box raises a DataError naming the file and object."""
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"Cannot read the scene graph {path}: {exc}. Re-download it (Chest ImaGenome silver_dataset/"
                        f"scene_graph), or delete it to leave image {dicom_id} out of the zones.") from None
    if not isinstance(graph, dict) or not isinstance(graph.get("objects"), list):
        raise DataError(f"Scene graph {path} has no list 'objects'; it is not a Chest ImaGenome scene graph.")
    if "image_id" in graph and str(graph["image_id"]).lower() != dicom_id:
        raise DataError(f"Scene graph {path} is of image {graph['image_id']}, not {dicom_id} as its name says. Re-download it.")
    by_name = {str(o.get("bbox_name", "")).strip().lower(): o for o in graph["objects"] if isinstance(o, dict)}
    boxes = {}
    for structure, name in objects.items():
        found = by_name.get(name.strip().lower())
        if found is None:
            return name
        values = [found.get(k) for k in BOX_KEYS]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
            raise DataError(f"Scene graph {path}, object '{name}': {', '.join(f'{k}={v!r}' for k, v in zip(BOX_KEYS, values))}; "
                            "the box needs four numbers. Re-download the file.")
        x1, y1, x2, y2 = (float(v) for v in values)
        if x2 <= x1 or y2 <= y1:
            raise DataError(f"Scene graph {path}, object '{name}': the box ({x1:g}, {y1:g}) - ({x2:g}, {y2:g}) is empty "
                            "(original_x2 must exceed original_x1, original_y2 original_y1). Re-download the file.")
        boxes[structure] = (_side(name), x1, y1, x2, y2)
    return boxes


def _side(name: str) -> str:
    side = name.strip().lower().split()[0]
    if side not in ("left", "right"):
        raise DataError(f"Zone object '{name}' names no side (left / right); each zone is intersected with the lung of its side.")
    return side


def load_mimic_lung_zones(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR lung zones",
                       "mimic-cxr-jpg/, lung-segment-mimic-cxr/ and chest-imagenome/silver_dataset/scene_graph/")
    settings = _settings(spec, options, ZONE_DEFAULTS)
    if settings["missing_zones"] not in MISSING_ZONES:
        raise DataError(f"benchmark '{spec.name}': missing_zones must be one of {MISSING_ZONES}, got {settings['missing_zones']!r}.")
    objects = {**spec.dataset.get("zone_objects", {}), **(settings["zone_objects"] or {})}
    structures = {t.name: tuple(t.structures) for t in spec.targets}
    unmapped = [s for names in structures.values() for s in names if s not in objects]
    if unmapped:
        raise DataError(f"benchmark '{spec.name}': structure(s) {unmapped} have no Chest ImaGenome object in the dataset option "
                        f"zone_objects (it maps {sorted(objects)}).")
    for structure in (s for names in structures.values() for s in names):
        _side(objects[structure])
    samples, masks, notes = _lung_images(root, settings)

    # the mimic-lungs test subjects, drawn over every lung-mask subject as cxrbench draws them for mimic-lungs
    fractions = tuple(float(f) for f in settings["split_fractions"])
    drawn = seed_splits(samples, str(settings["split_benchmark"]), 0, SplitSpec(scheme="random", fractions=fractions, test="fixed"))
    samples["split"] = np.where(drawn["split"].to_numpy() == "test", "test", "train")

    graphs = root / settings["scene_graph_dir"]
    if not graphs.is_dir():
        raise DataError(f"Chest ImaGenome scene graph folder {graphs} is missing. Unzip silver_dataset/scene_graph.zip of Chest "
                        "ImaGenome 1.0.0 there, or name the folder with --dataset-option scene_graph_dir=<folder>.")
    present = {entry.name[: -len(SCENE_GRAPH_SUFFIX)].lower(): Path(entry.path) for entry in os.scandir(graphs)
               if entry.name.endswith(SCENE_GRAPH_SUFFIX)}
    wanted = list(dict.fromkeys(s for names in structures.values() for s in names))
    boxes: dict[str, dict[str, tuple]] = {}
    skipped: list[tuple[str, str]] = []
    for dicom_id in samples["image_id"]:
        if dicom_id not in present:
            continue
        found = read_zone_boxes(present[dicom_id], dicom_id, {s: objects[s] for s in wanted})
        if isinstance(found, str):
            if settings["missing_zones"] == "error":
                raise DataError(f"Scene graph {present[dicom_id]} has no object '{found}' (bbox_name), a zone of benchmark "
                                f"'{spec.name}'. Re-download the file, or leave such images out with --dataset-option "
                                "missing_zones=skip.")
            skipped.append((dicom_id, found))
            continue
        boxes[dicom_id] = found
    without = int((~samples["image_id"].isin(present)).sum())
    kept = samples["image_id"].isin(boxes)
    if not kept.any():
        raise DataError(f"None of the {len(samples)} images with a lung mask has a usable scene graph in {graphs} "
                        f"(<dicom_id>{SCENE_GRAPH_SUFFIX}).")
    samples = samples[kept].reset_index(drop=True)
    notes.append(f"zones: Chest ImaGenome boxes ({', '.join(objects[s] for s in wanted)}) x the lung of their side; "
                 f"{len(samples)} images have a lung mask and a scene graph"
                 + (f", {without} image(s) with a lung mask but no scene graph are left out" if without else ""))
    if skipped:
        notes.append(f"{len(skipped)} image(s) left out (missing_zones: skip) whose scene graph lacks a zone, e.g. "
                     + ", ".join(f"{d} ({z})" for d, z in skipped[:3]))
    notes.append(f"split: the test subjects of {settings['split_benchmark']} (its {'/'.join(f'{f:g}' for f in fractions)} "
                 f"draw over all lung-mask subjects, fixed); train {int((samples['split'] == 'train').sum())}, test "
                 f"{int((samples['split'] == 'test').sum())} images")
    reader = LungZoneMasks(structures, dict(zip(samples["image_id"], samples["path"])), masks, settings["mask_threshold"],
                           not settings["allow_resized_masks"], boxes)
    return BenchmarkData(spec.name, root, spec.targets, _columns(samples, spec), notes, mask_reader=reader)
