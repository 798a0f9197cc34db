"""Metrics, the clustered bootstrap and the per-seed / bootstrap summary, checked against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrbench.errors import UnknownNameError
from cxrbench.metrics.classification import weighted_curve
from cxrbench.registry import metric, registry
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats import summary as summary_module
from cxrbench.stats.bootstrap import ClusterBootstrap, percentile_interval
from cxrbench.stats.summary import MACRO
from cxrbench.stats.summary import summarize as summarize_targets

SKLEARN = {"auprc": average_precision_score, "auroc": roc_auc_score}
METRICS = ("auprc", "auroc")


def task_metric(name: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """The registered metric on the rows with a known label (NaN when a labelled row has no finite score)."""
    known = ~np.isnan(labels)
    return metric(name).score(labels[known], scores[known]) if np.isfinite(scores[known]).all() else float("nan")


def weighted_curve_metric(name: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The vectorised form over the rows with a known label."""
    known = ~np.isnan(labels)
    return metric(name).weighted(labels[known], scores[known], np.atleast_2d(weights)[:, known])


def summarize(predictions, tasks, metrics, spec):
    """Binary targets, every metric on every target (the layout of the four classification benchmarks)."""
    return summarize_targets(predictions, [TargetSpec(t) for t in tasks], lambda target: list(metrics), spec)


def _tied_data(rng: np.random.Generator, n: int, prevalence: float = 0.3, levels: int = 12, nan_fraction: float = 0.0):
    """Binary labels (optionally with NaNs) and scores on a coarse grid, so that many scores tie."""
    labels = (rng.random(n) < prevalence).astype(np.float64)
    scores = rng.integers(0, levels, n) / levels + 0.05 * labels * rng.integers(0, 3, n)
    if nan_fraction:
        labels[rng.random(n) < nan_fraction] = np.nan
    return labels, scores


# --------------------------------------------------------------------------------------------- task_metric


def test_metric_names():
    assert {"auprc", "auroc", "auroc_ovr", "accuracy", "balanced_accuracy", "mae", "smape", "pearson_r"} <= set(registry().names("metrics"))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("trial", range(5))
