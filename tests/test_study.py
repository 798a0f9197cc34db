"""The one study and the one orchestration path: dataset options checked like head parameters, extraction as its own
stage, explain as an evaluation on any benchmark whose loader supplies boxes, and names checked before data."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.rsna.synthetic import write_synthetic_rsna
from cxrbench.study import StudyOptions, prepare_study

runner = CliRunner()


def test_dataset_options_are_checked_and_recorded(vindr_root, tmp_path):
    base = ["run", "vindr", "--encoder", "pixels", "--data-root", str(vindr_root), "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "20", "--head", "logistic"]
    wrong_type = runner.invoke(app, [*base, "--dataset-option", "label_rule=3"])
    assert wrong_type.exit_code == 2 and "label_rule=3 must be a name such as 'majority'" in wrong_type.output
    wrong_value = runner.invoke(app, [*base, "--dataset-option", "label_rule=most"])
    assert wrong_value.exit_code == 2 and "Unknown label rule 'most'" in wrong_value.output
    done = runner.invoke(app, [*base, "--dataset-option", "label_rule=any"])
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "out/vindr/pixels/logistic/metrics.json").read_text())
    assert metrics["run_identity"]["dataset_options"] == {"label_rule": "any"}


def test_extract_fills_the_cache_that_run_then_reads(vindr_root, tmp_path):
    cache = str(tmp_path / "cache")
    extracted = runner.invoke(app, ["extract", "vindr", "--encoder", "pixels", "--data-root", str(vindr_root), "--cache-dir", cache])
    assert extracted.exit_code == 0, extracted.output
    assert "encoded" in extracted.output and "images/s" in extracted.output  # throughput of the stage
    ran = runner.invoke(app, ["run", "vindr", "--encoder", "pixels", "--data-root", str(vindr_root), "--out", str(tmp_path / "out"),
                              "--cache-dir", cache, "--seeds", "1", "--bootstrap", "20", "--head", "logistic"])
    assert ran.exit_code == 0 and "no encoder forward pass" in ran.output


def test_the_study_is_prepared_once_for_every_budget(vindr_root):
    from cxrbench.data.splits import LabelBudget

    study = prepare_study(StudyOptions("vindr", vindr_root, seeds=2, budgets=[None, LabelBudget(train_fraction=0.5)]))
    full, half = (study.manifests[b] for b in study.budgets)
    assert set(full["seed"]) == {0, 1} and (half["split"] == "unused").sum() > 0
    assert ((full["split"] == "test") == (half["split"] == "test")).all()  # the same test set


def test_explain_runs_on_any_benchmark_whose_loader_supplies_boxes(tmp_path):
    root = write_synthetic_rsna(tmp_path / "rsna", patients=30, size=32)  # enough for every fold to hold both classes
    result = runner.invoke(app, ["explain", "rsna-pneumonia", "--encoder", "pixels", "--data-root", str(root),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "has no radiologists' test boxes" in " ".join(result.output.split())


def test_every_encoder_name_is_checked_before_the_data(tmp_path):
    result = runner.invoke(app, ["run", "vindr", "--encoder", "pixels,radd-ino", "--data-root", str(tmp_path / "none")])
    assert result.exit_code == 2 and "Unknown encoder 'radd-ino'" in result.output
