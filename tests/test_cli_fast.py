"""The command line answers fast and checks every option before work starts (issue 21, item 3 and fault F5).

Fast: `--help`, `--version`, `list` and name errors import no torch, pandas, scikit-learn, transformers, matplotlib or
MONAI (the import-level property that `tests/perf/perf_cli.py` times; checked here without timing, so that CI catches
a regression on any machine). Before work: bad option values, a repeated encoder, an unwritable --out and missing
weights are refused before any data folder is scanned, each naming the option or path.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cxrbench import study
from cxrbench.runs import pipeline
from cxrbench.cli import app
from cxrbench.encoders import weights as weights_module
from cxrbench.resources import project_root

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"

HEAVY = ("torch", "pandas", "sklearn", "scipy", "transformers", "matplotlib", "monai", "timm", "open_clip")


def test_help_list_and_name_errors_import_no_heavy_library():
    """In a fresh interpreter: import the CLI, then answer --help, --version, list and name/option errors."""
    script = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        import cxrbench.cli
        heavy = {HEAVY!r}
        def loaded():
            return sorted({{m.split('.')[0] for m in sys.modules}} & set(heavy))
        assert not loaded(), ('import cxrbench.cli', loaded())
        runner = CliRunner()
        for args, code in ((['--help'], 0), (['--version'], 0), (['list', 'benchmarks'], 0), (['list'], 0),
                           (['list', 'tables'], 0), (['run', 'vindr', '--encoder', 'rad-dinoo'], 2),
                           (['run', 'vindrr', '--encoder', 'pixels'], 2), (['explain', 'vindr', '-e', 'rad-dinoo'], 2),
                           (['run', 'vindr', '-e', 'rad-dino', '--image-size', '100'], 2),
                           (['run', 'vindr', '-e', 'pixels', '--bootstrap', '-5'], 2),
                           (['data', 'check', 'vindrr'], 2), (['reproduce', 'rad-dino-1aa'], 2)):
            result = runner.invoke(cxrbench.cli.app, args)
            assert result.exit_code == code, (args, result.exit_code, result.output)
            assert not loaded(), (args, loaded())
    """)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def no_data_scan(monkeypatch):
    """Any read of a data folder fails the test: the checks under test must come first."""
    def scanned(*args, **kwargs):
        raise AssertionError("the data folder was scanned before the options were checked")

    monkeypatch.setattr(study, "load_benchmark", scanned)
    monkeypatch.setattr(pipeline, "load_benchmark", scanned)
    monkeypatch.setattr(pipeline, "prepare_study", scanned)


def _run(tmp_path: Path, *extra: str):
    return runner.invoke(app, ["run", "vindr", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "out"),
                               "--cache-dir", str(tmp_path / "cache"), *extra])


@pytest.mark.parametrize("option, value", [("--bootstrap", "-5"), ("--image-size", "0"), ("--image-size", "-3"),
                                           ("--shard-size", "0")])
def test_out_of_range_options_are_refused_naming_the_option(tmp_path, no_data_scan, option, value):
    result = _run(tmp_path, "--encoder", "pixels", option, value)
    assert result.exit_code == 2, result.output
    assert option in result.output


@pytest.mark.parametrize("option, value", [("--bootstrap", "-1"), ("--image-size", "0"), ("--seeds", "0"),
                                           ("--shard-size", "0")])
def test_reproduce_refuses_out_of_range_options_before_any_run(tmp_path, no_data_scan, option, value):
    result = runner.invoke(app, ["reproduce", "rad-dino-1a", "--weights", "random", "--out", str(tmp_path), option, value])
    assert result.exit_code == 2, result.output
    assert option in result.output


def test_image_size_that_is_no_multiple_of_the_patch_size_is_refused_before_the_data(tmp_path, no_data_scan):
    patch = yaml.safe_load((project_root() / "adapters" / "rad-dino.yaml").read_text())["architecture"]["patch_size"]
    size = 7 * patch + 2
    result = _run(tmp_path, "--encoder", "rad-dino", "--image-size", str(size))
    assert result.exit_code == 2, result.output
    assert f"--image-size {size}" in result.output and f"patch size {patch}" in result.output


def test_bootstrap_zero_is_allowed_and_its_meaning_is_documented():
    result = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "400"})
    assert "0 skips the bootstrap" in " ".join(result.output.split())


