"""Reading a dataset's label CSV with errors that name the file, the column and the row."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.errors import DataError


def read_csv(
    path: Path, required: Iterable[str], what: str, text_columns: Iterable[str] = (), only: Iterable[str] | None = None,
    file_name_columns: Iterable[str] = (),
) -> pd.DataFrame:
    """Read `path` (as strings where ids are concerned) and check that every `required` column exists.

    `text_columns` are read as strings too (ids that look like numbers, run-length encodings, "-1");
    `only` reads just these columns (and the required ones) where present, for large files with long texts;
    `file_name_columns` hold values that become file names inside the data root (image ids): each must be a plain
    name (`check_file_names`); compressed files (.gz, .zip holding one CSV) are read as they are.
    """
    if not path.is_file():
        raise DataError(f"Missing {what}: {path} does not exist. Check --data-root points at the dataset's top folder.")
    required = list(required)
    wanted = None if only is None else {*only, *required}
    usecols = None if wanted is None else (lambda column: str(column).strip() in wanted)
    try:
        frame = pd.read_csv(
            path, dtype={"image_id": str, "rad_id": str, **{c: str for c in text_columns}}, low_memory=False,
            usecols=usecols,
        )
    except Exception as exc:
        raise DataError(f"Cannot parse {path} as CSV: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in required:
        if column not in frame.columns:
            header = frame.columns if wanted is None else [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
            close = difflib.get_close_matches(column, header, n=1)
            hint = f" (found '{close[0]}'; rename it)" if close else ""
            raise DataError(f"{path} has no column '{column}'{hint}. Its columns are: {', '.join(header)}.")
    check_file_names(frame, file_name_columns, path)
    return frame


def check_file_names(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Refuse values of `columns` that are not plain file names (a path separator, '..', a NUL byte): an image id
    becomes a file inside the data root, and a crafted or mistyped id must never read a file outside it."""
    for column in columns:
        values = frame[column].fillna("").astype(str)
        bad = values.str.contains(r"[/\\\x00]", regex=True) | values.str.strip().isin([".", ".."])
        if bad.any():
            position = int(bad.to_numpy().nonzero()[0][0])
            raise row_error(path, position, column, f"is {values.iloc[position]!r}, not a plain file name",
                            "An image id names a file inside the dataset folder: remove the path separators and '..' "
                            "(or the row).")


def binary_labels(frame: pd.DataFrame, columns: Iterable[str], path: Path) -> pd.DataFrame:
    """The label columns as float, after checking every value is 0 or 1 (CSV row numbers in errors)."""
    out = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(
                f"{path}, row {row + 2} (image {frame['image_id'].iloc[row]}): column '{column}' is "
                f"{frame[column].iloc[row]}; labels must be 0 or 1."
            )
        out[column] = values.astype("float32")
    return pd.DataFrame(out, index=frame.index)


def check_unique(frame: pd.DataFrame, keys: list[str], path: Path) -> None:
    duplicated = frame.duplicated(subset=keys, keep="first")
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        values = ", ".join(f"{k}={frame[k].iloc[row]}" for k in keys)
        raise DataError(f"{path}, row {row + 2}: duplicate entry ({values}); each must appear once.")


def check_files_exist(paths: pd.Series, what: str) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        shown = "\n  ".join(str(p) for p in missing[:5])
        raise DataError(
            f"{len(missing)} of {len(paths)} {what} listed in the label CSV are missing, e.g.:\n  {shown}\n"
            "Complete the download, or remove their rows from the CSV to run on the images present."
        )


MISSING_FILES = ("error", "drop")  # the values of a loader's `missing_images` option


def present_files(frame: pd.DataFrame, policy: str, what: str, shown: str = "path") -> tuple[pd.DataFrame, list[str]]:
    """The rows of `frame` whose `path` is a file. `policy` (a loader's `missing_images` option): `error` refuses any
    missing one, naming a few by their `shown` column; `drop` leaves them out, counted in the returned note."""
    present = np.array([Path(p).is_file() for p in frame["path"]], dtype=bool)
    if present.all():
        return frame, []
    names = ", ".join(map(str, frame.loc[~present, shown].iloc[:5]))
    if policy == "error":
        raise DataError(f"{int((~present).sum())} of {len(frame)} {what} are missing, e.g. {names}. Complete the "
                        "download, or set dataset.missing_images: drop (--dataset-option missing_images=drop) to leave "
                        "them out.")
    return frame[present], [f"{int((~present).sum())} selected image(s) missing from disk are left out "
                            f"(missing_images: drop), e.g. {names}"]


def ages(frame: pd.DataFrame, column: str, path: Path, ident: str) -> pd.Series:
    """A patient's age in years per row (float; an empty cell is unknown), refusing text or a negative age by its row,
    named by the `ident` column (e.g. the image)."""
    raw = frame[column]
    age = pd.to_numeric(raw, errors="coerce")
    bad = (age.isna() & raw.notna() & raw.astype(str).str.strip().ne("")) | (age < 0)
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise row_error(path, position, column, f"is {str(raw.iloc[position])!r}, not an age in years",
                        "Correct it, or leave the cell empty (unknown).", f"{ident} {frame[ident].iloc[position]}")
    return age.astype("float64")