def test_task_metric_equals_sklearn_with_ties(metric, trial):
    rng = np.random.default_rng(100 + trial)
    labels, scores = _tied_data(rng, 150 + 37 * trial)
    assert len(np.unique(scores)) < len(scores)  # the data really has ties
    assert task_metric(metric, labels, scores) == pytest.approx(SKLEARN[metric](labels, scores), abs=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_task_metric_excludes_nan_labels(metric):
    rng = np.random.default_rng(7)
    labels, scores = _tied_data(rng, 300, nan_fraction=0.25)
    known = ~np.isnan(labels)
    assert (~known).sum() > 30
    expected = SKLEARN[metric](labels[known], scores[known])
    assert task_metric(metric, labels, scores) == pytest.approx(expected, abs=1e-12)
    # the NaN rows must be left out, not read as negatives
    as_negative = SKLEARN[metric](np.nan_to_num(labels, nan=0.0), scores)
    assert abs(as_negative - expected) > 1e-6


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("constant", [0.0, 1.0])
def test_task_metric_one_class_is_nan(metric, constant):
    labels = np.full(20, constant)
    labels[:3] = np.nan  # NaNs do not count as a second class
    scores = np.linspace(0.0, 1.0, 20)
    assert math.isnan(task_metric(metric, labels, scores))


@pytest.mark.parametrize("metric", METRICS)
def test_task_metric_all_nan_is_nan(metric):
    assert math.isnan(task_metric(metric, np.full(5, np.nan), np.arange(5.0)))


# ---------------------------------------------------------------------------------- weighted_curve_metric


def _sklearn_weighted(metric: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    known = ~np.isnan(labels)
    y, s = labels[known], scores[known]
    out = []
    for row in np.atleast_2d(weights):
        w = row[known]
        if (w * y).sum() <= 0 or (w * (1 - y)).sum() <= 0:
            out.append(np.nan)
        else:
            out.append(SKLEARN[metric](y, s, sample_weight=w))
    return np.array(out)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("trial", range(4))
def test_weighted_curve_metric_equals_sklearn_sample_weight(metric, trial):
    rng = np.random.default_rng(1000 + trial)
    n = 120 + 40 * trial
    labels, scores = _tied_data(rng, n, prevalence=0.25, nan_fraction=0.1)
    weights = np.concatenate(
        [
            rng.integers(0, 4, size=(40, n)),  # integer weights, many zeros
            rng.multinomial(n, np.full(n, 1.0 / n), size=40),  # bootstrap-like counts
            np.ones((1, n)),  # the unweighted metric
        ]
    ).astype(np.float64)
    got = weighted_curve_metric(metric, labels, scores, weights)
    expected = _sklearn_weighted(metric, labels, scores, weights)
    assert got.shape == (len(weights),)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # the all-ones row is the plain metric
    assert got[-1] == pytest.approx(task_metric(metric, labels, scores), abs=1e-9)


@pytest.mark.parametrize("metric", METRICS)
def test_weighted_curve_metric_fractional_weights(metric):
    rng = np.random.default_rng(5)
    labels, scores = _tied_data(rng, 200)
    weights = rng.random((20, 200)) * (rng.random((20, 200)) > 0.2)
    np.testing.assert_allclose(
        weighted_curve_metric(metric, labels, scores, weights), _sklearn_weighted(metric, labels, scores, weights), atol=1e-9
    )


@pytest.mark.parametrize("metric", METRICS)
def test_weighted_curve_metric_zero_weight_tie_groups(metric):
    """A whole tie group (and the highest-scored items) carrying zero weight must not change the result."""
    labels = np.array([1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1], dtype=float)
    scores = np.array([0.9, 0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.3, 0.3, 0.1, 0.95])
    weights = np.array(
        [
            [0, 0, 1, 2, 1, 1, 0, 3, 1, 1, 2, 0],
            [1, 1, 0, 0, 2, 1, 1, 1, 0, 0, 1, 0],
            [0, 2, 0, 1, 0, 0, 0, 0, 3, 1, 1, 0],
        ],
        dtype=float,
    )
    np.testing.assert_allclose(
        weighted_curve_metric(metric, labels, scores, weights), _sklearn_weighted(metric, labels, scores, weights), atol=1e-12
    )


@pytest.mark.parametrize("metric", METRICS)
def test_weighted_curve_metric_undefined_rows_are_nan(metric):
    labels = np.array([1, 1, 0, 0, np.nan, 1, 0])
    scores = np.array([0.9, 0.4, 0.5, 0.1, 0.7, 0.6, 0.6])
    weights = np.array(
        [
            [0, 0, 1, 2, 5, 0, 1],  # no weighted positive (the NaN-labelled row does not count)
            [1, 2, 0, 0, 5, 1, 0],  # no weighted negative
            [0, 0, 0, 0, 9, 0, 0],  # only the NaN-labelled item
            [1, 1, 1, 1, 0, 1, 1],  # defined
        ],
        dtype=float,
    )
    got = weighted_curve_metric(metric, labels, scores, weights)
    assert np.isnan(got[:3]).all()
    assert got[3] == pytest.approx(task_metric(metric, labels, scores), abs=1e-12)


def test_weighted_curve_metric_single_row_and_unknown_metric():
    rng = np.random.default_rng(3)
    labels, scores = _tied_data(rng, 50)
    one = weighted_curve_metric("auroc", labels, scores, np.ones(50))
    assert one.shape == (1,)
    assert one[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(UnknownNameError, match="Unknown metric 'f1'"):
        weighted_curve_metric("f1", labels, scores, np.ones(50))
    assert np.allclose(weighted_curve("auroc", labels, scores, np.ones(50)), one)


# -------------------------------------------------------------------------------------- ClusterBootstrap


def _clusters(rng: np.random.Generator, n_clusters: int) -> np.ndarray:
    sizes = rng.integers(1, 4, n_clusters)
    ids = np.repeat([f"P{c:04d}" for c in rng.permutation(n_clusters)], sizes)
    return ids[rng.permutation(len(ids))]  # images of a cluster are not contiguous


def test_cluster_bootstrap_images_of_a_cluster_share_weights():
    rng = np.random.default_rng(11)
    clusters = _clusters(rng, 60)
    boot = ClusterBootstrap(clusters, resamples=300, seed=4)
    weights = boot.weights()
    assert weights.shape == (300, len(clusters))
    assert len(boot) == 300
    assert weights.dtype == np.float64
    multi = 0
    for cluster in np.unique(clusters):
        columns = weights[:, clusters == cluster]
        multi += columns.shape[1] > 1
        assert (columns == columns[:, :1]).all(), cluster
    assert multi > 10  # several clusters really own more than one image
    # a cluster that is drawn k times gives each of its images weight k, so the images are not independent
    first = clusters == np.unique(clusters)[0]
    assert not (weights[:, first] == 0).all() and not (weights[:, first] == 1).all()


def test_cluster_bootstrap_draws_n_clusters_per_row():
    rng = np.random.default_rng(12)
    clusters = _clusters(rng, 45)
    codes = np.unique(clusters)
    boot = ClusterBootstrap(clusters, resamples=500, seed=9)
    assert boot.counts.shape == (500, len(codes))
    assert (boot.counts.sum(axis=1) == len(codes)).all()
    # the same holds when read back from the image weights: one representative image per cluster
    weights = boot.weights()
    representative = np.array([np.flatnonzero(clusters == c)[0] for c in codes])
    assert (weights[:, representative].sum(axis=1) == len(codes)).all()
    sizes = np.array([(clusters == c).sum() for c in codes])
    np.testing.assert_array_equal(weights.sum(axis=1), boot.counts @ sizes)
    # every cluster is equally likely: mean count 1 per resample
    np.testing.assert_allclose(boot.counts.mean(axis=0), 1.0, atol=0.2)


def test_cluster_bootstrap_weight_blocks_match_full_matrix():
    clusters = _clusters(np.random.default_rng(13), 30)
    boot = ClusterBootstrap(clusters, resamples=50, seed=1)
    full = boot.weights()
    np.testing.assert_array_equal(boot.weights(10, 23), full[10:23])
    np.testing.assert_array_equal(boot.weights(40), full[40:])


def test_cluster_bootstrap_is_seeded():
    clusters = _clusters(np.random.default_rng(14), 40)
    a = ClusterBootstrap(clusters, resamples=100, seed=123)
    b = ClusterBootstrap(clusters, resamples=100, seed=123)
    c = ClusterBootstrap(clusters, resamples=100, seed=124)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.weights(), b.weights())
    assert not np.array_equal(a.counts, c.counts)


def test_cluster_bootstrap_with_integer_clusters_and_unique_images():
    clusters = np.arange(25)
    boot = ClusterBootstrap(clusters, resamples=200, seed=0)
    np.testing.assert_array_equal(boot.weights(), boot.counts)  # one image per cluster, sorted ids
    assert (boot.weights().sum(axis=1) == 25).all()


# ------------------------------------------------------------------------------------ percentile_interval


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.5])
def test_percentile_interval_equals_numpy(confidence):
    samples = np.random.default_rng(21).normal(size=1001)
    tail = (1 - confidence) / 2 * 100
    expected = np.percentile(samples, [tail, 50, 100 - tail])
    assert percentile_interval(samples, confidence) == pytest.approx(tuple(expected), abs=1e-15)


