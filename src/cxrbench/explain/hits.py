"""RayDINO's explainability score: does the most-attended patch land on the radiologist's box?

RayDINO (Methods, "Explainability"): "we examine all true disease bounding boxes and check if the patch with the
highest attention score from the specific disease's adapter intersects with the bounding box by at least half the
patch's area. We then compute the macro average of accuracies for all diseases."

Made precise here:

- The argmax patch of an image for a finding is the cell (r, c) of that finding's attention map [H, W] with the
  highest value; ties go to the first cell in row-major order (numpy's argmax). The cell covers encoder-input
  pixels [c*s, (c+1)*s) x [r*s, (r+1)*s) for patch stride s.
- A box (mapped into encoder-input pixels and clipped to the input, see `geometry`) is a hit when
  area(cell ∩ box) >= min_overlap * s^2, min_overlap = 0.5 by default ("at least half the patch's area"). The
  comparison allows a relative 1e-9 for floating-point error, so an overlap of exactly half a patch is a hit.
- Counting is per box ("examine all true disease bounding boxes"): an image with three boxes of a finding
  contributes three trials, each scored against the same argmax patch. The accuracy of a finding is
  hits / boxes over the test images with at least one box of it; boxes the crop removed entirely are excluded
  (and counted in explain.json).
- Macro accuracy is the unweighted mean over the findings with at least one scored box.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrbench.errors import CxrbenchError

DEFAULT_MIN_OVERLAP = 0.5
_RELATIVE_TOLERANCE = 1e-9
INPUT_COLUMNS = ("in_x_min", "in_y_min", "in_x_max", "in_y_max")


def check_attention(attention: np.ndarray, n_images: int | None = None, n_findings: int | None = None) -> np.ndarray:
    attention = np.asarray(attention)
    if attention.ndim != 4:
        raise CxrbenchError(f"Attention maps must be [images, findings, H, W]; got shape {attention.shape}.")
    if n_images is not None and attention.shape[0] != n_images:
        raise CxrbenchError(f"Attention maps cover {attention.shape[0]} images; the test split has {n_images}.")
    if n_findings is not None and attention.shape[1] != n_findings:
        raise CxrbenchError(f"Attention maps cover {attention.shape[1]} findings; {n_findings} were named.")
    if not np.isfinite(attention).all():
        raise CxrbenchError("Attention maps contain NaN or infinite values; the head's training diverged.")
    return attention


def argmax_cells(attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols), each [N, T]: the most-attended cell per image and finding (first in row-major order on ties)."""
    attention = check_attention(attention)
    n, t, h, w = attention.shape
    flat = np.argmax(attention.reshape(n, t, h * w), axis=-1)
    return flat // w, flat % w


