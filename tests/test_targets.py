"""Typed targets end to end: loaders refuse values a target cannot hold (naming the row), heads train multiclass and
regression targets, summaries equal the libraries per seed, and POLCOVID (3 classes) and AASCE/BoostNet (three Cobb
angles) run, table and curve from their released layouts, recovering the planted signal."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, roc_auc_score
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.polcovid.synthetic import write_synthetic_polcovid
from cxrbench.data.scoliosis.synthetic import write_synthetic_scoliosis
from cxrbench.errors import DataError
from cxrbench.evaluations.probe import TargetGroup
from cxrbench.heads.base import FeatureSet
from cxrbench.registry import registry
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.summary import PROBABILITIES, summarize

runner = CliRunner()
DIAGNOSIS = TargetSpec("diagnosis", "multiclass", classes=("normal", "pneumonia", "covid-19"))
ANGLE = TargetSpec("angle", "regression", unit="degrees")


@pytest.fixture(scope="module")
def polcovid_root(tmp_path_factory):
    return write_synthetic_polcovid(tmp_path_factory.mktemp("polcovid") / "POLCOVID", patients=300)


@pytest.fixture(scope="module")
def scoliosis_root(tmp_path_factory):
    return write_synthetic_scoliosis(tmp_path_factory.mktemp("aasce") / "boostnet_labeldata", train=150, test=50)


def _run(benchmark, root, out, *extra):
    result = runner.invoke(app, ["run", benchmark, "--encoder", "pixels", "--data-root", str(root), "--out", str(out),
                                 "--cache-dir", str(out / "cache"), "--seeds", "2", "--bootstrap", "100", *extra])
    assert result.exit_code == 0, result.output
    return result


# -- the contract ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "value", "message"), [
    (DIAGNOSIS, 3.0, "class index 0..2"), (DIAGNOSIS, 0.5, "class index 0..2"), (ANGLE, "abc", "finite number"),
    (ANGLE, np.inf, "finite number"), (TargetSpec("finding"), 2.0, "1, 0 or NaN"),
])
def test_the_contract_refuses_values_a_target_cannot_hold(tmp_path, target, value, message):
    samples = pd.DataFrame({"image_id": ["a", "b"], "patient_id": ["p", "q"], "path": [str(tmp_path / "a"), str(tmp_path / "b")],
                            "split": "test", target.name: pd.Series([0.0, value], dtype=object)})
    with pytest.raises(DataError, match=f"image b has {target.name} = .*{message}"):
        BenchmarkData("plugin", tmp_path, (target,), samples)


def test_a_multiclass_group_is_one_hot_with_unknown_rows():
    labels = TargetGroup("multiclass", (DIAGNOSIS,)).labels(np.array([[2.0], [np.nan], [0.0]], dtype=np.float32))
    np.testing.assert_array_equal(labels[[0, 2]], [[0, 0, 1], [1, 0, 0]])
    assert np.isnan(labels[1]).all()


# -- heads -------------------------------------------------------------------------------------------------------
def _planted(kind: str, n: int = 900):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    if kind == "multiclass":
        classes = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1)
        labels, truth = np.eye(3, dtype=np.float32)[classes], classes
    else:
        truth = 30 + 10 * x[:, 0] - 5 * x[:, 1]
        labels = truth[:, None].astype(np.float32)
    return [FeatureSet(x[s], labels[s]) for s in (slice(0, 600), slice(600, 750), slice(750, n))], truth[750:]


@pytest.mark.parametrize("head", ["linear", "mlp", "logistic", "knn"])
def test_heads_train_multiclass_targets(head):
    (train, val, test), truth = _planted("multiclass")
    entry = registry().get("heads", head)
    params = {"linear": {"epochs": 60, "min_steps": 0, "lr": 0.05}, "mlp": {"epochs": 40, "min_steps": 0}}.get(head, {})
    model = entry.load()(entry.spec, params, "multiclass", "balanced_accuracy")
    model.fit(train, val, seed=0)
    probabilities = model.predict(test)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert balanced_accuracy_score(truth, probabilities.argmax(axis=1)) > 0.65  # chance: 1/3


@pytest.mark.parametrize("head", ["linear", "mlp", "knn"])
def test_heads_regress(head):
    (train, val, test), truth = _planted("regression")
    entry = registry().get("heads", head)
    params = {"linear": {"epochs": 60, "min_steps": 0, "lr": 0.05}, "mlp": {"epochs": 60, "min_steps": 0}}.get(head, {})
    model = entry.load()(entry.spec, params, "regression", "pearson_r")
    model.fit(train, val, seed=0)
    assert pearsonr(model.predict(test)[:, 0], truth).statistic > 0.9


def test_a_head_that_cannot_serve_a_kind_says_so_before_any_data_is_read(tmp_path):
    result = runner.invoke(app, ["run", "scoliosis", "--encoder", "pixels", "--head", "logistic",
                                 "--data-root", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "trains binary / multiclass targets, not regression ones" in result.output


# -- summaries ---------------------------------------------------------------------------------------------------
def test_multiclass_and_regression_summaries_equal_the_libraries_per_seed():
    rng = np.random.default_rng(2)
    rows = []
    for seed in (0, 1):
        for image in range(120):
            label = image % 3
            probabilities = rng.dirichlet(np.ones(3) + 3 * np.eye(3)[label])
            rows.append({"image_id": f"i{image}", "patient_id": f"p{image // 2}", "seed": seed, "task": "diagnosis",
                         "label": float(label), "score": float(probabilities.argmax()), PROBABILITIES: probabilities})
            angle = rng.uniform(5, 50)
            rows.append({"image_id": f"i{image}", "patient_id": f"p{image // 2}", "seed": seed, "task": "angle",
                         "label": angle, "score": angle + rng.normal(0, 5), PROBABILITIES: None})
    frame = pd.DataFrame(rows)
    metrics = {"diagnosis": ["balanced_accuracy", "auroc_ovr"], "angle": ["mae", "pearson_r"]}
    summary = summarize(frame, [DIAGNOSIS, ANGLE], lambda t: metrics[t.name], BootstrapSpec(resamples=200))
    for seed in (0, 1):
        part = frame[frame["seed"] == seed]
        diagnosis, angle = part[part["task"] == "diagnosis"], part[part["task"] == "angle"]
        probabilities = np.stack(diagnosis[PROBABILITIES].to_numpy())
        expected = {
            ("balanced_accuracy", "diagnosis"): balanced_accuracy_score(diagnosis["label"], probabilities.argmax(axis=1)),
            ("auroc_ovr", "diagnosis"): roc_auc_score(diagnosis["label"], probabilities, multi_class="ovr"),
            ("mae", "angle"): mean_absolute_error(angle["label"], angle["score"]),
            ("pearson_r", "angle"): pearsonr(angle["label"], angle["score"]).statistic,
        }
        for (name, task), value in expected.items():
            assert summary[name][task]["per_seed"][seed] == pytest.approx(value, abs=1e-12)
            assert summary[name]["macro"]["per_seed"][seed] == pytest.approx(value, abs=1e-12)  # one target each
    assert "angle" not in summary["balanced_accuracy"] and "diagnosis" not in summary["mae"]


# -- POLCOVID ----------------------------------------------------------------------------------------------------
@pytest.mark.slow  # about 60 s on 2 cores (CI budget); mimic-demographics (tests/test_mimic_cxr.py) runs multiclass targets end to end
def test_polcovid_runs_tables_and_curves_and_recovers_the_planted_classes(polcovid_root, tmp_path):
    result = _run("polcovid", polcovid_root, tmp_path, "--train-fraction", "0.5,1")
    assert "Balanced accuracy (%)" in result.output
    folder = tmp_path / "polcovid/pixels/linear"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["metrics"]["balanced_accuracy"]["macro"]["mean"] > 0.6  # chance: 1/3
    assert metrics["heads"]["0"]["diagnosis"]["chosen"]["checkpoint"] == "last"
    predictions = pd.read_parquet(folder / "predictions.parquet")
    assert list(predictions.columns) == ["image_id", "patient_id", "seed", "task", "label", "score", PROBABILITIES,
                                         "group:sex", "group:age"]
    row = predictions.iloc[0]
    assert len(row[PROBABILITIES]) == 3 and row["score"] == np.argmax(row[PROBABILITIES])
    splits = pd.read_parquet(folder / "splits.parquet")
    assert splits.groupby(["seed", "patient_id"])["split"].nunique().max() == 1  # hospital:patient never in two splits
    table = runner.invoke(app, ["table", "polcovid", "--out", str(tmp_path)])
    assert table.exit_code == 0 and (tmp_path / "polcovid/table_balanced_accuracy.md").is_file()
    curve = runner.invoke(app, ["curve", "polcovid", "--out", str(tmp_path)])
    assert curve.exit_code == 0, curve.output
    assert (tmp_path / "polcovid/efficiency_balanced_accuracy.png").is_file() and "50%" in curve.output


def test_polcovid_class_not_declared_names_the_row(polcovid_root, tmp_path):
    import shutil

    root = shutil.copytree(polcovid_root, tmp_path / "copy")
    metadata = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    metadata.loc[4, "class"] = "FLU"
    metadata.to_csv(root / "metadata.csv", index=False)
    result = runner.invoke(app, ["data", "check", "polcovid", "--data-root", str(root)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "metadata.csv, row 6" in message and "'FLU', not one of" in message


# -- AASCE / BoostNet --------------------------------------------------------------------------------------------
@pytest.mark.slow  # about 50 s on 2 cores (CI budget); regression metrics and losses stay pinned by test_metric_registry / test_targets
def test_scoliosis_runs_tables_and_curves_and_recovers_the_planted_angles(scoliosis_root, tmp_path):
    _run("scoliosis", scoliosis_root, tmp_path, "--train-fraction", "0.5,1")
    metrics = json.loads((tmp_path / "scoliosis/pixels/linear/metrics.json").read_text())
    assert metrics["metrics"]["pearson_r"]["macro"]["mean"] > 0.8
    assert set(metrics["metrics"]["pearson_r"]) == {"MT", "PT", "TL/L", "macro"}
    predictions = pd.read_parquet(tmp_path / "scoliosis/pixels/linear/predictions.parquet")
    truth = pd.read_csv(scoliosis_root / "labels/test/angles.csv", header=None)[0]
    first = predictions[(predictions["seed"] == 0) & (predictions["task"] == "MT")]
    np.testing.assert_allclose(np.sort(first["label"]), np.sort(truth.astype(np.float32)), rtol=1e-6)
    assert runner.invoke(app, ["table", "scoliosis", "--out", str(tmp_path)]).exit_code == 0
    curve = runner.invoke(app, ["curve", "scoliosis", "--out", str(tmp_path), "--metric", "mae"])
    assert curve.exit_code == 0 and "MAE" in curve.output


def test_scoliosis_angle_that_is_not_a_number_names_the_row(scoliosis_root, tmp_path):
    import shutil

    root = shutil.copytree(scoliosis_root, tmp_path / "copy")
    path = root / "labels/training/angles.csv"
    lines = path.read_text().splitlines()
    lines[2] = "abc," + lines[2].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["data", "check", "scoliosis", "--data-root", str(root)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "angles.csv, row 3" in message and "'abc' is not a number" in message


def test_shots_need_classes(scoliosis_root, tmp_path):
    result = runner.invoke(app, ["run", "scoliosis", "--encoder", "pixels", "--data-root", str(scoliosis_root),
                                 "--out", str(tmp_path), "--shots", "2"])
    assert result.exit_code == 2 and "use --train-fraction" in " ".join(result.output.split())
