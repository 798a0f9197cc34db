"""`cxrbench reproduce` runs a table's recipe, resumes without work, and `cxrbench table --all --check` holds the
committed tables to the committed predictions: a hand-edited table cell, metrics.json number or prediction fails,
naming where."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.runs.reproduce import fitted_size
from cxrbench.tables.recipes import get_layout, load_recipe, plan_runs, recipe_names

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_every_recipe_parses_and_names_its_layout_and_registered_names():
    from cxrbench.registry import registry

    assert recipe_names(), "no recipe found"
    for name in recipe_names():
        recipe = load_recipe(name)
        layout_benchmarks = {g.benchmark for g in get_layout(recipe.table).groups}
        assert set(recipe.benchmarks) <= layout_benchmarks, name
        for run in recipe.runs:
            for encoder in run.encoders:
                registry().get("encoders", encoder)
            if run.head:
                registry().get("heads", run.head)
        assert plan_runs(recipe, Path("out"))


def test_unknown_recipe_suggests_the_closest():
    result = invoke("reproduce", "rad-dino-1aa", "--plan")
    assert result.exit_code == 2
    assert "Did you mean rad-dino-1a?" in result.output


def test_image_size_is_fitted_to_each_patch_size():
    assert fitted_size("rad-dino", 56) == 56  # ViT/14
    assert fitted_size("biomedclip", 56) == 64  # ViT/16: 3.5 patches, half to even
    assert fitted_size("mrm", 44) == 48  # ViT/16
    assert fitted_size("mrm", 56) == 64  # ViT/16
    assert fitted_size("chexzero", 56) is None  # open_clip ViT/32: its native 224 px only
    assert fitted_size("biovil-t", 56) == 56  # a ResNet: any size
    assert fitted_size("rad-dino", None) is None


@pytest.fixture(scope="module")
def reproduced(vindr_root, tmp_path_factory):
    """rad-dino's two rows of Table 1a (released architecture with random weights, and the random-init row)."""
    base = tmp_path_factory.mktemp("reproduce")
    args = ["reproduce", "rad-dino-1a", "--encoder", "rad-dino", "--data-root", str(vindr_root), "--weights", "random",
            "--image-size", "56", "--seeds", "1", "--bootstrap", "200", "--out", str(base / "out"),
            "--cache-dir", str(base / "cache")]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    return base, args, first


def test_reproduce_runs_every_row_and_writes_the_table(reproduced):
    base, _, first = reproduced
    assert "2 run(s) trained, 0 kept as stored, 0 remaining" in first.output
    for folder in ("rad-dino/linear", "rad-dino/linear_random-init"):
        metrics = json.loads((base / "out/vindr" / folder / "metrics.json").read_text())
        assert metrics["run_identity"]["weights"].startswith("random")
    table = (base / "out/tables/rad-dino-1a.md").read_text()
    assert "rad-dino (random init, 56 px, synthetic data) / linear" in table
    assert "RAD-DINO (published)" in table


def test_a_second_call_does_no_work(reproduced):
    base, args, _ = reproduced
    stamps = {p: p.stat().st_mtime_ns for p in (base / "out/vindr").rglob("*") if p.is_file()}
    cache = {p: p.stat().st_mtime_ns for p in (base / "cache").rglob("*") if p.is_file()}
    started = time.perf_counter()
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "0 run(s) trained, 2 kept as stored, 0 remaining" in second.output
    assert {p: p.stat().st_mtime_ns for p in (base / "out/vindr").rglob("*") if p.is_file()} == stamps
    assert {p: p.stat().st_mtime_ns for p in (base / "cache").rglob("*") if p.is_file()} == cache
    assert time.perf_counter() - started < 60


def test_a_run_stored_with_other_settings_is_refused_and_listed_as_remaining(reproduced, tmp_path):
    base, args, _ = reproduced
    out = tmp_path / "out"
    shutil.copytree(base / "out", out)
    changed = [a if a != str(base / "out") else str(out) for a in args]
    changed[changed.index("--seeds") + 1] = "2"
    result = invoke(*changed)
    assert result.exit_code == 2, result.output
    assert "other settings (seeds differ)" in result.output
    assert "2 run(s) of rad-dino-1a remain" in result.output


@pytest.fixture
def committed(reproduced, tmp_path) -> Path:
    """A copy of the runs with their tables written by `cxrbench table --all`, as a repository commits them."""
    base, _, _ = reproduced
    out = tmp_path / "results"
    shutil.copytree(base / "out/vindr", out / "vindr")
    result = invoke("table", "--all", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "tables").iterdir()) == ["rad-dino-1a.csv", "rad-dino-1a.md", "rad-dino-1a.tex"]
    return out


def test_check_passes_on_untouched_results(committed):
    result = invoke("table", "--all", "--check", "--out", str(committed))
    assert result.exit_code == 0, result.output
    assert "2 runs' metrics recomputed" in result.output


