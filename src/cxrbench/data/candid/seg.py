"""CANDID-PTX (Feng et al., Radiology: AI 2021) as released, with its pneumothorax and chest tube masks.

The same release as `cxrbench.data.candid.ptx` (the classification benchmark), read by its functions: the file names,
column names, image naming and patient ids are that loader's settings (`candid_settings`, `candid_labels`):

    ROOT/Pneumothorax_reports.csv   SOPInstanceUID, filename, EncodedPixels, ...: one row per pneumothorax with its
                                    run-length encoding (several rows: the mask is their union), or -1 for none
    ROOT/chest_tube.csv             anon_SOPUID, <annotation reference>, mask_rle: one row per chest tube; an image
                                    without a row has no tube
    ROOT/acute_rib_fracture.csv     the same for rib fractures (a `rib_fracture` mask target may use it)
    ROOT/dataset/<SOPInstanceUID>   the radiographs (DICOM; the suffixes of `image_suffixes` are tried)

Encodings: by default the SIIM-ACR challenge's RELATIVE, column-major run-length encoding (`cxrbench.data.common.rle`), on
the image's own pixel grid (DICOM Rows x Columns, or a raster's size); `rle: absolute` reads (1-based start, length)
pairs over the same column-major pixel numbering instead. benchmarks/candid-ptx-seg.yaml gives the evidence. The
public decoders read every mask on a 1024 x 1024 grid, so by default (`mask_size: 1024`) an image of another size is
refused when its mask is read (its runs would land elsewhere); `mask_size: 0` trusts each image's own grid.

A mask target is named after its source (`pneumothorax`, `chest_tube`, `rib_fracture`) and has one structure; its
column holds the image id, which `CandidMasks(target, image_id)` opens when asked (one image at a time: the image's
header for its grid, then that image's rows). `<target>:present` (1.0 when the image has a non-empty row) is known at
load time. Every encoding's form (numbers in pairs) is checked at load; whether its runs fit the image, when read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cxrbench.data.candid.ptx import CHEST_TUBE, NO_MASK, PNEUMOTHORAX, RIB_FRACTURE, candid_labels, candid_settings
from cxrbench.data.common.csvs import csv_row, read_csv, resolve_image_files, row_error
from cxrbench.data.common.masks import MaskReader
from cxrbench.data.common.rle import decode_relative_rle, parse_relative_rle
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import check_choice, data_folder
from cxrbench.data.common.sizes import image_size
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.targets.mask import present_column

#: mask target name -> the CANDID-PTX task (and CSV) it is read from
SOURCES = {"pneumothorax": PNEUMOTHORAX, "chest_tube": CHEST_TUBE, "rib_fracture": RIB_FRACTURE}
ENCODINGS = ("relative", "absolute")
_CSV_KEYS = {PNEUMOTHORAX: "reports_csv", CHEST_TUBE: "chest_tube_csv", RIB_FRACTURE: "rib_fracture_csv"}


def _mask_targets(spec: BenchmarkSpec) -> list[TargetSpec]:
    wrong = [t.name for t in spec.targets if t.kind != "mask" or t.name not in SOURCES or len(t.structures) != 1]
    if wrong:
        raise DataError(f"benchmark '{spec.name}': target(s) {wrong} are not CANDID-PTX mask targets. Each target must be "
                        f"a mask with one structure, named after its source: one of {sorted(SOURCES)}.")
    return list(spec.targets)


def _label_spec(spec: BenchmarkSpec, targets: list[TargetSpec]) -> BenchmarkSpec:
    """The spec as the classification loader sees it: one binary task per mask target (the image has the finding)."""
    return replace(spec, targets=tuple(TargetSpec(SOURCES[t.name]) for t in targets), metrics=("auprc",),
                   primary_metric="auprc")


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = candid_settings(_label_spec(spec, _mask_targets(spec)), options)
    settings.setdefault("rle", "relative")
    check_choice(spec, "rle", settings["rle"], ENCODINGS)
    settings.setdefault("mask_size", 0)
    if isinstance(settings["mask_size"], bool) or not isinstance(settings["mask_size"], int) or settings["mask_size"] < 0:
        raise DataError(f"benchmark '{spec.name}': dataset option mask_size={settings['mask_size']!r}; give the side of "
                        "the release's mask grid in pixels (1024), or 0 to decode each mask on its image's own grid.")
    return settings


def decode_absolute_rle(text: str, height: int, width: int, where: str) -> np.ndarray:
    """Boolean [height, width] mask of (1-based start, length) pairs over the column-major pixels (-1: all False)."""
    values = parse_relative_rle(text, where)
    columns = np.zeros((int(width), int(height)), dtype=bool)
    if not len(values):
        return columns.T
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any():
        raise DataError(f"{where}: the absolute run-length encoding has a run starting at pixel 0; its starts are "
                        "1-based. The file may use the relative encoding: try --dataset-option rle=relative, or fix the row.")
    ends = starts + lengths
    if ends.max() > height * width:
        raise DataError(f"{where}: the RLE runs past the {height}x{width} image (rows x columns): a run ends at pixel "
                        f"{int(ends.max())}, the image has {height * width}. The encoding belongs to another image, is "
                        "relative (try --dataset-option rle=relative) or is corrupt; fix or remove the row.")
    flat = columns.reshape(-1)
    for start, end in zip(starts.tolist(), ends.tolist()):
        flat[start:end] = True
    return columns.T


DECODERS = {"relative": decode_relative_rle, "absolute": decode_absolute_rle}


def _where(path: Path, position: int, image_id: str, column: str) -> str:
    return f"{path}, row {csv_row(position)} (image {image_id}), column '{column}'"


def read_mask_rows(path: Path, id_column: str, mask_column: str, what: str, known: set[str]
                   ) -> dict[str, list[tuple[int, str]]]:
    """Per image of `known`, its non-empty encodings as (0-based row position, text); each checked for form."""
    frame = read_csv(path, [id_column, mask_column], what, text_columns=[id_column, mask_column],
                     only=[id_column, mask_column])
    ids = frame[id_column].fillna("").astype(str).str.strip().tolist()
    texts = frame[mask_column].fillna("").astype(str).str.strip().tolist()
    rows: dict[str, list[tuple[int, str]]] = {}
    for position, (image_id, text) in enumerate(zip(ids, texts)):
        if image_id not in known or text == NO_MASK:
            continue
        if not text:
            raise row_error(path, position, mask_column, "is empty",
                            f"Write {NO_MASK} for no mask, or restore the run-length encoding.", f"image {image_id}")
        parse_relative_rle(text, _where(path, position, image_id, mask_column))
        rows.setdefault(image_id, []).append((position, text))
    return rows


class CandidMasks(MaskReader):
    """`reader(target, image_id)`: the boolean [1, H, W] mask of one image (the union of its rows; all False without
    any) on the image's own pixel grid, read from its header when asked."""

    dataset = "CANDID-PTX"

    def __init__(self, sources: Mapping[str, tuple[Path, str, dict[str, list[tuple[int, str]]]]],
                 paths: Mapping[str, str], encoding: str, mask_size: int = 0):
        self.sources = dict(sources)
        self.paths = dict(paths)
        self.encoding = encoding
        self.mask_size = mask_size  # the side every image (and so its mask grid) must have; 0: any size

    def shape(self, image_id: str) -> tuple[int, int]:
        path = self.paths[image_id]
        try:
            height, width = image_size(path)
        except DataError as exc:
            raise DataError(f"Cannot read the size of image {image_id} ({path}), the grid of its masks: {exc} Re-download "
                            "the file, or remove the image's rows from the label CSVs.") from None
        if height <= 0 or width <= 0:
            raise DataError(f"{path} (image {image_id}) is {height} x {width} pixels; re-download the file.")
        side = self.mask_size
        if side and (height, width) != (side, side):
            raise DataError(f"CANDID-PTX image {image_id} ({path}) is {height} x {width} pixels, but the release's masks "
                            f"are encoded on a {side} x {side} grid (the grid public CANDID-PTX decoders read them on): "
                            "its runs would be misplaced on this image. Use the released, unresized images, or, if this "
                            "copy's masks were encoded on each image's own grid, pass --dataset-option mask_size=0.")
        return height, width

    def targets(self) -> list[str]:
        return list(self.sources)

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.paths

    def read(self, target: str, image_id: str) -> np.ndarray:
        height, width = self.shape(image_id)
        path, column, rows = self.sources[target]
        decode = DECODERS[self.encoding]
        mask = np.zeros((height, width), dtype=bool)
        for position, text in rows.get(image_id, ()):
            mask |= decode(text, height, width, _where(path, position, image_id, column))
        return mask[None]


