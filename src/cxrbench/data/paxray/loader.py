"""PAXRay++ (Seibold et al., "Accurate Fine-Grained Segmentation of Human Anatomy in Radiographs via Volumetric
Pseudo-Labeling", 2023): radiographs projected from chest CTs, with the CTs' anatomy labels projected alike.

The release (the Google Drive folder linked from github.com/ConstantinSeibold/ChestXRayAnatomySegmentation), unpacked
in the data root:

    ROOT/paxray_train_val.json          COCO instance annotations of the official train+val images (13,278 images)
    ROOT/paxray_test.json               the same for the official test images (1,475 images)
    ROOT/paxray_images_unfiltered/images_patlas/<file_name>
                                        the images (512 x 512 PNG), from paxray_images_unfiltered.tar.gz; COCO
                                        `file_name` is relative to this folder (option images_dir: the first of its
                                        folders that exists is used)
    ROOT/labels.zip                     per-image .npy masks, "unfiltered" (not used: the JSONs hold the filtered labels)

Each COCO file has `images` (id, file_name, height, width), `categories` (id, name: the anatomy class, sometimes with
trailing spaces, which are stripped) and `annotations` (image_id, category_id, bbox, and `segmentation`: a COCO
run-length encoding {"size": [height, width], "counts": ...}, compressed text or a list of numbers). An image has one
or more annotations per class drawn; a class's mask is their union. Classes overlap (multi-label). File names end in
`_frontal` or `_lateral` (before the suffix): both views of one CT share the rest of the name, which is their patient
id here (CT volumes of one person cannot be told apart).

This layout comes from public code that reads the release (dataset-ninja/paxray-2022's converter, and the
prepare_paxraypp scripts of an `anatomy_datasets` package: file names, image folder, the two JSONs and their counts);
the class names from CXAS (cxas/data/paxray_labels.json, docs/available_classes.md). The loader checks every class it
is asked for against the release's own categories and names any that is missing.

Splits: under `split.scheme: official` the JSONs are the train / test splits; under `random` (RayDINO's 80/10/10,
the benchmark's default) every image is left to cxrbench's split, or with `official_split: true` the test JSON's
images stay the test set and the others are split train / val.

A mask target's structures are unions of PAXRay++ classes (`structure_classes` in benchmarks/paxray.yaml; a structure
with no entry there is the class of the same name, spaces written as underscores; `all_classes: true` replaces the
spec's one mask target's structures by every class of the release, each its own structure). Its column holds the image id;
`mask_reader(target, image_id)` decodes only the classes needed, on the image's own grid. `map_structures` turns a
[C, H, W] class mask into [S, H, W] structures by such a mapping. The transfers onto JSRT's and VinDr-RibCXR's
structures are such mappings too, given as `structure_classes` in their own YAMLs (`cxrbench.transfer`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.masks import MaskReader
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings, require_masks
from cxrbench.data.common.sizes import image_size
from cxrbench.data.paxray.coco_rle import decode_coco_rle, rle_size
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

DEFAULTS: dict[str, Any] = {
    "train_json": "paxray_train_val.json",
    "test_json": "paxray_test.json",
    "images_dir": ["paxray_images_unfiltered/images_patlas", "images_patlas", "paxray_images_unfiltered"],
    "views": ["frontal", "lateral"],
    "structure_classes": {},
    "all_classes": False,
    "official_split": False,
}
VIEWS = ("frontal", "lateral")
_VIEW_SUFFIX = re.compile(r"^(?P<volume>.+?)[_-](?P<view>frontal|lateral)$", re.IGNORECASE)
_SHOWN = 5


# ------------------------------------------------------------------------------------------ structure mapping


def _as_classes(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def check_mapping(mapping: Mapping[str, Any], classes: Sequence[str], what: str) -> dict[str, list[str]]:
    """`mapping` (structure -> class name or list of names) as lists, after checking each class is one of `classes`;
    an unknown class raises a DataError naming it, the structure, `what` (where the mapping comes from) and the nearest
    known names."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise DataError(f"{what} must map structure names to lists of PAXRay++ classes, got {mapping!r}.")
    known = set(classes)
    checked: dict[str, list[str]] = {}
    for structure, value in mapping.items():
        if not isinstance(value, (str, list, tuple)) or not _as_classes(value):
            raise DataError(f"{what}: structure '{structure}' maps to {value!r}; give a class name or a non-empty list of "
                            "class names.")
        names = [str(v).strip() for v in _as_classes(value)]
        unknown = [n for n in names if n not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(classes), n=3)
            hint = f" (nearest: {', '.join(repr(c) for c in close)})" if close else ""
            raise DataError(f"{what}: structure '{structure}' maps to the class {unknown[0]!r}, which is not a PAXRay++ "
                            f"class{hint}. Correct the name (the release's classes are its COCO categories; "
                            f"{len(classes)} here).")
        checked[str(structure)] = names
    return checked


