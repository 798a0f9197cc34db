"""Every head through `cxrbench run` on a VinDr-CXR-layout folder: grid selection stored with the results,
label budgets (training fraction, shots) as their own runs, and patient-disjoint manifests."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.splits import check_patient_disjoint
from cxrbench.study import load_benchmark

runner = CliRunner()
QUICK = ["--head-param", "epochs=2", "--head-param", "min_steps=0"]


def run(root, base, *extra: str):
    args = ["run", "vindr", "--data-root", str(root), "--out", str(base / "out"), "--cache-dir", str(base / "cache"),
            "--encoder", "pixels", "--seeds", "2", "--bootstrap", "50", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("heads-e2e")


@pytest.mark.parametrize("head", ["mlp", "avgpool", "attentive", "knn", "logistic"])
def test_every_head_trains_on_the_vindr_layout(vindr_root, base, head):
    extra = QUICK if head in ("mlp", "avgpool", "attentive") else []
    run(vindr_root, base, "--head", head, *extra)
    metrics = json.loads((base / f"out/vindr/pixels/{head}/metrics.json").read_text())
    assert set(metrics["heads"]) == {"0", "1"}
    macro = metrics["metrics"]["auprc"]["macro"]
    assert macro["mean"] is not None and macro["ci_low"] <= macro["bootstrap_median"] <= macro["ci_high"]
    selection = pd.read_csv(base / f"out/vindr/pixels/{head}/selection.csv")  # every setting tried, per seed
    assert set(selection["seed"]) == {0, 1} and "val_auprc" in selection


def test_raydino_grid_runs_156_heads_and_stores_the_selection(vindr_root, base):
    run(vindr_root, base, "--head", "raydino-grid", *QUICK)
    folder = base / "out/vindr/pixels/raydino-grid"
    selection = pd.read_csv(folder / "selection.csv")
    assert len(selection) == 2 * 156 and selection.groupby("seed")["config"].nunique().eq(156).all()
    metrics = json.loads((folder / "metrics.json").read_text())
    for seed in ("0", "1"):
        chosen = metrics["heads"][seed]["binary"]["chosen"]
        scores = selection[selection["seed"] == int(seed)].set_index("config")["val_auprc"]
        assert chosen["config"] == scores.idxmax() and chosen["grid_size"] == 156
    config = (folder / "config.yaml").read_text()
    assert "raydino-grid" in config and "epochs: 2" in config


def test_label_budgets_are_separate_runs_with_fewer_training_patients(vindr_root, base):
    run(vindr_root, base, "--head", "knn", "--train-fraction", "0.25,1", "--shots", "3")
    out = base / "out/vindr/pixels"
    full = json.loads((out / "knn/metrics.json").read_text())
    quarter = json.loads((out / "knn_train-0.25/metrics.json").read_text())
    shots = json.loads((out / "knn_shots-3/metrics.json").read_text())
    assert full["label_budget"] is None and quarter["label_budget"] == {"train_fraction": 0.25}
    assert shots["label_budget"] == {"shots": 3}
    for seed in ("0", "1"):
        assert quarter["n_train_images"][seed] < 0.4 * full["n_train_images"][seed]
    manifest = pd.read_parquet(out / "knn_shots-3/splits.parquet")
    check_patient_disjoint(manifest)
    data = load_benchmark("vindr", vindr_root, {})[1]
    for seed, part in manifest.groupby("seed"):
        train = part["split"].eq("train").to_numpy()
        labels = data.labels()[train]
        # at least 3 positive and 3 negative patients per task, and no more than 2 x 3 x tasks patients
        assert ((labels == 1).sum(axis=0) >= 3).all() and ((labels == 0).sum(axis=0) >= 3).all()
        assert part.loc[train, "patient_id"].nunique() <= 2 * 3 * labels.shape[1]
        # the test split is untouched by the budget
        full_manifest = pd.read_parquet(out / "knn/splits.parquet")
        assert (full_manifest.loc[full_manifest["seed"] == seed, "split"].eq("test").to_numpy()
                == part["split"].eq("test").to_numpy()).all()


def test_label_efficiency_curve_from_the_budget_runs(vindr_root, base):
    if not (base / "out/vindr/pixels/knn_train-0.25").is_dir():
        run(vindr_root, base, "--head", "knn", "--train-fraction", "0.25,1", "--shots", "3")
    result = runner.invoke(app, ["curve", "vindr", "--out", str(base / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(base / "out/vindr/efficiency_auprc.csv")
    macro = table[(table["head"] == "knn") & (table["task"] == "macro")]
    assert {0.25, 1.0} <= set(macro.loc[macro["budget_kind"] == "fraction", "budget_value"])
    assert 3 in set(macro.loc[macro["budget_kind"] == "shots", "budget_value"])
    assert (base / "out/vindr/efficiency_auprc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_head_param_and_budget_are_refused(vindr_root, base):
    args = ["run", "vindr", "--data-root", str(vindr_root), "--out", str(base / "bad"), "--encoder", "pixels"]
    result = runner.invoke(app, [*args, "--head", "mlp", "--head-param", "epoch=3"])
    assert result.exit_code == 2 and "epoch" in result.output and "accepts" in result.output
    result = runner.invoke(app, [*args, "--train-fraction", "0.5,abc"])
    assert result.exit_code == 2 and "'abc'" in result.output
    result = runner.invoke(app, [*args, "--shots", "1000", "--head", "logistic", "--cache-dir", str(base / "cache")])
    assert result.exit_code == 2 and "--shots 1000" in result.output
    result = runner.invoke(app, [*args, "--train-fraction", "0.01", "--cache-dir", str(base / "cache")])
    assert result.exit_code == 2 and "train-0.01" in result.output and "has no positive example in the train split" in result.output
    assert "Use a larger --train-fraction or --shots" in " ".join(result.output.split())  # rich wraps long lines
    assert not (base / "bad").exists() or not any((base / "bad").rglob("metrics.json"))


def test_the_online_augmented_probe_is_a_head_of_its_own(vindr_root, base):
    run(vindr_root, base, "--head", "linear-augmented", "--head-param", "epochs=2", "--head-param", "lr=0.01",
        "--head-param", "batch_size=64")
    folder = base / "out/vindr/pixels/linear-augmented"
    metrics = json.loads((folder / "metrics.json").read_text())
    chosen = metrics["heads"]["0"]["binary"]["chosen"]
    assert chosen["features"] == "online" and chosen["augmentation"]["hflip_p"] == 0.5
    assert metrics["head"] == "linear-augmented" and metrics["run_identity"]["head"]["features"] == "online"
    config = (folder / "config.yaml").read_text()
    assert "features: online" in config and "lr: 0.01" in config
    assert metrics["metrics"]["auprc"]["macro"]["mean"] is not None
    result = runner.invoke(app, ["run", "vindr", "--data-root", str(vindr_root), "--out", str(base / "bad"),
                                 "--encoder", "pixels", "--head", "knn", "--head-param", "features=online"])
    assert result.exit_code == 2 and "no parameter(s) ['features']" in result.output
    result = runner.invoke(app, ["run", "vindr", "--data-root", str(vindr_root), "--out", str(base / "bad"),
                                 "--encoder", "pixels", "--head", "linear-augmented", "--head-param", "augmentation={flip: 1}"])
    assert result.exit_code == 2 and "augmentation" in result.output and "flip" in result.output


def test_a_stored_run_of_other_settings_is_not_replaced_silently(vindr_root, base):
    run(vindr_root, base, "--head", "knn")
    args = ["run", "vindr", "--data-root", str(vindr_root), "--out", str(base / "out"), "--cache-dir", str(base / "cache"),
            "--encoder", "pixels", "--seeds", "2", "--bootstrap", "50", "--head", "knn"]
    before = (base / "out/vindr/pixels/knn/metrics.json").read_text()
    result = runner.invoke(app, [*args, "--head-param", "k=[5]"])
    assert result.exit_code == 2 and "other settings (head differ)" in result.output and "--tag" in result.output
    assert (base / "out/vindr/pixels/knn/metrics.json").read_text() == before
    result = runner.invoke(app, [*args, "--head-param", "k=[5]", "--tag", "k5"])
    assert result.exit_code == 0, result.output
    assert json.loads((base / "out/vindr/pixels/knn_k5/metrics.json").read_text())["heads"]["0"]["binary"]["chosen"]["k"] == 5
    result = runner.invoke(app, [*args, "--head-param", "temperature=1e-1", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((base / "out/vindr/pixels/knn/metrics.json").read_text())["run_identity"]["head"]["temperature"] == 0.1


def test_online_probe_on_a_budget_standardises_with_the_whole_training_split(vindr_root, base, monkeypatch):
    from cxrbench.heads import linear

    seen = []
    original = linear.LinearProbe.fit

    def spy(self, train, val, seed, progress, source=None):
        seen.append((len(source), len(train.standardise_on.global_), type(source).__name__))
        return original(self, train, val, seed, progress, source)

    monkeypatch.setattr(linear.LinearProbe, "fit", spy)
    run(vindr_root, base, "--head", "linear-augmented", "--shots", "3", "--head-param", "epochs=1",
        "--head-param", "standardize=true", "--head-param", "batch_size=64")
    folder = base / "out/vindr/pixels/linear-augmented_shots-3"
    manifests = pd.read_parquet(folder / "splits.parquet")
    metrics = json.loads((folder / "metrics.json").read_text())
    for seed, (budgeted, statistics, source) in enumerate(seen):
        split = manifests.loc[manifests["seed"] == seed, "split"]
        assert source == "OnlineBatches"
        assert budgeted == split.eq("train").sum() < statistics == split.isin(["train", "unused"]).sum()
        test = manifests[(manifests["seed"] == seed) & (manifests["split"] == "test")]
        assert metrics["n_test_patients"][str(seed)] == test["patient_id"].nunique()
    assert len(seen) == 2


def _macro_auprc(predictions: pd.DataFrame, seed: int) -> float:
    """Macro AUPRC of one seed's stored test predictions over the tasks with both classes (scikit-learn)."""
    from sklearn.metrics import average_precision_score

    rows = predictions[predictions["seed"] == seed].dropna(subset=["label"])
    values = [average_precision_score(part["label"], part["score"]) for _, part in rows.groupby("task")
              if part["label"].nunique() == 2]
    return sum(values) / len(values)