def test_percentile_interval_ignores_nan():
    rng = np.random.default_rng(22)
    finite = rng.random(400)
    samples = finite.copy()
    samples[::7] = np.nan
    low, median, high = percentile_interval(samples, 0.95)
    kept = samples[~np.isnan(samples)]
    assert (low, median, high) == pytest.approx(tuple(np.percentile(kept, [2.5, 50, 97.5])), abs=1e-15)
    assert all(np.isfinite([low, median, high]))
    assert low < median < high


def test_percentile_interval_all_nan():
    assert all(math.isnan(v) for v in percentile_interval(np.full(10, np.nan), 0.95))
    assert all(math.isnan(v) for v in percentile_interval(np.array([]), 0.95))


# ----------------------------------------------------------------------------------------------- summarize

TASKS = ("Effusion", "Nodule")


def _predictions(n_images: int, seeds=(0, 1, 2), tasks=TASKS, nan_fraction: float = 0.0, rng_seed: int = 0) -> pd.DataFrame:
    """Long-form predictions; patients own 1-3 images; labels belong to images, scores vary by seed."""
    rng = np.random.default_rng(rng_seed)
    patient_of = []
    patient = 0
    while len(patient_of) < n_images:
        patient_of.extend([f"pat{patient:03d}"] * int(rng.integers(1, 4)))
        patient += 1
    patient_of = np.array(patient_of[:n_images])
    image_ids = np.array([f"img{i:04d}" for i in rng.permutation(n_images)])  # image order unrelated to patients
    labels = {}
    for t, task in enumerate(tasks):
        # patient-level risk: the images of one patient tend to share the label
        risk = {p: rng.random() for p in np.unique(patient_of)}
        lab = np.array([float(rng.random() < (0.15 + 0.5 * risk[p]) * (0.5 + 0.3 * t)) for p in patient_of])
        if nan_fraction:
            lab[rng.random(n_images) < nan_fraction] = np.nan
        labels[task] = lab
    rows = []
    for s in seeds:
        for task in tasks:
            lab = labels[task]
            score = np.round(np.nan_to_num(lab, nan=0.5) * 1.2 + rng.normal(scale=1.0, size=n_images), 1)  # ties
            rows.append(
                pd.DataFrame(
                    {"image_id": image_ids, "patient_id": patient_of, "seed": s, "task": task, "label": lab, "score": score}
                )
            )
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)