def map_structures(mask: np.ndarray, classes: Sequence[str], mapping: Mapping[str, Any]) -> np.ndarray:
    """bool [S', H, W] from a class mask [C, H, W] whose channel c is `classes[c]`: structure k (in the mapping's order)
    is the union of the classes `mapping` lists for it (a name or a list of names). A class not in `classes` raises a
    DataError naming it."""
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape[0] != len(classes):
        raise DataError(f"map_structures: the mask has shape {mask.shape} but {len(classes)} classes are named; it must be "
                        "[C, H, W] with one channel per class.")
    checked = check_mapping(mapping, list(classes), "the structure mapping")
    index = {name: k for k, name in enumerate(classes)}
    out = np.zeros((len(checked), *mask.shape[1:]), dtype=bool)
    for k, names in enumerate(checked.values()):
        out[k] = mask[[index[n] for n in names]].astype(bool).any(axis=0)
    return out


# -------------------------------------------------------------------------------------------------- release


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"Missing PAXRay++ annotations: {path} does not exist. Unpack the PAXRay++ download so that the data "
                        "root holds paxray_train_val.json and paxray_test.json (or set the dataset options train_json / "
                        "test_json).")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); the file is cut short or damaged. Re-download it.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {path}: {exc}. Re-download it.") from None
    missing = [k for k in ("images", "categories", "annotations") if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path} is not a COCO annotation file: it has no list {missing[0]!r}. PAXRay++'s JSONs hold "
                        "images, categories and annotations.")
    return data