def test_knn_k_is_selected_on_validation_unless_told_test_and_then_labelled(vindr_root, base):
    """DINOv2-radiology Table 4 chose k on the test set: `select_on: test` reproduces it, the default does not, and the
    tables mark the test-selected run."""
    grid = ["--head", "knn", "--head-param", "k=[1, 3, 10, 30]"]
    run(vindr_root, base, *grid, "--tag", "grid")
    run(vindr_root, base, *grid, "--tag", "grid", "--head-param", "select_on=test", "--out", str(base / "on-test"))
    for out, on_test in ((base / "out", False), (base / "on-test", True)):
        folder = out / "vindr/pixels/knn_grid"
        selection = pd.read_csv(folder / "selection.csv")
        predictions = pd.read_parquet(folder / "predictions.parquet")
        metrics = json.loads((folder / "metrics.json").read_text())
        for seed in (0, 1):
            chosen = metrics["heads"][str(seed)]["binary"]["chosen"]["k"]
            rows = selection[selection["seed"] == seed].set_index("k")["test_auprc" if on_test else "val_auprc"]
            assert chosen == rows.idxmax()
            # the selection scores are the test split's exactly when selecting on test
            assert (abs(rows[chosen] - _macro_auprc(predictions, seed)) < 1e-9) == on_test
        result = runner.invoke(app, ["table", "vindr", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert ("knn [grid; selected on test]" in result.output) == on_test
        assert ("Settings selected on the test split" in (folder / "table.md").read_text()) == on_test
