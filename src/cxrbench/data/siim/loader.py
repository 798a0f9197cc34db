"""SIIM-ACR Pneumothorax Segmentation (Kaggle 2019) as released, with pneumothorax masks.

    ROOT/train-rle.csv          ImageId, EncodedPixels   (" EncodedPixels" with a leading space in the release)
                                one row per pneumothorax region, so an image may have several rows (merged by
                                union); one row with -1 for an image without pneumothorax
    ROOT/dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm
    ROOT/dicom-images-test/...  (same layout; holds the images that stage_2_train.csv labels besides the train ones)

ImageId is the image's SOPInstanceUID and the DICOM file's stem; the image folders are listed once and every `.dcm`
found is indexed by its stem. EncodedPixels is the challenge's relative, column-major run-length encoding
(`cxrbench.data.common.rle`) on the image's own Rows x Columns (1024 x 1024 throughout the release). `labels_csv` selects
the label file: the stage-2 `stage_2_train.csv` (ImageId, EncodedPixels) has the same format.

The loader reads no DICOM and decodes no mask: the samples' mask column holds the image id, and `SiimMaskReader`
opens one image's mask when asked (its Rows and Columns from the DICOM header, its RLE rows from the CSV). The
companion column `<target>:present` (1.0 when the image has a non-empty RLE row, else 0.0) is known at load time.
Patients: neither the CSV nor the file names give one (and public code reports a distinct PatientID in every
DICOM, which the loader does not read), so each image is its own patient. The challenge's images are ChestX-ray14
radiographs, and ChestX-ray14 holds several images of many of its patients: so a patient's other images may sit on
the other side of any split made here, and a decoder may be tested on a patient it trained on (an optimistic bias no
split of this release can rule out without a mapping back to ChestX-ray14's patient ids, which is not public).

Split: by default every image is left to cxrbench's split (POOL). With `stage_1_test: true` (RayDINO: the stage-2
labels of the stage-1 test images are its test set) the labelled images under `test_dir` are the test split, the
others are split train / val; it needs `labels_csv: stage_2_train.csv`, the file that labels them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import csv_row, read_csv, row_error
from cxrbench.data.common.masks import MaskReader
from cxrbench.data.common.rle import EMPTY, decode_relative_rle, parse_relative_rle
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder, dataset_settings
from cxrbench.data.splits import POOL
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec
from cxrbench.targets.mask import present_column

IMAGE_ID, MASK = "ImageId", "EncodedPixels"
DEFAULTS: dict[str, Any] = {
    "labels_csv": "train-rle.csv",
    "image_dirs": ["dicom-images-train", "dicom-images-test"],
    "stage_1_test": False,
    "test_dir": "dicom-images-test",
}


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = dataset_settings(spec, options, DEFAULTS)
    target = spec.targets[0]
    if len(spec.targets) != 1 or target.kind != "mask" or len(target.structures) != 1:
        raise DataError(f"benchmark '{spec.name}': SIIM-ACR has one target, a mask with one structure "
                        "(pneumothorax); the spec lists "
                        f"{[(t.name, t.kind, list(t.structures)) for t in spec.targets]}.")
    if isinstance(settings["image_dirs"], str):
        settings["image_dirs"] = [settings["image_dirs"]]
    return settings


def read_siim_labels(path: Path) -> tuple[pd.DataFrame, dict[str, list[tuple[int, str]]]]:
    """Per image in file order (image_id, present, rows) and, per image with a pneumothorax, its non-empty RLE rows
    as (0-based row position, text). Every row's encoding is checked for form (numbers in pairs); no mask is decoded."""
    raw = read_csv(path, [IMAGE_ID, MASK], "SIIM-ACR run-length labels", text_columns=[IMAGE_ID, MASK, f" {MASK}"],
                   only=[IMAGE_ID, MASK], file_name_columns=[IMAGE_ID])
    ids = raw[IMAGE_ID].fillna("").astype(str).str.strip()
    texts = raw[MASK].fillna("").astype(str).str.strip()
    for column, values, fix in ((IMAGE_ID, ids, "Every row must name its image."),
                                (MASK, texts, f"Write {EMPTY} for an image without pneumothorax, or restore the encoding.")):
        empty = values.eq("")
        if empty.any():
            position = int(np.flatnonzero(empty.to_numpy())[0])
            raise row_error(path, position, column, "is empty", fix,
                            f"ImageId {ids.iloc[position]}" if column == MASK else "")
    positive = texts.ne(EMPTY).to_numpy()
    rows: dict[str, list[tuple[int, str]]] = {}
    id_list, text_list = ids.tolist(), texts.tolist()
    for position in np.flatnonzero(positive).tolist():
        image_id, text = id_list[position], text_list[position]
        parse_relative_rle(text, _where(path, position, image_id))
        rows.setdefault(image_id, []).append((position, text))
    per_row = pd.DataFrame({"image_id": ids, "positive": positive})
    images = per_row.groupby("image_id", sort=False)["positive"].agg(["sum", "size"]).reset_index()
    images = pd.DataFrame({"image_id": images["image_id"], "present": (images["sum"] > 0).astype(np.float32),
                           "rows": images["size"], "regions": images["sum"]})
    return images, rows


