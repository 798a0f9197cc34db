"""The kNN head's ML-kNN rule (Zhang & Zhou 2007) equals a plain loop-over-samples implementation of the paper."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import NearestNeighbors

from cxrbench.errors import SpecError
from cxrbench.heads.base import FeatureSet
from cxrbench.heads.knn import KNNHead
from cxrbench.registry import head_spec

EMPTY = FeatureSet(np.zeros((0, 8)), np.zeros((0, 4)))


def data(n: int, seed: int, unknown: float = 0.0) -> FeatureSet:
    """Float64 features (compared in float64, so float32 rounding cannot reorder near-tied neighbours).
    Tasks 0 and 1 are always labelled (they share a top-k); 2 and 3 have `unknown` NaN labels each."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8))
    y = np.stack([x[:, 0] + 0.5 * rng.standard_normal(n) > 0.8, x[:, 1] - x[:, 2] + rng.standard_normal(n) > 1.0,
                  x[:, 3] + rng.standard_normal(n) > 0.0, rng.random(n) < 0.2], 1).astype(np.float64)
    y[:, 2:][rng.random((n, 2)) < unknown] = np.nan
    return FeatureSet(x, y)


def reference_mlknn(train: FeatureSet, query: np.ndarray, k: int, smoothing: float = 1.0) -> np.ndarray:
    """ML-kNN straight from the paper, one label at a time on the rows where that label is known. Exact rational
    arithmetic, rounded once at the end, so mathematically equal posteriors are equal floats (ties stay ties)."""
    s = Fraction(smoothing)
    out = np.full((len(query), train.labels.shape[1]), np.nan)
    for label in range(train.labels.shape[1]):
        known = ~np.isnan(train.labels[:, label])
        x, y = train.global_[known], train.labels[known, label]
        kk = min(k, len(y) - 1)
        nn = NearestNeighbors(n_neighbors=kk, metric="cosine", algorithm="brute").fit(x)
        prior1 = (s + int(y.sum())) / (2 * s + len(y))
        prior0 = 1 - prior1
        c1, c0 = [0] * (kk + 1), [0] * (kk + 1)
        own = nn.kneighbors(return_distance=False)  # X=None: each training sample's neighbours without itself
        for i in range(len(y)):
            count = int(sum(y[j] for j in own[i]))
            if y[i] == 1:
                c1[count] += 1
            else:
                c0[count] += 1
        for q, neighbours in enumerate(nn.kneighbors(query, return_distance=False)):
            j = int(sum(y[n] for n in neighbours))
            joint1 = prior1 * (s + c1[j]) / (s * (kk + 1) + sum(c1))
            joint0 = prior0 * (s + c0[j]) / (s * (kk + 1) + sum(c0))
            out[q, label] = float(joint1 / (joint1 + joint0))
    return out


def mlknn(params: dict) -> KNNHead:
    return KNNHead(head_spec("knn"), {"rule": "mlknn", "chunk": 64, **params}, "binary", "auprc")  # small chunks: several per split


@pytest.mark.parametrize(("unknown", "smoothing"), [(0.0, 1.0), (0.3, 1.0), (0.3, 0.25)])
def test_mlknn_equals_the_paper_for_every_k(unknown, smoothing):
    train, test = data(300, 0, unknown), data(100, 1)
    ks = [1, 4, 17, 60]
    head = mlknn({"k": ks, "smoothing": smoothing})
    head.fit(train, EMPTY, seed=0)
    ours = head._scores_for_all_k(test.global_, ks)
    for k in ks:
        expected = reference_mlknn(train, test.global_, k, smoothing)
        np.testing.assert_allclose(ours[k], expected, rtol=0, atol=1e-9)
        for t in range(4):  # equal posteriors (e.g. c1/c0 = 0/1 and 1/3) are exact ties, as AUPRC/AUROC must see them
            np.testing.assert_array_equal(ours[k][:, t, None] == ours[k][None, :, t],
                                          expected[:, t, None] == expected[None, :, t])


def test_mlknn_caps_k_at_the_labelled_rows():
    train, test = data(60, 2, unknown=0.5), data(20, 3)
    head = mlknn({"k": [1000]})
    head.fit(train, EMPTY, seed=0)
    assert head.k == 59
    # each task uses all its other labelled rows: k = labelled rows - 1, which differs between tasks
    np.testing.assert_allclose(head.predict(test), reference_mlknn(train, test.global_, 1000), rtol=0, atol=1e-9)


def test_mlknn_chooses_k_on_validation():
    train, val, test = data(300, 4, unknown=0.2), data(150, 5), data(100, 6)
    ks = [1, 10, 50]
    head = mlknn({"k": ks})
    report = head.fit(train, val, seed=0)
    expected = {k: np.mean([average_precision_score(val.labels[:, t], s[:, t]) for t in range(4)])
                for k, s in ((k, reference_mlknn(train, val.global_, k)) for k in ks)}
    np.testing.assert_allclose([row["val_auprc"] for row in report.table], [expected[k] for k in ks], rtol=0, atol=1e-12)
    assert report.chosen["k"] == max(expected, key=expected.get) != 1  # one neighbour is the noisiest choice
    np.testing.assert_allclose(head.predict(test), reference_mlknn(train, test.global_, report.chosen["k"]), atol=1e-9)


def test_mlknn_learns_a_planted_signal_and_not_noise():
    train, test = data(600, 7, unknown=0.1), data(300, 8)
    head = mlknn({"k": [30]})
    head.fit(train, EMPTY, seed=0)
    scores = head.predict(test)
    assert np.all((scores > 0) & (scores < 1))
    assert roc_auc_score(test.labels[:, 0], scores[:, 0]) > 0.85  # the label is x0 > 0.8 plus a little noise
    assert abs(roc_auc_score(test.labels[:, 3], scores[:, 3]) - 0.5) < 0.12  # pure noise: nothing to learn
    # noise: posteriors stay near the prior (20 % positives) instead of spreading towards 0 and 1
    assert abs(scores[:, 3].mean() - 0.2) < 0.05


def test_float32_features_match_float64_ones():
    """Cached features are float32: on well-separated neighbours the float32 path gives the same counts."""
    train, test = data(300, 9, unknown=0.2), data(100, 10)
    ks = [5, 40]
    by_dtype = []
    for dtype in (np.float64, np.float32):
        head = mlknn({"k": ks})
        head.fit(FeatureSet(train.global_.astype(dtype), train.labels), EMPTY, seed=0)
        by_dtype.append(head._scores_for_all_k(test.global_.astype(dtype), ks))
    for k in ks:
        # a near-tie at the k-th neighbour may reorder in float32; allow a handful of such entries
        assert np.mean(np.abs(by_dtype[0][k] - by_dtype[1][k]) > 1e-9) < 0.01


def test_rule_and_smoothing_are_checked():
    assert KNNHead(head_spec("knn")).params["rule"] == "weighted"  # DINOv2's rule stays the default
    with pytest.raises(SpecError, match="rule"):
        KNNHead(head_spec("knn"), {"rule": "ml-knn"}, "binary", "auprc")
    with pytest.raises(SpecError, match="smoothing"):
        KNNHead(head_spec("knn"), {"rule": "mlknn", "smoothing": 0}, "binary", "auprc")