def _check_fails(out: Path) -> str:
    result = invoke("table", "--all", "--check", "--out", str(out))
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def test_a_hand_edited_table_cell_fails_naming_row_and_column(committed):
    path = committed / "tables/rad-dino-1a.md"
    lines = path.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("| rad-dino (random init, 56 px, synthetic data) / linear |"))
    cells = lines[row].split(" | ")
    number = cells[2].split(" ")[0]
    cells[2] = cells[2].replace(number, f"{float(number) + 1:.1f}", 1)
    lines[row] = " | ".join(cells)
    path.write_text("\n".join(lines) + "\n")
    output = _check_fails(committed)
    assert "rad-dino-1a.md: row 'rad-dino (random init, 56 px, synthetic data) / linear', column 'CM'" in output


def test_a_hand_edited_metric_fails_naming_run_metric_and_target(committed):
    path = committed / "vindr/rad-dino/linear/metrics.json"
    metrics = json.loads(path.read_text())
    entry = metrics["metrics"]["auprc"]["Cardiomegaly"]
    entry["mean"] += 0.01
    path.write_text(json.dumps(metrics))
    output = _check_fails(committed)  # the reader refuses it: the mean is no longer the mean of its seeds
    assert "linear/metrics.json cannot be used: metrics.auprc.Cardiomegaly.mean" in output
    entry["per_seed"] = {seed: value + 0.01 for seed, value in entry["per_seed"].items()}
    path.write_text(json.dumps(metrics))
    output = _check_fails(committed)  # consistent in itself, but not what its predictions give
    assert "linear/metrics.json: metrics.auprc.Cardiomegaly.mean" in output


def test_edited_predictions_fail(committed):
    path = committed / "vindr/rad-dino/linear/predictions.parquet"
    frame = pd.read_parquet(path)
    frame.loc[frame["task"] == "Cardiomegaly", "score"] = 1.0 - frame.loc[frame["task"] == "Cardiomegaly", "score"]
    frame.to_parquet(path, index=False)
    output = _check_fails(committed)
    assert "metrics.auprc.Cardiomegaly" in output


def test_a_table_without_runs_fails(committed):
    shutil.rmtree(committed / "vindr/rad-dino/linear")
    shutil.rmtree(committed / "vindr/rad-dino/linear_random-init")
    output = _check_fails(committed)
    assert "rad-dino-1a.*: no stored run of its benchmarks: its numbers have no run behind them" in output


def test_check_on_the_repository_results():
    """The committed fixtures of this repository (what CI checks) pass."""
    out = Path(__file__).resolve().parent / "fixtures" / "committed"
    if not (out / "tables").is_dir():
        pytest.skip("no committed tables in this checkout")
    result = invoke("table", "--all", "--check", "--out", str(out))
    assert result.exit_code == 0, result.output


def _edit_metrics(out: Path, change) -> Path:
    path = out / "vindr/rad-dino/linear/metrics.json"
    metrics = json.loads(path.read_text())
    change(metrics)
    path.write_text(json.dumps(metrics))
    return path


def _edited_mean(metrics: dict) -> None:
    entry = metrics["metrics"]["auprc"]["Cardiomegaly"]
    entry["mean"] = entry["ci_high"] + 0.4


@pytest.mark.parametrize("change, expected", [
    (_edited_mean, "metrics.auprc.Cardiomegaly.mean: "),
    (lambda metrics: metrics.update(schema_version=99), "schema_version: 99: written by a newer cxrbench"),
    (lambda metrics: metrics["metrics"]["auprc"]["Cardiomegaly"].update(ci_low=float("nan")), "NaN"),
])
def test_table_check_and_report_refuse_a_metrics_json_they_cannot_trust(committed, change, expected):
    """The fault as found: `table BENCH` and `report` showed such a run, and `table --all --check` said ok."""
    path = _edit_metrics(committed, change)
    for args in (["table", "vindr"], ["table", "--all", "--check"], ["report"]):
        result = runner.invoke(app, [*args, "--out", str(committed)])
        assert result.exit_code == 2, (args, result.output)
        message = " ".join(result.output.split()).replace(" ", "")
        assert str(path).replace(" ", "") in message and expected.replace(" ", "") in message, (args, result.output)


def test_a_deleted_prediction_column_is_named_by_check_and_report(committed):
    """The fault as found: a KeyError traceback."""
    path = committed / "vindr/rad-dino/linear/predictions.parquet"
    pd.read_parquet(path).drop(columns=["score"]).to_parquet(path, index=False)
    for args in (["table", "--all", "--check"], ["report"]):
        result = runner.invoke(app, [*args, "--out", str(committed)])
        assert result.exit_code == 2, (args, result.output)
        message = " ".join(result.output.split()).replace(" ", "")
        assert str(path).replace(" ", "") in message and "lacksthecolumn(s)score" in message, (args, result.output)
