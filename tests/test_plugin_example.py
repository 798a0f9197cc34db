"""The documented plugin example, installed as a distribution (dist-info built from its own pyproject.toml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cxrbench-example-plugin"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A site folder holding the example package and its .dist-info (what `pip install` would leave)."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("site")
    (site / "cxrbench_example_plugin").symlink_to(EXAMPLE / "src" / "cxrbench_example_plugin")
    info = site / f"cxrbench_example_plugin-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
             for group, points in project["entry-points"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines))
    return site


def cli(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", "from cxrbench.cli import main; main()", *args],
                          capture_output=True, text=True, env=env)


def test_example_plugin_is_listed_with_its_origin(plugin_path):
    result = cli(plugin_path, "list", "encoders")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "histogram" in line)
    assert "cxrbench-example-plugin 0.1.0" in row and " 32 " in row


@pytest.mark.slow  # about 30 s on 2 cores (CI budget); the plugin's registration and listing stay in the default suite
def test_example_plugin_runs_a_benchmark(plugin_path, vindr_root, tmp_path):
    result = cli(plugin_path, "run", "vindr", "--encoder", "histogram", "--data-root", str(vindr_root), "--seeds", "1",
                 "--bootstrap", "50", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out/vindr/histogram/linear/metrics.json").read_text())
    assert metrics["metrics"]["auroc"]["macro"]["mean"] > 0.5  # histograms carry the effusions and opacities


@pytest.mark.slow  # about 70 s on 2 cores (CI budget); the plugin's install and encoder stay in the default suite
def test_example_metric_plugin_is_scored_and_tabled(plugin_path, vindr_root, tmp_path):
    """One entry point adds the Brier score: listed, scored beside the benchmark's metrics, tabled, equal to sklearn."""
    import pandas as pd
    from sklearn.metrics import brier_score_loss

    listing = cli(plugin_path, "list", "metrics")
    assert listing.returncode == 0 and "cxrbench-example-plugin 0.1.0" in next(l for l in listing.stdout.splitlines() if "brier" in l)
    out = tmp_path / "out"
    result = cli(plugin_path, "run", "vindr", "--encoder", "pixels", "--metric", "brier", "--data-root", str(vindr_root),
                 "--seeds", "2", "--bootstrap", "50", "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert "Brier score" in result.stdout
    metrics = json.loads((out / "vindr/pixels/linear/metrics.json").read_text())
    predictions = pd.read_parquet(out / "vindr/pixels/linear/predictions.parquet")
    part = predictions[(predictions["seed"] == 1) & (predictions["task"] == "Cardiomegaly")]
    expected = brier_score_loss(part["label"], part["score"])
    assert abs(metrics["metrics"]["brier"]["Cardiomegaly"]["per_seed"]["1"] - expected) < 1e-12
    table = cli(plugin_path, "table", "vindr", "--metric", "brier", "--out", str(out))
    assert table.returncode == 0, table.stderr
    assert "Brier score" in (out / "vindr/table_brier.md").read_text()
    wrong = cli(plugin_path, "run", "scoliosis", "--encoder", "pixels", "--metric", "brier", "--data-root", str(tmp_path))
    assert wrong.returncode == 2 and "scores binary targets" in wrong.stderr
