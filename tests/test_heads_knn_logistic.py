"""The kNN and logistic-regression heads agree with scikit-learn's own implementations on the same features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from cxrbench.heads.base import FeatureSet
from cxrbench.heads.knn import KNNHead
from cxrbench.heads.logistic import LogisticHead
from cxrbench.registry import head_spec


def data(n: int, seed: int, unknown: float = 0.0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    y = np.stack([(x[:, 0] + 0.5 * rng.standard_normal(n) > 0.8), (x[:, 1] - x[:, 2] + rng.standard_normal(n) > 1.0)], 1)
    y = y.astype(np.float32)
    y[rng.random(y.shape) < unknown] = np.nan
    return FeatureSet(x, y)


@pytest.mark.parametrize("unknown", [0.0, 0.2])
def test_knn_equals_sklearn_for_every_k(unknown):
    train, test = data(400, 0, unknown), data(100, 1)
    head = KNNHead(head_spec("knn"), {"k": [5, 20, 50]}, "binary", "auprc")
    head.fit(train, FeatureSet(np.zeros((0, 16), np.float32), np.zeros((0, 2), np.float32)), seed=0)
    ours = head._scores_for_all_k(test.global_, [5, 20, 50])
    temperature = head.params["temperature"]
    for k in (5, 20, 50):
        for t in range(2):
            known = ~np.isnan(train.labels[:, t])
            reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                             weights=lambda d: np.exp((1 - d) / temperature))
            reference.fit(train.global_[known], train.labels[known, t])
            expected = reference.predict_proba(test.global_)[:, 1]
            np.testing.assert_allclose(ours[k][:, t], expected, atol=1e-5)


def test_knn_chooses_k_on_validation():
    train, val = data(400, 2), data(200, 3)
    head = KNNHead(head_spec("knn"), {"k": [1, 10, 50]}, "binary", "auprc")
    report = head.fit(train, val, seed=0)
    by_k = {row["k"]: row["val_auprc"] for row in report.table}
    assert report.chosen["k"] == max(by_k, key=by_k.get)
    assert by_k[1] < max(by_k.values())  # a single neighbour is the noisiest choice here


def test_logistic_equals_a_manual_sklearn_sweep():
    train, val, test = data(300, 4, unknown=0.1), data(150, 5), data(150, 6)
    grid = [1e-3, 1e-1, 10.0]
    head = LogisticHead(head_spec("logistic"), {"C": grid}, "binary", "auprc")
    report = head.fit(train, val, seed=0)
    ours = head.predict(test)
    scaler = StandardScaler().fit(train.global_)
    for t in range(2):
        known = ~np.isnan(train.labels[:, t])
        fitted = {c: LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(train.global_[known]), train.labels[known, t])
                  for c in grid}
        scores = {c: average_precision_score(val.labels[:, t], m.predict_proba(scaler.transform(val.global_))[:, 1])
                  for c, m in fitted.items()}
        best = max(scores, key=scores.get)
        assert report.chosen[f"C[{t}]"] == best
        np.testing.assert_allclose(ours[:, t], fitted[best].predict_proba(scaler.transform(test.global_))[:, 1], atol=1e-9)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_logistic_default_is_sklearn_defaults_on_raw_features(kind):
    """`logistic-default` (RAD-DINO Table 5's "default settings") is `LogisticRegression()` on the unscaled features."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((300, 16)) * rng.uniform(0.1, 20, 16) + rng.uniform(-5, 5, 16)).astype(np.float32)
    test_x = (rng.standard_normal((80, 16)) * 5).astype(np.float32)
    if kind == "binary":
        y = (x[:, 0] + x[:, 3] > 0).astype(np.float32)[:, None]
        target = y[:, 0]
    else:
        target = np.digitize(x[:, 1] - x[:, 2], [-5.0, 5.0])
        y = np.eye(3, dtype=np.float32)[target]
    head = LogisticHead(head_spec("logistic-default"), None, kind, "auprc" if kind == "binary" else "accuracy")
    head.fit(FeatureSet(x, y), FeatureSet(np.zeros((0, 16), np.float32), np.zeros((0, y.shape[1]), np.float32)), seed=0)
    reference = LogisticRegression().fit(x, target).predict_proba(test_x)
    expected = reference[:, 1:2] if kind == "binary" else reference
    np.testing.assert_allclose(head.predict(FeatureSet(test_x, np.zeros((80, y.shape[1])))), expected, atol=1e-9)
