"""The `pixels` baseline: downsampled intensities, no weights. Any learned encoder must beat it."""

from __future__ import annotations

import torch

from cxrbench.encoders.base import Encoder, FeatureRequest, Features
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import SpecError
from cxrbench.specs import AdapterSpec, PreprocessSpec


class PixelsEncoder(Encoder):
    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        super().__init__(spec, weights, preprocessing)
        self.cell = int(spec.architecture["patch_size"])
        side = self.preprocessor.output_size[0]
        if side % self.cell or self.preprocessing.channels != 1:  # --image-size was checked already (AdapterSpec.sized)
            raise SpecError(f"pixels: the preprocessed image must be 1 channel of a multiple of {self.cell} px, "
                            f"got {self.preprocessing.channels} x {side} px.")
        self.grid = side // self.cell

    @property
    def embed_dim(self) -> int:
        return (self.grid * self.cell) ** 2

    @property
    def patch_stride(self) -> int:
        return self.cell

    @property
    def num_layers(self) -> int:
        return 0

    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        batch = pixels.shape[0]
        features = Features()
        if request.global_embedding:
            features.global_embedding = pixels.reshape(batch, -1)
        if request.patch_tokens:
            cells = pixels.reshape(batch, self.grid, self.cell, self.grid, self.cell)
            features.patch_tokens = cells.permute(0, 1, 3, 2, 4).reshape(batch, self.grid, self.grid, -1)
        return features