def _categories(data: dict, path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    for position, category in enumerate(data["categories"]):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or not isinstance(category.get("name"), str):
            raise DataError(f"{path}: categories[{position}] is {category!r}; a category has an integer id and a name.")
        names[category["id"]] = category["name"].strip()
    doubled = pd.Series(list(names.values()))
    if doubled.duplicated().any():
        raise DataError(f"{path}: two categories are named {doubled[doubled.duplicated()].iloc[0]!r}; names must be unique.")
    return names


def _images_of(data: dict, path: Path) -> pd.DataFrame:
    rows = []
    for position, image in enumerate(data["images"]):
        where = f"{path}: images[{position}]"
        if not isinstance(image, dict):
            raise DataError(f"{where} is {image!r}, not an image entry.")
        file_name, ident = image.get("file_name"), image.get("id")
        height, width = image.get("height"), image.get("width")
        if not isinstance(file_name, str) or not file_name.strip() or ident is None:
            raise DataError(f"{where} has no file_name or id; every image entry needs both.")
        parts = Path(file_name).parts
        if Path(file_name).is_absolute() or ".." in parts or "\x00" in file_name:
            raise DataError(f"{where} names the file {file_name!r}, not a path inside the image folder. Remove the entry.")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
            raise DataError(f"{where} ({file_name}) has height {height!r} and width {width!r}; both must be whole pixels.")
        stem = Path(file_name).stem
        match = _VIEW_SUFFIX.match(stem)
        rows.append({"coco_id": ident, "file_name": file_name, "image_id": stem, "height": height, "width": width,
                     "patient_id": match["volume"] if match else stem, "view": match["view"].lower() if match else "unknown"})
    frame = pd.DataFrame(rows, columns=["coco_id", "file_name", "image_id", "height", "width", "patient_id", "view"])
    for column in ("coco_id", "image_id"):
        doubled = frame[column].duplicated()
        if doubled.any():
            raise DataError(f"{path}: two images have the {column.replace('coco_id', 'id').replace('_', ' ')} "
                            f"{frame.loc[doubled, column].iloc[0]!r}; each must appear once.")
    return frame


class _Annotations:
    """Per image id, the segmentations of the classes needed: {image_id: {class: [(segmentation, where), ...]}}."""

    def __init__(self) -> None:
        self.by_image: dict[str, dict[str, list[tuple[Any, str]]]] = {}

    def add(self, data: dict, path: Path, images: pd.DataFrame, categories: dict[int, str], needed: set[str]) -> None:
        by_coco = {c: (i, h, w, f) for c, i, h, w, f in
                   zip(images["coco_id"], images["image_id"], images["height"], images["width"], images["file_name"])}
        for position, annotation in enumerate(data["annotations"]):
            if not isinstance(annotation, dict):
                raise DataError(f"{path}: annotations[{position}] is {annotation!r}, not an annotation.")
            name = categories.get(annotation.get("category_id"))
            ident = annotation.get("id", position)
            if name is None:
                raise DataError(f"{path}: annotation {ident} (annotations[{position}]) has category_id "
                                f"{annotation.get('category_id')!r}, which no category has. Remove the annotation.")
            if name not in needed:
                continue
            image = by_coco.get(annotation.get("image_id"))
            if image is None:
                raise DataError(f"{path}: annotation {ident} ({name}) is of image id {annotation.get('image_id')!r}, which no "
                                "image entry has. Remove the annotation.")
            image_id, height, width, file_name = image
            where = f"{path}, annotation {ident} ({name!r} on {file_name})"
            segmentation = annotation.get("segmentation")
            if not isinstance(segmentation, dict) or "counts" not in segmentation:
                decode_coco_rle(segmentation, where)  # raises, naming the form
            if rle_size(segmentation.get("size"), where) != (height, width):
                raise DataError(f"{where}: its mask is {segmentation['size'][0]} x {segmentation['size'][1]} px but the "
                                f"image entry says {height} x {width}; a mask must be on its image's grid. Restore the "
                                "annotation (or the image entry) from the release, or remove the image.")
            self.by_image.setdefault(image_id, {}).setdefault(name, []).append((segmentation, where))


class PaxrayMasks(MaskReader):
    """`reader(target, image_id)` -> bool [S, H, W]: each structure the union of its classes, on the image's grid.
    Only the classes a target needs are decoded; the image's header is read to check the masks' size against it."""

    dataset = "PAXRay++"

    def __init__(self, mappings: dict[str, dict[str, list[str]]], annotations: _Annotations, images: pd.DataFrame):
        self.mappings = mappings
        self.annotations = annotations.by_image
        self.images = {i: (p, h, w, j) for i, p, h, w, j in
                       zip(images["image_id"], images["path"], images["height"], images["width"], images["json"])}

    def targets(self) -> list[str]:
        return list(self.mappings)

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.images

    def read(self, target: str, reference: str) -> np.ndarray:
        path, height, width, source = self.images[reference]
        actual = image_size(path)
        if actual != (height, width):
            raise DataError(f"PAXRay++ image {path} is {actual[0]} x {actual[1]} px but {source} gives it (and its masks) "
                            f"{height} x {width}. The image file does not belong to these annotations: re-download it.")
        mapping = self.mappings[target]
        classes = list(dict.fromkeys(c for names in mapping.values() for c in names))
        drawn = self.annotations.get(reference, {})
        stack = np.zeros((len(classes), height, width), dtype=bool)
        for k, name in enumerate(classes):
            for segmentation, where in drawn.get(name, ()):
                stack[k] |= decode_coco_rle(segmentation, where)
        return map_structures(stack, classes, mapping)


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    # a structure_classes option renames some structures' classes; the spec's entries hold for the others
    settings["structure_classes"] = {**spec.dataset.get("structure_classes", {}), **(settings["structure_classes"] or {})}
    for key in ("images_dir", "views"):
        if isinstance(settings[key], str):
            settings[key] = [settings[key]]
    bad = [v for v in settings["views"] if v not in VIEWS]
    if bad or not settings["views"]:
        raise DataError(f"benchmark '{spec.name}': views must list {' and/or '.join(VIEWS)}, got {settings['views']!r}.")
    require_masks(spec, "PAXRay++")
    return settings


def _structure_mappings(spec: BenchmarkSpec, settings: dict, classes: list[str]) -> dict[str, dict[str, list[str]]]:
    """target -> {structure: [classes]}: the structure_classes entry, else the class named like the structure."""
    by_name = {c.lower().replace(" ", "_"): c for c in classes}
    mappings = {}
    for target in spec.targets:
        mapping = {}
        for structure in target.structures:
            if structure in settings["structure_classes"]:
                mapping[structure] = settings["structure_classes"][structure]
            elif structure.lower() in by_name:
                mapping[structure] = [by_name[structure.lower()]]
            else:
                raise DataError(f"benchmark '{spec.name}': structure '{structure}' has no entry in the dataset option "
                                "structure_classes and is not a PAXRay++ class name (spaces as underscores). Add it, e.g. "
                                f"--dataset-option 'structure_classes={{{structure}: [<class>, ...]}}'.")
        mappings[target.name] = check_mapping(mapping, classes, f"benchmark '{spec.name}', dataset option structure_classes")
    return mappings


def _image_folder(root: Path, candidates: list[str]) -> Path:
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    raise DataError(f"No PAXRay++ image folder found: none of {', '.join(str(root / c) for c in candidates)} is a folder. "
                    "Unpack paxray_images_unfiltered.tar.gz in the data root, or set the dataset option images_dir.")


def load_paxray(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "PAXRay++", "paxray_train_val.json, paxray_test.json and paxray_images_unfiltered/")
    settings = _settings(spec, options)
    files = {"train": root / settings["train_json"], "test": root / settings["test_json"]}
    loaded = {split: _read_json(path) for split, path in files.items()}
    categories = {split: _categories(data, files[split]) for split, data in loaded.items()}
    classes = list(categories["train"].values())
    if sorted(classes) != sorted(categories["test"].values()):
        only = sorted(set(classes) ^ set(categories["test"].values()))
        raise DataError(f"{files['train'].name} and {files['test'].name} list different classes (e.g. {only[0]!r}); both "
                        "must come from the same PAXRay++ release.")
    if settings["all_classes"]:
        spec = _every_class(spec, classes)
    mappings = _structure_mappings(spec, settings, classes)
    needed = {c for mapping in mappings.values() for names in mapping.values() for c in names}

    folder = _image_folder(root, list(settings["images_dir"]))
    frames, annotations = [], _Annotations()
    for split, data in loaded.items():
        images = _images_of(data, files[split])
        annotations.add(data, files[split], images, categories[split], needed)
        frames.append(images.assign(split=split, json=str(files[split].name)))
    images = pd.concat(frames, ignore_index=True)
    doubled = images["image_id"].duplicated()
    if doubled.any():
        raise DataError(f"Image {images.loc[doubled, 'image_id'].iloc[0]} is listed in both {files['train'].name} and "
                        f"{files['test'].name}; an image belongs to one official split. Re-download the JSONs.")
    both = images.groupby("patient_id")["split"].nunique()
    if (both > 1).any():
        volume = both[both > 1].index[0]
        raise DataError(f"The views of CT volume {volume!r} (images {', '.join(images.loc[images['patient_id'] == volume, 'file_name'])}) "
                        f"are split between {files['train'].name} and {files['test'].name}; the loader takes the name "
                        "before _frontal / _lateral as the patient, and a patient must be in one split.")
    total = len(images)
    every_view = set(settings["views"]) == set(VIEWS)  # then images of no known view are kept too
    images = images[images["view"].isin(settings["views"]) | (every_view & images["view"].eq("unknown"))]
    images = images.reset_index(drop=True)
    if images.empty:
        raise DataError(f"No PAXRay++ image of the views {settings['views']} in {files['train'].name} / {files['test'].name}.")
    images["path"] = [str(folder / name) for name in images["file_name"]]
    missing = [p for p in images["path"] if not Path(p).is_file()]
    if missing:
        shown = "\n  ".join(missing[:_SHOWN])
        raise DataError(f"{len(missing)} of {len(images)} PAXRay++ images listed in the JSONs are missing from {folder}, e.g.:"
                        f"\n  {shown}\nComplete the download (paxray_images_unfiltered.tar.gz), or set the dataset option "
                        "images_dir to the folder holding them.")
    samples = images[["image_id", "patient_id", "path", "split", "view"]].copy()
    samples["split"] = _splits(images["split"], spec.split.scheme == "official", bool(settings["official_split"]))
    for target in spec.targets:
        wanted = {c for names in mappings[target.name].values() for c in names}
        samples[target.name] = pd.Series(list(images["image_id"]), dtype=object)
        samples[f"{target.name}:present"] = [float(bool(wanted & set(annotations.by_image.get(i, {}))))
                                              for i in images["image_id"]]
    per_view = {split: ", ".join(f"{view} {int(n)}" for view, n in frame["view"].value_counts().sort_index().items())
                for split, frame in images.groupby("split")}
    counts = ", ".join(f"{split} {int((images['split'] == split).sum())} ({per_view.get(split, 'none')})"
                       for split in ("train", "test"))
    used = ("the official split" if spec.split.scheme == "official" else
            "the test JSON is the test set, the rest split train / val" if settings["official_split"] else
            "not used as splits: cxrbench splits the CT volumes (split.fractions)")
    notes = [f"images: {counts} ({files['train'].name} -> train, {files['test'].name} -> test: {used})"
             + (f"; {total - len(images)} image(s) of other views left out (views: {', '.join(settings['views'])})"
                if total > len(images) else ""),
             "patients: one per CT volume (the file name before _frontal / _lateral): both views of a CT stay in one split",
             f"classes: {len(classes)} in the release; "
             + "; ".join(f"{t}: " + ", ".join(f"{s} = {' | '.join(n) if len(n) < 4 else f'{len(n)} classes'}"
                                                for s, n in m.items()) for t, m in mappings.items()),
             "masks: decoded per image from the COCO run-lengths (only the classes above), on each image's grid"]
    unknown = int((samples["view"] == "unknown").sum())
    if unknown:
        notes.append(f"{unknown} image name(s) end in neither _frontal nor _lateral: each is its own patient")
    reader = PaxrayMasks(mappings, annotations, images)
    return BenchmarkData(spec.name, root, spec.targets, samples, notes, mask_reader=reader)


def _every_class(spec: BenchmarkSpec, classes: list[str]) -> BenchmarkSpec:
    """The spec with its one mask target's structures replaced by every class of the release, in the release's
    order, named with underscores for spaces (RayDINO scores PAXRay++ over all its classes: RayDINO, Methods)."""
    if len(spec.targets) != 1:
        raise DataError(f"benchmark '{spec.name}': all_classes replaces the structures of one mask target; the spec has "
                        f"{len(spec.targets)} targets.")
    names = [c.replace(" ", "_") for c in classes]
    return replace(spec, targets=(replace(spec.targets[0], structures=tuple(names)),))


def _splits(official: pd.Series, scheme_official: bool, keep_test: bool) -> pd.Series:
    """The loader's split per image: the JSON's under scheme official; under random the test JSON's images stay
    `test` when `keep_test`, every other image is left to cxrbench (POOL)."""
    if scheme_official:
        return official
    return official.where(official.eq("test") & keep_test, POOL)