def load_candid_ptx_seg(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "CANDID-PTX", "Pneumothorax_reports.csv, chest_tube.csv and dataset/")
    targets = _mask_targets(spec)
    settings = _settings(spec, options)
    cols = settings["columns"]
    frame, notes = candid_labels(root, _label_spec(spec, targets), options)
    frame["path"] = resolve_image_files(root / settings["image_dir"], frame["image_id"], settings["image_suffixes"],
                                        "CANDID-PTX images")
    known = set(frame["image_id"])
    samples = frame[["image_id", "patient_id", "path"]].assign(split=POOL)
    sources = {}
    for target in targets:
        task = SOURCES[target.name]
        path = root / settings[_CSV_KEYS[task]]
        id_column, mask_column = ((cols["image_id"], cols["mask"]) if task == PNEUMOTHORAX
                                  else (cols["finding_image_id"], cols["finding_mask"]))
        rows = read_mask_rows(path, id_column, mask_column, f"CANDID-PTX {task.lower()} masks", known)
        sources[target.name] = (path, mask_column, rows)
        samples[target.name] = samples["image_id"].astype(object)
        samples[present_column(target.name)] = samples["image_id"].isin(rows).astype(np.float32)
        drawn = int(samples[present_column(target.name)].sum())
        notes.append(f"{target.name}: {drawn} of {len(samples)} images have a mask in {path.name} "
                     f"({sum(len(r) for r in rows.values())} row(s); several rows of an image are merged by union)")
    convention = ("relative (SIIM-ACR) run-length encoding" if settings["rle"] == "relative"
                  else "absolute (1-based start, length) run-length encoding")
    grid = (f"which must be {settings['mask_size']} x {settings['mask_size']} (mask_size)" if settings["mask_size"]
            else "of any size (mask_size: 0)")
    notes.append(f"masks: {convention}, column-major, read one image at a time on its own pixel grid (DICOM Rows x "
                 f"Columns, or the raster's size), {grid}")
    notes.append("split: none released; cxrbench splits the patients (split.fractions of the spec)")
    reader = CandidMasks(sources, dict(zip(samples["image_id"], samples["path"])), settings["rle"], settings["mask_size"])
    return BenchmarkData(spec.name, root, spec.targets, samples.reset_index(drop=True), notes, mask_reader=reader)
