"""From long-form predictions to the numbers a paper reports.

For each metric and task (and their macro average over tasks): the value per seed (scikit-learn), the
seed mean and standard deviation (ddof=1, as `numpy.std(ddof=1)`), and a bootstrap CI of the seed mean.
The test items are resampled by patient (or image), the same resamples for every seed and task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrbench.specs import BootstrapSpec
from cxrbench.stats.bootstrap import ClusterBootstrap, percentile_interval
from cxrbench.stats.metrics import task_metric, weighted_curve_metric

MACRO = "macro"
_CHUNK_CELLS = 20_000_000  # resamples x images evaluated at once, bounds memory to a few hundred MB


def _wide(predictions: pd.DataFrame, column: str, images: pd.Index, tasks: Sequence[str]) -> np.ndarray:
    table = predictions.pivot(index="image_id", columns="task", values=column)
    return table.reindex(index=images, columns=list(tasks)).to_numpy(dtype=np.float64)


def summarize(
    predictions: pd.DataFrame, tasks: Sequence[str], metrics: Sequence[str], bootstrap: BootstrapSpec
) -> dict:
    """`predictions` has columns image_id, patient_id, seed, task, label, score (one split)."""
    seeds = sorted(predictions["seed"].unique().tolist())
    patients = predictions.drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
    images = patients.index
    clusters = patients.to_numpy() if bootstrap.unit == "patient" else images.to_numpy()
    per_seed = {s: predictions[predictions["seed"] == s] for s in seeds}
    labels = {s: _wide(per_seed[s], "label", images, tasks) for s in seeds}
    scores = {s: _wide(per_seed[s], "score", images, tasks) for s in seeds}

    resampler = ClusterBootstrap(clusters, bootstrap.resamples, bootstrap.seed)
    result: dict = {}
    for metric in metrics:
        points = np.array([[task_metric(metric, labels[s][:, t], scores[s][:, t]) for t in range(len(tasks))] for s in seeds])
        samples = np.zeros((bootstrap.resamples, len(seeds), len(tasks)))
        chunk = max(1, _CHUNK_CELLS // max(1, len(images)))
        for start in range(0, bootstrap.resamples, chunk):
            stop = min(bootstrap.resamples, start + chunk)
            weights = resampler.weights(start, stop)
            for i, s in enumerate(seeds):
                for t in range(len(tasks)):
                    present = ~np.isnan(scores[s][:, t])
                    samples[start:stop, i, t] = weighted_curve_metric(
                        metric, labels[s][present, t], scores[s][present, t], weights[:, present]
                    )
        entries = {task: _entry(points[:, t], samples[:, :, t], seeds, bootstrap) for t, task in enumerate(tasks)}
        with np.errstate(invalid="ignore"):
            entries[MACRO] = _entry(points.mean(axis=1), samples.mean(axis=2), seeds, bootstrap)
        result[metric] = entries
    return result


def _entry(per_seed: np.ndarray, resampled: np.ndarray, seeds: list[int], bootstrap: BootstrapSpec) -> dict:
    seed_mean = resampled.mean(axis=1)
    low, median, high = percentile_interval(seed_mean, bootstrap.confidence)
    return {
        "per_seed": {int(s): _num(v) for s, v in zip(seeds, per_seed)},
        "mean": _num(np.mean(per_seed)),
        "std": _num(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
        "ci_low": _num(low),
        "ci_high": _num(high),
        "bootstrap_median": _num(median),
        "bootstrap_undefined": int((~np.isfinite(seed_mean)).sum()),
    }


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
