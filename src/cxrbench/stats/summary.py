"""From long-form predictions to the numbers a paper reports, for whatever metrics a benchmark names.

For each metric and target it applies to (and their macro average over those targets): the value per seed (the
metric's own point estimate: scikit-learn / scipy), the seed mean and standard deviation (ddof=1, as
`numpy.std(ddof=1)`), and a bootstrap CI of the seed mean. The test items are resampled by patient (or image),
the same resamples for every seed, target and metric (so differences between them are paired), and for every run
scored on the same split: `metric_values` is what `cxrbench.stats.paired` differences between two runs.

Metrics receive each block of resamples as int32 weights laid out images-major (`ClusterBootstrap.image_counts`,
transposed to the [R, N] of the metric contract), one BLAS thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from cxrbench.registry import metric as registered_metric
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.bootstrap import ClusterBootstrap, percentile_interval
from cxrbench.targets.multiclass import PROBABILITIES
from cxrbench.threads import threads_for

MACRO = "macro"
_CHUNK_CELLS = 20_000_000  # resamples x images evaluated at once, bounds memory to a few hundred MB


def target_arrays(predictions: pd.DataFrame, target: TargetSpec, images: pd.Index, column: str = "score") -> tuple[np.ndarray, np.ndarray]:
    """One seed's labels [N] and scores ([N], or [N, K] class probabilities) of `target`, aligned with `images`
    (NaN for images this seed did not score). `column`: where the scores are (a mask metric's per-case column)."""
    rows = predictions[predictions["task"] == target.name]
    position = images.get_indexer(rows["image_id"])
    labels = np.full(len(images), np.nan)
    labels[position] = rows["label"].to_numpy(dtype=np.float64)
    if target.target_kind.one_hot:
        scores = np.full((len(images), target.outputs), np.nan)
        if len(rows):
            scores[position] = np.stack(rows[PROBABILITIES].to_numpy()).astype(np.float64)
    else:
        scores = np.full(len(images), np.nan)
        scores[position] = rows[column].to_numpy(dtype=np.float64)
    return labels, scores


def metric_arrays(predictions: pd.DataFrame, target: TargetSpec, images: pd.Index, scorer) -> tuple[np.ndarray, np.ndarray]:
    """`target_arrays` as `scorer` reads them: a mask metric averages its per-case column over the cases it selects
    (`metrics.segmentation.CaseAverage`), the others are left unknown."""
    if not target.target_kind.per_case:
        return target_arrays(predictions, target, images)
    labels, values = target_arrays(predictions, target, images, scorer.case_value)
    labels[~scorer.selects(labels, values)] = np.nan
    return labels, values


@dataclass(frozen=True)
class SplitResamples:
    """The test split as the bootstrap sees it: the seeds, the test images (sorted ids: the rows of every array) with
    their patients, and the resamples of those patients (or of the images, `BootstrapSpec.unit`). Every run, metric,
    seed and target scored on one `SplitResamples` shares its resamples, so their resampled values are paired."""

    seeds: list[int]
    images: pd.Index
    patients: np.ndarray
    resampler: ClusterBootstrap

    @classmethod
    def of(cls, predictions: pd.DataFrame, bootstrap: BootstrapSpec) -> SplitResamples:
        """From long-form predictions (one run's, or several runs' rows of the same split stacked)."""
        seeds = sorted(predictions["seed"].unique().tolist())
        patients = predictions.drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
        clusters = patients.to_numpy() if bootstrap.unit == "patient" else patients.index.to_numpy()
        return cls(seeds, patients.index, patients.to_numpy(), ClusterBootstrap(clusters, bootstrap.resamples, bootstrap.seed))


class RunArrays:
    """One run's predictions as (labels, scores) arrays per seed and target, aligned with the split's images; each
    built on first use and shared by the metrics scored on it."""

    def __init__(self, predictions: pd.DataFrame, split: SplitResamples):
        self.split = split
        self._per_seed = {s: predictions[predictions["seed"] == s] for s in split.seeds}
        self._arrays: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def arrays(self, scorer, seed: int, target: TargetSpec) -> tuple[np.ndarray, np.ndarray]:
        """`metric_arrays` of one seed and target (a mask metric reads its own per-case column and cases)."""
        key = (seed, target.name, type(scorer) if target.target_kind.per_case else None)
        if key not in self._arrays:
            self._arrays[key] = metric_arrays(self._per_seed[seed], target, self.split.images, scorer)
        return self._arrays[key]


def metric_values(run: RunArrays, scorer, targets: Sequence[TargetSpec]) -> tuple[np.ndarray, np.ndarray]:
    """One metric of one run: its point values [seeds, targets] and its values under each resample of the run's
    `SplitResamples` [R, seeds, targets]. What `summarize` reports and paired comparisons difference."""
    seeds, resampler = run.split.seeds, run.split.resampler
    arrays = [[run.arrays(scorer, s, t) for t in targets] for s in seeds]
    points = np.array([[_point(scorer, *pair) for pair in row] for row in arrays]).reshape(len(seeds), len(targets))
    samples = np.zeros((len(resampler), len(seeds), len(targets)))
    chunk = max(1, _CHUNK_CELLS // max(1, len(run.split.images)))
    # one BLAS thread: the weighted forms are many small matrix-vector products, which extra threads only slow down
    # on busy cores (accuracy's bootstrap: 1.1 s with 2 threads, 0.74 s with one, on 2 shared cores)
    with threadpool_limits(limits=threads_for("light")):
        for start in range(0, len(resampler), chunk):
            stop = min(len(resampler), start + chunk)
            counts = resampler.image_counts(start, stop)  # [N, stop - start]: the weights of an image are one row
            for i, row in enumerate(arrays):
                for j, (labels, scores) in enumerate(row):
                    rows = _scored_rows(labels, scores)
                    weights = counts.T if rows.all() else counts[rows].T
                    samples[start:stop, i, j] = scorer.resampled(labels[rows], scores[rows], weights)
    return points, samples


def summarize(predictions: pd.DataFrame, targets: Sequence[TargetSpec], metrics_for: Callable[[TargetSpec], Sequence[str]],
              bootstrap: BootstrapSpec) -> dict:
    """`predictions`: columns image_id, patient_id, seed, task, label, score (and `probabilities` for multiclass
    targets; the per-case columns of `metrics.segmentation` for mask structures, each a target here), one split.
    `metrics_for(target)`: the metric names scored on that target."""
    split = SplitResamples.of(predictions, bootstrap)
    run = RunArrays(predictions, split)
    names = list(dict.fromkeys(name for t in targets for name in metrics_for(t)))
    result: dict = {}
    for name in names:
        scorer = registered_metric(name)
        scored = [t for t in targets if name in metrics_for(t)]
        points, samples = metric_values(run, scorer, scored)
        entries = {t.name: _entry(points[:, j], samples[:, :, j], split.seeds, bootstrap) for j, t in enumerate(scored)}
        with np.errstate(invalid="ignore"):
            entries[MACRO] = _entry(points.mean(axis=1), samples.mean(axis=2), split.seeds, bootstrap)
        if getattr(scorer, "averages_cases", False):
            _add_case_spread(entries, scored, split.seeds, lambda s, t: run.arrays(scorer, s, t))
        result[name] = entries
    return result


def _add_case_spread(entries: dict, scored: Sequence[TargetSpec], seeds: list[int],
                     arrays: Callable[[int, TargetSpec], tuple[np.ndarray, np.ndarray]]) -> None:
    """`case_std`: the standard deviation (ddof=1) of the per-case values the metric averages, over the test cases
    it selects, averaged over seeds (RAD-DINO's segmentation tables print "mean (std) over test cases"); the macro
    entry averages the targets' values."""
    spreads = []
    for target in scored:
        per_seed = []
        for s in seeds:
            labels, values = arrays(s, target)
            kept = values[~np.isnan(labels)]
            per_seed.append(np.std(kept, ddof=1) if len(kept) > 1 else np.nan)
        spreads.append(np.mean(per_seed))
        entries[target.name]["case_std"] = _num(spreads[-1])
    entries[MACRO]["case_std"] = _num(np.mean(spreads))


def _point(scorer, labels: np.ndarray, scores: np.ndarray) -> float:
    """The metric over the rows with a known label; NaN when a labelled row has no (finite) score."""
    known = ~np.isnan(labels)
    y, s = labels[known], scores[known]
    if not np.isfinite(s).all():
        return float("nan")
    return scorer.score(y, s)


def _scored_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows this seed scored (a score, or class probabilities) that have a known label."""
    present = ~np.isnan(scores) if scores.ndim == 1 else ~np.isnan(scores).any(axis=1)
    return present & ~np.isnan(labels)


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
