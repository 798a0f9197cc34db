"""Metrics read at points (issue 23): FNR / FPR and subset accuracy at thresholds, selective-prediction AUROC at
referral rates, macro AUPRC per training-prevalence bin. Each is checked against an independent computation
(scikit-learn's confusion matrix and multilabel accuracy, a hand-written referral over sorted uncertainties, a direct
count on the training rows), and each vectorised bootstrap form against the metric on the resampled rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, confusion_matrix, roc_auc_score

from cxrbench.errors import UnknownNameError
from cxrbench.metrics.points import MetricContext, train_prevalence
from cxrbench.registry import metric, metric_spec
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.bootstrap import ClusterBootstrap, percentile_interval
from cxrbench.stats.summary import MACRO, point_metric_blocks, stored_metrics_for, summarize

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
RATES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)


def _binary(rng: np.random.Generator, n: int, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities on a coarse grid (ties, and scores equal to thresholds and to 0.5)."""
    labels = (rng.random(n) < prevalence).astype(np.float64)
    scores = np.clip(rng.integers(0, 11, n) / 10 + 0.2 * labels * rng.random(n).round(1), 0, 1)
    return labels, scores


def _confusion_rates(labels, scores, threshold) -> tuple[float, float]:
    tn, fp, fn, tp = confusion_matrix(labels.astype(int), (scores >= threshold).astype(int), labels=[0, 1]).ravel()
    return fn / (fn + tp), fp / (fp + tn)


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("trial", range(3))
def test_fnr_fpr_equal_sklearn_confusion_matrix(threshold, trial):
    labels, scores = _binary(np.random.default_rng(trial), 150)
    fnr, fpr = _confusion_rates(labels, scores, threshold)
    assert metric(f"fnr@{threshold}").score(labels, scores) == pytest.approx(fnr, abs=1e-12)
    assert metric(f"fpr@{threshold}").score(labels, scores) == pytest.approx(fpr, abs=1e-12)


def test_fnr_undefined_without_positives_and_fpr_without_negatives():
    assert math.isnan(metric("fnr@0.5").score(np.zeros(5), np.linspace(0, 1, 5)))
    assert math.isnan(metric("fpr@0.5").score(np.ones(5), np.linspace(0, 1, 5)))


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_subset_accuracy_equals_sklearn_multilabel_accuracy(threshold):
    rng = np.random.default_rng(4)
    labels = np.column_stack([_binary(rng, 120, p)[0] for p in (0.2, 0.4, 0.6)])
    scores = np.clip(0.5 * labels + rng.integers(0, 11, labels.shape) / 20, 0, 1)
    expected = accuracy_score(labels.astype(int), (scores >= threshold).astype(int))
    assert 0 < expected < 1
    assert metric(f"subset_accuracy@{threshold}").score(labels, scores) == pytest.approx(expected, abs=1e-12)


def _direct_selective_auroc(labels: np.ndarray, scores: np.ndarray, rate: float) -> float:
    """The referral written out: sort by uncertainty (distance to 0.5, ties by row), let the oracle answer the first
    floor(rate * n) with their labels, then the Mann-Whitney AUROC over every positive-negative pair."""
    n = len(labels)
    order = sorted(range(n), key=lambda i: (abs(scores[i] - 0.5), i))
    referred = set(order[: int(math.floor(rate * n + 1e-9))])
    answered = [labels[i] if i in referred else scores[i] for i in range(n)]
    positives = [answered[i] for i in range(n) if labels[i] == 1]
    negatives = [answered[i] for i in range(n) if labels[i] == 0]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("trial", range(3))
def test_selective_auroc_equals_direct_referral(rate, trial):
    labels, scores = _binary(np.random.default_rng(10 + trial), 97)
    value = metric(f"selective_auroc@{rate:g}").score(labels, scores)
    assert value == pytest.approx(_direct_selective_auroc(labels, scores, rate), abs=1e-12)
    if rate == 0:
        assert value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_selective_auroc_rises_with_referral():
    labels, scores = _binary(np.random.default_rng(3), 300)
    curve = [metric(f"selective_auroc@{rate:g}").score(labels, scores) for rate in RATES]
    assert all(a <= b + 1e-12 for a, b in zip(curve, curve[1:])) and curve[-1] > curve[0]


