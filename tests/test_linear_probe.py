"""The linear probe: masked BCE, learning a planted signal, determinism per seed."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from cxrbench.heads.base import FeatureSet
from cxrbench.heads.linear import LinearProbe
from cxrbench.heads.losses import masked_bce
from cxrbench.registry import head_spec


def planted(n: int, seed: int) -> FeatureSet:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 32)).astype(np.float32) * 3 + 5  # unstandardised on purpose
    logits = np.stack([x[:, 0] - 5, -(x[:, 1] - 5) + 0.5 * (x[:, 2] - 5)], axis=1)
    y = (logits + rng.standard_normal(logits.shape) > 2.0).astype(np.float32)
    return FeatureSet(x, y)


def test_masked_bce_ignores_unknown_labels():
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.1], [-0.5, 0.7]])
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), 0.0]])
    known = ~torch.isnan(labels)
    probabilities = torch.sigmoid(logits)[known].numpy().astype(np.float64)
    expected = log_loss(labels[known].numpy(), probabilities, labels=[0, 1])
    assert abs(float(masked_bce(logits, labels)) - expected) < 1e-6


def test_probe_learns_planted_signal_and_is_deterministic():
    train, test = planted(2000, 0), planted(1000, 1)
    spec = head_spec("linear")
    probe = LinearProbe(spec, {"epochs": 1, "min_steps": 2000})
    report = probe.fit(train, planted(200, 2), seed=0)
    scores = probe.predict(test)
    for t in range(2):
        assert roc_auc_score(test.labels[:, t], scores[:, t]) > 0.9
    assert report.history["train_loss"][-1] < report.history["train_loss"][0]
    again = LinearProbe(spec, {"epochs": 1, "min_steps": 2000})
    again.fit(train, planted(200, 2), seed=0)
    np.testing.assert_array_equal(again.predict(test), scores)
    other = LinearProbe(spec, {"epochs": 1, "min_steps": 2000})
    other.fit(train, planted(200, 2), seed=1)
    assert not np.array_equal(other.predict(test), scores)


def test_probe_trains_with_unknown_labels():
    train = planted(1000, 3)
    train.labels[::3, 1] = np.nan
    probe = LinearProbe(head_spec("linear"), {"epochs": 1, "min_steps": 2000})
    probe.fit(train, planted(100, 4), seed=0)
    test = planted(500, 5)
    assert roc_auc_score(test.labels[:, 1], probe.predict(test)[:, 1]) > 0.85


def test_unknown_parameter_is_refused():
    import pytest

    from cxrbench.errors import SpecError

    with pytest.raises(SpecError, match="no parameter"):
        LinearProbe(head_spec("linear"), {"learning_rate": 0.1})
