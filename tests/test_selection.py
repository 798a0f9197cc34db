"""Validation selection ranks every setting on the same targets: those defined among the validation labels."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from cxrbench.heads.selection import ranking, validation_score
from cxrbench.registry import metric


def _labels_and_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(40, 3)).astype(float)
    labels[:, 2] = 0.0  # no positive in this split: undefined, left out
    labels[:5, 0] = np.nan  # unknown labels are left out of a task
    return labels, rng.random((40, 3))


def test_score_is_the_macro_over_tasks_with_both_classes():
    labels, scores = _labels_and_scores()
    known = ~np.isnan(labels[:, 0])
    expected = np.mean([average_precision_score(labels[known, 0], scores[known, 0]),
                        average_precision_score(labels[:, 1], scores[:, 1])])
    assert abs(validation_score(metric("auprc"), "binary", labels, scores) - expected) < 1e-12


def test_a_setting_with_non_finite_scores_on_a_defined_task_never_wins():
    labels, scores = _labels_and_scores()
    diverged = scores.copy()
    diverged[:, 1] = np.nan  # would otherwise be ranked on task 0 alone
    assert np.isnan(validation_score(metric("auprc"), "binary", labels, diverged))
    assert ranking(metric("auprc"), float("nan")) == float("-inf")
    unlabelled_scores = scores.copy()
    unlabelled_scores[:5, 0] = np.nan  # rows without a label do not count
    assert np.isfinite(validation_score(metric("auprc"), "binary", labels, unlabelled_scores))


def test_nothing_to_choose_by_without_a_task_with_both_classes():
    labels = np.zeros((10, 2))
    labels[:, 1] = np.nan
    assert np.isnan(validation_score(metric("auroc"), "binary", labels, np.random.default_rng(1).random((10, 2))))


def test_ranking_follows_the_metric_direction():
    assert ranking(metric("mae"), 2.0) > ranking(metric("mae"), 3.0)
    assert ranking(metric("pearson_r"), 0.9) > ranking(metric("pearson_r"), 0.5)