WEIGHTED = ["fnr@0.3", "fpr@0.2", "fnr@0.5", "selective_auroc@0", "selective_auroc@0.1", "selective_auroc@0.25",
            "subset_accuracy@0.1", "subset_accuracy@0.4"]


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_form_equals_loop_on_the_same_resamples(name):
    """Patient-clustered resamples (images of a patient share a weight): the vectorised form equals the metric on
    each resample's materialised rows (`Metric.resampled`'s fallback loop) to 1e-9."""
    rng = np.random.default_rng(7)
    n = 80
    if name.startswith("subset"):
        labels = np.column_stack([_binary(rng, n, p)[0] for p in (0.3, 0.5)])
        scores = np.clip(0.4 * labels + rng.integers(0, 11, labels.shape) / 20, 0, 1)
    else:
        labels, scores = _binary(rng, n)
    patients = rng.integers(0, 30, n)
    weights = ClusterBootstrap(patients, 60, seed=1).image_counts().T  # [R, N] int32, a transposed view
    scorer = metric(name)
    fast = scorer.weighted(labels, scores, weights)
    loop = np.array([scorer.score(labels[np.repeat(np.arange(n), w)], scores[np.repeat(np.arange(n), w)])
                     for w in np.asarray(weights, dtype=np.int64)])
    np.testing.assert_allclose(fast, loop, atol=1e-9, rtol=0)


def test_selective_auroc_weighted_splits_copies_of_one_image():
    """A budget that ends inside an image's copies refers some of them: one image drawn 3 times, budget 1."""
    labels, scores = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.5, 0.45, 0.9, 0.1])
    weights = np.array([[3, 1, 1, 1], [0, 2, 2, 2]])
    scorer = metric("selective_auroc@0.2")  # floor(0.2 * 6) = 1 copy referred
    expected = [_direct_selective_auroc(labels[np.repeat(np.arange(4), w)], scores[np.repeat(np.arange(4), w)], 0.2)
                for w in weights]
    np.testing.assert_allclose(scorer.weighted(labels, scores, weights), expected, atol=1e-12)


def test_point_names_resolve_and_unknown_points_are_refused():
    assert metric_spec("fnr@0.3").heading == "FNR @0.3 (%)"
    assert not metric_spec("fnr@val").higher_is_better
    assert type(metric("fnr@0.3")) is type(metric("fnr@0.3"))
    with pytest.raises(UnknownNameError, match="not at '0.35'"):
        metric("fnr@0.35")
    with pytest.raises(UnknownNameError, match="not read at points"):
        metric("auprc@0.1")


# ------------------------------------------------------------------------------------------------- summarize
TASKS = ("Atelectasis", "Edema", "Effusion")