def test_out_that_cannot_be_written_is_refused_before_the_data(tmp_path, no_data_scan):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "results"
    result = runner.invoke(app, ["run", "vindr", "--encoder", "pixels", "--data-root", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--out" in result.output and str(out) in result.output


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_the_data(tmp_path, no_data_scan):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        result = runner.invoke(app, ["run", "vindr", "--encoder", "pixels", "--data-root", str(tmp_path),
                                     "--out", str(locked / "results")])
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2 and "--out" in result.output, result.output


def test_compare_refuses_an_encoder_named_twice(tmp_path):
    result = runner.invoke(app, ["compare", "vindr", "--encoders", "pixels,pixels", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "more than once" in result.output


def test_reproduce_takes_weights_random_like_run_and_random_init_is_a_deprecated_alias(tmp_path):
    plan = runner.invoke(app, ["reproduce", "rad-dino-1a", "--weights", "random", "--plan", "--out", str(tmp_path)])
    assert plan.exit_code == 0, plan.output
    old = runner.invoke(app, ["reproduce", "rad-dino-1a", "--random-init", "--plan", "--out", str(tmp_path)])
    assert old.exit_code == 0 and "deprecated" in old.output and "--weights random" in old.output, old.output
    other = runner.invoke(app, ["reproduce", "rad-dino-1a", "--weights", "/some/file.pt", "--plan"])
    assert other.exit_code == 2 and "--weights ENCODER=PATH" in " ".join(other.output.split()), other.output
    typo = runner.invoke(app, ["reproduce", "rad-dino-1a", "--weights", "rad-dinoo=/some/file.pt", "--plan"])
    assert typo.exit_code == 2 and "rad-dino" in typo.output, typo.output
    both = runner.invoke(app, ["reproduce", "rad-dino-1a", "--weights", "random", "--weights", "mrm=/m.pth", "--plan"])
    assert both.exit_code == 2 and "together" in both.output, both.output


def test_list_tables_names_every_recipe_with_its_benchmarks():
    result = runner.invoke(app, ["list", "tables"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    recipes = sorted((project_root() / "results" / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        recipe = yaml.safe_load(path.read_text())
        row = next((line for line in lines if line.split() and line.split()[0] == path.stem), None)
        assert row is not None, path.stem
        for benchmark in dict.fromkeys(run["benchmark"] for run in recipe["runs"]):
            assert benchmark in row, (path.stem, benchmark)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def hub(monkeypatch):
    """A Hugging Face Hub without the weights: the cache misses, the network attempt logs retries and fails."""
    import huggingface_hub

    calls = {"online": 0}

    def snapshot_download(repo, revision=None, allow_patterns=None, local_files_only=False, **kwargs):
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not in the cache")
        calls["online"] += 1
        for attempt in range(1, 7):
            logging.getLogger("huggingface_hub.utils._http").warning(f"Retrying in 1s [Retry {attempt}/5].")
        raise ConnectionError("Max retries exceeded")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    collect = _Collect()
    logging.getLogger("huggingface_hub").addHandler(collect)
    yield calls, collect
    logging.getLogger("huggingface_hub").removeHandler(collect)


def _hub_spec():
    return yaml.safe_load((project_root() / "adapters" / "rad-dino.yaml").read_text())["weights"]


def test_unreachable_hub_gives_one_message_before_the_data_and_no_retry_lines(tmp_path, hub, monkeypatch, no_data_scan):
    calls, collect = hub
    monkeypatch.setattr(weights_module, "_hub_reachable", lambda timeout_s=3.0: True)
    result = _run(tmp_path, "--encoder", "rad-dino")
    assert result.exit_code == 2, result.output
    weights = _hub_spec()
    text = " ".join(result.output.split())
    assert weights["hub_repo"] in text and weights["revision"] in text and "hf download" in text
    assert calls["online"] == 1 and not collect.lines and "Retrying" not in result.output
    assert result.output.count("error:") == 1


def test_no_network_is_found_without_waiting_for_the_hub(tmp_path, hub, monkeypatch, no_data_scan):
    calls, _ = hub
    monkeypatch.setattr(weights_module, "_hub_reachable", lambda timeout_s=3.0: False)
    result = _run(tmp_path, "--encoder", "rad-dino")
    assert result.exit_code == 2 and calls["online"] == 0, result.output
    assert "could not be reached" in result.output and "hf download" in " ".join(result.output.split())


def test_offline_mode_names_the_download_command_without_trying_the_network(tmp_path, hub, monkeypatch, no_data_scan):
    calls, _ = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _run(tmp_path, "--encoder", "rad-dino")
    assert result.exit_code == 2 and calls["online"] == 0, result.output
    assert "offline mode" in result.output and "hf download" in " ".join(result.output.split())
