"""Where a pixel of the original image lands in an encoder's input, and which patch-grid cells it covers.

Coordinates are continuous pixel-edge coordinates: an image W pixels wide spans x in [0, W], pixel i covers
[i, i + 1), and a box (x_min, y_min, x_max, y_max) is the rectangle between those edges (VinDr-CXR's boxes are in
the original DICOM's pixel coordinates, Columns x Rows).

Every step of `Preprocessor` moves pixels by an axis-aligned affine map x -> a * x + b in these coordinates, so a
whole pipeline is one such map per axis, replayed here with the same integer arithmetic as the preprocessing code:

- letterbox(side): ratio = side / max(W, H); new_w, new_h = int(W * ratio), int(H * ratio) (truncated, as PIL's
  caller does); pasted at ((side - new_w) // 2, (side - new_h) // 2) on a side x side canvas.
      x -> x * new_w / W + (side - new_w) // 2
- resize shortest_edge(size): short edge -> size, long edge -> int(size * long / short); square(size): both -> size.
      x -> x * new_w / W
  (PIL, torchvision and area resizing all use the half-pixel-centre convention, align_corners=False, under which
  pixel edges scale exactly by new / old.)
- centre crop(side), offset floor or round: an image smaller than `side` is first padded with black, pad // 2
  before; then left = (w - side) // 2 ('floor') or int(round((w - side) / 2)) ('round', half to even).
      x -> x + pad_left - left

Patch-grid cell (r, c) of an encoder with stride s covers input pixels [c*s, (c+1)*s) x [r*s, (r+1)*s).

`training_targets` carries a reference mask through this map onto a decoder's loss grid: the share of each cell (in
input pixels) that the mask covers, sampled on a `SUPERSAMPLE` x `SUPERSAMPLE` lattice per cell; input pixels outside
the original image (letterbox margins, crop padding) are background. It lives here, not with the evaluations, because
both the segmentation evaluation and the online trainer (`training.mask_views`) use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrbench.errors import CxrbenchError
from cxrbench.specs import PreprocessSpec

#: sample points per loss-grid cell and axis when measuring how much of a cell a mask covers
SUPERSAMPLE = 4


# Status of a box after mapping (explain.csv's `status` column).
KEPT, CLIPPED, CROPPED_AWAY, EMPTY = "kept", "clipped", "cropped_away", "empty"


@dataclass(frozen=True)
class AxisMap:
    """u = scale * v + offset along one axis."""

    scale: float = 1.0
    offset: float = 0.0

    def __call__(self, v):
        return np.asarray(v, dtype=np.float64) * self.scale + self.offset

    def inverse(self, u):
        return (np.asarray(u, dtype=np.float64) - self.offset) / self.scale

    def then(self, other: "AxisMap") -> "AxisMap":
        """This map followed by `other`."""
        return AxisMap(self.scale * other.scale, self.offset * other.scale + other.offset)


@dataclass(frozen=True)
class InputGeometry:
    """The map from an original image of `original` = (height, width) pixels to the encoder input of `input` pixels."""

    original: tuple[int, int]
    input: tuple[int, int]
    x: AxisMap
    y: AxisMap
    steps: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: PreprocessSpec, height: int, width: int) -> "InputGeometry":
        """Replay `spec`'s letterbox, resize and crop on an image of height x width pixels."""
        if height < 1 or width < 1:
            raise CxrbenchError(f"An image of {height} x {width} pixels has no area; check its DICOM Rows/Columns.")
        x, y = AxisMap(), AxisMap()
        h, w = int(height), int(width)
        steps: list[str] = []
        if spec.letterbox:
            side = int(spec.letterbox)
            ratio = side / max(w, h)  # the same expressions as preprocessing.letterbox (PIL size order is W, H)
            new_w, new_h = int(w * ratio), int(h * ratio)
            x = x.then(AxisMap(new_w / w, (side - new_w) // 2))
            y = y.then(AxisMap(new_h / h, (side - new_h) // 2))
            steps.append(f"letterbox {w}x{h} -> {new_w}x{new_h} on {side}x{side}")
            h = w = side
        if spec.resize == "shortest_edge":
            short, long = min(h, w), max(h, w)
            new_long = int(spec.size * long / short)
            new_h, new_w = (spec.size, new_long) if h <= w else (new_long, spec.size)
        else:
            new_h = new_w = int(spec.size)
        x, y = x.then(AxisMap(new_w / w)), y.then(AxisMap(new_h / h))
        steps.append(f"resize {spec.resize} {w}x{h} -> {new_w}x{new_h}")
        h, w = new_h, new_w
        if spec.crop is not None:
            side = int(spec.crop)
            pad_w, pad_h = max(0, side - w), max(0, side - h)
            w, h = w + pad_w, h + pad_h
            if spec.crop_offset == "round":
                top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
            else:
                top, left = (h - side) // 2, (w - side) // 2
            x, y = x.then(AxisMap(1.0, pad_w // 2 - left)), y.then(AxisMap(1.0, pad_h // 2 - top))
            steps.append(f"crop {side} ({spec.crop_offset}): pad ({pad_w // 2}, {pad_h // 2}), offset ({left}, {top})")
            h = w = side
        return cls((int(height), int(width)), (h, w), x, y, tuple(steps))

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """[K, 4] original (x_min, y_min, x_max, y_max) -> the same rectangles in input pixels (not clipped)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.stack([self.x(boxes[:, 0]), self.y(boxes[:, 1]), self.x(boxes[:, 2]), self.y(boxes[:, 3])], axis=1)

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """The inverse of `to_input`."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x, y = self.x.inverse, self.y.inverse
        return np.stack([x(boxes[:, 0]), y(boxes[:, 1]), x(boxes[:, 2]), y(boxes[:, 3])], axis=1)

    def map_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original boxes -> (input boxes clipped to the input canvas [K, 4], status [K] in kept / clipped / cropped_away).

        A box is first clipped to the original image (annotations may overhang it by a pixel; that is not counted),
        then mapped; a box the crop cuts is `clipped` to the visible part; a box with no area left in the input
        (entirely in a cropped-away margin) is `cropped_away`; a box without area inside the original image (zero
        width or height, or wholly outside it) is `empty`. Rows of cropped-away and empty boxes are NaN.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        height, width = self.original
        inside = np.stack([np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 1], 0, height),
                           np.clip(boxes[:, 2], 0, width), np.clip(boxes[:, 3], 0, height)], axis=1)
        empty = (inside[:, 2] - inside[:, 0] <= 0) | (inside[:, 3] - inside[:, 1] <= 0)
        mapped = self.to_input(inside)
        in_h, in_w = self.input
        clipped = np.stack([np.clip(mapped[:, 0], 0, in_w), np.clip(mapped[:, 1], 0, in_h),
                            np.clip(mapped[:, 2], 0, in_w), np.clip(mapped[:, 3], 0, in_h)], axis=1)
        area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        before = (mapped[:, 2] - mapped[:, 0]) * (mapped[:, 3] - mapped[:, 1])
        status = np.where(empty, EMPTY, np.where(area <= 0, CROPPED_AWAY,
                          np.where(np.isclose(area, before, rtol=1e-9, atol=1e-9), KEPT, CLIPPED)))
        clipped[empty | (area <= 0)] = np.nan
        return clipped, status.astype(object)


@dataclass(frozen=True)
class PatchGrid:
    """rows x cols cells of stride x stride input pixels, from the input's top-left corner."""

    rows: int
    cols: int
    stride: int

    @classmethod
    def for_input(cls, rows: int, cols: int, stride: int, input_size: tuple[int, int]) -> "PatchGrid":
        """Check that a rows x cols grid of `stride` px cells fits the input (ViTs drop a remainder, never add)."""
        in_h, in_w = input_size
        if stride < 1 or rows * stride > in_h or cols * stride > in_w:
            raise CxrbenchError(
                f"A {rows} x {cols} patch grid of stride {stride} px covers {rows * stride} x {cols * stride} px, more "
                f"than the {in_h} x {in_w} px encoder input; the attention maps and the preprocessing disagree."
            )
        return cls(int(rows), int(cols), int(stride))

    @property
    def cell_area(self) -> float:
        return float(self.stride * self.stride)

    def cell_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        s = self.stride
        return (col * s, row * s, (col + 1) * s, (row + 1) * s)

    def overlaps(self, box) -> np.ndarray:
        """[rows, cols]: area (input px^2) of each cell inside `box` (x_min, y_min, x_max, y_max in input px)."""
        x0, y0, x1, y1 = (float(v) for v in box)
        edges_x = np.arange(self.cols + 1, dtype=np.float64) * self.stride
        edges_y = np.arange(self.rows + 1, dtype=np.float64) * self.stride
        wx = np.clip(np.minimum(edges_x[1:], x1) - np.maximum(edges_x[:-1], x0), 0, None)
        wy = np.clip(np.minimum(edges_y[1:], y1) - np.maximum(edges_y[:-1], y0), 0, None)
        return wy[:, None] * wx[None, :]

    def cells(self, box, min_fraction: float = 0.5) -> np.ndarray:
        """[rows, cols] bool: cells of which at least `min_fraction` of the area lies inside `box`."""
        return self.overlaps(box) >= min_fraction * self.cell_area * (1 - 1e-9)


def training_targets(mask: np.ndarray, geometry: InputGeometry, covered: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """[S, rows, cols] float32 in [0, 1]: the coverage of each cell of a rows x cols grid over the `covered` (height,
    width) input pixels by each structure of `mask` [S, H_mask, W_mask] (bool)."""
    rows, cols = cells
    height, width = geometry.original
    ys = (np.arange(rows * SUPERSAMPLE) + 0.5) * covered[0] / (rows * SUPERSAMPLE)  # input pixel coordinates
    xs = (np.arange(cols * SUPERSAMPLE) + 0.5) * covered[1] / (cols * SUPERSAMPLE)
    original_y, original_x = geometry.y.inverse(ys), geometry.x.inverse(xs)
    inside_y = (original_y >= 0) & (original_y < height)
    inside_x = (original_x >= 0) & (original_x < width)
    mask_rows = np.clip((original_y * mask.shape[1] / height).astype(np.int64), 0, mask.shape[1] - 1)
    mask_cols = np.clip((original_x * mask.shape[2] / width).astype(np.int64), 0, mask.shape[2] - 1)
    sampled = mask[:, mask_rows][:, :, mask_cols] & inside_y[None, :, None] & inside_x[None, None, :]
    pooled = sampled.reshape(len(mask), rows, SUPERSAMPLE, cols, SUPERSAMPLE).mean(axis=(2, 4))
    return pooled.astype(np.float32)
