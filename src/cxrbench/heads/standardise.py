"""Per-dimension standardisation with training statistics, read in chunks (patch grids need not fit in memory).

Statistics may come from more images than a head trains on: with a label budget (few shots, a small training
fraction) they are taken over the whole training split, labelled or not, since 2-16 images give a useless
estimate of a feature's spread. Dimensions that barely vary get scale 1 (as scikit-learn's StandardScaler), so
they are not blown up by a near-zero standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch

_CHUNK_VALUES = 20_000_000  # values per chunk: bounds the float64 accumulation to a few hundred MB


def rows_tensor(array, indices: np.ndarray) -> torch.Tensor:
    """Rows of an in-memory array or of lazily read cached rows, as a float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(array[indices], dtype=np.float32))


class Standardiser:
    def __init__(self, array, min_std: float = 1e-6):
        """Mean and population std over the rows of `array` ([N, D] or [N, H, W, D]: over all tokens)."""
        if len(array) == 0:
            raise ValueError("Cannot standardise with statistics of zero images.")
        per_row = int(np.prod(array.shape[1:]))
        chunk = max(1, _CHUNK_VALUES // per_row)
        total = total_sq = 0.0
        count = 0
        for start in range(0, len(array), chunk):
            block = rows_tensor(array, np.arange(start, min(start + chunk, len(array))))
            block = block.reshape(-1, block.shape[-1])
            total = total + block.sum(0, dtype=torch.float64)
            total_sq = total_sq + block.double().square().sum(0)
            count += len(block)
        mean = total / count
        std = (total_sq / count - mean.square()).clamp(min=0).sqrt()
        self.mean = mean.float()
        self.std = torch.where(std < min_std, torch.ones_like(std), std).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)