def _sklearn_point(predictions: pd.DataFrame, metric: str, seed: int, task: str) -> float:
    part = predictions[(predictions["seed"] == seed) & (predictions["task"] == task)]
    part = part[part["label"].notna()]
    return float(SKLEARN[metric](part["label"], part["score"]))


@pytest.fixture(scope="module")
def medium():
    predictions = _predictions(200, nan_fraction=0.05)
    result = summarize(predictions, TASKS, METRICS, BootstrapSpec(resamples=500, seed=3))
    return predictions, result


def test_summarize_structure(medium):
    predictions, result = medium
    assert set(result) == set(METRICS)
    for metric in METRICS:
        assert set(result[metric]) == {*TASKS, MACRO}
        for entry in result[metric].values():
            assert set(entry["per_seed"]) == {0, 1, 2}
            assert entry["bootstrap_undefined"] == 0


@pytest.mark.parametrize("metric", METRICS)
def test_summarize_per_seed_mean_std(medium, metric):
    predictions, result = medium
    for task in TASKS:
        entry = result[metric][task]
        expected = [_sklearn_point(predictions, metric, s, task) for s in (0, 1, 2)]
        assert [entry["per_seed"][s] for s in (0, 1, 2)] == pytest.approx(expected, abs=1e-9)
        assert entry["mean"] == pytest.approx(np.mean(expected), abs=1e-12)
        assert entry["std"] == pytest.approx(np.std(expected, ddof=1), abs=1e-12)
        assert entry["std"] > 0


