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

from cxrbench.metrics.base import Metric
from cxrbench.metrics.points import MetricContext, PointMetric
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


def metric_values(run: RunArrays, scorer, targets: Sequence[TargetSpec],
                  bind: Callable[[int, TargetSpec], Metric] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One metric of one run: its point values [seeds, targets] and its values under each resample of the run's
    `SplitResamples` [R, seeds, targets]. What `summarize` reports and paired comparisons difference. `bind(seed,
    target)`: the metric to score that cell with, where it depends on the seed (a validation-chosen threshold)."""
    cells = [[(scorer if bind is None else bind(s, t), *run.arrays(scorer, s, t)) for t in targets] for s in run.split.seeds]
    return resampled_values(run.split, cells, len(targets))


def resampled_values(split: SplitResamples, cells: list[list[tuple]], columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Point values [seeds, columns] and resampled values [R, seeds, columns] of `cells[seed][column]` = (metric,
    labels, scores)."""
    seeds, resampler = split.seeds, split.resampler
    points = np.array([[_point(*cell) for cell in row] for row in cells]).reshape(len(seeds), columns)
    samples = np.zeros((len(resampler), len(seeds), columns))
    chunk = max(1, _CHUNK_CELLS // max(1, len(split.images)))
    # one BLAS thread: the weighted forms are many small matrix-vector products, which extra threads only slow down
    # on busy cores (accuracy's bootstrap: 1.1 s with 2 threads, 0.74 s with one, on 2 shared cores)
    with threadpool_limits(limits=threads_for("light")):
        for start in range(0, len(resampler), chunk):
            stop = min(len(resampler), start + chunk)
            counts = resampler.image_counts(start, stop)  # [N, stop - start]: the weights of an image are one row
            for i, row in enumerate(cells):
                for j, (scorer, labels, scores) in enumerate(row):
                    rows = _scored_rows(labels, scores)
                    weights = counts.T if rows.all() else counts[rows].T
                    samples[start:stop, i, j] = scorer.resampled(labels[rows], scores[rows], weights)
    return points, samples


def summarize(predictions: pd.DataFrame, targets: Sequence[TargetSpec], metrics_for: Callable[[TargetSpec], Sequence[str]],
              bootstrap: BootstrapSpec, context: MetricContext | None = None) -> dict:
    """`predictions`: columns image_id, patient_id, seed, task, label, score (and `probabilities` for multiclass
    targets; the per-case columns of `metrics.segmentation` for mask structures, each a target here), one split.
    `metrics_for(target)`: the metric names scored on that target. `context`: what metrics read at points need
    besides the predictions (`cxrbench.metrics.points`); without it their context-bound points are left out."""
    split = SplitResamples.of(predictions, bootstrap)
    run = RunArrays(predictions, split)
    names = list(dict.fromkeys(name for t in targets for name in metrics_for(t)))
    result: dict = {}
    for name in names:
        scorer = registered_metric(name)
        scored = [t for t in targets if name in metrics_for(t)]
        if isinstance(scorer, PointMetric):  # one metric per point, NAME@POINT
            result.update(_point_summaries(run, scorer, scored, context, bootstrap))
            continue
        points, samples = metric_values(run, scorer, scored)
        entries = _entries(points, samples, scored, split.seeds, bootstrap)
        if getattr(scorer, "averages_cases", False):
            _add_case_spread(entries, scored, split.seeds, lambda s, t: run.arrays(scorer, s, t))
        result[name] = entries
    return result


def stored_metrics_for(stored: dict) -> Callable[[TargetSpec], list[str]]:
    """The metric names a stored `metrics` block scored on each target: those keyed by the target, and the joint ones
    (keyed by macro alone, e.g. subset accuracy) on every target of their kinds. What recomputing a run asks for."""
    joint = {m for m, entries in stored.items() if set(entries) == {MACRO}}
    return lambda t: [m for m in stored if t.name in stored[m] or m in joint and t.kind in registered_metric(m).kinds]


def _entries(points: np.ndarray, samples: np.ndarray, scored: Sequence[TargetSpec], seeds: list[int],
             bootstrap: BootstrapSpec) -> dict:
    """Each target's summary and their macro average's."""
    entries = {t.name: _entry(points[:, j], samples[:, :, j], seeds, bootstrap) for j, t in enumerate(scored)}
    with np.errstate(invalid="ignore"):
        entries[MACRO] = _entry(points.mean(axis=1), samples.mean(axis=2), seeds, bootstrap)
    return entries


def _point_summaries(run: RunArrays, scorer: PointMetric, scored: Sequence[TargetSpec], context: MetricContext | None,
                     bootstrap: BootstrapSpec) -> dict:
    """NAME@POINT -> summaries, for each point `context` serves: per target and macro over the point's member targets,
    or (a joint metric, scoring all targets of an image at once) the macro entry alone."""
    seeds, result = run.split.seeds, {}
    for point in scorer.points_for(context):
        metric = scorer.at_point(point)
        members = metric.members(scored, context)
        if not members:
            continue
        if metric.joint:
            cells = [[(metric.bind(context, s, members), *_joint_arrays(run, metric, s, members))] for s in seeds]
            points, samples = resampled_values(run.split, cells, 1)
            result[metric.name] = {MACRO: _entry(points[:, 0], samples[:, :, 0], seeds, bootstrap)}
        else:
            points, samples = metric_values(run, metric, members, lambda s, t: metric.bind(context, s, (t,)))
            result[metric.name] = _entries(points, samples, members, seeds, bootstrap)
    return result


def _joint_arrays(run: RunArrays, metric, seed: int, targets: Sequence[TargetSpec]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores [N, T] of one seed's targets, side by side."""
    pairs = [run.arrays(metric, seed, t) for t in targets]
    return np.column_stack([p[0] for p in pairs]), np.column_stack([p[1] for p in pairs])


def point_metric_blocks(summary: dict, targets: Sequence[TargetSpec], context: MetricContext | None) -> dict:
    """`{"metric_points": {metric: block}}` for each metric read at points in `summary` that keeps something beside
    its summaries (`PointMetric.stored`: e.g. the prevalence bins, their edges and members); empty without one."""
    blocks = {}
    for name in dict.fromkeys(key.partition("@")[0] for key in summary if "@" in key):
        scorer = registered_metric(name)
        block = scorer.stored(targets, context) if isinstance(scorer, PointMetric) else None
        if block is not None:
            blocks[name] = block
    return {"metric_points": blocks} if blocks else {}


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
    """The metric over the rows with a known label (every label, for a joint metric's [N, T]); NaN when a labelled
    row has no (finite) score."""
    known = _known(labels)
    y, s = labels[known], scores[known]
    if not np.isfinite(s).all():
        return float("nan")
    return scorer.score(y, s)


def _scored_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows this seed scored (a score, or class probabilities) that have a known label."""
    present = ~np.isnan(scores) if scores.ndim == 1 else ~np.isnan(scores).any(axis=1)
    return present & _known(labels)


def _known(labels: np.ndarray) -> np.ndarray:
    """Rows whose label is known: [N] labels, or [N, T] of a joint metric (every target known)."""
    return ~np.isnan(labels) if labels.ndim == 1 else ~np.isnan(labels).any(axis=1)


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
