"""`cxrbench compare` and `table --versus` on two real runs scored on the same test patients; pre-training overlap
flags; `cxrbench results validate` on real run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.registry import benchmark_spec
from cxrbench.results.comparisons import COLUMNS, TEST_NOTES, compare_runs, pair_check
from cxrbench.results.overlap import pretraining_overlap
from cxrbench.results.store import stored_runs
from cxrbench.stats.multiplicity import adjust_p_values

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def two_runs(vindr_root, tmp_path_factory) -> Path:
    """pixels and a random-init dinov2-small, kNN heads (no training: the test is about the comparison), 3 seeds, on
    the same synthetic VinDr split."""
    base = tmp_path_factory.mktemp("compare")
    for encoder, extra in (("pixels", []), ("dinov2-small", ["--weights", "random", "--image-size", "56"])):
        result = invoke("run", "vindr", "--encoder", encoder, *extra, "--head", "knn", "--data-root", str(vindr_root), "--seeds", "3",
                        "--bootstrap", "300", "--metric", "ece", "--out", str(base / "out"), "--cache-dir", str(base / "cache"))
        assert result.exit_code == 0, result.output
    return base / "out"


def test_compare_writes_paired_differences_that_match_each_run(two_runs):
    result = invoke("compare", "vindr", "--encoders", "pixels,dinov2-small", "--head", "knn", "--out", str(two_runs))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(two_runs / "vindr/comparisons/auprc_vs_pixels.csv")
    assert list(frame.columns) == COLUMNS
    runs = {run.encoder: run.metrics["metrics"]["auprc"] for run in stored_runs(two_runs, "vindr")}
    assert len(frame) == len(benchmark_spec("vindr").tasks) + 1  # every task and the macro
    for row in frame.to_dict("records"):
        assert row["mean_reference"] == pytest.approx(runs["pixels"][row["target"]]["mean"], abs=1e-12)
        assert row["mean_encoder"] == pytest.approx(runs["dinov2-small"][row["target"]]["mean"], abs=1e-12)
        assert row["diff"] == pytest.approx(row["mean_encoder"] - row["mean_reference"], abs=1e-12)
        assert row["ci_low"] <= row["ci_high"]
        assert np.isnan(row["p_delong"])  # AUPRC: DeLong is for AUROC
    expected = adjust_p_values(frame["p_bootstrap"].to_numpy(), "holm")
    assert np.allclose(frame["p_adjusted"], expected, equal_nan=True)
    for row in frame.to_dict("records"):
        significant = row["p_adjusted"] < 0.05
        assert row["verdict"] == ("not significant" if not significant else "better" if row["diff"] > 0 else "worse")
    markdown = (two_runs / "vindr/comparisons/auprc_vs_pixels.md").read_text(encoding="utf-8")
    assert all(note in markdown for note in TEST_NOTES)  # what each p-value measures, under the table


def test_delong_and_ttest_columns_for_auroc(two_runs):
    reference, other = sorted(stored_runs(two_runs, "vindr"), key=lambda run: run.encoder != "pixels")
    frame = compare_runs(reference, [other], "auroc", correction="bh", test="delong")
    tasks = frame[frame["target"] != "macro"]
    assert tasks["p_ttest"].notna().all()
    # DeLong, clustered by patient, is defined where every seed's test split has two patients with a positive (and
    # two with a negative): the between-patient spread of their components is its variance
    known = reference.predictions().dropna(subset=["label"])
    patients = known.groupby(["task", "seed", "label"])["patient_id"].nunique().groupby(["task", "label"]).min()
    defined = {task: patients.get((task, 1.0), 0) >= 2 and patients.get((task, 0.0), 0) >= 2 for task in tasks["target"]}
    assert any(defined.values())
    for row in tasks.to_dict("records"):
        assert np.isnan(row["p_delong"]) != defined[row["target"]], row["target"]
    assert frame.loc[frame["target"] == "macro", "p_delong"].isna().all()
    assert (frame.loc[frame["target"] == "macro", "verdict"] == "not tested").all()


def test_a_pair_on_other_seeds_is_refused(two_runs, tmp_path):
    runs = stored_runs(two_runs, "vindr")
    other = runs[1]
    other.metrics["run_identity"] = {**other.metrics["run_identity"], "seeds": [0, 1]}
    with pytest.raises(Exception, match="differ in seeds"):
        pair_check(runs[0], other)


def test_table_versus_marks_every_other_cell(two_runs):
    result = invoke("table", "vindr", "--out", str(two_runs), "--versus", "pixels")
    assert result.exit_code == 0, result.output
    markdown = (two_runs / "vindr/table_auprc_vs_pixels.md").read_text()
    assert "not significantly different from pixels" in markdown
    rows = {line.split(" | ")[0]: line for line in markdown.splitlines() if line.startswith("| ")}
    dinov2 = next(line for label, line in rows.items() if label.startswith("| dinov2-small"))
    pixels = next(line for label, line in rows.items() if label.startswith("| pixels"))
    assert sum(dinov2.count(mark) for mark in "▲▼≈") == len(benchmark_spec("vindr").tasks) + 1
    assert not any(mark in pixels for mark in "▲▼≈")
    csv = pd.read_csv(two_runs / "vindr/table_auprc_vs_pixels.csv")
    ours = csv[(csv["source"] == "cxrbench") & (csv["encoder"] == "dinov2-small")]
    assert ours["versus"].isin(["better", "worse", "not significant"]).all()
    assert invoke("compare", "vindr", "--encoders", "pixels,dinov2-small", "--head", "knn", "--out", str(two_runs)).exit_code == 0
    compared = pd.read_csv(two_runs / "vindr/comparisons/auprc_vs_pixels.csv")
    # the same family (every task and the macro), the same Holm adjustment: the same verdicts
    assert dict(zip(ours["task"], ours["versus"])) == dict(zip(compared["target"], compared["verdict"]))


def test_versus_an_encoder_without_runs_is_a_clear_error(two_runs):
    result = invoke("table", "vindr", "--out", str(two_runs), "--versus", "rad-dino")
    assert result.exit_code == 2
    assert "no stored run of 'rad-dino'" in result.output


def test_ece_is_scored_and_recomputed(two_runs):
    metrics = json.loads((two_runs / "vindr/pixels/knn/metrics.json").read_text())
    assert metrics["metrics"]["ece"]["macro"]["mean"] is not None
    result = invoke("table", "vindr", "--out", str(two_runs), "--metric", "ece")
    assert result.exit_code == 0, result.output


def test_pretraining_overlap_flags_in_distribution_cells():
    assert pretraining_overlap("rad-dino", benchmark_spec("rsna-pneumonia")) == ("nih-cxr14",)
    assert pretraining_overlap("rad-dino", benchmark_spec("vindr")) == ()
    assert pretraining_overlap("raydino", benchmark_spec("padchest-lateral")) == ("padchest",)
    assert pretraining_overlap("biomedclip", benchmark_spec("mimic-lungs")) == ()
    assert pretraining_overlap("no-such-encoder", benchmark_spec("vindr")) == ()


def test_every_adapter_and_benchmark_declares_its_datasets():
    from cxrbench.registry import registry

    for entry in registry().entries("encoders"):
        assert entry.spec.pretraining_notes, entry.name
        assert entry.name == "pixels" or entry.spec.pretraining_data, entry.name
    for entry in registry().entries("benchmarks"):
        assert entry.spec.source_datasets or entry.spec.transfer, entry.name  # a transfer: its test benchmark's


def test_results_validate_real_runs_and_a_damaged_one(two_runs, tmp_path):
    result = invoke("results", "validate", str(two_runs))
    assert result.exit_code == 0, result.output
    assert "ok: 2 run(s)" in result.output
    damaged = tmp_path / "out"
    shutil.copytree(two_runs, damaged)
    path = damaged / "vindr/pixels/knn/metrics.json"
    metrics = json.loads(path.read_text())
    metrics["metrics"]["auprc"]["macro"]["ci_low"] = "high"
    path.write_text(json.dumps(metrics))
    result = invoke("results", "validate", str(damaged))
    assert result.exit_code == 2
    assert "metrics.auprc.macro.ci_low" in " ".join(result.output.split())


def test_a_committed_versus_table_is_checked_too(two_runs, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_runs / "vindr", out / "vindr", ignore=shutil.ignore_patterns("comparisons", "table_*"))
    assert invoke("table", "--layout", "rad-dino-1a", "--versus", "pixels", "--out", str(out)).exit_code == 0
    path = out / "tables/rad-dino-1a_vs_pixels.md"
    lines = path.read_text(encoding="utf-8").splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("| dinov2-small"))
    mark = next(m for m in "▲▼≈" if m in lines[row])
    result = invoke("table", "--all", "--check", "--out", str(out))
    assert result.exit_code == 0, result.output
    lines[row] = lines[row].replace(mark, "▼" if mark == "▲" else "▲", 1)  # a verdict edited by hand
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke("table", "--all", "--check", "--out", str(out))
    assert result.exit_code == 2
    assert "rad-dino-1a_vs_pixels.md: row 'dinov2-small" in " ".join(result.output.split())


@pytest.mark.parametrize("width", [80, 120])
def test_compare_is_readable_in_a_narrow_terminal(two_runs, monkeypatch, width):
    """One short table per compared pair, every line within the terminal's width, no "(continued)" blocks."""
    from cxrbench import console as terminal

    monkeypatch.setattr(terminal.console, "width", width)
    with terminal.console.capture() as captured:
        result = invoke("compare", "vindr", "--encoders", "pixels,dinov2-small", "--head", "knn", "--out", str(two_runs))
    assert result.exit_code == 0, result.output
    text = captured.get()
    assert "(continued)" not in text
    assert "dinov2-small" in text and "Pleural effusion" in text and "verdict" in text
    assert max(len(line) for line in text.splitlines()) <= width, text
