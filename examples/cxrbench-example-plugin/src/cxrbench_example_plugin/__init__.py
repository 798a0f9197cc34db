"""An example cxrbench encoder plugin: intensity histograms, globally and per grid cell."""

from __future__ import annotations

from importlib import resources

import torch

from cxrbench.encoders.base import Encoder, FeatureRequest, Features


class HistogramEncoder(Encoder):
    """Global embedding: the image's intensity histogram; patch tokens: one histogram per grid cell."""

    @property
    def bins(self) -> int:
        return int(self.spec.architecture["bins"])

    @property
    def embed_dim(self) -> int:
        return self.bins

    @property
    def patch_stride(self) -> int:
        return self.preprocessor.output_size[0] // int(self.spec.architecture["grid"])

    @property
    def num_layers(self) -> int:
        return 0

    def _histograms(self, values: torch.Tensor) -> torch.Tensor:
        """[..., N] intensities in [0, 1] -> [..., bins] fractions."""
        index = (values.clamp(0, 1) * self.bins).long().clamp(max=self.bins - 1)
        counts = torch.zeros(*values.shape[:-1], self.bins).scatter_add_(-1, index, torch.ones_like(values))
        return counts / values.shape[-1]

    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        batch, side = pixels.shape[0], pixels.shape[-1]
        features = Features()
        if request.global_embedding:
            features.global_embedding = self._histograms(pixels.reshape(batch, -1))
        if request.patch_tokens:
            grid, cell = side // self.patch_stride, self.patch_stride
            cells = pixels.reshape(batch, grid, cell, grid, cell).permute(0, 1, 3, 2, 4).reshape(batch, grid, grid, -1)
            features.patch_tokens = self._histograms(cells)
        return features


ENTRY = {
    "spec": str(resources.files(__name__) / "histogram.yaml"),
    "impl": "cxrbench_example_plugin:HistogramEncoder",
}
