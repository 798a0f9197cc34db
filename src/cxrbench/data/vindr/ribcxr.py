"""VinDr-RibCXR (Nguyen et al., MIDL 2021; vinbigdata-medical/MIDL2021-VinDr-RibCXR) as released: 245 PA chest
radiographs with the 20 ribs outlined as polygons, split 196 train / 49 validation (the paper's test set):

    ROOT/data/train/img/VinDr_RibCXR_train_000.png ...     PNG images
    ROOT/data/train/Vindr_RibCXR_train_mask.json           the training images' polygons
    ROOT/data/val/img/...  ROOT/data/val/Vindr_RibCXR_val_mask.json

A label file is a pandas "columns" JSON: {"img": {"0": "data/train/img/VinDr_RibCXR_train_000.png", ...},
"R1": {"0": [{"x": 1027.8, "y": 470.7}, ...], ...}, ..., "L10": {...}}: per rib, per entry (the keys of "img"), the
polygon's vertices in the image's pixels (x right, y down). "img" paths are relative to the folder holding data/
(`image_base`); a mirror that keeps the images beside its label file in <label folder>/img/ is found too.

Structures are the label file's keys, in the spec's order (R1..R10 then L1..L10: the patient's right ribs, on the
image's left, then the left ones; 1 = the top rib). Rows: one per image, its own patient (no patient ids are
released); the train file's images are the train split, the val file's the test split. Nothing is drawn at load:
every polygon is checked (three vertices or more, each within `vertex_tolerance` px of the pixel grid, which is read
from the PNG header) and kept; `RibMasks(target, image_id)` rasterises one image's polygons when asked
(`skimage.draw.polygon`, pixel centres inside the polygon) as bool [S, H, W] on the image's grid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.masks import MaskReader
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder, dataset_settings, require_masks
from cxrbench.data.common.sizes import image_size
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec
from cxrbench.targets.mask import present_column

SPLITS = ("train", "test")
#: how a rib without an outline on an image is read: `official` as the official loader does (the string "None" is an
#: empty rib, any other absence is refused), `error` refuses every absence, `empty` scores every absence as no rib
MISSING = ("official", "error", "empty")
#: the only absent value the official loader (cvcore/data/multi_rib_dataset.py) reads, as an empty rib
OFFICIAL_ABSENT = "None"
SHOWN = 5
DEFAULTS: dict[str, Any] = {
    "annotations": {"train": "data/train/Vindr_RibCXR_train_mask.json", "test": "data/val/Vindr_RibCXR_val_mask.json"},
    "image_base": "",
    "image_dir": "img",
    "missing_ribs": "official",
    "vertex_tolerance": 1.0,
}
#: what a rib's entry holds when the rib was not drawn (public loaders test `pts != 'None'`)
_ABSENT = (None, "None", "none", "")


def _refused(points: Any, mode: str) -> bool:
    """Whether an absent rib entry is an error under the `missing_ribs` mode."""
    return mode == "error" or (mode == "official" and points != OFFICIAL_ABSENT)


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    settings["annotations"] = {**DEFAULTS["annotations"], **(spec.dataset.get("annotations") or {}),
                               **(options.get("annotations") or {})}
    unknown = sorted(set(settings["annotations"]) - set(SPLITS))
    if unknown:
        raise DataError(f"benchmark '{spec.name}': annotations name the split(s) {unknown}; VinDr-RibCXR has {list(SPLITS)}.")
    check_choice(spec, "missing_ribs", settings["missing_ribs"], MISSING)
    try:
        settings["vertex_tolerance"] = float(settings["vertex_tolerance"])
    except (TypeError, ValueError):
        raise DataError(f"benchmark '{spec.name}': vertex_tolerance must be a number of pixels, got "
                        f"{settings['vertex_tolerance']!r}.") from None
    require_masks(spec, "VinDr-RibCXR")
    return settings


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"Missing VinDr-RibCXR label file: {path} does not exist. Check --data-root points at the folder "
                        "holding data/train/ and data/val/, or set the dataset option annotations (benchmarks/vindr-ribcxr.yaml).")
    try:
        with path.open(encoding="utf-8") as handle:
            payload = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot parse {path} as JSON: {exc}. Re-download the label file.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("img"), dict):
        raise DataError(f"{path} has no \"img\" mapping (entry -> image path); a VinDr-RibCXR label file is "
                        "{\"img\": {\"0\": \"data/train/img/....png\", ...}, \"R1\": {\"0\": [{\"x\": .., \"y\": ..}, ...]}, ...}.")
    return payload


def _image_file(root: Path, settings: Mapping[str, Any], label_path: Path, key: str, value: Any) -> tuple[str, list[Path]]:
    """(image id, candidate files): ROOT/<image_base>/<img path>, then <label folder>/<image_dir>/<file name>."""
    text = str(value).strip().replace("\\", "/") if isinstance(value, str) else ""
    relative = PurePosixPath(text)
    if not text or relative.is_absolute() or ".." in relative.parts or "\x00" in text:
        raise DataError(f"{label_path}, entry \"{key}\" of \"img\": {value!r} is not a relative image path inside the data "
                        "root. Restore the path (e.g. data/train/img/VinDr_RibCXR_train_000.png) or remove the entry.")
    base = root / settings["image_base"] if settings["image_base"] else root
    return relative.stem, [base / relative, label_path.parent / settings["image_dir"] / relative.name]


def _vertices(points: Any, where: str) -> np.ndarray:
    """[N, 2] float (x, y) of a polygon; a DataError naming `where` for anything else."""
    if not isinstance(points, list):
        raise DataError(f"{where}: the polygon is {str(points)[:60]!r}, not a list of vertices {{\"x\": .., \"y\": ..}}. "
                        "Fix the entry in the label file or remove the image.")
    out = np.empty((len(points), 2), dtype=np.float64)
    for k, point in enumerate(points):
        try:
            out[k] = float(point["x"]), float(point["y"])
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{where}: vertex {k} is {str(point)[:60]!r}, not {{\"x\": <number>, \"y\": <number>}}. Fix the "
                            "entry in the label file or remove the image.") from None
    if not np.isfinite(out).all():
        raise DataError(f"{where}: a vertex is not a finite number. Fix the entry in the label file or remove the image.")
    if len(out) < 3:
        raise DataError(f"{where}: the polygon has {len(out)} vertex(es); a rib outline needs 3 or more. Redraw the rib, or "
                        "remove the image from the label file.")
    return out


def _clipped(vertices: np.ndarray, size: tuple[int, int], tolerance: float, where: str) -> tuple[np.ndarray, int]:
    """(rows, columns) [2, N] of the vertices on the pixel grid (centres 0..H-1, 0..W-1), clipped to it; the number of
    vertices clipped. A vertex farther than `tolerance` px outside the grid is refused."""
    height, width = size
    x, y = vertices[:, 0], vertices[:, 1]
    beyond = np.maximum.reduce([-x, x - (width - 1), -y, y - (height - 1)])
    worst = int(np.argmax(beyond))
    if beyond[worst] > tolerance:
        raise DataError(f"{where}: vertex {worst} (x={x[worst]:g}, y={y[worst]:g}) lies {beyond[worst]:.1f} px outside the "
                        f"{height} x {width} image (rows x columns; x in 0..{width - 1}, y in 0..{height - 1}, and up to "
                        f"{tolerance:g} px beyond is clipped). The polygon belongs to another image or is corrupt: fix the "
                        "vertex, or remove the image from the label file.")
    clipped = int((beyond > 0).sum())
    return np.stack([np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)]), clipped


class RibMasks(MaskReader):
    """Rasterises an image's rib polygons when asked: `reader(target, image_id)` -> bool [S, H, W], one channel per
    structure of the target in its order, on the image's grid (an absent rib, with missing_ribs: empty, is all False)."""

    dataset = "VinDr-RibCXR"

    def __init__(self, channels: Mapping[str, list[int]], polygons: Mapping[str, list[np.ndarray | None]],
                 sizes: Mapping[str, tuple[int, int]]):
        self.channels = dict(channels)
        self.polygons = dict(polygons)
        self.sizes = dict(sizes)

    def targets(self) -> list[str]:
        return list(self.channels)

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.polygons

    def read(self, target: str, image_id: str) -> np.ndarray:
        from skimage.draw import polygon

        height, width = self.sizes[image_id]
        masks = np.zeros((len(self.channels[target]), height, width), dtype=bool)
        for channel, index in enumerate(self.channels[target]):
            outline = self.polygons[image_id][index]
            if outline is not None:
                rows, columns = polygon(outline[0], outline[1], shape=(height, width))
                masks[channel, rows, columns] = True
        return masks


