"""An example cxrbench plugin: an encoder (intensity histograms, globally and per grid cell) and a metric (the
Brier score), each added by one entry point in pyproject.toml."""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
from sklearn.metrics import brier_score_loss

from cxrbench.encoders.base import Encoder, FeatureRequest, Features
from cxrbench.metrics.base import Metric


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


class BrierScore(Metric):
    """The mean squared error of predicted probabilities (lower is better): how well calibrated a probe is, which
    AUPRC and AUROC (rank metrics) cannot see. Registered by one entry point; `cxrbench run ... --metric brier`."""

    title = "Brier score"
    kinds = ("binary",)
    higher_is_better = False
    scale = 1.0
    unit = ""
    decimals = 3
    description = "mean squared error of the predicted probability, sklearn.metrics.brier_score_loss"

    def score(self, labels, scores):
        return float(brier_score_loss(labels, scores)) if len(labels) else float("nan")

    def weighted(self, labels, scores, weights):
        weights = np.atleast_2d(weights).astype(np.float64)
        return weights @ (scores - labels) ** 2 / weights.sum(axis=1)
