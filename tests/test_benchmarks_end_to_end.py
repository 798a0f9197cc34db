"""`cxrbench run` end to end on CANDID-PTX, RSNA-Pneumonia and PadChest-lateral folders in their official layouts,
then the RAD-DINO Table 1b and C.1 layouts from the stored runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.candid.synthetic import write_synthetic_candid
from cxrbench.data.padchest.synthetic import write_synthetic_padchest
from cxrbench.data.rsna.synthetic import write_synthetic_rsna
from cxrbench.data.splits import check_patient_disjoint
from cxrbench.registry import benchmark_spec

runner = CliRunner()
WRITERS = {
    "candid-ptx": lambda root: write_synthetic_candid(root, patients=80, size=32, seed=1),  # every fold with each finding
    "rsna-pneumonia": lambda root: write_synthetic_rsna(root, patients=60, size=32, seed=1),
    "padchest-lateral": lambda root: write_synthetic_padchest(root, patients=80, size=32, seed=1),
}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """One pixels / logistic run of every benchmark, on folders in the official layouts."""
    base = tmp_path_factory.mktemp("benchmarks-e2e")
    for benchmark, write in WRITERS.items():
        root = write(base / "data" / benchmark)
        result = runner.invoke(app, ["run", benchmark, "--encoder", "pixels", "--head", "logistic", "--data-root", str(root),
                                     "--out", str(base / "results"), "--cache-dir", str(base / "cache"), "--seeds", "2",
                                     "--bootstrap", "50"])
        assert result.exit_code == 0, result.output
    return base


@pytest.mark.parametrize("benchmark", list(WRITERS))
def test_benchmark_runs_end_to_end_with_patient_disjoint_splits(benchmark, out):
    folder = out / "results" / benchmark / "pixels" / "logistic"
    manifest = pd.read_parquet(folder / "splits.parquet")
    check_patient_disjoint(manifest)
    spec = benchmark_spec(benchmark)
    tests = [set(manifest.loc[(manifest["seed"] == s) & (manifest["split"] == "test"), "image_id"]) for s in (0, 1)]
    trains = [set(manifest.loc[(manifest["seed"] == s) & (manifest["split"] == "train"), "image_id"]) for s in (0, 1)]
    assert trains[0] != trains[1]  # train/val redrawn per seed
    fixed_test = spec.split.scheme != "kfold" and spec.split.test == "fixed"  # k-fold: each seed tests on its fold
    assert (tests[0] == tests[1]) == fixed_test  # the test split as the spec says
    assert spec.split.scheme != "kfold" or not tests[0] & tests[1]
    patients = manifest[manifest["seed"] == 0].groupby("split")["patient_id"].nunique()
    share = patients / patients.sum()
    assert share["test"] == pytest.approx(spec.split.fractions[2], abs=0.05)
    metrics = json.loads((folder / "metrics.json").read_text())
    predictions = pd.read_parquet(folder / "predictions.parquet")
    for task in spec.tasks:
        rows = predictions[(predictions["seed"] == 0) & (predictions["task"] == task)].dropna(subset=["label"])
        expected = average_precision_score(rows["label"], rows["score"])
        assert metrics["metrics"]["auprc"][task]["per_seed"]["0"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("layout, published", [("rad-dino-1b", "80.1"), ("rad-dino-c1", "80.33")])
def test_paper_layouts_from_the_stored_runs(layout, published, out):
    result = runner.invoke(app, ["table", "--layout", layout, "--out", str(out / "results")])
    assert result.exit_code == 0, result.output
    markdown = (out / "results/tables" / f"{layout}.md").read_text()
    assert "pixels (synthetic data) / logistic" in markdown and published in markdown
    assert (out / "results/tables" / f"{layout}.tex").read_text().count("\\toprule") == 1
