"""Paired comparisons of two runs: the paired bootstrap against a plain loop over the same resamples calling
scikit-learn, DeLong's test against its O(m n) definition (plain and clustered by patient, Obuchowski 1997) and
against a null simulation with several images per patient, the sign-aware combination of seeds, the seed t-tests
against scipy, and p-value adjustment against scipy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrbench.errors import CxrbenchError, DataError
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.bootstrap import ClusterBootstrap, percentile_interval
from cxrbench.stats.paired import (
    DeLongResult, PairedDifference, adjust_p_values, bootstrap_p_value, combine_seed_p, delong_test, paired_differences,
    seed_ttest,
)
from cxrbench.stats.summary import MACRO, summarize

SKLEARN = {"auprc": average_precision_score, "auroc": roc_auc_score}
TASKS = ("Effusion", "Nodule")
TARGETS = [TargetSpec(t) for t in TASKS]


def _runs(n_images: int = 70, seeds=(0, 1, 2), rng_seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two runs' long-form predictions on the same test rows: patients own 1-3 images, some labels unknown, scores
    rounded (ties); B is the noisier encoder. Row orders differ between the runs."""
    rng = np.random.default_rng(rng_seed)
    patient_of = np.repeat(np.arange(n_images), rng.integers(1, 4, n_images))[:n_images]
    image_ids = np.array([f"img{i:03d}" for i in rng.permutation(n_images)])
    frames: dict[str, list[pd.DataFrame]] = {"a": [], "b": []}
    for t, task in enumerate(TASKS):
        risk = rng.random(patient_of.max() + 1)[patient_of]
        labels = (rng.random(n_images) < 0.2 + 0.5 * risk).astype(np.float64)
        labels[rng.random(n_images) < 0.08] = np.nan
        for s in seeds:
            for run, noise in (("a", 0.8), ("b", 1.3)):
                score = np.round(np.nan_to_num(labels, nan=0.5) + rng.normal(scale=noise, size=n_images), 1)
                frames[run].append(pd.DataFrame({"image_id": image_ids, "patient_id": [f"p{p:03d}" for p in patient_of],
                                                 "seed": s, "task": task, "label": labels, "score": score}))
    a = pd.concat(frames["a"], ignore_index=True).sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = pd.concat(frames["b"], ignore_index=True).sample(frac=1.0, random_state=2).reset_index(drop=True)
    return a, b


