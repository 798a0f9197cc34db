"""VinDr-CXR's radiologist boxes: annotations/annotations_{test,train}.csv in the official layout.

    annotations_test.csv    image_id, class_name, x_min, y_min, x_max, y_max        (5-reader consensus)
    annotations_train.csv   image_id, rad_id, class_name, x_min, y_min, x_max, y_max (one row per reader and box)

Coordinates are in the original image's pixels (DICOM Columns x Rows). "No finding" rows carry no box and are
dropped; any other row must hold four numbers with x_min <= x_max and y_min <= y_max. Errors name the file and
the CSV row (the header is row 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.data.common.csvs import read_csv
from cxrbench.errors import DataError

TEST_BOXES = Path("annotations/annotations_test.csv")
TRAIN_BOXES = Path("annotations/annotations_train.csv")
NO_FINDING = "No finding"
COORDINATES = ("x_min", "y_min", "x_max", "y_max")
BOX_COLUMNS = ["image_id", "finding", *COORDINATES, "csv_row"]
_CLASS_ALIASES = {"Other disease": "Other diseases"}


def read_boxes(path: Path, what: str = "VinDr-CXR test boxes", with_reader: bool = False) -> pd.DataFrame:
    """One row per box: image_id, finding, x_min, y_min, x_max, y_max (float, original px), csv_row
    (and rad_id when `with_reader`). Raises DataError naming the file and row of any malformed box."""
    path = Path(path)
    required = ["image_id", *(["rad_id"] if with_reader else []), "class_name", *COORDINATES]
    frame = read_csv(path, required, what)
    frame["csv_row"] = np.arange(len(frame)) + 2
    names = frame["class_name"].astype("string").str.strip()
    missing_name = names.isna() | names.eq("")
    if missing_name.any():
        row = int(missing_name.to_numpy().nonzero()[0][0])
        raise DataError(f"{path}, row {row + 2} (image {frame['image_id'].iloc[row]}): class_name is empty; every row names a finding.")
    ids = frame["image_id"].astype("string").str.strip()
    missing_id = ids.isna() | ids.eq("")
    if missing_id.any():
        row = int(missing_id.to_numpy().nonzero()[0][0])
        raise DataError(f"{path}, row {row + 2}: image_id is empty; every box belongs to an image.")
    frame["image_id"] = ids.astype(str)
    frame["finding"] = names.astype(str).replace(_CLASS_ALIASES)
    boxes = frame.loc[frame["finding"] != NO_FINDING].copy()
    for column in COORDINATES:
        values = pd.to_numeric(boxes[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = boxes.iloc[int(bad.nonzero()[0][0])]
            shown = "empty" if pd.isna(row[column]) else f"'{row[column]}'"
            raise DataError(
                f"{path}, row {row['csv_row']} (image {row['image_id']}, {row['finding']}): {column} is {shown}; "
                f"a box of a finding needs four numbers ({', '.join(COORDINATES)}); only '{NO_FINDING}' rows may leave them empty."
            )
        boxes[column] = values.astype(np.float64)
    for low, high in (("x_min", "x_max"), ("y_min", "y_max")):
        inverted = (boxes[low] > boxes[high]).to_numpy()
        if inverted.any():
            row = boxes.iloc[int(inverted.nonzero()[0][0])]
            raise DataError(
                f"{path}, row {row['csv_row']} (image {row['image_id']}, {row['finding']}): {low} = {row[low]:g} is "
                f"greater than {high} = {row[high]:g}; boxes are (x_min, y_min, x_max, y_max) in pixels."
            )
    columns = BOX_COLUMNS[:2] + (["rad_id"] if with_reader else []) + BOX_COLUMNS[2:]
    return boxes[columns].reset_index(drop=True)


def read_test_boxes(root: Path) -> pd.DataFrame:
    """The consensus test boxes of a VinDr-CXR folder (see `read_boxes`)."""
    return read_boxes(Path(root) / TEST_BOXES, "VinDr-CXR test boxes (annotations_test.csv)")
