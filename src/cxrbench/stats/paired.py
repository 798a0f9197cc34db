"""Paired comparisons of two encoders scored on the same test patients: is A's metric different from B's?

Why paired: both runs score the same images of the same patients, so most of what makes one test split easier than
another is shared; the difference A - B varies much less across resamples than either metric does, and two CIs that
overlap say little about it. So the difference is bootstrapped with the same patient resamples for both runs (the
summary's `SplitResamples`: every seed, target and run drawn from one `ClusterBootstrap`), each resample giving the
seed-mean metric of A minus that of B.

What each test measures (they answer different questions; a table should say which one it shows):

- the paired bootstrap CI and p (`bootstrap_p_value`): uncertainty from sampling the TEST SET. The training seeds are
  held fixed (their mean is the statistic), and patients are resampled, so images of one patient move together. It
  says whether another test set of the same population would likely reverse the difference of these trained heads.
- DeLong's test (`delong_test`, AUROC on binary targets): also test-set sampling, per seed, analytic instead of
  resampled, clustered by patient (Obuchowski 1997); the seeds' p-values are combined sign-aware (`combine_seed_p`).
- the t-test over seeds (`seed_ttest`), the comparison RayDINO reports: uncertainty from TRAINING (head
  initialisation, data order, and in k-fold benchmarks the fold), the test set held fixed. With few seeds it has
  little power, and it says nothing about a new test set.

`adjust_p_values` corrects a table of them for multiple comparisons.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm, ttest_ind, ttest_rel

from cxrbench.errors import CxrbenchError, DataError
from cxrbench.metrics.classification import AUROC
from cxrbench.metrics.points import PointMetric
from cxrbench.registry import metric as registered_metric
from cxrbench.registry import metric_spec
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.bootstrap import percentile_interval
from cxrbench.stats.delong import DeLongResult, delong_test
from cxrbench.stats.multiplicity import adjust_p_values
from cxrbench.stats.summary import MACRO, RunArrays, SplitResamples, metric_values
from cxrbench.stats.summary import _num

__all__ = ["DeLongResult", "PairedDifference", "adjust_p_values", "bootstrap_p_value", "combine_seed_p", "delong_test",
           "paired_differences", "seed_ttest"]

TTESTS = ("independent", "paired", "welch")


@dataclass(frozen=True)
class PairedDifference:
    """One metric on one target (or the macro average over the targets) of run A against run B."""

    metric: str
    target: str  # a target name, or "macro" (cxrbench.stats.summary.MACRO)
    mean_a: float | None  # seed-mean metric of A, as `summarize` reports it for A's run
    mean_b: float | None
    diff: float | None  # mean_a - mean_b
    ci_low: float | None  # percentile CI of the paired bootstrap difference
    ci_high: float | None
    p_bootstrap: float | None  # two-sided bootstrap p of diff == 0 (`bootstrap_p_value`)
    p_delong: float | None  # AUROC on a binary target: the seeds' clustered DeLong p-values combined (`combine_seed_p`)
    p_ttest: float | None  # t-test over seeds; None with fewer than 2 seeds
    seeds: int
    images: int  # test images with a known label for the target (for macro: for any of the targets)
    patients: int  # their patients


def paired_differences(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, targets: Sequence[TargetSpec],
                       metric: str, bootstrap: BootstrapSpec, ttest: str = "independent") -> list[PairedDifference]:
    """`metric` of run A against run B on each target it scores (by kind; others are left out), then the macro average.

    `predictions_a` / `predictions_b`: the long form of `predictions.parquet` (see `summarize`); both must hold the
    same (seed, image) test rows, labels and patients for every scored target (else `DataError`). The bootstrap draws
    the union of both runs' test patients with `bootstrap`'s seed, as `summarize` does for either run alone, so mean_a
    and mean_b are exactly what `summarize` reports, and A's and B's resampled values come from the same resamples.

    p_delong (AUROC, binary targets): DeLong's test on each seed's test rows, clustered by patient, and the seeds'
    p-values combined by `combine_seed_p`. Undefined (None) if any seed's test is. `ttest`: "independent" (Student), "paired" (by seed) or "welch".
    """
    if ttest not in TTESTS:
        raise CxrbenchError(f"Unknown t-test '{ttest}': use one of {', '.join(TTESTS)}.")
    scorer = registered_metric(metric)
    if isinstance(scorer, PointMetric) and not scorer.pairable:
        raise CxrbenchError(f"Paired comparisons of '{metric}' are not supported (it needs each seed's validation "
                            "threshold, or scores all targets at once); compare a fixed point, e.g. fnr@0.3.")
    scored = [t for t in targets if t.kind in metric_spec(metric).kinds]
    if not scored:
        return []
    _check_same_rows(predictions_a, predictions_b, scored)
    columns = ["image_id", "patient_id", "seed"]
    split = SplitResamples.of(pd.concat([predictions_a[columns], predictions_b[columns]], ignore_index=True), bootstrap)
    run_a, run_b = RunArrays(predictions_a, split), RunArrays(predictions_b, split)
    points_a, samples_a = metric_values(run_a, scorer, scored)
    points_b, samples_b = metric_values(run_b, scorer, scored)
    known = np.array([[~np.isnan(run_a.arrays(scorer, s, t)[0]) for s in split.seeds] for t in scored]).any(axis=1)

    def difference(target: str, a: np.ndarray, b: np.ndarray, resampled_a: np.ndarray, resampled_b: np.ndarray,
                   images: np.ndarray, p_delong: float | None) -> PairedDifference:
        mean_a, mean_b = _num(np.mean(a)), _num(np.mean(b))  # as summarize's entry computes its mean
        diff = None if mean_a is None or mean_b is None else mean_a - mean_b
        resampled = resampled_a.mean(axis=1) - resampled_b.mean(axis=1)  # seed means, paired by resample
        low, _, high = percentile_interval(resampled, bootstrap.confidence)
        return PairedDifference(
            metric=metric, target=target, mean_a=mean_a, mean_b=mean_b, diff=diff, ci_low=_num(low), ci_high=_num(high),
            p_bootstrap=None if diff is None else _num(bootstrap_p_value(resampled)), p_delong=p_delong,
            p_ttest=_num(seed_ttest(a, b, ttest)) if len(a) > 1 else None,
            seeds=len(split.seeds), images=int(images.sum()), patients=len(np.unique(split.patients[images])),
        )

    out = []
    for j, target in enumerate(scored):
        delong = _delong_p(run_a, run_b, scorer, target) if isinstance(scorer, AUROC) and target.target_kind.thresholded else None
        out.append(difference(target.name, points_a[:, j], points_b[:, j], samples_a[:, :, j], samples_b[:, :, j],
                              known[j], delong))
    with np.errstate(invalid="ignore"):  # a resample where a target is undefined leaves the macro undefined
        out.append(difference(MACRO, points_a.mean(axis=1), points_b.mean(axis=1), samples_a.mean(axis=2),
                              samples_b.mean(axis=2), known.any(axis=0), None))
    return out


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of a zero difference from its bootstrap resamples d_1..d_B (the finite ones):

        p = min(1, 2 * min(1 + #{d_r <= 0}, 1 + #{d_r >= 0}) / (B + 1))

    the smallest alpha at which 0 falls outside the percentile interval of the d_r (the inversion of the CI this
    module reports). It measures test-set sampling only (see the module doc). The +1 in numerator and denominator
    (Davison & Hinkley 1997, ch. 4) counts the observed sample among the resamples; all it changes here is that p is
    never below 2 / (B + 1), so a finite bootstrap never prints p = 0: with B = 500, nothing under 0.004 can be
    resolved. NaN without finite resamples."""
    finite = differences[np.isfinite(differences)]
    if finite.size == 0:
        return float("nan")
    tail = min((finite <= 0).sum(), (finite >= 0).sum())
    return float(min(1.0, 2.0 * (1 + tail) / (finite.size + 1)))