@pytest.mark.parametrize("metric", METRICS)
def test_summarize_macro(medium, metric):
    predictions, result = medium
    macro = result[metric][MACRO]
    per_seed_macro = []
    for s in (0, 1, 2):
        value = np.mean([result[metric][task]["per_seed"][s] for task in TASKS])
        assert macro["per_seed"][s] == pytest.approx(value, abs=1e-12)
        per_seed_macro.append(value)
    assert macro["mean"] == pytest.approx(np.mean(per_seed_macro), abs=1e-12)
    assert macro["std"] == pytest.approx(np.std(per_seed_macro, ddof=1), abs=1e-12)


@pytest.mark.parametrize("metric", METRICS)
def test_summarize_ci_brackets_median_and_point(medium, metric):
    _, result = medium
    for name, entry in result[metric].items():
        assert entry["ci_low"] < entry["bootstrap_median"] < entry["ci_high"], name
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"], name
        assert entry["ci_high"] - entry["ci_low"] < 0.5, name  # a CI, not the whole unit interval
        assert abs(entry["bootstrap_median"] - entry["mean"]) < 0.05, name


def test_summarize_does_not_depend_on_row_order_or_chunking(medium, monkeypatch):
    predictions, result = medium
    shuffled = predictions.sample(frac=1.0, random_state=99).reset_index(drop=True)
    monkeypatch.setattr(summary_module, "_CHUNK_CELLS", 200 * 37)  # chunks of 37 resamples: 500 is not a multiple
    again = summarize(shuffled, TASKS, METRICS, BootstrapSpec(resamples=500, seed=3))
    for metric in METRICS:
        for name in (*TASKS, MACRO):
            for key in ("mean", "std", "ci_low", "ci_high", "bootstrap_median"):
                assert again[metric][name][key] == pytest.approx(result[metric][name][key], abs=1e-12), (metric, name, key)


def test_summarize_bootstrap_seed_changes_ci_only(medium):
    predictions, result = medium
    other = summarize(predictions, TASKS, METRICS, BootstrapSpec(resamples=500, seed=4))
    entry, other_entry = result["auprc"][TASKS[0]], other["auprc"][TASKS[0]]
    assert other_entry["mean"] == entry["mean"]
    assert other_entry["ci_low"] != entry["ci_low"] or other_entry["ci_high"] != entry["ci_high"]


def _brute_force_samples(predictions: pd.DataFrame, metric: str, counts: np.ndarray, codes: np.ndarray, unit: str):
    """[R, seeds, tasks] metric of each resample, by materialising the resampled data set and calling sklearn."""
    seeds = sorted(predictions["seed"].unique())
    column = "patient_id" if unit == "patient" else "image_id"
    code_index = {c: i for i, c in enumerate(codes)}
    out = np.full((len(counts), len(seeds), len(TASKS)), np.nan)
    for r, row in enumerate(counts):
        for i, s in enumerate(seeds):
            for t, task in enumerate(TASKS):
                part = predictions[(predictions["seed"] == s) & (predictions["task"] == task) & predictions["label"].notna()]
                times = np.array([row[code_index[c]] for c in part[column]])
                resampled = part.loc[part.index.repeat(times)]
                y = resampled["label"].to_numpy()
                if len(np.unique(y)) == 2:
                    out[r, i, t] = SKLEARN[metric](y, resampled["score"].to_numpy())
    return out


