"""Masks between their own pixel grid and an encoder's input, through the encoder's exact preprocessing geometry.

A reference mask covers the whole original image on its own grid (SCR's 1024 x 1024 masks of 2048 x 2048 JSRT
images; SIIM's masks on the DICOM's grid). An encoder sees the image after its letterbox / resize / crop
(`encoders.geometry.InputGeometry`, the same map the box localisation uses), and a decoder predicts on its patch
grid, which covers `grid x stride` input pixels (a ViT drops a remainder, never adds one).

- `encoders.geometry.training_targets` (beside the geometry, as the online trainer needs it too): the share of each
  loss-grid cell that the mask covers.
- `to_mask_grid`: decoder logits resampled bilinearly at the centre of every mask pixel, so that masks are scored
  at their original resolution. Mask pixels that the crop removed from the input take the nearest predicted value
  (the encoder never saw them; crops in the built-in adapters remove at most a few border pixels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cxrbench.encoders.geometry import InputGeometry

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