def combine_seed_p(results: Sequence[DeLongResult]) -> float:
    """One two-sided p-value from per-seed tests of the same pair of models, respecting the sign of each difference.

    Rule: take the direction of the mean difference over seeds; if any seed's difference is zero or points the other
    way, p = 1 (the seeds do not agree on which model is better, so no direction is supported); otherwise p is twice
    the largest one-sided p in that direction, capped at 1. This is an intersection-union test: it rejects only if
    every seed rejects in the same direction, so it keeps its level whatever the dependence between seeds (they share
    the test set). The former rule, the largest two-sided p whatever each sign, could call a difference significant
    when one seed favoured A and another B. NaN if any seed's test is undefined."""
    if not results or any(not np.isfinite(r.p) for r in results):
        return float("nan")
    diffs = np.array([r.diff for r in results])
    direction = np.sign(diffs.mean())
    if direction == 0 or np.any(np.sign(diffs) != direction):
        return 1.0
    one_sided = max(norm.sf(direction * r.z) for r in results)  # z is finite, or infinite with a zero variance
    return float(min(1.0, 2.0 * one_sided))


def seed_ttest(values_a: Sequence[float] | np.ndarray, values_b: Sequence[float] | np.ndarray,
               kind: str = "independent") -> float:
    """p-value of a two-sided t-test of equal means over the seeds' metric values: "independent" (Student,
    `scipy.stats.ttest_ind`), "paired" (seed i of A with seed i of B, `ttest_rel`) or "welch" (unequal variances,
    `ttest_ind(equal_var=False)`). NaN when a side has fewer than 2 values or no spread."""
    if kind not in TTESTS:
        raise CxrbenchError(f"Unknown t-test '{kind}': use one of {', '.join(TTESTS)}.")
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    with warnings.catch_warnings():  # constant inputs: scipy warns, and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind == "paired":
            return float(ttest_rel(a, b).pvalue)
        return float(ttest_ind(a, b, equal_var=kind == "independent").pvalue)


