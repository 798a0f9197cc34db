"""The metric registry: every metric equals its library (scikit-learn / scipy) to 1e-12, every form vectorised over
bootstrap weights equals the metric on the resampled rows, the generic bootstrap loop equals the vectorised form,
and specs naming an unknown or inapplicable metric fail when they are parsed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from sklearn.metrics import (
    accuracy_score, average_precision_score, balanced_accuracy_score, mean_absolute_error, roc_auc_score,
)
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import SpecError
from cxrbench.heads.losses import masked_smape
from cxrbench.registry import Entry, metric, registry

KINDS = {"auprc": "binary", "auroc": "binary", "auroc_ovr": "multiclass", "mae": "regression", "smape": "regression",
         "pearson_r": "regression", "accuracy": ("binary", "multiclass"), "balanced_accuracy": ("binary", "multiclass")}


def _data(kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "binary":  # tied scores on a coarse grid
        labels = (rng.random(n) < 0.3).astype(np.float64)
        return labels, np.clip(rng.integers(0, 12, n) / 12 + 0.2 * labels * rng.random(n), 0, 1)
    if kind == "multiclass":
        labels = rng.integers(0, 4, n).astype(np.float64)
        logits = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[labels.astype(int)]
        return labels, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = rng.uniform(5, 60, n)
    return truth, truth + rng.normal(0, 8, n)


def _reference(name: str, kind: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    predicted = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(int)
    if name == "auprc":
        return average_precision_score(labels, scores, sample_weight=weights)
    if name == "auroc":
        return roc_auc_score(labels, scores, sample_weight=weights)
    if name == "auroc_ovr":
        return roc_auc_score(labels, scores, multi_class="ovr", average="macro", labels=range(scores.shape[1]), sample_weight=weights)
    if name == "accuracy":
        return accuracy_score(labels.astype(int), predicted, sample_weight=weights)
    if name == "balanced_accuracy":
        return balanced_accuracy_score(labels.astype(int), predicted, sample_weight=weights)
    if name == "mae":
        return mean_absolute_error(labels, scores, sample_weight=weights)
    if name == "pearson_r":
        return pearsonr(labels, scores).statistic
    return float(np.mean(np.abs(scores - labels) / ((np.abs(scores) + np.abs(labels)) / 2)))  # SMAPE, by its definition


CASES = [(name, kind) for name, kinds in KINDS.items() for kind in ((kinds,) if isinstance(kinds, str) else kinds)]


@pytest.mark.parametrize(("name", "kind"), CASES)
@pytest.mark.parametrize("trial", range(3))
def test_point_estimates_equal_the_libraries(name, kind, trial):
    labels, scores = _data(kind, np.random.default_rng(10 * trial + len(name)), 200 + 31 * trial)
    assert metric(name).score(labels, scores) == pytest.approx(_reference(name, kind, labels, scores), abs=1e-12)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_weighted_forms_equal_the_metric_on_each_resample(name, kind):
    """A bootstrap resample is integer weights per row: the vectorised form must equal the metric on the rows drawn."""
    rng = np.random.default_rng(3)
    labels, scores = _data(kind, rng, 150)
    weights = rng.multinomial(150, np.full(150, 1 / 150), size=25).astype(np.float64)
    scorer = metric(name)
    vectorised = scorer.weighted(labels, scores, weights)
    for row, value in zip(weights, vectorised):
        drawn = np.repeat(np.arange(150), row.astype(int))
        expected = scorer.score(labels[drawn], scores[drawn])
        assert value == pytest.approx(expected, abs=1e-9, nan_ok=True)
        if name not in ("pearson_r", "smape", "auroc_ovr") or (name == "auroc_ovr" and np.isfinite(expected)):
            assert value == pytest.approx(_reference(name, kind, labels, scores, row), abs=1e-9)  # sample_weight


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_the_generic_bootstrap_loop_equals_the_vectorised_form(name, kind, monkeypatch):
    """A plugin metric without a weighted form is bootstrapped by evaluating it on every resample: the same numbers."""
    rng = np.random.default_rng(4)
    labels, scores = _data(kind, rng, 90)
    weights = rng.multinomial(90, np.full(90, 1 / 90), size=12).astype(np.float64)
    scorer = metric(name)
    fast = scorer.resampled(labels, scores, weights)
    monkeypatch.setattr(type(scorer), "weighted", lambda self, *args: None)
    np.testing.assert_allclose(scorer.resampled(labels, scores, weights), fast, atol=1e-9)


def test_undefined_cases_are_nan():
    assert np.isnan(metric("auroc").score(np.ones(5), np.linspace(0, 1, 5)))
    assert np.isnan(metric("auroc_ovr").score(np.array([0.0, 1, 1]), np.full((3, 3), 1 / 3)))  # class 2 absent
    assert np.isnan(metric("pearson_r").score(np.full(4, 3.0), np.arange(4.0)))
    weights = np.array([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    assert np.isnan(metric("auprc").weighted(np.array([1.0, 1, 0, 0]), np.arange(4.0), weights)).all()


def test_smape_metric_is_the_smape_loss():
    labels, scores = _data("regression", np.random.default_rng(5), 64)
    loss = masked_smape(torch.tensor(scores[:, None], dtype=torch.float64), torch.tensor(labels[:, None]))
    assert float(loss) == pytest.approx(metric("smape").score(labels, scores), rel=1e-6)


def test_metrics_are_listed_with_their_kinds_and_direction():
    assert {"auprc", "auroc", "auroc_ovr", "accuracy", "balanced_accuracy", "mae", "smape", "pearson_r"} <= set(registry().names("metrics"))
    spec = registry().get("metrics", "mae").spec
    assert spec.kinds == ("regression",) and not spec.higher_is_better and spec.scale == 1.0
    output = " ".join(CliRunner().invoke(app, ["list", "metrics"]).output.split())
    assert "balanced_accuracy binary, multiclass higher Balanced accuracy (%)" in output


def _benchmark(metrics, targets) -> Entry:
    spec = {"name": "toy", "title": "toy", "dataset": {}, "targets": targets, "metrics": metrics, "primary_metric": metrics[0]}
    return Entry("benchmarks", "toy", spec, "cxrbench.data.vindr.cxr:load_vindr", "tests")


def test_a_spec_naming_an_unknown_metric_fails_when_parsed():
    with pytest.raises(SpecError, match=r"tests:toy: Unknown metric 'aurpc'\. Did you mean: .*auprc"):
        _benchmark(["aurpc"], ["Lung Opacity"]).spec


def test_a_metric_that_does_not_apply_to_a_target_kind_fails_when_parsed():
    with pytest.raises(SpecError, match="metric 'auprc' scores binary targets; target 'angle' is regression"):
        _benchmark(["auprc"], [{"name": "angle", "kind": "regression"}]).spec
    mixed = _benchmark(["auprc"], ["Lung Opacity", {"name": "angle", "kind": "regression", "metrics": ["mae"]}]).spec
    assert mixed.metrics_for(mixed.target("angle")) == ("mae",)


@pytest.mark.parametrize(("target", "message"), [
    ({"name": "x", "kind": "multiclass"}, "needs `classes`"),
    ({"name": "x", "kind": "multiclass", "classes": ["a", "a"]}, "two or more distinct"),
    ({"name": "x", "classes": ["a", "b"]}, "belong to multiclass targets"),
    ({"name": "x", "kind": "mask"}, "needs `structures`"),
    ({"name": "x", "kind": "ordinal"}, "is not one of"),
])
def test_target_specs_are_checked(target, message):
    with pytest.raises(SpecError, match=message):
        _benchmark(["accuracy"], [target]).spec
