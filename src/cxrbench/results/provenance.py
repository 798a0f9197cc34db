"""Provenance of a run: what produced its numbers, recorded in metrics.json so a result can be traced and reproduced
long after the machine, the checkout and the weights cache that made it are gone.

It names the cxrbench version and source commit, the versions of the libraries the numbers depend on, the command,
the SHA-256 of every weight file, and one digest of the data the run saw (`data_digest`): two runs on the same
images, labels and splits share it, and any changed label, image or split assignment changes it.

Nothing here may fail a run: where git, a package or a weight file's blob name is missing, the field says None.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

import cxrbench
from cxrbench.targets.mask import present_column
from cxrbench.encoders.weights import WEIGHT_SUFFIXES, WeightsSource, file_sha256
from cxrbench.recording import recorded_command

#: the format of metrics.json this cxrbench writes (`metrics.schema.json` describes it); raise it with any change
#: that a reader of older files must know about
SCHEMA_VERSION = 1

#: the distributions whose versions change a run's numbers (or whether it runs at all), by their package names
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "transformers", "timm",
            "open_clip_torch", "monai", "pydicom", "safetensors")

#: names the canonical serialisation hashed by `data_digest`; a change of that serialisation changes this tag
DATA_DIGEST_FORMAT = "cxrbench-data-digest-v1"

_GIT_TIMEOUT_S = 5
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def provenance(encoder_weights: WeightsSource, samples: pd.DataFrame, target_names: list[str],
               manifests: pd.DataFrame, root: Path | None = None) -> dict:
    """metrics.json's `provenance`: the run's software, command, weight files and data (see the module's doc).

    `samples`: the benchmark's images (`BenchmarkData.samples`); `target_names`: the label columns scored
    (`BenchmarkData.tasks`); `manifests`: the run's split manifest of every seed (`Study.manifests[budget]`);
    `root`: the data root, whose symbolic links are recorded (`data_links`).
    """
    return {
        "cxrbench": cxrbench.__version__,
        "git": git_info(),
        "packages": package_versions(),
        "platform": platform.platform(),
        "command": recorded_command(),
        "weights": weights_provenance(encoder_weights),
        "data": {
            "manifest_sha256": data_digest(samples, target_names, manifests),
            "images": int(len(samples)),
            "patients": int(samples["patient_id"].nunique()),
            "targets": list(target_names),
            **({"symlinks": data_links(root, samples["path"])} if root is not None and "path" in samples else {}),
        },
    }


#: image paths named as examples of data read through a link
LINK_EXAMPLES = 3


def data_links(root: Path, paths: Iterable) -> dict:
    """How many images were read through a symbolic link inside `root` (a linked folder or a linked file), with a
    few examples relative to the root.

    Links inside a data root are followed on purpose (image folders linked to another disk are common), so a result
    may rest on files outside the folder named; this records it. Cheap on 100k images: each folder between the root
    and an image is asked once whether it is a link, and each image folder is listed once (`os.scandir` tells links
    from the directory entry, without a stat per file).
    """
    root = Path(os.path.abspath(root))
    linked_folders: dict[Path, bool] = {root: False}
    linked_names: dict[Path, set[str]] = {}

    def through_link(folder: Path) -> bool:
        if folder not in linked_folders:
            inside = folder != folder.parent and root in folder.parents
            linked_folders[folder] = inside and (folder.is_symlink() or through_link(folder.parent))
        return linked_folders[folder]

    def links_in(folder: Path) -> set[str]:
        if folder not in linked_names:
            try:
                with os.scandir(folder) as entries:
                    linked_names[folder] = {entry.name for entry in entries if entry.is_symlink()}
            except OSError:
                linked_names[folder] = set()
        return linked_names[folder]

    linked = []
    for path in (Path(os.path.abspath(str(p))) for p in paths):
        if through_link(path.parent) or path.name in links_in(path.parent):
            linked.append(path)
    return {"count": len(linked), "examples": [str(p.relative_to(root)) for p in linked[:LINK_EXAMPLES]]}


# -- software -------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def git_info() -> dict:
    """`checkout_info` of the folder cxrbench is imported from; asked once per process (the code running is the code
    imported)."""
    return checkout_info(Path(cxrbench.__file__).resolve().parent)


def checkout_info(package: Path) -> dict:
    """The commit of the git checkout holding the package folder `package`: {commit, dirty, describe}, each None when
    the package is not tracked there (an installed wheel, or a venv inside another repository) or git is missing.

    `dirty` counts changes to tracked files only: results or caches written inside the checkout do not make the
    code that produced them differ from the commit.
    """
    unknown = {"commit": None, "dirty": None, "describe": None}
    if not _git(package, "ls-files", "--", "__init__.py"):  # not tracked here: some other repository, or none
        return unknown
    commit = _git(package, "rev-parse", "HEAD")
    if commit is None:
        return unknown
    status = _git(package, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "describe": _git(package, "describe", "--tags", "--always", "--dirty")}


def _git(folder: Path, *args: str) -> str | None:
    """git's stripped output in `folder`, or None when git is missing, refuses, or takes too long."""
    try:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    """Python's version and each of `PACKAGES`' installed version (None where not installed), read from package
    metadata: importing torch or transformers only to ask their version would cost seconds."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# -- weights --------------------------------------------------------------------------------------------------
def weights_provenance(weights: WeightsSource) -> dict:
    """{kind, identity, files}: `files` maps each weight file (relative to the snapshot or weights folder) to
    "sha256:<hex>": every file of a Hub snapshot, the weight files (and config.json) of local weights, none for
    random or no weights."""
    if weights.kind == "hub" and weights.path is not None:
        files = {_relative(f, weights.path): _snapshot_file_sha256(f) for f in _files(weights.path)}
    elif weights.kind == "local" and weights.path is not None:
        chosen = [weights.path] if weights.path.is_file() else [
            f for f in _files(weights.path) if f.suffix in WEIGHT_SUFFIXES or f.name == "config.json"]
        files = {_relative(f, weights.path): f"sha256:{file_sha256(f)}" for f in chosen}
    else:
        files = {}
    return {"kind": weights.kind, "identity": weights.identity, "files": files}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _relative(file: Path, root: Path) -> str:
    return file.name if file == root else file.relative_to(root).as_posix()


def _snapshot_file_sha256(file: Path) -> str:
    """A Hub snapshot file is a link to `blobs/<name>`, and an LFS file's blob name is its SHA-256: taken from the
    name, without reading gigabytes of weights. Other files (small git blobs named by SHA-1, copies on systems
    without links) are hashed."""
    if file.is_symlink():
        blob = file.resolve()
        if blob.parent.name == "blobs" and _SHA256_HEX.fullmatch(blob.name):
            return f"sha256:{blob.name}"
    return f"sha256:{file_sha256(file)}"


# -- data -----------------------------------------------------------------------------------------------------
def data_digest(samples: pd.DataFrame, target_names: Iterable[str], manifests: pd.DataFrame) -> str:
    """SHA-256 (hex) of the data a run saw: every image's ids and labels, and the split of every image for every
    seed (train / val / test, or unused outside a label budget); independent of row and target order.

    What is hashed, in this order (JSON compact: separators "," and ":", UTF-8, non-ASCII kept; ids and splits as
    strings, sorted as strings):

    1. the JSON array [DATA_DIGEST_FORMAT, label columns (sorted), image ids (sorted), their patient ids];
    2. the label matrix [images x label columns], rows in that image order, as float64 little-endian, row-major:
       a binary 1.0 / 0.0, a class index, a regression value; unknown as the NaN 0x7FF8000000000000 (and -0.0 as
       0.0). A mask target's column holds a reference to its mask files, not a label: it is 1.0 (a mask) or NaN
       (none), and its `<target>:present` column (structures drawn or not) is a label column of its own where the
       loader gives one; the masks' pixels are not hashed (that would cost a pass over the dataset);
    3. per seed, in ascending order, the JSON array [seed, image ids of its manifest (sorted), their splits].

    Image paths are not hashed: the same data under another folder is the same data. The labels are packed as
    numbers, not JSON text, because writing millions of floats as text takes seconds on every run.
    """
    columns = sorted({*target_names, *(present_column(t) for t in target_names if present_column(t) in samples)})
    images = samples.assign(image_id=samples["image_id"].astype(str)).sort_values("image_id", kind="stable")
    digest = hashlib.sha256()
    digest.update(_dumps([DATA_DIGEST_FORMAT, columns, images["image_id"].tolist(),
                          images["patient_id"].astype(str).tolist()]).encode("utf-8"))
    digest.update(_label_matrix(images, columns).tobytes())
    splits = manifests.assign(image_id=manifests["image_id"].astype(str))
    for seed, part in sorted(splits.groupby("seed", sort=False), key=lambda item: int(item[0])):
        part = part.sort_values("image_id", kind="stable")
        digest.update(_dumps([int(seed), part["image_id"].tolist(), part["split"].astype(str).tolist()]).encode("utf-8"))
    return digest.hexdigest()


def _label_matrix(images: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """[images, columns] float64 little-endian with one bit pattern per value (NaN and zero made canonical)."""
    matrix = np.empty((len(images), len(columns)), dtype="<f8")
    for j, name in enumerate(columns):
        column = images[name]
        matrix[:, j] = (column.to_numpy(dtype=np.float64, na_value=np.nan) if pd.api.types.is_numeric_dtype(column)
                        else np.where(column.notna().to_numpy(), 1.0, np.nan))
    matrix += 0.0  # -0.0 -> 0.0
    matrix[np.isnan(matrix)] = np.nan
    return matrix


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


__all__ = ["DATA_DIGEST_FORMAT", "data_links", "PACKAGES", "SCHEMA_VERSION", "checkout_info", "data_digest", "git_info", "package_versions",
           "provenance", "weights_provenance"]
