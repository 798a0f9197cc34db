"""Label efficiency: budgets read from metrics.json (never from the run folder's name), sorted numerically, written as
Markdown/CSV/PNG, and `cxrbench curve`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import CxrbenchError
from cxrbench.registry import benchmark_spec
from cxrbench.analyses.efficiency import efficiency_display_table, efficiency_long_table, write_efficiency
from cxrbench.results.budgets import FULL, Budget, full_data_runs, run_budget
from cxrbench.results.labels import RANDOM_INIT, run_label, variant_text
from cxrbench.results.store import json_writer, run_folder, stored_runs, write_run

runner = CliRunner()
VINDR = benchmark_spec("vindr")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _entry(mean: float, seeds: int = 3) -> dict:
    per_seed = {str(s): mean + 0.01 * (s - 1) for s in range(seeds)}
    values = np.array(list(per_seed.values()))
    return {"per_seed": per_seed, "mean": float(values.mean()), "std": float(values.std(ddof=1)),
            "ci_low": float(values.mean() - 0.03), "ci_high": float(values.mean() + 0.03), "bootstrap_median": float(values.mean())}


def write_stored_run(out: Path, encoder: str, folder: str, base: float, budget="absent", n_train=None, weights=None) -> Path:
    data = {"benchmark": "vindr", "encoder": encoder, "head": "linear",
            "metrics": {metric: {**{task: _entry(base + 0.01 * i) for i, task in enumerate(VINDR.tasks)}, "macro": _entry(base)}
                        for metric in ("auprc", "auroc")}}
    if weights is not None:
        data["run_identity"] = {"weights": weights}
    if budget != "absent":
        data["label_budget"] = budget
    if n_train is not None:
        data["n_train_images"] = n_train
    return write_run(run_folder(out, "vindr", encoder, folder), {"metrics.json": json_writer(data)})


@pytest.fixture
def store(tmp_path) -> Path:
    out = tmp_path / "out"
    for encoder, scale in (("rad-dino", 0.5), ("pixels", 0.25)):
        write_stored_run(out, encoder, "linear", scale, budget=None, n_train=13500)
        for fraction in (0.5, 0.05, 0.1):  # written out of order on purpose
            write_stored_run(out, encoder, f"linear_train-{fraction}", scale * fraction ** 0.2,
                             budget={"train_fraction": fraction}, n_train={"0": int(13500 * fraction), "1": int(13500 * fraction) + 2})
    for shots in (16, 2, 4):  # '16' < '2' as text
        write_stored_run(out, "rad-dino", f"linear_shots-{shots}", 0.1 + 0.02 * shots, budget={"shots": shots})
    return out


def test_what_a_run_is_comes_from_metrics_json_never_from_its_folder_name(tmp_path):
    write_stored_run(tmp_path, "e", "linear_train-0.25", 0.5)  # no label_budget: full data, whatever the folder says
    write_stored_run(tmp_path, "e", "renamed-by-hand", 0.5, budget={"shots": 8})
    write_stored_run(tmp_path, "e", "my_head_train-0.5", 0.5, budget={"train_fraction": 0.3})  # the key wins
    budgets = {run.folder.name: (run_budget(run), run.head) for run in stored_runs(tmp_path, "vindr")}
    assert budgets == {
        "linear_train-0.25": (FULL, "linear"), "renamed-by-hand": (Budget("shots", 8.0), "linear"),
        "my_head_train-0.5": (Budget("fraction", 0.3), "linear"),
    }
    assert FULL.value == 1.0 and FULL.label == "100%" and Budget("shots", 1).label == "1 shot"
    assert [run.folder.name for run in full_data_runs(stored_runs(tmp_path, "vindr"))] == ["linear_train-0.25"]


@pytest.mark.parametrize("budget", [{"train_fraction": 0}, {"train_fraction": 1.5}, {"shots": 0}, {"shots": 2.5},
                                    {"fraction": 0.1}, {"shots": 4, "train_fraction": 0.1}, "10%"])
def test_malformed_budget_is_a_clear_error(tmp_path, budget):
    write_stored_run(tmp_path, "e", "linear_x", 0.5, budget=budget)
    with pytest.raises(CxrbenchError, match="label_budget"):
        run_budget(stored_runs(tmp_path, "vindr")[0])


def test_long_table_sorted_numerically_with_full_data_as_fraction_one(store):
    long = efficiency_long_table(VINDR, stored_runs(store, "vindr"), "auprc")
    macro = long[long["task"] == "macro"]
    rad = macro[macro["encoder"] == "rad-dino"]
    assert list(zip(rad["budget_kind"], rad["budget_value"])) == [
        ("fraction", 0.05), ("fraction", 0.1), ("fraction", 0.5), ("fraction", 1.0), ("shots", 2.0), ("shots", 4.0), ("shots", 16.0)]
    assert list(rad["full_data"]) == [False, False, False, True, False, False, False]
    assert list(macro["encoder"].unique()) == ["pixels", "rad-dino"] and set(long["head"]) == {"linear"}
    # every task then macro, per run; raw fractions; n_train_images an int or the mean over seeds
    assert list(long["task"].iloc[:8]) == [*VINDR.tasks, "macro"]
    assert rad["n_train_images"].tolist()[:4] == [676.0, 1351.0, 6751.0, 13500.0]
    assert np.isnan(rad["n_train_images"].iloc[-1])
    assert (long["mean"] < 1).all() and (long["ci_low"] <= long["mean"]).all()
    assert set(long.columns) >= {"encoder", "head", "budget_kind", "budget_value", "metric", "task", "mean", "std",
                                 "ci_low", "ci_high", "n_train_images"}


def test_display_columns_in_budget_order(store):
    display = efficiency_display_table(efficiency_long_table(VINDR, stored_runs(store, "vindr"), "auprc"))
    assert [c.split(" (n=")[0] for c in display.columns] == ["5%", "10%", "50%", "100%", "2 shots", "4 shots", "16 shots"]
    assert display.columns[3] == "100% (n=13,500)"
    assert display.loc["pixels / linear", "16 shots"] == "–"
    assert display.loc["rad-dino / linear", "100% (n=13,500)"].startswith("50.0 ± 1.0 [47.0, 53.0]")


def test_explicit_full_fraction_folder_does_not_duplicate_full_data(tmp_path):
    write_stored_run(tmp_path, "e", "linear", 0.5, budget=None)
    write_stored_run(tmp_path, "e", "linear_train-1.0", 0.4, budget={"train_fraction": 1.0})
    long = efficiency_long_table(VINDR, stored_runs(tmp_path, "vindr"), "auprc")
    macro = long[long["task"] == "macro"]
    assert len(macro) == 1 and macro["mean"].item() == pytest.approx(0.5)


def test_runs_of_random_weights_are_their_own_curve(tmp_path):
    """A `--weights random` budget run beside the released encoder's full-data run must not join its curve."""
    write_stored_run(tmp_path, "rad-dino", "linear", 0.5, budget=None, weights="hf:microsoft/rad-dino@abc")
    write_stored_run(tmp_path, "rad-dino", "linear_train-0.1", 0.2, budget={"train_fraction": 0.1}, weights="random:seed=0")
    runs = stored_runs(tmp_path, "vindr")
    macro = efficiency_long_table(VINDR, runs, "auprc").query("task == 'macro'")
    assert dict(zip(macro["variant"], macro["budget_value"])) == {"": 1.0, RANDOM_INIT: 0.1}
    assert set(macro["encoder"]) == {"rad-dino"}  # the bare name, its variant apart, as in the other CSV files
    labelled = {variant_text(run.variant): run_label(run.encoder, run.method, run.variant) for run in runs}
    assert list(efficiency_display_table(macro).index) == [labelled[""], labelled[RANDOM_INIT]]