def load_vindr_ribcxr(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "VinDr-RibCXR", "data/train/ and data/val/ (img/ and Vindr_RibCXR_*_mask.json)")
    settings = _settings(spec, options)
    structures = [s for t in spec.targets for s in t.structures]
    tolerance = settings["vertex_tolerance"]
    rows: list[dict[str, Any]] = []
    polygons: dict[str, list[np.ndarray | None]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    source: dict[str, str] = {}
    clipped = absent = 0
    for split in SPLITS:
        label_path = root / settings["annotations"][split]
        payload = _read_json(label_path)
        no_key = [s for s in structures if not isinstance(payload.get(s), dict)]
        entries = list(payload["img"].items())
        if no_key and entries and settings["missing_ribs"] != "empty":
            key, value = entries[0]
            raise DataError(f"{label_path}: rib {no_key[0]} is missing for every image (no \"{no_key[0]}\" mapping; e.g. "
                            f"image {PurePosixPath(str(value).replace(chr(92), '/')).stem} (entry \"{key}\") has none). The label file has {sorted(k for k in payload if k != 'img')}; name "
                            "the benchmark's structures after its keys, or pass --dataset-option missing_ribs=empty.")
        missing_files: list[tuple[str, list[Path]]] = []
        for key, value in entries:
            image_id, candidates = _image_file(root, settings, label_path, key, value)
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                missing_files.append((f"{image_id} (entry \"{key}\")", candidates))
                continue
            if image_id in source:
                raise DataError(f"Image {image_id} is listed twice: in {source[image_id]} and {label_path} (entry \"{key}\"). "
                                "An image belongs to one split; remove one of the entries.")
            source[image_id] = f"{label_path} (entry \"{key}\")"
            try:
                size = image_size(path)
            except DataError as exc:
                raise DataError(f"Image {image_id} of {label_path} (entry \"{key}\"): {exc} Re-download it.") from None
            outlines: list[np.ndarray | None] = []
            for structure in structures:
                where = f"{label_path}, image {image_id} (entry \"{key}\"), rib {structure}"
                points = (payload.get(structure) or {}).get(key) if isinstance(payload.get(structure), dict) else None
                if points in _ABSENT or points == []:
                    if _refused(points, settings["missing_ribs"]):
                        raise DataError(f"{where}: the rib is missing ({points!r}). Every image must outline each rib of the "
                                        "benchmark (the official loader reads only the string \"None\" as an empty rib): "
                                        "restore the polygon, remove the image from the label file, or pass "
                                        "--dataset-option missing_ribs=empty to score the rib as absent there.")
                    outlines.append(None)
                    absent += 1
                    continue
                outline, count = _clipped(_vertices(points, where), size, tolerance, where)
                outlines.append(outline)
                clipped += count
            polygons[image_id] = outlines
            sizes[image_id] = size
            rows.append({"image_id": image_id, "patient_id": image_id, "path": str(path), "split": split})
        if missing_files:
            shown = "\n  ".join(f"{name}: {' or '.join(str(p) for p in tried)}" for name, tried in missing_files[:SHOWN])
            raise DataError(f"{len(missing_files)} image file(s) listed in {label_path} are missing, e.g.:\n  {shown}\n"
                            "Complete the download, point the dataset options image_base / image_dir at your copy, or "
                            "remove their entries from the label file.")
    samples = pd.DataFrame(rows, columns=["image_id", "patient_id", "path", "split"])
    channels, start = {}, 0
    for target in spec.targets:
        channels[target.name] = list(range(start, start + len(target.structures)))
        samples[target.name] = samples["image_id"].astype(object)
        drawn = [any(polygons[i][k] is not None for k in channels[target.name]) for i in samples["image_id"]]
        samples[present_column(target.name)] = np.asarray(drawn, dtype=np.float32)
        start += len(target.structures)
    counts = ", ".join(f"{split} ({Path(settings['annotations'][split]).name}) {int((samples['split'] == split).sum())}"
                       for split in SPLITS)
    notes = [f"images: {counts}; patients: one per image (VinDr-RibCXR has no patient ids)",
             f"masks: {len(structures)} ribs ({', '.join(structures)}) rasterised per image from the polygons, on the "
             "image's own grid"]
    if clipped:
        notes.append(f"{clipped} vertex(es) within {tolerance:g} px outside their image were clipped onto it")
    if absent:
        notes.append(f"{absent} rib(s) not outlined on their image are scored as absent there "
                     f"(missing_ribs: {settings['missing_ribs']})")
    return BenchmarkData(spec.name, root, spec.targets, samples, notes,
                         mask_reader=RibMasks(channels, polygons, sizes))