def cell_overlap(boxes: np.ndarray, rows: np.ndarray, cols: np.ndarray, stride: int) -> np.ndarray:
    """[K] area (input px^2) of cell (rows[k], cols[k]) inside boxes[k] = (x_min, y_min, x_max, y_max) input px."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0 = np.asarray(cols, dtype=np.float64) * stride, np.asarray(rows, dtype=np.float64) * stride
    w = np.minimum(boxes[:, 2], x0 + stride) - np.maximum(boxes[:, 0], x0)
    h = np.minimum(boxes[:, 3], y0 + stride) - np.maximum(boxes[:, 1], y0)
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def is_hit(overlap: np.ndarray, stride: int, min_overlap: float = DEFAULT_MIN_OVERLAP) -> np.ndarray:
    """overlap >= min_overlap * stride^2 (relative tolerance 1e-9)."""
    if not 0.0 < min_overlap <= 1.0:
        raise CxrbenchError(f"The minimum overlap is a fraction of a patch in (0, 1]; got {min_overlap}.")
    return np.asarray(overlap) >= min_overlap * stride * stride * (1.0 - _RELATIVE_TOLERANCE)


def score_boxes(
    boxes: pd.DataFrame, attention: np.ndarray, stride: int, min_overlap: float = DEFAULT_MIN_OVERLAP
) -> pd.DataFrame:
    """Score every box against its image's argmax patch for its finding.

    `boxes` needs `image_index` (row of `attention`), `finding_index` (column of `attention`) and the clipped
    input-pixel box `in_x_min, in_y_min, in_x_max, in_y_max` (NaN for boxes that are not scored). Returns a copy
    with `argmax_row`, `argmax_col`, `attention_max`, `overlap_fraction` (of a patch) and `hit` (bool; <NA> for
    boxes that are not scored).
    """
    attention = check_attention(attention)
    n, t, h, w = attention.shape
    out = boxes.copy()
    image, finding = out["image_index"].to_numpy(dtype=np.int64), out["finding_index"].to_numpy(dtype=np.int64)
    if len(out) and (image.min() < 0 or image.max() >= n or finding.min() < 0 or finding.max() >= t):
        raise CxrbenchError("A box refers to an image or finding outside the attention maps.")
    rows, cols = argmax_cells(attention)
    peak = attention.reshape(n, t, h * w).max(axis=-1)
    coords = out[list(INPUT_COLUMNS)].to_numpy(dtype=np.float64)
    scored = np.isfinite(coords).all(axis=1)
    out["argmax_row"] = rows[image, finding]
    out["argmax_col"] = cols[image, finding]
    out["attention_max"] = peak[image, finding].astype(np.float64)
    overlap = cell_overlap(np.nan_to_num(coords), out["argmax_row"], out["argmax_col"], stride)
    out["overlap_fraction"] = np.where(scored, overlap / float(stride * stride), np.nan)
    out["hit"] = pd.array(np.where(scored, is_hit(overlap, stride, min_overlap), False), dtype="boolean")
    out.loc[~scored, "hit"] = pd.NA
    return out


def finding_accuracy(scored: pd.DataFrame, findings: Sequence[str]) -> pd.DataFrame:
    """Per finding (in the order given): boxes and images scored, hits, accuracy = hits / boxes (NaN without boxes)."""
    valid = scored[scored["hit"].notna()]
    rows = []
    for name in findings:
        mine = valid[valid["finding"] == name]
        boxes, hits = len(mine), int(mine["hit"].astype(bool).sum())
        rows.append({"finding": name, "boxes": boxes, "images": int(mine["image_id"].nunique()), "hits": hits,
                     "accuracy": hits / boxes if boxes else float("nan")})
    return pd.DataFrame(rows, columns=["finding", "boxes", "images", "hits", "accuracy"]).set_index("finding")


def macro_accuracy(per_finding: pd.DataFrame) -> float:
    """Unweighted mean of the per-finding accuracies over findings with at least one scored box (NaN if none)."""
    present = per_finding.loc[per_finding["boxes"] > 0, "accuracy"]
    return float(present.mean()) if len(present) else float("nan")


def bootstrap_macro(
    scored_by_seed: dict[int, pd.DataFrame], findings: Sequence[str], units: pd.Series, resamples: int,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile CI of the seed-mean macro accuracy, resampling `units` (e.g. patients) of the test images.

    `units` maps image_id -> unit id. Every seed's boxes are resampled with the same draw; a finding absent from a
    resample is left out of that resample's macro average (as it would be from a test set without it).
    """
    if resamples <= 0 or not scored_by_seed:
        return None
    unit_ids = pd.Index(pd.unique(units.to_numpy()))
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(unit_ids), len(unit_ids)), minlength=len(unit_ids))
                       for _ in range(resamples)]).astype(np.float64)  # [B, U]
    macros = np.zeros(resamples)
    for scored in scored_by_seed.values():
        valid = scored[scored["hit"].notna()]
        unit = unit_ids.get_indexer(units.loc[valid["image_id"]].to_numpy())
        finding = pd.Index(list(findings)).get_indexer(valid["finding"])
        boxes = np.zeros((len(unit_ids), len(findings)))
        hits = np.zeros_like(boxes)
        np.add.at(boxes, (unit, finding), 1.0)
        np.add.at(hits, (unit, finding), valid["hit"].astype(bool).to_numpy(dtype=np.float64))
        total, hit = counts @ boxes, counts @ hits  # [B, T]
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(total > 0, hit / total, np.nan)
        with warnings.catch_warnings():  # a resample without any box of any finding: NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            macros += np.nanmean(np.where((boxes.sum(0) > 0)[None, :], accuracy, np.nan), axis=1)
    macros /= len(scored_by_seed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(macros, [alpha, 1.0 - alpha])
    return float(low), float(high)