def test_the_efficiency_csv_carries_each_runs_variant(tmp_path):
    """`cxrbench curve`'s CSV gives every row the label module's variant of its run (empty: the published setup)."""
    write_stored_run(tmp_path, "rad-dino", "linear", 0.5, budget=None, weights="hf:microsoft/rad-dino@abc")
    write_stored_run(tmp_path, "rad-dino", "linear_train-0.1", 0.2, budget={"train_fraction": 0.1}, weights="random:seed=0")
    result = runner.invoke(app, ["curve", "vindr", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "vindr" / "efficiency_auprc.csv", keep_default_na=False)
    expected = {run.metrics["label_budget"]["train_fraction"] if run.metrics.get("label_budget") else 1.0:
                variant_text(run.variant) for run in stored_runs(tmp_path, "vindr")}
    assert {value: set(part["variant"]) for value, part in table.groupby("budget_value")} == {
        value: {variant} for value, variant in expected.items()}
    assert expected[0.1] == RANDOM_INIT and set(table["encoder"]) == {"rad-dino"}
    assert "rad-dino (random init) / linear" in result.output


def test_write_efficiency_files_and_png(store):
    result = write_efficiency(VINDR, store)
    assert {p.name for p in result.paths.values()} == {"efficiency_auprc.md", "efficiency_auprc.csv", "efficiency_auprc.png"}
    assert all(p.parent == store / "vindr" for p in result.paths.values())
    png = result.paths["png"].read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    with Image.open(result.paths["png"]) as image:
        image.verify()
    with Image.open(result.paths["png"]) as image:
        width, height = image.size
    assert width > height > 100  # two panels side by side (fractions and shots)
    csv = pd.read_csv(result.paths["csv"])
    assert len(csv) == len(result.long) and set(csv["metric"]) == {"auprc"}
    assert "| rad-dino / linear |" in result.paths["md"].read_text()
    assert not list((store / "vindr").glob(".*"))  # no temporary files left


def test_only_full_data_still_plots_with_a_note(tmp_path):
    write_stored_run(tmp_path, "e", "linear", 0.5, budget=None)
    result = write_efficiency(VINDR, tmp_path, "auroc")
    assert result.notes and result.paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    assert result.paths["csv"].name == "efficiency_auroc.csv"


def test_errors_no_runs_and_unknown_metric(tmp_path, store):
    with pytest.raises(CxrbenchError, match="No stored runs of 'vindr'"):
        write_efficiency(VINDR, tmp_path / "empty")
    with pytest.raises(CxrbenchError, match="have no 'accuracy' results"):  # registered, but no run scored it
        write_efficiency(VINDR, store, "accuracy")
    with pytest.raises(CxrbenchError, match="Unknown metric 'acuracy'"):
        write_efficiency(VINDR, store, "acuracy")


def test_cli_curve(store, tmp_path):
    result = runner.invoke(app, ["curve", "vindr", "--out", str(store), "--metric", "auroc"])
    assert result.exit_code == 0, result.output
    for suffix in ("md", "csv", "png"):
        assert (store / "vindr" / f"efficiency_auroc.{suffix}").is_file()
    assert "rad-dino / linear" in result.output and "16 shots" in result.output
    empty = runner.invoke(app, ["curve", "vindr", "--out", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "No stored runs of 'vindr'" in " ".join(empty.output.split())
    # label_budget is what run folders carry
    assert json.loads((store / "vindr/rad-dino/linear_shots-4/metrics.json").read_text())["label_budget"] == {"shots": 4}
