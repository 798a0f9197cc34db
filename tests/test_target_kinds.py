"""Target kinds as classes (issue 22, item 5): each kind answers what the `kind == ...` branches used to, checked
against brute-force versions of that behaviour; a kind registered by a test alone flows through spec validation,
the loader contract, counts and long-form rows; and the evaluations compose instead of subclassing each other."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cxrbench import targets
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.errors import DataError, SpecError
from cxrbench.evaluations.base import RunOptions
from cxrbench.evaluations.probe import ProbeEvaluation, TargetGroup, target_groups
from cxrbench.evaluations.segmentation import SegmentationEvaluation
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.targets import kind_names, register, scored_targets, target_kind
from cxrbench.targets.base import TargetKind
from cxrbench.targets.mask import present_column

FINDING = TargetSpec("finding")
DIAGNOSIS = TargetSpec("diagnosis", "multiclass", classes=("normal", "pneumonia", "covid-19"))
ANGLE = TargetSpec("angle", "regression", unit="degrees")
LUNGS = TargetSpec("lungs", "mask", structures=("left lung", "right lung"), metrics=("dice",), lateral=True)


def _data(tmp_path, target: TargetSpec, values, **extra) -> BenchmarkData:
    n = len(values)
    samples = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "patient_id": [f"p{k % 3}" for k in range(n)],
                            "path": [str(tmp_path / f"i{k}") for k in range(n)], "split": ["train", "test"] * (n // 2),
                            target.name: pd.Series(values, dtype=object), **extra})
    return BenchmarkData("plugin", tmp_path, (target,), samples)


def test_the_four_built_in_kinds_are_found_by_name():
    assert set(kind_names()) >= {"binary", "multiclass", "regression", "mask"}
    assert {target_kind(k).evaluation for k in ("binary", "multiclass", "regression")} == {"probe"}
    assert target_kind("mask").evaluation == "segmentation"
    with pytest.raises(SpecError, match="kind 'binray' is not one of .*Did you mean 'binary'"):
        TargetSpec("x", "binray")


@pytest.mark.parametrize(("fields", "message"), [
    ({"kind": "binary", "lateral": True}, "`lateral` belongs to mask targets"),
    ({"kind": "regression", "classes": ("a", "b")}, "`classes` belong to multiclass targets"),
    ({"kind": "multiclass", "classes": ("a", "a")}, "two or more distinct names"),
    ({"kind": "multiclass", "classes": ("a", "b"), "structures": ("s",)}, "`structures` belong to mask targets"),
    ({"kind": "mask"}, "needs `structures`"),
])
def test_each_kind_refuses_the_fields_of_another(fields, message):
    with pytest.raises(SpecError, match=message):
        TargetSpec("x", **fields)


def test_outputs_and_result_columns_per_kind():
    assert [t.outputs for t in (FINDING, DIAGNOSIS, ANGLE, LUNGS)] == [1, 3, 1, 1]
    spec = BenchmarkSpec("b", "B", {}, (FINDING, LUNGS, ANGLE), metrics=("dice",), primary_metric="dice")
    assert spec.result_columns == ("finding", "left lung", "right lung", "angle")
    # a mask is scored per structure, each with its owner's metrics and nothing else of the owner's
    assert scored_targets(spec.targets) == (FINDING, TargetSpec("left lung", "mask", structures=("left lung",), metrics=("dice",)),
                                            TargetSpec("right lung", "mask", structures=("right lung",), metrics=("dice",)), ANGLE)


def test_counts_per_kind_equal_counting_by_hand(tmp_path):
    values = [1.0, 0.0, np.nan, 1.0, 1.0, 0.0]
    frame = pd.DataFrame({"finding": values, "diagnosis": [0.0, 2.0, 2.0, np.nan, 1.0, 2.0],
                          "angle": [3.0, np.nan, 5.0, 9.0, 1.0, 2.0]})
    assert target_kind("binary").counts(FINDING, frame) == {"positive": 3, "negative": 2, "unknown": 1}
    assert target_kind("multiclass").counts(DIAGNOSIS, frame) == {"normal": 1, "pneumonia": 1, "covid-19": 3, "unknown": 1}
    known = np.array([3.0, 5.0, 9.0, 1.0, 2.0])
    counted = target_kind("regression").counts(ANGLE, frame)
    assert counted == pytest.approx({"known": 5, "unknown": 1, "mean": known.mean(), "std": np.std(known, ddof=1),
                                     "min": 1.0, "max": 9.0})
    masks = pd.DataFrame({"lungs": ["a.png", None, "c.png"], present_column("lungs"): [1.0, 0.0, 0.0]})
    assert target_kind("mask").counts(LUNGS, masks) == {"with_mask": 2, "unknown": 1, "present": 1, "empty": 1}
    np.testing.assert_array_equal(target_kind("mask").label_values(LUNGS, masks), [1.0, np.nan, 0.0])


@pytest.mark.parametrize(("target", "counts", "missing"), [
    (FINDING, {"positive": 0, "negative": 3}, "no positive example"),
    (FINDING, {"positive": 2, "negative": 0}, "no negative example"),
    (FINDING, {"positive": 1, "negative": 1}, None),
    (DIAGNOSIS, {"normal": 4, "pneumonia": 0, "covid-19": 0}, "fewer than two of its classes"),
    (ANGLE, {"known": 3, "std": 0.0}, "fewer than two distinct values"),
    (ANGLE, {"known": 3, "std": 1.5}, None),
])
def test_what_a_split_lacks_to_learn_a_target(target, counts, missing):
    assert target.target_kind.missing(target, counts) == missing


def test_head_labels_and_long_form_rows_per_kind():
    test = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["p", "p", "q"]})
    column = np.array([[2.0], [np.nan], [0.0]], dtype=np.float32)
    onehot = TargetGroup("multiclass", (DIAGNOSIS,)).labels(column)
    np.testing.assert_array_equal(onehot[[0, 2]], np.eye(3)[[2, 0]])
    assert np.isnan(onehot[1]).all()
    probabilities = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1]])
    (rows,) = target_kind("multiclass").long_form(test, 4, (DIAGNOSIS,), onehot, probabilities, column)
    assert rows["label"].tolist()[::2] == [2.0, 0.0] and np.isnan(rows["label"].iloc[1])
    assert rows["score"].tolist() == [2.0, 0.0, 0.0] and rows["seed"].eq(4).all()
    np.testing.assert_array_equal(np.stack(rows["probabilities"]), probabilities)
    other = TargetSpec("other")
    labels, scores = np.array([[1.0, 0.0], [0.0, np.nan], [1.0, 1.0]]), np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.7]])
    frames = target_kind("binary").long_form(test, 0, (FINDING, other), labels, scores, labels)
    assert [f["task"].iloc[0] for f in frames] == ["finding", "other"]
    for j, frame in enumerate(frames):
        np.testing.assert_array_equal(frame["label"], labels[:, j])
        np.testing.assert_array_equal(frame["score"], scores[:, j])


def test_shot_classes_equal_the_patients_counted_by_hand():
    column = pd.Series([1.0, 0.0, 0.0, 0.0, 2.0, 1.0], index=["p", "p", "q", "r", "r", "s"])
    binary = dict(target_kind("binary").shot_classes(FINDING, column.clip(upper=1.0)))
    assert sorted(binary["label 1"]) == ["p", "r", "s"] and sorted(binary["label 0"]) == ["q"]
    multiclass = dict(target_kind("multiclass").shot_classes(DIAGNOSIS, column))
    assert {name: sorted(members) for name, members in multiclass.items()} == {
        "class 'normal'": ["p", "q", "r"], "class 'pneumonia'": ["p", "s"], "class 'covid-19'": ["r"]}
    assert target_kind("regression").shot_classes(ANGLE, column) is None


@pytest.fixture
def toy_kind(monkeypatch):
    """A kind defined only here: a count of lesions, a non-negative whole number."""
    kind_names()  # the built-in kinds first, so that the copy below holds them
    monkeypatch.setattr(targets, "_KINDS", dict(targets._KINDS))

    @register
    class Lesions(TargetKind):
        name = "lesion-count"

        def holds(self, target):
            return "a whole number >= 0 or NaN"

        def invalid(self, target, values, present):
            known = ~np.isnan(values)
            return (known & ((values < 0) | (values != np.round(values)))) | (present & ~known)

    return Lesions


def test_a_kind_registered_elsewhere_flows_through_validation_counts_and_rows(toy_kind, tmp_path):
    target = TargetSpec("lesions", "lesion-count")
    assert target.target_kind.name == "lesion-count" and target.outputs == 1
    with pytest.raises(SpecError, match="`classes` belong to multiclass targets"):
        TargetSpec("lesions", "lesion-count", classes=("a", "b"))
    with pytest.raises(DataError, match=r"image i3 has lesions = 1.5; a lesion-count target holds a whole number >= 0"):
        _data(tmp_path, target, [0.0, 2.0, 1.0, 1.5])
    data = _data(tmp_path, target, [0.0, 2.0, 1.0, 4.0, np.nan, 3.0])
    counts = data.label_counts()["lesion-count"].set_index("split")
    assert counts.loc["train", "known"] == 2 and counts.loc["train", "unknown"] == 1 and counts.loc["test", "known"] == 3
    spec = BenchmarkSpec("b", "B", {}, (FINDING, target), metrics=("mae",), primary_metric="mae")
    groups = [(g.kind, [t.name for t in g.targets]) for g in target_groups(spec)]
    assert groups == [("binary", ["finding"]), ("lesion-count", ["lesions"])]
    rows = target_kind("lesion-count").long_form(pd.DataFrame({"image_id": ["a"], "patient_id": ["p"]}), 1, (target,),
                                                np.array([[2.0]]), np.array([[1.6]]), np.array([[2.0]]))
    assert rows[0][["task", "label", "score"]].values.tolist() == [["lesions", 2.0, 1.6]]


def test_evaluations_compose_instead_of_subclassing_each_other():
    assert not issubclass(SegmentationEvaluation, ProbeEvaluation)
    assert not issubclass(ProbeEvaluation, SegmentationEvaluation)
    fields = [f.name for f in dataclasses.fields(RunOptions)]
    for evaluation in (ProbeEvaluation, SegmentationEvaluation):  # the command line builds either with the same options
        assert [f.name for f in dataclasses.fields(evaluation)] == fields
    with pytest.raises(SpecError, match="not probed"):
        target_groups(BenchmarkSpec("b", "B", {}, (LUNGS,), metrics=("dice",), primary_metric="dice"))
