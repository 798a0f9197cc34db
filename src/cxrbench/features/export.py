"""`cxrbench embed`: features of a list or folder of images, exported with their image ids.

Exports run the encoder directly in float32 (not through the float16 cache), so that they can be compared
with an encoder's reference code. `.safetensors` files carry the image ids and the encoder identity in their
metadata; `.npz` files carry them as arrays.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.errors import CxrbenchError
from cxrbench.features.extract import encode_batches
from cxrbench.progress import Progress, SilentProgress

IMAGE_SUFFIXES = {".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def collect_images(inputs: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Files as given, folders searched recursively; ids are paths relative to their folder (or file names)."""
    paths, ids = [], []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            paths += found
            ids += [str(p.relative_to(item).with_suffix("")) for p in found]
        elif item.is_file():
            paths.append(item)
            ids.append(item.stem)
        else:
            raise CxrbenchError(f"{item} is neither an image file nor a folder.")
    if not paths:
        raise CxrbenchError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {', '.join(map(str, inputs))}.")
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise CxrbenchError(f"Two inputs share the image id '{duplicate}'; pass their common folder instead.")
    return paths, ids


def export_embeddings(
    encoder: Encoder, request: FeatureRequest, inputs: Sequence[Path], out: Path, overwrite: bool = False,
    batch_size: int = 32, device: str = "cpu", progress: Progress = SilentProgress(),
) -> tuple[Path, int]:
    if out.suffix not in (".safetensors", ".npz"):
        raise CxrbenchError(f"--out {out}: use a .safetensors or .npz file name.")
    if out.exists() and not overwrite:
        raise CxrbenchError(f"{out} exists; pass --overwrite to replace it.")
    paths, ids = collect_images(inputs)
    collected: dict[str, list[np.ndarray]] = {}
    fix = "Re-download the file, or leave it out of the inputs."
    for _, arrays in encode_batches(encoder, request, [str(p) for p in paths], batch_size, None, device, progress, fix):
        for name, array in arrays.items():
            collected.setdefault(name, []).append(array)
    arrays = {name: np.ascontiguousarray(np.concatenate(parts)) for name, parts in collected.items()}
    identity = encoder.identity_json(request)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}{out.suffix}")
    if out.suffix == ".safetensors":
        save_file(arrays, str(tmp), metadata={"image_ids": json.dumps(ids), "identity": identity})
    else:
        with open(tmp, "wb") as handle:
            np.savez(handle, image_ids=np.array(ids), identity=np.array(identity), **arrays)
    os.replace(tmp, out)
    return out, len(ids)