def _where(path: Path, position: int, image_id: str) -> str:
    return f"{path}, row {csv_row(position)} (ImageId {image_id}), column '{MASK}'"


def index_dicoms(root: Path, folders: list[str]) -> tuple[dict[str, str], list[Path]]:
    """Every `.dcm` under the image folders that exist, by file stem (listed once, no stat per image); the folders
    searched. A stem found twice is refused, naming both files."""
    searched = [root / folder for folder in folders if (root / folder).is_dir()]
    if not searched:
        listed = ", ".join(str(root / folder) for folder in folders)
        raise DataError(f"No SIIM-ACR image folder found: none of {listed} is a folder. Check --data-root points at the "
                        "folder holding dicom-images-train/ (or set the dataset option image_dirs).")
    found: dict[str, str] = {}
    for top in searched:
        for folder, subfolders, files in os.walk(top):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in files:
                stem, suffix = os.path.splitext(name)
                if suffix.lower() != ".dcm" or name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                if stem in found:
                    raise DataError(f"Two DICOM files for image {stem} under {root}: {found[stem]} and {path}. Images "
                                    "are found by file name; remove the duplicate.")
                found[stem] = path
    return found, searched


class SiimMaskReader(MaskReader):
    """`reader(target_name, reference)`: the boolean [1, H, W] pneumothorax mask of one image (the union of its RLE
    rows; all False for -1) on the DICOM's Rows x Columns, read from its header. `reference` is the image id."""

    dataset = "SIIM-ACR"

    def __init__(self, target: str, labels_path: Path, paths: Mapping[str, str], rows: Mapping[str, list[tuple[int, str]]]):
        self.target = target
        self.labels_path = Path(labels_path)
        self.paths = dict(paths)
        self.rows = {image_id: list(entries) for image_id, entries in rows.items()}

    def shape(self, image_id: str) -> tuple[int, int]:
        """(Rows, Columns) of the image's DICOM header (the pixels are not read)."""
        import pydicom

        path = self.paths[image_id]
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            height, width = int(header.Rows), int(header.Columns)
        except Exception as exc:  # pydicom raises many kinds for a broken file
            raise DataError(f"Cannot read Rows and Columns from the DICOM header of {path} (image {image_id}): {exc}. "
                            "Re-download the file, or remove the image's rows from "
                            f"{self.labels_path.name}.") from None
        if height <= 0 or width <= 0:
            raise DataError(f"{path} (image {image_id}) has Rows {height} and Columns {width}; re-download the file.")
        return height, width

    def targets(self) -> tuple[str, ...]:
        return (self.target,)

    def knows(self, target: str, reference: str) -> bool:
        return reference in self.paths

    def read(self, target: str, image_id: str) -> np.ndarray:
        height, width = self.shape(image_id)
        mask = np.zeros((height, width), dtype=bool)
        for position, text in self.rows.get(image_id, ()):
            mask |= decode_relative_rle(text, height, width, _where(self.labels_path, position, image_id))
        return mask[None]