def _loop_values(predictions: pd.DataFrame, metric: str, counts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[R, seeds, targets]: for each resample, the rows drawn (each image repeated as often as its patient was drawn)
    scored by scikit-learn; NaN where a resample lacks a class."""
    seeds = sorted(predictions["seed"].unique())
    out = np.full((len(counts), len(seeds), len(TASKS)), np.nan)
    for i, s in enumerate(seeds):
        for j, task in enumerate(TASKS):
            part = predictions[(predictions["seed"] == s) & (predictions["task"] == task) & predictions["label"].notna()]
            patient = np.searchsorted(codes, part["patient_id"].to_numpy())
            labels, scores = part["label"].to_numpy(), part["score"].to_numpy()
            for r, row in enumerate(counts):
                drawn = np.repeat(np.arange(len(part)), row[patient])
                if len(np.unique(labels[drawn])) == 2:
                    out[r, i, j] = SKLEARN[metric](labels[drawn], scores[drawn])
    return out


@pytest.fixture(scope="module")
def runs():
    return _runs()


@pytest.mark.parametrize("metric", ["auprc", "auroc"])
def test_paired_bootstrap_equals_a_plain_loop_over_the_same_resamples(runs, metric):
    a, b = runs
    spec = BootstrapSpec(resamples=30, seed=11)
    result = paired_differences(a, b, TARGETS, metric, spec)
    assert [d.target for d in result] == [*TASKS, MACRO]

    # the resamples: patients of the union of both runs' test images, drawn as summarize draws them
    patients = pd.concat([a, b]).drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
    boot = ClusterBootstrap(patients.to_numpy(), spec.resamples, spec.seed)
    codes = np.unique(patients.to_numpy())
    assert len(codes) < len(patients)  # patients really own several images
    loop_a, loop_b = _loop_values(a, metric, boot.counts, codes), _loop_values(b, metric, boot.counts, codes)

    everyone = np.ones((1, len(codes)), dtype=np.int64)  # each patient once: the test set itself
    point_a, point_b = _loop_values(a, metric, everyone, codes)[0], _loop_values(b, metric, everyone, codes)[0]
    summary_a = summarize(a, TARGETS, lambda target: [metric], spec)[metric]
    summary_b = summarize(b, TARGETS, lambda target: [metric], spec)[metric]
    columns = [(task, point_a[:, j] - point_b[:, j], loop_a[:, :, j], loop_b[:, :, j]) for j, task in enumerate(TASKS)]
    columns.append((MACRO, point_a.mean(axis=1) - point_b.mean(axis=1), loop_a.mean(axis=2), loop_b.mean(axis=2)))
    for difference, (name, per_seed, values_a, values_b) in zip(result, columns):
        assert difference.target == name and difference.metric == metric
        assert difference.diff == pytest.approx(per_seed.mean(), abs=1e-9), name
        # the means are summarize's, to the bit
        assert difference.mean_a == summary_a[name]["mean"] and difference.mean_b == summary_b[name]["mean"]
        resampled = values_a.mean(axis=1) - values_b.mean(axis=1)
        low, _, high = percentile_interval(resampled, spec.confidence)
        assert (difference.ci_low, difference.ci_high) == pytest.approx((low, high), abs=1e-9), name
        assert difference.p_bootstrap == pytest.approx(bootstrap_p_value(resampled), abs=1e-12)
        assert difference.seeds == 3
        if name != MACRO:  # A's own CI is summarize's: the same resamples
            assert percentile_interval(values_a.mean(axis=1), spec.confidence)[0] == pytest.approx(summary_a[name]["ci_low"], abs=1e-9)
    assert result[0].ci_low < result[0].diff < result[0].ci_high


def test_paired_difference_fields_tests_and_counts(runs):
    a, b = runs
    result = paired_differences(a, b, TARGETS, "auroc", BootstrapSpec(resamples=30, seed=2), ttest="paired")
    first = result[0]
    assert isinstance(first, PairedDifference)
    part = a[(a["task"] == TASKS[0]) & a["label"].notna()]
    assert first.images == part["image_id"].nunique() and first.patients == part["patient_id"].nunique()
    known = a[a["label"].notna()]
    assert result[-1].images == known["image_id"].nunique() and result[-1].patients == known["patient_id"].nunique()
    # DeLong: per seed on the seed's rows, clustered by the rows' patients, and the seeds combined by sign
    per_seed = []
    for s in (0, 1, 2):
        rows_a = a[(a["seed"] == s) & (a["task"] == TASKS[0]) & a["label"].notna()].sort_values("image_id")
        rows_b = b[(b["seed"] == s) & (b["task"] == TASKS[0]) & b["label"].notna()].sort_values("image_id")
        per_seed.append(delong_test(rows_a["label"], rows_a["score"], rows_b["score"], clusters=rows_a["patient_id"]))
    assert first.p_delong == pytest.approx(combine_seed_p(per_seed), abs=1e-12)
    assert all(np.sign(r.diff) == np.sign(per_seed[0].diff) for r in per_seed)  # the seeds agree on these runs:
    assert first.p_delong == pytest.approx(max(r.p for r in per_seed), abs=1e-12)  # the largest two-sided p
    assert result[-1].p_delong is None  # not for the macro average
    # the t-test over the seeds' values, paired by seed
    seed_a = [roc_auc_score(*_seed_rows(a, s)) for s in (0, 1, 2)]
    seed_b = [roc_auc_score(*_seed_rows(b, s)) for s in (0, 1, 2)]
    assert first.p_ttest == pytest.approx(stats.ttest_rel(seed_a, seed_b).pvalue, abs=1e-12)
    # no DeLong for AUPRC
    assert all(d.p_delong is None for d in paired_differences(a, b, TARGETS, "auprc", BootstrapSpec(resamples=10)))


def _seed_rows(frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    part = frame[(frame["seed"] == seed) & (frame["task"] == TASKS[0]) & frame["label"].notna()]
    return part["label"].to_numpy(), part["score"].to_numpy()


def test_a_run_against_itself_differs_by_nothing(runs):
    a, _ = runs
    for d in paired_differences(a, a.sample(frac=1.0, random_state=5), TARGETS, "auroc", BootstrapSpec(resamples=25)):
        assert d.diff == 0 and d.ci_low == 0 and d.ci_high == 0 and d.p_bootstrap == 1.0
        assert d.p_ttest == 1.0  # the same seed values on both sides: t = 0
        assert d.p_delong == (1.0 if d.target != MACRO else None)


def test_one_seed_has_no_ttest():
    a, b = _runs(40, seeds=(4,), rng_seed=3)
    result = paired_differences(a, b, TARGETS, "auprc", BootstrapSpec(resamples=20))
    assert all(d.p_ttest is None and d.seeds == 1 for d in result)


def test_runs_on_different_test_rows_are_refused(runs):
    a, b = runs
    with pytest.raises(DataError, match=r"3 \(seed, image\) rows of Nodule .*same seeds, same dataset options"):
        paired_differences(a, b.drop(b.index[b["task"] == "Nodule"][:3]), TARGETS, "auroc", BootstrapSpec(resamples=5))
    other_seed = b.copy()
    other_seed.loc[other_seed["seed"] == 2, "seed"] = 7
    with pytest.raises(DataError, match="do not cover the same test rows"):
        paired_differences(a, other_seed, TARGETS, "auroc", BootstrapSpec(resamples=5))
    relabelled = b.copy()
    relabelled.loc[relabelled.index[:2], "label"] = 1.0 - relabelled.loc[relabelled.index[:2], "label"].fillna(0.0)
    with pytest.raises(DataError, match="differ in their label"):
        paired_differences(a, relabelled, TARGETS, "auroc", BootstrapSpec(resamples=5))
    with pytest.raises(CxrbenchError, match="Unknown t-test 'student'"):
        paired_differences(a, b, TARGETS, "auroc", BootstrapSpec(resamples=5), ttest="student")


def test_bootstrap_p_value_formula():
    assert bootstrap_p_value(np.array([0.1, 0.2, 0.3, np.nan])) == pytest.approx(2 * 1 / 4)
    assert bootstrap_p_value(np.array([-0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.0, 0.7, 0.8])) == pytest.approx(2 * 3 / 10)
    assert bootstrap_p_value(np.array([-0.1, 0.2, 0.3, 0.0])) == 1.0  # capped
    assert bootstrap_p_value(np.zeros(9)) == 1.0
    assert math.isnan(bootstrap_p_value(np.array([np.nan])))


# --------------------------------------------------------------------------------------------------- DeLong


def _delong_reference(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> dict[str, float]:
    """DeLong et al. (1988) by definition: the Mann-Whitney kernel over every (positive, negative) pair."""
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        x, y = scores[positive], scores[~positive]
        psi = np.array([[1.0 if xi > yj else 0.5 if xi == yj else 0.0 for yj in y] for xi in x])  # [m, n]
        aucs.append(psi.sum() / (m * n))
        v10.append(psi.sum(axis=1) / n)  # per positive
        v01.append(psi.sum(axis=0) / m)  # per negative
    s10 = np.array([[np.sum((v10[k] - aucs[k]) * (v10[l] - aucs[l])) / (m - 1) for l in range(2)] for k in range(2)])
    s01 = np.array([[np.sum((v01[k] - aucs[k]) * (v01[l] - aucs[l])) / (n - 1) for l in range(2)] for k in range(2)])
    s = s10 / m + s01 / n
    variance = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    z = (aucs[0] - aucs[1]) / math.sqrt(variance)
    return {"auc_a": aucs[0], "auc_b": aucs[1], "variance": variance, "z": z, "p": 2 * stats.norm.sf(abs(z))}


@pytest.mark.parametrize("trial", range(4))
def test_delong_equals_its_definition_with_ties(trial):
    rng = np.random.default_rng(40 + trial)
    n = 90 + 25 * trial
    labels = (rng.random(n) < 0.35).astype(np.float64)
    scores_a = np.round(labels * 0.8 + rng.normal(size=n), 1)
    scores_b = np.round(0.6 * scores_a + labels * 0.3 + rng.normal(scale=0.7, size=n), 1)  # correlated with a
    assert len(np.unique(scores_a)) < n / 2 and len(np.unique(scores_b)) < n / 2  # many ties
    got = delong_test(labels, scores_a, scores_b)
    expected = _delong_reference(labels, scores_a, scores_b)
    for field, value in expected.items():
        assert getattr(got, field) == pytest.approx(value, abs=1e-10), field
    assert got.diff == pytest.approx(expected["auc_a"] - expected["auc_b"], abs=1e-12)
    assert got.auc_a == pytest.approx(roc_auc_score(labels, scores_a), abs=1e-12)
    assert got.auc_b == pytest.approx(roc_auc_score(labels, scores_b), abs=1e-12)


def test_delong_edge_cases():
    labels = np.array([0, 0, 1, 1, 0, 1.0])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    same = delong_test(labels, scores, scores)
    assert same.diff == 0 and same.variance == pytest.approx(0, abs=1e-15) and same.p == 1.0
    one_class = delong_test(np.ones(4), np.arange(4.0), np.arange(4.0))
    assert all(math.isnan(v) for v in (one_class.auc_a, one_class.variance, one_class.p))
    single_positive = delong_test(np.array([0, 0, 1.0]), np.array([0.1, 0.5, 0.7]), np.array([0.2, 0.9, 0.3]))
    assert single_positive.auc_a == 1.0 and math.isnan(single_positive.p)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        delong_test(np.array([0, np.nan, 1]), np.arange(3.0), np.arange(3.0))


def _clustered_delong_reference(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                                clusters: np.ndarray) -> float:
    """Var(AUC_a - AUC_b) by Obuchowski (1997) written out from the O(m n) kernel, one patient at a time."""
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    patients = sorted(set(clusters.tolist()))
    aucs, v10, v01 = [], [], []
    for scores in (scores_a, scores_b):
        x, y = scores[positive], scores[~positive]
        psi = np.array([[1.0 if xi > yj else 0.5 if xi == yj else 0.0 for yj in y] for xi in x])  # [m, n]
        aucs.append(psi.sum() / (m * n))
        per_positive, per_negative = psi.sum(axis=1) / n, psi.sum(axis=0) / m
        v10.append({p: per_positive[clusters[positive] == p].sum() for p in patients})
        v01.append({p: per_negative[clusters[~positive] == p].sum() for p in patients})
    m_i = {p: int((clusters[positive] == p).sum()) for p in patients}
    n_i = {p: int((clusters[~positive] == p).sum()) for p in patients}
    i10, i01, i_all = sum(v > 0 for v in m_i.values()), sum(v > 0 for v in n_i.values()), len(patients)

    def cov(k: int, l: int) -> float:
        s10 = sum((v10[k][p] - m_i[p] * aucs[k]) * (v10[l][p] - m_i[p] * aucs[l]) for p in patients if m_i[p])
        s01 = sum((v01[k][p] - n_i[p] * aucs[k]) * (v01[l][p] - n_i[p] * aucs[l]) for p in patients if n_i[p])
        s11_kl = sum((v10[k][p] - m_i[p] * aucs[k]) * (v01[l][p] - n_i[p] * aucs[l]) for p in patients)
        s11_lk = sum((v10[l][p] - m_i[p] * aucs[l]) * (v01[k][p] - n_i[p] * aucs[k]) for p in patients)
        s10 *= i10 / ((i10 - 1) * m)
        s01 *= i01 / ((i01 - 1) * n)
        return s10 / m + s01 / n + i_all / (i_all - 1) * (s11_kl + s11_lk) / (m * n)

    return cov(0, 0) + cov(1, 1) - 2 * cov(0, 1)


@pytest.mark.parametrize("trial", range(3))
def test_clustered_delong_equals_its_definition(trial):
    rng = np.random.default_rng(70 + trial)
    patients = 40 + 10 * trial
    clusters = np.repeat(np.arange(patients), rng.integers(1, 5, patients))  # 1-4 images each, mixed labels
    n = clusters.size
    labels = (rng.random(n) < 0.25 + 0.5 * rng.random(patients)[clusters]).astype(np.float64)
    scores_a = np.round(labels + rng.normal(size=patients)[clusters] + rng.normal(size=n), 1)
    scores_b = np.round(0.5 * scores_a + labels * 0.4 + rng.normal(scale=0.8, size=n), 1)
    ids = np.array([f"patient-{c:03d}" for c in clusters])  # strings: ids as predictions.parquet holds them
    got = delong_test(labels, scores_a, scores_b, clusters=ids)
    variance = _clustered_delong_reference(labels, scores_a, scores_b, ids)
    assert got.variance == pytest.approx(variance, abs=1e-12)
    assert got.z == pytest.approx(got.diff / math.sqrt(variance), abs=1e-10)
    assert got.auc_a == pytest.approx(roc_auc_score(labels, scores_a), abs=1e-12)
    # several images per patient: the clustered variance differs from the image-level one
    assert abs(got.variance - delong_test(labels, scores_a, scores_b).variance) > 1e-6


def test_clustered_delong_with_one_image_per_patient_is_delong():
    rng = np.random.default_rng(5)
    labels = (rng.random(150) < 0.3).astype(np.float64)
    scores_a, scores_b = np.round(labels + rng.normal(size=150), 1), np.round(labels * 0.6 + rng.normal(size=150), 1)
    plain = delong_test(labels, scores_a, scores_b)
    clustered = delong_test(labels, scores_a, scores_b, clusters=rng.permutation(150) + 1000)
    for field in ("auc_a", "auc_b", "diff", "variance", "z", "p"):
        assert getattr(clustered, field) == pytest.approx(getattr(plain, field), abs=1e-12), field
    reference = _delong_reference(labels, scores_a, scores_b)
    assert clustered.variance == pytest.approx(reference["variance"], abs=1e-12)
    with pytest.raises(ValueError, match="one patient per row"):
        delong_test(labels, scores_a, scores_b, clusters=np.arange(10))


def test_clustered_delong_keeps_its_level_when_patients_have_several_images():
    """A null simulation (equal true AUROCs, 120 patients x 4 images, each encoder with its own per-patient error):
    the clustered test rejects near 5% at alpha 0.05; the image-level test, which treats the 480 images as
    independent, rejects far more often."""
    rng = np.random.default_rng(2024)
    trials, patients, images = 400, 120, 4
    clusters = np.repeat(np.arange(patients), images)
    rejected = {"clustered": 0, "images": 0}
    for _ in range(trials):
        labels = (rng.random(patients) < 0.3)[clusters].astype(np.float64)  # follow-ups mostly share the finding
        flipped = rng.random(labels.size) < 0.1
        labels[flipped] = 1.0 - labels[flipped]
        scores = [labels + rng.normal(scale=1.0, size=patients)[clusters] + rng.normal(scale=0.3, size=labels.size)
                  for _ in range(2)]  # the same signal, each encoder its own patient-level error
        rejected["clustered"] += delong_test(labels, *scores, clusters=clusters).p < 0.05
        rejected["images"] += delong_test(labels, *scores).p < 0.05
    assert 0.02 <= rejected["clustered"] / trials <= 0.08, rejected
    assert rejected["images"] / trials > 0.15, rejected


def _result(diff: float, z: float) -> DeLongResult:
    return DeLongResult(0.5 + diff, 0.5, diff, 0.01, z, float(2 * stats.norm.sf(abs(z))))


def test_seed_p_values_combine_by_sign():
    agree = [_result(0.05, 2.5), _result(0.03, 2.1), _result(0.04, 3.0)]
    assert combine_seed_p(agree) == pytest.approx(2 * stats.norm.sf(2.1), abs=1e-15)  # the largest one-sided, doubled
    assert combine_seed_p([_result(-d.diff, -d.z) for d in agree]) == pytest.approx(2 * stats.norm.sf(2.1), abs=1e-15)
    # the seeds disagree on which model is better: two seeds strongly favour A, one strongly favours B. The largest
    # two-sided p (the former rule) would call it significant at 0.05; no direction is supported.
    disagree = [_result(0.05, 3.0), _result(0.06, 3.2), _result(-0.04, -2.4)]
    assert max(r.p for r in disagree) < 0.05
    assert combine_seed_p(disagree) == 1.0
    assert combine_seed_p([_result(0.0, 0.0), _result(0.02, 2.5)]) == 1.0  # a seed with no difference
    assert math.isnan(combine_seed_p([_result(0.02, 2.5), DeLongResult(*[float("nan")] * 6)]))


def test_paired_comparison_delong_is_one_when_seeds_disagree(runs):
    """End to end: seed 1 of B is made better than A on the first target, seeds 0 and 2 worse."""
    a, b = runs
    b = b.copy()
    flip = (b["seed"] == 1) & (b["task"] == TASKS[0])
    b.loc[flip, "score"] = b.loc[flip, "label"].fillna(0.5) * 5 + b.loc[flip, "score"] * 0.01
    first = paired_differences(a, b, TARGETS, "auroc", BootstrapSpec(resamples=10))[0]
    assert first.p_delong == 1.0


# ------------------------------------------------------------------------------------------- seed t-tests


def test_seed_ttests_equal_scipy():
    rng = np.random.default_rng(8)
    a, b = rng.normal(0.80, 0.01, 5), rng.normal(0.79, 0.02, 5)
    assert seed_ttest(a, b) == pytest.approx(stats.ttest_ind(a, b).pvalue, abs=1e-15)
    assert seed_ttest(a, b, "independent") == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, abs=1e-15)
    assert seed_ttest(a, b, "paired") == pytest.approx(stats.ttest_rel(a, b).pvalue, abs=1e-15)
    assert seed_ttest(a, b, "welch") == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, abs=1e-15)
    assert seed_ttest(a[:4], b, "welch") == pytest.approx(stats.ttest_ind(a[:4], b, equal_var=False).pvalue, abs=1e-15)
    assert math.isnan(seed_ttest(a[:1], b[:1]))
    with pytest.raises(CxrbenchError, match="Unknown t-test 'z'"):
        seed_ttest(a, b, "z")


# ------------------------------------------------------------------------------------ multiple comparisons


def _p_values(rng: np.random.Generator) -> list:
    values: list = list(np.concatenate([rng.uniform(0, 0.05, 6), rng.uniform(0, 1, 9), [0.02, 0.02, 1.0]]))
    values[3], values[11] = np.nan, None  # undefined tests: kept, not counted
    return values


def _holm_by_hand(p: np.ndarray) -> np.ndarray:
    """Holm's step-down procedure, step by step."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted, running = np.empty(m), 0.0
    for step, index in enumerate(order):
        running = max(running, min(1.0, (m - step) * p[index]))
        adjusted[index] = running
    return adjusted


def test_adjusted_p_values():
    values = _p_values(np.random.default_rng(9))
    as_array = np.array([np.nan if v is None else v for v in values], dtype=float)
    defined = ~np.isnan(as_array)
    for method, expected in (("bh", stats.false_discovery_control(as_array[defined], method="bh")),
                             ("holm", _holm_by_hand(as_array[defined])), ("none", as_array[defined])):
        got = adjust_p_values(values, method)
        assert got.shape == (len(values),) and np.isnan(got[~defined]).all()
        np.testing.assert_allclose(got[defined], expected, rtol=0, atol=1e-15)
    assert (adjust_p_values(values, "holm")[defined] >= adjust_p_values(values, "bh")[defined]).all()
    assert adjust_p_values([]).shape == (0,)
    with pytest.raises(CxrbenchError, match="Unknown p-value adjustment 'bonferroni'"):
        adjust_p_values(values, "bonferroni")


def test_adjusted_p_values_equal_statsmodels():
    from statsmodels.stats import multitest  # a test dependency: the cross-check must run in CI, never skip
    values = _p_values(np.random.default_rng(10))
    as_array = np.array([np.nan if v is None else v for v in values], dtype=float)
    defined = ~np.isnan(as_array)
    for method, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        expected = multitest.multipletests(as_array[defined], method=theirs)[1]
        np.testing.assert_allclose(adjust_p_values(values, method)[defined], expected, rtol=0, atol=1e-15)
