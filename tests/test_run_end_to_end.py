"""`cxrbench run` on a VinDr-CXR-layout folder: files, metrics that scikit-learn reproduces, the cache,
interrupted runs, Hugging Face checkpoints loaded offline, and clear failures on bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import WeightsError
from cxrbench.registry import benchmark_spec, encoder_spec

TASKS = list(benchmark_spec("vindr").tasks)
runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def run_args(root, out, cache, *extra):
    return ["run", "vindr", "--data-root", str(root), "--out", str(out), "--cache-dir", str(cache),
            "--seeds", "2", "--bootstrap", "200", *extra]


@pytest.fixture(scope="module")
def pixels_run(vindr_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("pixels-run")
    result = invoke(*run_args(vindr_root, base / "out", base / "cache", "--encoder", "pixels"))
    assert result.exit_code == 0, result.output
    return base, result


def test_run_writes_every_file_with_the_stated_columns(pixels_run):
    base, result = pixels_run
    folder = base / "out/vindr/pixels/linear"
    for name in ("config.yaml", "predictions.parquet", "splits.parquet", "metrics.json", "table.md", "table.csv"):
        assert (folder / name).is_file(), name
    predictions = pd.read_parquet(folder / "predictions.parquet")
    # then each patient group's column (benchmarks/vindr.yaml `groups:`), for stratified results
    assert list(predictions.columns) == ["image_id", "patient_id", "seed", "task", "label", "score", "group:sex", "group:age"]
    assert set(predictions["task"]) == set(TASKS) and set(predictions["seed"]) == {0, 1}
    assert "AUPRC" in result.output and "Macro" in result.output
    table = pd.read_csv(folder / "table.csv")
    assert set(table["metric"]) == {"auprc", "auroc"} and set(table["task"]) == {*TASKS, "macro"}


def test_metrics_recomputed_with_sklearn_from_predictions(pixels_run):
    base, _ = pixels_run
    folder = base / "out/vindr/pixels/linear"
    predictions = pd.read_parquet(folder / "predictions.parquet")
    metrics = json.loads((folder / "metrics.json").read_text())
    for name, function in (("auprc", average_precision_score), ("auroc", roc_auc_score)):
        macro_per_seed = []
        for seed in (0, 1):
            values = []
            for task in TASKS:
                part = predictions[(predictions["seed"] == seed) & (predictions["task"] == task)]
                value = function(part["label"], part["score"])
                assert abs(value - metrics["metrics"][name][task]["per_seed"][str(seed)]) < 1e-9
                values.append(value)
            macro_per_seed.append(np.mean(values))
        macro = metrics["metrics"][name]["macro"]
        assert abs(np.mean(macro_per_seed) - macro["mean"]) < 1e-9
        assert abs(np.std(macro_per_seed, ddof=1) - macro["std"]) < 1e-9
        for task in (*TASKS, "macro"):
            entry = metrics["metrics"][name][task]
            assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"], (name, task, entry)


def test_splits_are_patient_disjoint_and_saved(pixels_run, vindr_root):
    base, _ = pixels_run
    splits = pd.read_parquet(base / "out/vindr/pixels/linear/splits.parquet")
    assert set(splits["split"]) == {"train", "val", "test"}
    assert splits.groupby(["seed", "patient_id"])["split"].nunique().max() == 1
    val0 = set(splits[(splits.seed == 0) & (splits.split == "val")].image_id)
    val1 = set(splits[(splits.seed == 1) & (splits.split == "val")].image_id)
    assert val0 != val1  # a new validation draw per seed


@pytest.mark.slow  # about 35 s on 2 cores (CI budget); cache reuse stays in tests/test_cache.py, head determinism in test_linear_probe
def test_second_run_reuses_cache_and_reproduces_metrics(pixels_run, vindr_root):
    base, _ = pixels_run
    before = (base / "out/vindr/pixels/linear/metrics.json").read_text()
    again = invoke(*run_args(vindr_root, base / "out", base / "cache", "--encoder", "pixels"))
    assert again.exit_code == 0, again.output
    assert "no encoder forward pass" in again.output
    assert (base / "out/vindr/pixels/linear/metrics.json").read_text() == before


def test_table_command_compares_runs_with_published(pixels_run):
    base, _ = pixels_run
    result = invoke("table", "vindr", "--out", str(base / "out"))
    assert result.exit_code == 0, result.output
    assert "pixels (synthetic data) / linear" in result.output
    markdown = (base / "out/vindr/table_auprc.md").read_text()
    assert "pixels (synthetic data) / linear" in markdown


def _save_random_hf_checkpoint(name: str, folder: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    arch = encoder_spec(name).architecture
    torch.manual_seed(7)
    Dinov2Model(Dinov2Config(**arch)).save_pretrained(folder, safe_serialization=True)


@pytest.fixture(scope="module")
def rad_dino_dir(tmp_path_factory) -> Path:
    """A Hugging Face folder of RAD-DINO's exact architecture (config.json + model.safetensors), random weights."""
    folder = tmp_path_factory.mktemp("rad-dino-hf")
    _save_random_hf_checkpoint("rad-dino", folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def test_rad_dino_matches_transformers_reference_at_518(rad_dino_dir, vindr_root, monkeypatch):
    from transformers import Dinov2Model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = build_encoder("rad-dino", weights=str(rad_dino_dir))
    image = read_image(sorted((vindr_root / "test").glob("*.dicom"))[0])
    pixels = encoder.preprocessor(image)[None]
    assert pixels.shape == (1, 3, 518, 518)
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True, layers=(3, 11)))
    reference = Dinov2Model.from_pretrained(rad_dino_dir, local_files_only=True).eval()
    with torch.no_grad():
        out = reference(pixel_values=pixels, output_hidden_states=True)
    assert features.global_embedding.shape == (1, 768) and features.patch_tokens.shape == (1, 37, 37, 768)
    assert torch.allclose(features.global_embedding, out.last_hidden_state[:, 0], atol=1e-5)
    assert torch.allclose(features.patch_tokens.reshape(1, -1, 768), out.last_hidden_state[:, 1:], atol=1e-5)
    assert torch.allclose(features.layers[11].reshape(1, -1, 768), out.last_hidden_state[:, 1:], atol=1e-5)
    layer3 = reference.layernorm(out.hidden_states[4])[:, 1:]
    assert torch.allclose(features.layers[3].reshape(1, -1, 768), layer3, atol=1e-5)
    assert encoder.weights.identity.startswith("sha256:")