def _stage_1_split(paths: pd.Series, root: Path, settings: Mapping[str, Any], labels_path: Path,
                   scheme_official: bool) -> np.ndarray:
    """Each image's split from the loader: with stage_1_test, `test` for the images under test_dir and train (scheme
    official) or POOL (scheme random) for the others; without it, POOL for all."""
    if not settings["stage_1_test"]:
        if scheme_official:
            raise DataError("SIIM-ACR releases no labelled test split: with split.scheme official set the dataset option "
                            "stage_1_test: true (and labels_csv: stage_2_train.csv), or use split.scheme random.")
        return np.full(len(paths), POOL, dtype=object)
    folder = os.path.join(os.path.abspath(root / settings["test_dir"]), "")
    test = np.array([os.path.abspath(p).startswith(folder) for p in paths])
    if not test.any():
        raise DataError(f"stage_1_test: none of the images labelled in {labels_path} lies under {root / settings['test_dir']}. "
                        "The stage-1 test images are labelled in stage_2_train.csv only: pass --dataset-option "
                        "labels_csv=stage_2_train.csv (or point test_dir at the folder that holds them).")
    return np.where(test, "test", "train" if scheme_official else POOL).astype(object)


def _split_note(split: np.ndarray, settings: Mapping[str, Any]) -> str:
    if not (split == "test").any():
        return "split: none released for the labelled images; cxrbench splits the patients (split.fractions of the spec)"
    return (f"split: the {int((split == 'test').sum())} labelled images under {settings['test_dir']} (the stage-1 test "
            f"set) are the test split (stage_1_test); the other {int((split != 'test').sum())} are split train / val")


def load_siim_acr(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "SIIM-ACR", "train-rle.csv and dicom-images-train/")
    settings = _settings(spec, options)
    target = spec.targets[0].name
    labels_path = root / settings["labels_csv"]
    images, rows = read_siim_labels(labels_path)
    files, searched = index_dicoms(root, list(settings["image_dirs"]))
    paths = images["image_id"].map(files)
    missing = paths.isna()
    if missing.any():
        shown = "\n  ".join(images.loc[missing, "image_id"].head(5) + ".dcm")
        raise DataError(
            f"{int(missing.sum())} of {len(images)} images listed in {labels_path} have no DICOM file (<ImageId>.dcm) "
            f"under {', '.join(str(s) for s in searched)}, e.g.:\n  {shown}\nComplete the download, or remove their "
            "rows from the CSV to run on the images present."
        )
    split = _stage_1_split(paths, root, settings, labels_path, spec.split.scheme == "official")
    samples = pd.DataFrame({
        "image_id": images["image_id"], "patient_id": images["image_id"], "path": paths, "split": split,
        target: images["image_id"], present_column(target): images["present"],
    })
    positives = int(images["present"].sum())
    notes = [
        "patient ids: one patient per image (neither the CSV nor the file names give a patient); the images are "
        "ChestX-ray14's, which has several images of many patients, so one patient's images may fall on both sides of "
        "the split",
        f"{positives} of {len(images)} images with pneumothorax ({len(images) - positives} with {EMPTY}), read from "
        f"{labels_path.name}; masks are read one image at a time, on each DICOM's Rows x Columns",
        _split_note(split, settings),
    ]
    several = int((images["regions"] > 1).sum())
    if several:
        notes.append(f"{several} image(s) have several pneumothorax rows (one per region); their mask is the union")
    mixed = int(((images["regions"] > 0) & (images["regions"] < images["rows"])).sum())
    if mixed:
        notes.append(f"{mixed} image(s) have both {EMPTY} and run-length rows in {labels_path.name}; the {EMPTY} rows "
                     "are ignored and the images count as having pneumothorax")
    unlabelled = len(files) - len(images)
    if unlabelled > 0:
        notes.append(f"{unlabelled} DICOM file(s) under {', '.join(s.name for s in searched)} have no row in "
                     f"{labels_path.name} and are not used")
    reader = SiimMaskReader(target, labels_path, dict(zip(samples["image_id"], samples["path"])), rows)
    return BenchmarkData(spec.name, root, spec.targets, samples, notes, mask_reader=reader)
