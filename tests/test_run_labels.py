"""User results apart from the committed CI fixtures, and one label for a run in every output (cxrbench issue 21).

- A fresh clone's results/ (the default --out) holds no run: `reproduce --plan` lists nothing as stored.
- `reproduce` counts a stored run only when it is the kind of run asked for (weights, input size, data) and names
  what it found otherwise.
- A random-init run at another input size on synthetic data carries its label in the terminal, the run's own files,
  `table BENCH` and `table --layout` (Markdown, CSV `variant` column, LaTeX), `compare` (Markdown and CSV) and the
  refusal of a run of other settings.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.synthetic import mark_synthetic
from cxrbench.registry import encoder_spec
from cxrbench.runs.reproduce import OTHER, STORED, ReproduceOptions, stored_status
from cxrbench.results.labels import run_label, run_variant, variant_notes
from cxrbench.tables.latex import latex_escape
from cxrbench.tables.recipes import load_recipe, plan_runs

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "committed"
WIDE = {"COLUMNS": "300"}  # Rich tables and wrapped messages on one line each
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env=WIDE)


def one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- user results apart from the fixtures

def _committed_files(folder: str) -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return listed.stdout.split()


def test_a_fresh_clone_stores_no_run_in_the_default_out(tmp_path):
    """What a clone gets under results/ (the default --out) is the specs only; `reproduce --plan` on exactly those
    files lists every run of rad-dino-1a as still to run."""
    committed = _committed_files("results")
    assert committed and all(path.split("/")[1] in ("published", "recipes") for path in committed), committed
    clone = tmp_path / "clone"
    for path in committed:
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path, clone / path)
    result = invoke("reproduce", "rad-dino-1a", "--plan", "--out", str(clone / "results"))
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "vindr ·" in line]
    assert len(rows) == len(plan_runs(load_recipe("rad-dino-1a"), clone / "results"))
    assert all(line.rstrip().endswith("to run") for line in rows), result.output


def test_the_fixtures_are_committed_apart_and_hold_random_init_runs_on_synthetic_data():
    runs = [path for path in _committed_files("tests/fixtures/committed") if path.endswith("/metrics.json")]
    assert runs
    for path in runs:
        identity = json.loads((REPO / path).read_text())["run_identity"]
        assert run_variant(identity).weights == "random" and run_variant(identity).data == "synthetic", path


@pytest.fixture
def random_init_out(tmp_path) -> Path:
    """An out folder holding one committed fixture: rad-dino's random-init run at 56 px on synthetic VinDr."""
    out = tmp_path / "out"
    shutil.copytree(FIXTURES / "vindr/rad-dino/linear", out / "vindr/rad-dino/linear")
    return out


def test_a_random_init_run_is_not_stored_for_a_real_plan_and_is_named(random_init_out):
    result = invoke("reproduce", "rad-dino-1a", "--encoder", "rad-dino", "--plan", "--out", str(random_init_out))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "rad-dino · linear " in line)
    assert "to run" not in row and "stored" not in row and OTHER in row
    text = one_line(result.output)
    assert (f"{random_init_out / 'vindr/rad-dino/linear'} holds a random-init run at 56 px on synthetic data, not a "
            "released-weights run at 518 px on real data as asked: it is not counted as stored.") in text
    assert "--overwrite" in text


def test_the_same_run_counts_as_stored_only_for_the_same_kind(random_init_out, tmp_path):
    recipe = load_recipe("rad-dino-1a")
    planned = next(p for p in plan_runs(recipe, random_init_out, ["rad-dino"]) if p.entry.tag is None)
    synthetic = tmp_path / "synthetic-vindr"
    mark_synthetic(synthetic, "vindr", {})
    real = tmp_path / "real-vindr"
    real.mkdir()

    def status(**options) -> str:
        return stored_status(planned, ReproduceOptions(random_init_out, **options))[0]

    assert status(data_roots={"vindr": synthetic}, random_init=True, image_size=56) == STORED
    assert status(data_roots={"vindr": real}, random_init=True, image_size=56) == OTHER  # real data asked
    assert status(data_roots={"vindr": synthetic}, image_size=56) == OTHER  # released weights asked
    assert status(data_roots={"vindr": synthetic}, random_init=True) == OTHER  # 518 px asked
    assert status(random_init=True, image_size=56) == OTHER  # no data folder given: the real dataset is meant
    # a run made from a local copy of the released weights (`--weights ENCODER=PATH`) stands for the released run
    metrics_file = random_init_out / "vindr/rad-dino/linear/metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["run_identity"]["weights"] = "sha256:00ff"
    metrics_file.write_text(json.dumps(metrics))
    assert status(data_roots={"vindr": synthetic}, image_size=56) == STORED
    assert status(data_roots={"vindr": synthetic}, random_init=True, image_size=56) == OTHER


# ---------------------------------------------------------------- the label function

WEIGHTS = {"hf:microsoft/rad-dino@0123abcd": None, "none": None, "sha256:00ff": "local weights",
           "random:seed=0": "random init", "random:seed=3": "random init"}


@pytest.mark.parametrize("weights, size, synthetic, tag", list(itertools.product(
    WEIGHTS, [None, "released", 56], [False, True], [None, "sweep"])))