@pytest.mark.parametrize("unit", ["patient", "image"])
@pytest.mark.parametrize("metric", METRICS)
def test_summarize_bootstrap_equals_brute_force(unit, metric):
    """Every resample of summarize is a draw of whole patients (or images), shared by all seeds and tasks."""
    predictions = _predictions(36, seeds=(0, 1), nan_fraction=0.1, rng_seed=5)
    spec = BootstrapSpec(resamples=40, unit=unit, seed=17)
    result = summarize(predictions, TASKS, [metric], spec)

    images = predictions.drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
    clusters = images.to_numpy() if unit == "patient" else images.index.to_numpy()
    boot = ClusterBootstrap(clusters, spec.resamples, spec.seed)
    codes = np.unique(clusters)
    if unit == "patient":
        assert len(codes) < len(images)  # patients really own several images

    samples = _brute_force_samples(predictions, metric, boot.counts, codes, unit)
    # one resample recomputed by hand with sklearn sample_weight (images of a patient get the patient's count)
    r = 3
    part = predictions[(predictions["seed"] == 1) & (predictions["task"] == TASKS[1]) & predictions["label"].notna()]
    key = part["patient_id"] if unit == "patient" else part["image_id"]
    weight = np.array([boot.counts[r, np.searchsorted(codes, c)] for c in key], dtype=float)
    assert samples[r, 1, 1] == pytest.approx(SKLEARN[metric](part["label"], part["score"], sample_weight=weight), abs=1e-9)

    for t, task in enumerate(TASKS):
        expected = percentile_interval(samples[:, :, t].mean(axis=1), spec.confidence)
        entry = result[metric][task]
        assert (entry["ci_low"], entry["bootstrap_median"], entry["ci_high"]) == pytest.approx(expected, abs=1e-9)
        assert entry["bootstrap_undefined"] == int(np.isnan(samples[:, :, t].mean(axis=1)).sum())
    expected = percentile_interval(samples.mean(axis=2).mean(axis=1), spec.confidence)
    macro = result[metric][MACRO]
    assert (macro["ci_low"], macro["bootstrap_median"], macro["ci_high"]) == pytest.approx(expected, abs=1e-9)


def test_summarize_patient_unit_differs_from_image_unit():
    predictions = _predictions(120, rng_seed=8)
    by_patient = summarize(predictions, TASKS, ["auroc"], BootstrapSpec(resamples=200, unit="patient", seed=0))
    by_image = summarize(predictions, TASKS, ["auroc"], BootstrapSpec(resamples=200, unit="image", seed=0))
    a, b = by_patient["auroc"][MACRO], by_image["auroc"][MACRO]
    assert a["mean"] == b["mean"]
    assert (a["ci_low"], a["ci_high"]) != (b["ci_low"], b["ci_high"])


def test_summarize_single_seed_has_no_std():
    predictions = _predictions(80, seeds=(4,), rng_seed=2)
    result = summarize(predictions, TASKS, ["auprc"], BootstrapSpec(resamples=50))
    entry = result["auprc"][TASKS[0]]
    assert entry["std"] is None
    assert list(entry["per_seed"]) == [4]
    assert entry["mean"] == pytest.approx(_sklearn_point(predictions, "auprc", 4, TASKS[0]), abs=1e-9)


def test_summarize_one_class_task_is_none():
    predictions = _predictions(60, seeds=(0, 1), rng_seed=3)
    predictions.loc[predictions["task"] == TASKS[0], "label"] = 0.0
    result = summarize(predictions, TASKS, ["auroc"], BootstrapSpec(resamples=30))
    entry = result["auroc"][TASKS[0]]
    assert entry["mean"] is None and entry["ci_low"] is None and entry["bootstrap_median"] is None
    assert entry["bootstrap_undefined"] == 30
    assert result["auroc"][MACRO]["mean"] is None  # the macro average over an undefined task is undefined
    assert result["auroc"][TASKS[1]]["mean"] is not None


def test_resamples_left_out_of_a_ci_are_reported_with_the_table():
    from cxrbench.tables.runs import bootstrap_caveats

    predictions = _predictions(60, seeds=(0, 1), rng_seed=3)
    metrics = {"bootstrap": {"resamples": 30}, "metrics": summarize(predictions, TASKS, ["auroc"], BootstrapSpec(resamples=30))}
    assert bootstrap_caveats(metrics) == []
    predictions.loc[predictions["task"] == TASKS[0], "label"] = 0.0
    metrics["metrics"] = summarize(predictions, TASKS, ["auroc"], BootstrapSpec(resamples=30))
    (caveat,) = bootstrap_caveats(metrics)
    assert caveat.startswith("AUROC: up to 30 of 30 bootstrap resamples") and f"({TASKS[0]}, Macro)" in caveat
