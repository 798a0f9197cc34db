"""Masks between their own pixel grid and an encoder's input, through the encoder's exact preprocessing geometry.

A reference mask covers the whole original image on its own grid (SCR's 1024 x 1024 masks of 2048 x 2048 JSRT
images; SIIM's masks on the DICOM's grid). An encoder sees the image after its letterbox / resize / crop
(`explain.geometry.InputGeometry`, the same map the box localisation uses), and a decoder predicts on its patch
grid, which covers `grid x stride` input pixels (a ViT drops a remainder, never adds one).

- `training_targets`: the share of each loss-grid cell (in input pixels) that the mask covers, sampled on a
  `SUPERSAMPLE` x `SUPERSAMPLE` lattice per cell. Input pixels outside the original image (letterbox margins, crop
  padding) are background.
- `to_mask_grid`: decoder logits resampled bilinearly at the centre of every mask pixel, so that masks are scored
  at their original resolution. Mask pixels that the crop removed from the input take the nearest predicted value
  (the encoder never saw them; crops in the built-in adapters remove at most a few border pixels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cxrbench.encoders.geometry import InputGeometry

#: sample points per loss-grid cell and axis when measuring how much of a cell a mask covers
SUPERSAMPLE = 4


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


def to_mask_grid(logits: torch.Tensor, geometry: InputGeometry, covered: tuple[int, int], mask_shape: tuple[int, int]) -> torch.Tensor:
    """Logits [S, h, w] over the `covered` input pixels -> logits [S, H_mask, W_mask] at the mask pixels' centres."""
    height, width = geometry.original
    mask_h, mask_w = mask_shape
    original_y = (np.arange(mask_h) + 0.5) * height / mask_h
    original_x = (np.arange(mask_w) + 0.5) * width / mask_w
    # normalised coordinates of the logits grid, align_corners=False: -1 and 1 are the outer edges of the covered area
    grid_y = torch.from_numpy(2 * geometry.y(original_y) / covered[0] - 1).float()
    grid_x = torch.from_numpy(2 * geometry.x(original_x) / covered[1] - 1).float()
    grid = torch.stack(torch.meshgrid(grid_x, grid_y, indexing="xy"), dim=-1)[None]
    return F.grid_sample(logits[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def on_score_grid(mask: np.ndarray, side: int) -> np.ndarray:
    """A boolean [S, H, W] mask on a `side` x `side` scoring grid by nearest neighbour: output pixel i takes source
    pixel floor(i * H / side) (the common nearest rule, torch's `nearest`). RayDINO computes its metrics at 512 x 512
    pixels whatever the dataset's mask size (RayDINO, Methods, segmentation evaluation), so predictions and references
    are both brought onto that grid before scoring; HD95 is then in grid pixels."""
    height, width = mask.shape[-2:]
    rows = np.floor(np.arange(side) * (height / side)).astype(np.int64)
    cols = np.floor(np.arange(side) * (width / side)).astype(np.int64)
    return mask[..., rows[:, None], cols[None, :]]