def test_run_label_names_every_variant(weights, size, synthetic, tag):
    released = encoder_spec("rad-dino").preprocessing.size
    identity = {"weights": weights, "synthetic_data": synthetic,
                "preprocessing": {} if size is None else {"size": released if size == "released" else size}}
    expected_notes = [note for note in (WEIGHTS[weights], "56 px" if size == 56 else None,
                                        "synthetic data" if synthetic else None) if note]
    notes = variant_notes("rad-dino", identity)
    assert list(notes) == expected_notes
    bracket = f" ({', '.join(expected_notes)})" if expected_notes else ""
    head = f"linear [{tag}]" if tag else "linear"
    assert run_label("rad-dino", "linear", notes, tag) == f"rad-dino{bracket} / {head}"


# ---------------------------------------------------------------- every output of one random-init synthetic run

LABEL = "dinov2-small (random init, 56 px, synthetic data)"
PIXELS = "pixels (synthetic data)"


@pytest.fixture(scope="module")
def labelled(vindr_root, tmp_path_factory):
    """pixels and a random-init dinov2-small at 56 px, kNN heads (no training), on the synthetic VinDr folder."""
    base = tmp_path_factory.mktemp("labels")
    outputs = {}
    for encoder, extra in (("pixels", []), ("dinov2-small", ["--weights", "random", "--image-size", "56"])):
        result = invoke("run", "vindr", "--encoder", encoder, *extra, "--head", "knn", "--head-param", "k=[10]",
                        "--data-root", str(vindr_root), "--seeds", "2", "--bootstrap", "50", "--out", str(base / "out"),
                        "--cache-dir", str(base / "cache"))
        assert result.exit_code == 0, result.output
        outputs[encoder] = result.output
    return base, outputs


def test_the_terminal_header_and_the_runs_files_carry_the_label(labelled):
    base, outputs = labelled
    assert f"vindr · {LABEL} / knn" in outputs["dinov2-small"]
    assert f"vindr · {PIXELS} / knn" in outputs["pixels"]
    folder = base / "out/vindr/dinov2-small/knn"
    assert f": {LABEL} / knn" in (folder / "table.md").read_text().splitlines()[0]
    assert set(pd.read_csv(folder / "table.csv")["variant"]) == {"random init, 56 px, synthetic data"}


def test_benchmark_and_layout_tables_carry_the_label_in_md_csv_and_tex(labelled):
    base, _ = labelled
    out = base / "out"
    assert invoke("table", "vindr", "--out", str(out)).exit_code == 0
    assert invoke("table", "--layout", "rad-dino-1a", "--out", str(out)).exit_code == 0
    for stem in (out / "vindr/table_auprc", out / "tables/rad-dino-1a"):
        assert f"{LABEL} / knn" in stem.with_suffix(".md").read_text(), stem
        assert latex_escape(f"{LABEL} / knn") in stem.with_suffix(".tex").read_text(), stem
        frame = pd.read_csv(stem.with_suffix(".csv"), keep_default_na=False)
        ours = frame[frame["source"] == "cxrbench"]
        variants = dict(zip(ours["model"], ours["variant"]))
        assert variants == {"dinov2-small": "random init, 56 px, synthetic data", "pixels": "synthetic data"}, stem


def test_comparisons_carry_both_labels(labelled):
    base, _ = labelled
    out = base / "out"
    result = invoke("compare", "vindr", "--encoders", "pixels,dinov2-small", "--head", "knn", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"{LABEL} − {PIXELS} · Cardiomegaly" in (out / "vindr/comparisons/auprc_vs_pixels.md").read_text()
    frame = pd.read_csv(out / "vindr/comparisons/auprc_vs_pixels.csv", keep_default_na=False)
    assert set(frame["variant"]) == {"random init, 56 px, synthetic data"}
    assert set(frame["reference_variant"]) == {"synthetic data"}


def test_a_run_of_other_settings_is_refused_naming_both_kinds(labelled, vindr_root):
    base, _ = labelled
    result = invoke("run", "vindr", "--encoder", "dinov2-small", "--weights", "random", "--image-size", "28", "--head",
                    "knn", "--head-param", "k=[10]", "--data-root", str(vindr_root), "--seeds", "2", "--bootstrap", "50",
                    "--out", str(base / "out"), "--cache-dir", str(base / "cache"))
    assert result.exit_code != 0
    assert ("holds a run with other settings (preprocessing differ): it holds a random-init run at 56 px on synthetic "
            "data, this run is a random-init run at 28 px on synthetic data") in one_line(result.output)


def test_reproduce_hands_each_encoder_its_local_weights(tmp_path):
    """`reproduce --weights mrm=PATH`: the job of mrm's rows loads that file; rows of other encoders keep their
    released source, and a recipe row's own weights (its random-init row) come first."""
    from cxrbench.runs.reproduce import unit_spec

    seen = {}
    recipe = load_recipe("rad-dino-1b")
    options = ReproduceOptions(tmp_path, weights={"mrm": Path("/models/MRM.pth")})
    for name in ("mrm", "rad-dino"):
        runs = tuple(p for p in plan_runs(recipe, tmp_path, [name]) if p.entry is recipe.runs[0])
        seen[name] = unit_spec(runs, options).weights  # the RunSpec its job runs
    assert seen == {"mrm": "/models/MRM.pth", "rad-dino": None}
