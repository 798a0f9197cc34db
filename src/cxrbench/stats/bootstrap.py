"""Patient-clustered bootstrap of seed-averaged metrics.

A resample draws patients with replacement (images travel with their patient); it is expressed as
integer weights per image. The same resamples are applied to every seed and task, so each resample
yields the seed-mean metric that the point estimate reports, and the CI is its percentile interval.
"""

from __future__ import annotations

import numpy as np


class ClusterBootstrap:
    """Resamples of clusters (patients), drawn once; image weights are expanded a block at a time."""

    def __init__(self, clusters: np.ndarray, resamples: int, seed: int):
        codes, self._inverse = np.unique(clusters, return_inverse=True)
        rng = np.random.default_rng(seed)
        self.counts = rng.multinomial(len(codes), np.full(len(codes), 1.0 / len(codes)), size=resamples)

    def __len__(self) -> int:
        return len(self.counts)

    def weights(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """[stop - start, N] weights: how often each image's cluster was drawn in each resample."""
        return self.counts[start:stop][:, self._inverse].astype(np.float64)

    def image_counts(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """`weights` as int32 laid out images-major: [N, stop - start], C-ordered. Why: a metric reads the weights of
        its rows in its own (score) order and sums them over rows; with one contiguous row per image those are row
        gathers and row sums, and int32 moves half the bytes of float64. `image_counts(...)[rows].T` is the [R, n]
        weights of the metric contract (`cxrbench.metrics.base.Metric.weighted`)."""
        return np.ascontiguousarray(self.counts[start:stop].T, dtype=np.int32)[self._inverse]


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(low, median, high) of the finite samples; NaNs when none is finite."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, median, high = np.percentile(finite, [tail, 50.0, 100.0 - tail])
    return float(low), float(median), float(high)