@pytest.mark.slow  # about a minute on 2 cores
def test_run_rad_dino_from_local_hf_folder_offline(rad_dino_dir, vindr_root, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    result = invoke(*run_args(vindr_root, tmp_path / "out", tmp_path / "cache", "--encoder", "rad-dino",
                              "--weights", str(rad_dino_dir), "--image-size", "56"), env=env)
    assert result.exit_code == 0, result.output
    config = (tmp_path / "out/vindr/rad-dino/linear/config.yaml").read_text()
    assert "sha256:" in config and "size: 56" in config
    table = invoke("table", "vindr", "--out", str(tmp_path / "out"))
    assert table.exit_code == 0, table.output
    markdown = (tmp_path / "out/vindr/table_auprc.md").read_text()
    published_row = next(line for line in markdown.splitlines() if "RAD-DINO (published)" in line)
    assert "69.9 ± 0.3" in published_row and "52.8" in published_row  # Table 1a: CM 69.9 (0.3), aggregate 52.8


def test_wrong_architecture_checkpoint_is_refused(tmp_path):
    _save_random_hf_checkpoint("dinov2-small", tmp_path / "small")
    with pytest.raises(WeightsError, match="hidden_size=384 \\(expected 768\\)"):
        build_encoder("rad-dino", weights=str(tmp_path / "small")).model


def test_missing_weights_say_where_to_get_them(vindr_root, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    result = invoke(*run_args(vindr_root, tmp_path / "out", tmp_path / "cache", "--encoder", "rad-dino"), env=env)
    assert result.exit_code == 2
    assert "https://huggingface.co/microsoft/rad-dino" in result.output and "--weights" in result.output
    assert not (tmp_path / "out/vindr/rad-dino").exists()


def test_unknown_encoder_suggests_close_names(vindr_root, tmp_path):
    result = invoke(*run_args(vindr_root, tmp_path / "out", tmp_path / "cache", "--encoder", "raddino"))
    assert result.exit_code == 2 and "Did you mean: rad-dino" in result.output


def test_unknown_benchmark_suggests_close_names(tmp_path):
    result = invoke("data", "check", "vinder", "--data-root", str(tmp_path))
    assert result.exit_code == 2 and "Did you mean: vindr" in result.output


def test_corrupt_image_fails_clearly_and_leaves_no_results(vindr_copy, tmp_path):
    victim = sorted((vindr_copy / "train").glob("*.dicom"))[5]
    victim.write_bytes(b"DICM" + os.urandom(300))
    result = invoke(*run_args(vindr_copy, tmp_path / "out", tmp_path / "cache", "--encoder", "pixels"))
    assert result.exit_code == 2
    assert victim.name in result.output.replace("\n", "")
    assert not (tmp_path / "out/vindr/pixels").exists()


def test_task_without_positives_is_refused(vindr_copy, tmp_path):
    path = vindr_copy / "annotations/image_labels_test.csv"
    frame = pd.read_csv(path)
    frame["Tuberculosis"] = 0
    frame.to_csv(path, index=False)
    result = invoke(*run_args(vindr_copy, tmp_path / "out", tmp_path / "cache", "--encoder", "pixels"))
    assert result.exit_code == 2
    assert "Task 'Tuberculosis' has no positive example in the test split" in " ".join(result.output.split())


@pytest.mark.slow  # two minutes on 2 cores; extraction resume is also pinned by tests/test_cache.py
def test_killed_run_resumes_with_identical_results(vindr_root, tmp_path):
    """SIGKILL during extraction; the rerun encodes only what is missing and matches an uninterrupted run."""
    command = [sys.executable, "-c", "from cxrbench.cli import main; main()"]
    args = ["--encoder", "dinov2-small", "--weights", "random", "--image-size", "112", "--batch-size", "8",
            "--shard-size", "16", "--workers", "0"]
    killed_out, killed_cache = tmp_path / "killed", tmp_path / "killed-cache"
    process = subprocess.Popen(command + run_args(vindr_root, killed_out, killed_cache, *args),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed_cache.glob("features/*/shards/0*"))) < 2:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed_out / "vindr/dinov2-small/linear/metrics.json").exists()
    resumed = subprocess.run(command + run_args(vindr_root, killed_out, killed_cache, *args), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    reused = int(resumed.stdout.split("reused ")[1].split()[0])
    assert reused >= 32
    clean_out = tmp_path / "clean"
    clean = subprocess.run(command + run_args(vindr_root, clean_out, tmp_path / "clean-cache", *args), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    resumed_metrics = json.loads((killed_out / "vindr/dinov2-small/linear/metrics.json").read_text())
    clean_metrics = json.loads((clean_out / "vindr/dinov2-small/linear/metrics.json").read_text())
    commands = [m["provenance"].pop("command") for m in (resumed_metrics, clean_metrics)]
    assert [str(killed_out) in commands[0], str(clean_out) in commands[1]] == [True, True]  # each its own --out
    assert resumed_metrics == clean_metrics
    shutil.rmtree(tmp_path / "clean-cache")


def test_cache_ls_and_clear(pixels_run, tmp_path):
    base, _ = pixels_run
    cache = tmp_path / "cache"
    shutil.copytree(base / "cache", cache)
    listing = invoke("cache", "ls", "--cache-dir", str(cache))
    assert listing.exit_code == 0 and "pixels" in listing.output
    cleared = invoke("cache", "clear", "--encoder", "pixels", "--yes", "--cache-dir", str(cache))
    assert cleared.exit_code == 0 and "removed 1 store" in cleared.output
    assert not list((cache / "features").iterdir())


def test_list_shows_every_kind():
    for kind, name in (("encoders", "rad-dino"), ("heads", "linear"), ("benchmarks", "vindr")):
        result = invoke("list", kind)
        assert result.exit_code == 0 and name in result.output and "built-in" in result.output
    encoders = invoke("list", "encoders").output
    assert "microsoft/rad-dino@24bf2cc" in encoders and "MSRLA" in encoders


@pytest.mark.parametrize("head", ["knn", "logistic"])
def test_other_heads_run_end_to_end(head, pixels_run, vindr_root):
    base, _ = pixels_run
    result = invoke(*run_args(vindr_root, base / "out", base / "cache", "--encoder", "pixels", "--head", head))
    assert result.exit_code == 0, result.output
    assert "no encoder forward pass" in result.output  # the heads share the cached features
    metrics = json.loads((base / f"out/vindr/pixels/{head}/metrics.json").read_text())
    assert metrics["head"] == head and metrics["heads"]["0"]["binary"]["chosen"]