def _delong_p(run_a: RunArrays, run_b: RunArrays, scorer, target: TargetSpec) -> float | None:
    """The seeds' DeLong tests of the target, clustered by patient, combined by `combine_seed_p` (None if any seed's
    is undefined)."""
    results = []
    for seed in run_a.split.seeds:
        labels, scores_a = run_a.arrays(scorer, seed, target)
        _, scores_b = run_b.arrays(scorer, seed, target)
        rows = ~np.isnan(labels) & np.isfinite(scores_a) & np.isfinite(scores_b)
        results.append(delong_test(labels[rows], scores_a[rows], scores_b[rows], clusters=run_a.split.patients[rows]))
    return _num(combine_seed_p(results))


def _check_same_rows(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, targets: Sequence[TargetSpec]) -> None:
    """Both runs hold the same (seed, image) rows of every target, with the same labels and patients."""
    keys = ["task", "seed", "image_id"]
    names = [t.name for t in targets]
    a = predictions_a.loc[predictions_a["task"].isin(names), [*keys, "label", "patient_id"]]
    b = predictions_b.loc[predictions_b["task"].isin(names), [*keys, "label", "patient_id"]]
    both = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    alone = both["_merge"] != "both"
    advice = ("A paired comparison scores both encoders on the same test images: both runs must share the benchmark's "
              "split (same seeds, same dataset options).")
    if alone.any():
        where = sorted(both.loc[alone, "task"].unique().tolist())
        raise DataError(f"The two runs' predictions do not cover the same test rows: {int(alone.sum())} (seed, image) "
                        f"rows of {', '.join(where)} are in one run and not the other (A has {len(a)} rows, B {len(b)}). "
                        + advice)
    labels_a, labels_b = both["label_a"].to_numpy(np.float64), both["label_b"].to_numpy(np.float64)
    relabelled = ~((labels_a == labels_b) | (np.isnan(labels_a) & np.isnan(labels_b)))
    moved = both["patient_id_a"].to_numpy() != both["patient_id_b"].to_numpy()
    if relabelled.any() or moved.any():
        raise DataError(f"The two runs' predictions hold the same test rows but {int(relabelled.sum())} differ in their "
                        f"label and {int(moved.sum())} in their patient. " + advice)