def csv_row(position: int) -> int:
    """The row a spreadsheet shows for the data record at 0-based `position` (the header is row 1)."""
    return position + 2


def row_error(path: Path, position: int, column: str, problem: str, fix: str, ident: str = "") -> DataError:
    """A DataError naming the file, the row (as `csv_row` counts), the column, what is wrong and how to fix it."""
    where = f" ({ident})" if ident else ""
    return DataError(f"{path}, row {csv_row(position)}{where}, column '{column}': {problem}. {fix}")


def first_existing(root: Path, names: Iterable[str], what: str) -> Path:
    """The first of `names` (relative to `root`) that is a file, e.g. a CSV released both plain and gzipped."""
    candidates = [root / name for name in names]
    for path in candidates:
        if path.is_file():
            return path
    listed = ", ".join(str(p.name) for p in candidates)
    raise DataError(
        f"Missing {what}: none of {listed} exists in {root}. Check --data-root points at the dataset's top folder."
    )


def resolve_image_files(folder: Path, ids: pd.Series, suffixes: Iterable[str], what: str) -> pd.Series:
    """Paths `folder/<id><suffix>` for the first suffix that exists ("" = the id is the file name), same index as ids.

    The folder is listed once (no stat per image). Missing images raise one DataError naming a few of them.
    """
    suffixes = list(suffixes)
    if not folder.is_dir():
        raise DataError(f"Image folder of the {what} is missing: {folder} is not a folder. Check --data-root.")
    present = {entry.name for entry in os.scandir(folder) if not entry.is_dir()}
    paths, missing = [], []
    for image_id in ids.astype(str):
        name = next((image_id + s for s in suffixes if image_id + s in present), None)
        if name is None:
            missing.append(image_id)
            paths.append("")
        else:
            paths.append(str(folder / name))
    if missing:
        tried = " or ".join(f"'<id>{s}'" for s in suffixes)
        shown = "\n  ".join(str(folder / (m + (suffixes[0] if len(suffixes) == 1 else ""))) for m in missing[:5])
        raise DataError(
            f"{len(missing)} of {len(ids)} {what} listed in the label CSV are missing from {folder} (looked for {tried}), "
            f"e.g.:\n  {shown}\nComplete the download, or remove their rows from the CSV to run on the images present."
        )
    return pd.Series(paths, index=ids.index, dtype=object)


def class_codes(frame: pd.DataFrame, column: str, values: Mapping[str, str], classes: Sequence[str], path: Path,
                ident: str = "") -> pd.Series:
    """A multiclass target's class index per row, from the text the release writes (`values`: release text ->
    declared class name). Empty cells are unknown (NaN); any other text not in `values` is refused, naming the row."""
    unknown_classes = sorted(set(values.values()) - set(classes))
    if unknown_classes:
        raise DataError(f"{path}: the class mapping names {unknown_classes}, which are not among the target's classes "
                        f"{list(classes)}; fix the benchmark spec.")
    index = {name: float(k) for k, name in enumerate(classes)}
    text = frame[column].fillna("").astype(str).str.strip()
    codes = text.map(lambda value: index[values[value]] if value in values else (np.nan if value == "" else -1.0))
    bad = codes.to_numpy() < 0
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        name = f"{ident} {frame[ident].iloc[position]}" if ident else ""
        raise row_error(path, position, column, f"is {text.iloc[position]!r}, not one of {sorted(values)}",
                        "Correct the row, or map that value to a class in the benchmark spec.", name)
    return codes.astype(np.float32)


def numbers(frame: pd.DataFrame, column: str | int, path: Path, what: str, ident: Sequence[str] | None = None,
            header: bool = True) -> pd.Series:
    """A regression target's values per row: empty cells are unknown (NaN), anything not a finite number is refused,
    naming the row (`header`: whether the file's first line is a header). `ident`: the rows' image names."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna() & raw.astype(str).str.strip().ne("")) | np.isinf(values.fillna(0.0))
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        image = f" (image {ident[position]})" if ident is not None else ""
        row = csv_row(position) if header else position + 1
        raise DataError(f"{path}, row {row}{image}, column {column!r}: {raw.iloc[position]!r} is not a number. {what} must "
                        "be numbers; correct the row or leave the cell empty (unknown).")
    return values.astype(np.float32)


def file_index(root: Path) -> dict[str, Path]:
    """Every file under `root` by its name (hidden folders skipped), for releases whose folder layout varies
    (per-class or per-archive folders); a name found in two places is refused, naming both."""
    found: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in files:
            path = Path(folder) / name
            if name in found:
                raise DataError(f"Two files named {name} under {root}: {found[name]} and {path}. Images are found by file "
                                "name; remove the duplicate.")
            found[name] = path
    return found