def _predictions(n: int = 90, seeds=(0, 1), rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    patients = np.array([f"p{i // 2:03d}" for i in range(n)])  # two images per patient
    labels = {task: (rng.random(n) < 0.25 + 0.15 * k).astype(np.float64) for k, task in enumerate(TASKS)}
    rows = []
    for s in seeds:
        for task in TASKS:
            score = np.clip(0.45 * labels[task] + rng.integers(0, 11, n) / 18, 0, 1).round(2)
            rows.append(pd.DataFrame({"image_id": [f"i{i:03d}" for i in range(n)], "patient_id": patients, "seed": s,
                                      "task": task, "label": labels[task], "score": score}))
    return pd.concat(rows, ignore_index=True)


def _part(predictions, seed, task):
    part = predictions[(predictions["seed"] == seed) & (predictions["task"] == task)].sort_values("image_id")
    return part["label"].to_numpy(), part["score"].to_numpy()


THRESHOLDS_CHOSEN = {0: {"Atelectasis": 0.35, "Edema": 0.5, "Effusion": None}, 1: {"Atelectasis": 0.2, "Edema": 0.6,
                                                                                  "Effusion": 0.4}}


def _targets():
    return [TargetSpec(t) for t in TASKS]


def test_summarize_scores_every_point_and_the_validation_threshold():
    predictions = _predictions()
    names = ["fnr", "fpr", "subset_accuracy", "selective_auroc"]
    result = summarize(predictions, _targets(), lambda t: names, BootstrapSpec(resamples=50, seed=2),
                       MetricContext(THRESHOLDS_CHOSEN))
    expected_keys = {f"{m}@{p}" for m in ("fnr", "fpr", "subset_accuracy") for p in ("0.1", "0.2", "0.3", "0.4", "0.5", "val")}
    assert set(result) == expected_keys | {f"selective_auroc@{r:g}" for r in RATES}
    assert set(result["subset_accuracy@0.3"]) == {MACRO}
    for seed in (0, 1):
        for task in TASKS:
            labels, scores = _part(predictions, seed, task)
            chosen = THRESHOLDS_CHOSEN[seed][task]
            value = result["fnr@val"][task]["per_seed"][seed]
            if chosen is None:
                assert value is None  # no threshold chosen on validation: undefined, never guessed
            else:
                assert value == pytest.approx(_confusion_rates(labels, scores, chosen)[0], abs=1e-12)
            assert result["fpr@0.4"][task]["per_seed"][seed] == pytest.approx(_confusion_rates(labels, scores, 0.4)[1])
        matrix = np.column_stack([_part(predictions, seed, t)[0] for t in TASKS]).astype(int)
        probabilities = np.column_stack([_part(predictions, seed, t)[1] for t in TASKS])
        assert result["subset_accuracy@0.2"][MACRO]["per_seed"][seed] == pytest.approx(
            accuracy_score(matrix, (probabilities >= 0.2).astype(int)), abs=1e-12)
        # seed 1 chose a threshold for every target: subset accuracy at the validation thresholds
        if seed == 1:
            thresholds = np.array([THRESHOLDS_CHOSEN[1][t] for t in TASKS])
            assert result["subset_accuracy@val"][MACRO]["per_seed"][1] == pytest.approx(
                accuracy_score(matrix, (probabilities >= thresholds).astype(int)), abs=1e-12)
    assert result["subset_accuracy@val"][MACRO]["per_seed"][0] is None


def test_summarize_without_context_leaves_out_the_points_that_need_it():
    result = summarize(_predictions(), _targets(), lambda t: ["fnr", "auprc_bins"], BootstrapSpec(resamples=20))
    assert set(result) == {f"fnr@{p}" for p in ("0.1", "0.2", "0.3", "0.4", "0.5")}


def test_summarize_point_bootstrap_equals_brute_force_patient_resamples():
    """The CI of a seed-dependent point (fnr@val) and of a joint one (subset accuracy) come from whole patients drawn
    with replacement, the same resamples for every seed."""
    predictions = _predictions(40, rng_seed=3)
    spec = BootstrapSpec(resamples=30, seed=5)
    context = MetricContext({0: {t: 0.3 for t in TASKS}, 1: {t: 0.45 for t in TASKS}})
    result = summarize(predictions, _targets(), lambda t: ["fnr@val", "subset_accuracy@0.3"], spec, context)
    images = predictions.drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
    counts = ClusterBootstrap(images.to_numpy(), spec.resamples, spec.seed).weights().astype(int)
    fnr, subset = np.zeros((len(counts), 2)), np.zeros((len(counts), 2))
    for r, w in enumerate(counts):
        index = np.repeat(np.arange(len(images)), w)
        for seed, threshold in ((0, 0.3), (1, 0.45)):
            labels, scores = _part(predictions, seed, TASKS[1])
            fnr[r, seed] = _confusion_rates(labels[index], scores[index], threshold)[0]
            matrix = np.column_stack([_part(predictions, seed, t)[0] for t in TASKS])[index].astype(int)
            probabilities = np.column_stack([_part(predictions, seed, t)[1] for t in TASKS])[index]
            subset[r, seed] = accuracy_score(matrix, (probabilities >= 0.3).astype(int))
    for entry, samples in ((result["fnr@val"][TASKS[1]], fnr), (result["subset_accuracy@0.3"][MACRO], subset)):
        expected = percentile_interval(samples.mean(axis=1), spec.confidence)
        assert (entry["ci_low"], entry["bootstrap_median"], entry["ci_high"]) == pytest.approx(expected, abs=1e-9)


def test_prevalence_bins_equal_a_direct_count_on_the_training_split():
    rng = np.random.default_rng(0)
    names = [f"finding{k}" for k in range(7)]
    targets = [TargetSpec(t) for t in names] + [TargetSpec("age", kind="regression")]
    n = 2000
    rates = [0.3, 0.12, 0.1, 0.05, 0.01, 0.004, 0.0]
    values = np.column_stack([(rng.random(n) < p).astype(np.float64) for p in rates] + [rng.uniform(20, 80, n)])
    values[rng.random((n, 8)) < 0.05] = np.nan
    training = [rng.random(n) < 0.7, rng.random(n) < 0.7]  # two seeds' training rows, pooled
    prevalence = train_prevalence(values, targets, training)

    direct = {}
    for j, name in enumerate(names):
        positives = known = 0
        for mask in training:
            for i in np.flatnonzero(mask):
                if not math.isnan(values[i, j]):
                    known += 1
                    positives += values[i, j] == 1.0
        direct[name] = positives / known
    assert prevalence == pytest.approx(direct, abs=1e-15)
    expected_bins = {b: [t for t in names if (direct[t] > 0.1 if b == "common" else direct[t] < 0.01 if b == "rare"
                                              else 0.01 <= direct[t] <= 0.1)] for b in ("common", "uncommon", "rare")}
    block = metric("auprc_bins").stored(targets, MetricContext(train_prevalence=prevalence))
    assert block["bins"] == expected_bins and block["edges"] == [0.01, 0.1]
    assert all(block["bins"].values())  # each bin has members here


def test_summarize_macro_auprc_per_bin_and_its_stored_block():
    predictions = _predictions()
    prevalence = {"Atelectasis": 0.3, "Edema": 0.05, "Effusion": 0.002}
    context = MetricContext(train_prevalence=prevalence)
    result = summarize(predictions, _targets(), lambda t: ["auprc_bins"], BootstrapSpec(resamples=20), context)
    assert set(result) == {"auprc_bins@common", "auprc_bins@uncommon", "auprc_bins@rare"}
    assert set(result["auprc_bins@rare"]) == {"Effusion", MACRO}
    for seed in (0, 1):
        assert result["auprc_bins@common"][MACRO]["per_seed"][seed] == pytest.approx(
            average_precision_score(*_part(predictions, seed, "Atelectasis")), abs=1e-12)
    stored = point_metric_blocks(result, _targets(), context)["metric_points"]["auprc_bins"]
    assert stored["bins"] == {"common": ["Atelectasis"], "uncommon": ["Edema"], "rare": ["Effusion"]}

    # an empty bin has no summary, but is listed in the block
    context = MetricContext(train_prevalence={t: 0.5 for t in TASKS})
    result = summarize(predictions, _targets(), lambda t: ["auprc_bins"], BootstrapSpec(resamples=20), context)
    assert set(result) == {"auprc_bins@common"}
    assert point_metric_blocks(result, _targets(), context)["metric_points"]["auprc_bins"]["bins"]["rare"] == []


def test_stored_points_recompute_to_the_same_numbers():
    """What `results check` does: the stored keys and the context read back from metrics.json give every number."""
    predictions = _predictions()
    context = MetricContext(THRESHOLDS_CHOSEN, {"Atelectasis": 0.3, "Edema": 0.05, "Effusion": 0.002})
    names = ["auroc", "fnr", "subset_accuracy", "selective_auroc", "auprc_bins"]
    spec = BootstrapSpec(resamples=20, seed=1)
    first = summarize(predictions, _targets(), lambda t: names, spec, context)
    stored = {"thresholds": {str(k): v for k, v in THRESHOLDS_CHOSEN.items()},
              **point_metric_blocks(first, _targets(), context)}
    again = summarize(predictions, _targets(), stored_metrics_for(first), spec, MetricContext.of(stored))
    assert again == first


def test_paired_comparisons_take_fixed_points_and_refuse_seed_bound_or_joint_ones():
    from cxrbench.errors import CxrbenchError
    from cxrbench.stats.paired import paired_differences

    a, b = _predictions(rng_seed=1), _predictions(rng_seed=1)
    b["score"] = np.clip(b["score"] + 0.1, 0, 1)
    spec = BootstrapSpec(resamples=20, seed=0)
    rows = paired_differences(a, b, _targets(), "selective_auroc@0.1", spec)
    alone = summarize(a, _targets(), lambda t: ["selective_auroc@0.1"], spec)["selective_auroc@0.1"]
    macro = next(r for r in rows if r.target == MACRO)
    assert macro.mean_a == pytest.approx(alone[MACRO]["mean"], abs=1e-12)
    for name in ("fnr@val", "subset_accuracy@0.3"):
        with pytest.raises(CxrbenchError, match="compare a fixed point"):
            paired_differences(a, b, _targets(), name, spec)


# ------------------------------------------------------------------------------------------------- a run
@pytest.fixture(scope="module")
def point_run(tmp_path_factory):
    """A synthetic VinDr-CXR run (pixels encoder, one-setting logistic head) asked for every new metric."""
    from typer.testing import CliRunner

    from cxrbench.cli import app
    from cxrbench.data.common.synthetic import SyntheticConfig
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr

    base = tmp_path_factory.mktemp("points")
    data = write_synthetic_vindr(base / "vindr", SyntheticConfig(patients=200, size=32, seed=5))
    args = ["run", "vindr", "--encoder", "pixels", "--head", "logistic", "--head-param", "C=[1.0]", "--bootstrap", "30",
            "--seeds", "2", "--data-root", str(data), "--out", str(base / "results"), "--cache-dir", str(base / "cache")]
    for name in ("fnr", "subset_accuracy", "selective_auroc", "auprc_bins"):
        args += ["--metric", name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return base, data


def test_a_run_stores_its_points_and_bins_and_its_check_recomputes_them(point_run):
    import json

    from cxrbench.analyses.check import metric_drift, recompute, recompute_stratified, stratified_drift
    from cxrbench.results.schema import validate_run
    from cxrbench.results.store import stored_runs
    from cxrbench.study import load_benchmark

    base, data = point_run
    run = stored_runs(base / "results", "vindr")[0]
    assert validate_run(run.folder) == []
    assert metric_drift(run, recompute(run)) == [] and stratified_drift(run, recompute_stratified(run)) == []
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert {"fnr@val", "subset_accuracy@0.3", "selective_auroc@0.25"} <= set(metrics["metrics"])
    assert "FNR @0.3 (%)" in (run.folder / "table.md").read_text()

    # the bins: a direct count of positives among the labelled training images of both seeds
    spec, loaded = load_benchmark("vindr", data, {})
    samples = loaded.samples.reset_index(drop=True)
    splits = pd.read_parquet(run.folder / "splits.parquet")
    values = loaded.labels()
    block = metrics["metric_points"]["auprc_bins"]
    for j, target in enumerate(loaded.targets):
        positives = known = 0
        for seed in (0, 1):
            train = set(splits.loc[(splits["seed"] == seed) & (splits["split"] == "train"), "image_id"])
            column = values[samples["image_id"].isin(train).to_numpy(), j]
            known += int((~np.isnan(column)).sum())
            positives += int((column == 1).sum())
        assert block["prevalence"][target.name] == pytest.approx(positives / known, abs=1e-15)
    members = {t for names in block["bins"].values() for t in names}
    assert members == set(spec.tasks)
    for name, targets in block["bins"].items():
        assert set(metrics["metrics"].get(f"auprc_bins@{name}", {MACRO: None})) == {*targets, MACRO}


def test_the_report_draws_the_referral_curve_from_the_stored_entries(point_run, tmp_path):
    import json

    from cxrbench.report import write_report
    from cxrbench.report.referral import referral_curves
    from cxrbench.results.store import stored_runs

    base, _ = point_run
    run = stored_runs(base / "results", "vindr")[0]
    metrics = json.loads((run.folder / "metrics.json").read_text())
    curves = referral_curves(metrics)
    assert [c.target for c in curves] == [*[t["name"] for t in metrics["targets"]], MACRO]
    macro = curves[-1]
    assert list(macro.rates) == list(RATES)
    assert list(macro.mean) == [metrics["metrics"][f"selective_auroc@{r:g}"][MACRO]["mean"] for r in RATES]
    assert referral_curves({"metrics": {"auroc": {}}}) == []
    index = write_report(base / "results", tmp_path / "report")
    page = index.read_text()
    assert "Referral curve of" in page
    figure = next((tmp_path / "report" / "figures").glob("*referral*.png"))
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
