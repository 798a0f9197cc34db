"""A new user's first hour: text printed as written, threads sized to the work, progress inside training, Ctrl-C,
tables that fit 80 columns, the demo labelled for what it is, weights advice that works, names checked first."""

from __future__ import annotations

import json
import re

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from cxrbench import threads
from cxrbench.runs import fanout, pipeline
from cxrbench.cli import app
from cxrbench.console import fitted_table
from cxrbench.heads.linear import LinearProbe
from cxrbench.evaluations.probe import ProbeEvaluation
from cxrbench.runs.pipeline import EncoderOptions, MachineOptions
from cxrbench.registry import benchmark_spec
from cxrbench.results.store import stored_runs
from cxrbench.tables.runs import comparison_table, run_display_table
from cxrbench.study import StudyOptions

runner = CliRunner()
TASKS = list(benchmark_spec("vindr").tasks)


def run_args(root, out, cache, *extra):
    return ["run", "vindr", "--data-root", str(root), "--out", str(out), "--cache-dir", str(cache), "--seeds", "2",
            "--bootstrap", "50", *extra]


@pytest.fixture(scope="module")
def two_runs(vindr_root, tmp_path_factory):
    """pixels and a random-init dinov2-small on the synthetic VinDr folder, as the demo does."""
    base = tmp_path_factory.mktemp("first-hour")
    for extra in (["--encoder", "pixels"], ["--encoder", "dinov2-small", "--weights", "random", "--image-size", "56"]):
        result = runner.invoke(app, run_args(vindr_root, base / "out", base / "cache", *extra, "--head-param", "min_steps=50"))
        assert result.exit_code == 0, result.output
    return base


# -- rich output never eats user text --------------------------------------------------------------------------
def test_brackets_in_user_text_are_printed_as_written(tmp_path):
    """The faults as found: `--data-root '/x[/y]'` crashed with MarkupError, a path with `[v1]` lost it."""
    for root in ("/x[/y]", str(tmp_path / "data[v1]")):
        result = runner.invoke(app, ["data", "check", "vindr", "--data-root", root])
        assert result.exit_code == 2, result.output
        assert root in " ".join(result.output.split()).replace(" ", "") or root in result.output


def test_decoder_advice_keeps_its_extra_name(vindr_copy, tmp_path):
    """`pip install cxrbench[dicom]` printed as `pip install cxrbench`."""
    victim = sorted((vindr_copy / "train").glob("*.dicom"))[0]
    victim.write_bytes(victim.read_bytes()[:-1000])  # the header reads, the pixel data is short
    result = runner.invoke(app, run_args(vindr_copy, tmp_path / "out", tmp_path / "cache", "--encoder", "pixels"))
    assert result.exit_code == 2 and "cxrbench[dicom]" in result.output and "label CSV" in result.output


# -- threads ---------------------------------------------------------------------------------------------------
def test_threads_follow_the_work_and_are_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads.set_thread_cap(None)
    before = torch.get_num_threads()
    with threads.use_threads("light") as used:
        assert used == 1 == torch.get_num_threads()
    with threads.use_threads("heavy") as used:
        assert used == threads.available_cores() == torch.get_num_threads()
    assert torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.threads_for("heavy") == 3
    threads.set_thread_cap(1)
    try:
        assert threads.threads_for("heavy") == 1  # --threads wins over the environment
    finally:
        threads.set_thread_cap(None)


def test_the_linear_head_trains_on_one_thread_and_shows_its_epochs(vindr_root, tmp_path, monkeypatch):
    seen = []
    original = LinearProbe.fit

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LinearProbe, "fit", spy)

    class Recorder:
        def __init__(self):
            self.bars: dict[str, list[int]] = {}

        def task(self, description, total, transient=False):
            self.bars[description] = [total, 0]
            return lambda n: self.bars[description].__setitem__(1, self.bars[description][1] + n)

        def note(self, message):
            pass

    recorder = Recorder()
    pipeline.evaluate(StudyOptions("vindr", vindr_root, seeds=2, bootstrap_resamples=20),
                      ProbeEvaluation(tmp_path / "out", head_params={"min_steps": 30}), EncoderOptions(["pixels"]),
                      MachineOptions(tmp_path / "cache"), recorder)
    assert seen == [1, 1]
    epoch_bars = {d: v for d, v in recorder.bars.items() if "epochs" in d}
    assert set(epoch_bars) == {"linear head, seed 0: epochs", "linear head, seed 1: epochs"}
    assert all(total == done and total >= 30 for total, done in epoch_bars.values())


def test_threads_option_and_device_auto_are_reported(vindr_root, tmp_path):
    result = runner.invoke(app, run_args(vindr_root, tmp_path / "out", tmp_path / "cache", "--encoder", "pixels",
                                         "--threads", "1", "--seeds", "1"))
    assert result.exit_code == 0, result.output
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device: {expected}" in result.output and "up to 1 CPU threads" in result.output
    # output that is no terminal (CliRunner's, a log file) gets progress as lines, not a bar drawn only at the end
    assert re.search(r"^training linear heads on pixels: 0/1$", result.output, re.MULTILINE)
    assert re.search(r"^training linear heads on pixels: 1/1 \(\d+ s\)$", result.output, re.MULTILINE)


def test_ctrl_c_says_what_was_kept_and_that_a_rerun_resumes(vindr_root, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fanout, "evaluate", interrupted)  # each job's call of the pipeline
    result = runner.invoke(app, run_args(vindr_root, tmp_path / "out", tmp_path / "cache", "--encoder", "pixels"))
    assert result.exit_code == 130
    assert "interrupted" in result.output and "resumes" in result.output and "Traceback" not in result.output


# -- tables at 80 columns --------------------------------------------------------------------------------------
def _rendered(renderable, width: int) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def _numbers(frame) -> set[str]:
    """Every estimate and CI of a display frame, as printed: each must be shown whole."""
    cells = " ".join(map(str, frame.to_numpy().ravel()))
    return set(re.findall(r"\d+\.\d ± \d+\.\d|\[\d+\.\d, \d+\.\d\]", cells))


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_run_and_comparison_tables_fit_any_width_without_cutting_a_number(two_runs, width):
    runs = stored_runs(two_runs / "out", "vindr")
    frames = [run_display_table(run.metrics, TASKS) for run in runs]
    frames.append(comparison_table(benchmark_spec("vindr"), runs, "auprc"))
    for frame in frames:
        text = _rendered(fitted_table(frame, "title", width=width), width)
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width
        assert "…" not in text
        missing = [n for n in _numbers(frame) if n not in text]
        assert not missing, (missing, text)
        assert all(word in text.split() for task in TASKS for word in task.split())  # headers wrap at words only


# -- the demo says what it is ----------------------------------------------------------------------------------
def test_runs_on_synthetic_data_are_labelled_everywhere(two_runs):
    for run in stored_runs(two_runs / "out", "vindr"):
        assert run.metrics["run_identity"]["synthetic_data"] is True
        assert "synthetic data" in run.label
        assert "Synthetic data" in (run.folder / "table.md").read_text()
        assert "synthetic_data: true" in (run.folder / "config.yaml").read_text()
    table = runner.invoke(app, ["table", "vindr", "--out", str(two_runs / "out")])
    assert table.exit_code == 0 and "pixels (synthetic data) / linear" in table.output
    layout = runner.invoke(app, ["table", "--layout", "rad-dino-1a", "--diff", "--out", str(two_runs / "out")])
    assert layout.exit_code == 0, layout.output
    lines = (two_runs / "out/tables/rad-dino-1a.md").read_text().splitlines()
    ours = [line for line in lines if line.startswith("| pixels") or line.startswith("| dinov2-small")]
    assert ours and all("synthetic data" in line for line in ours)
    table_rows = [line.split("|")[1] for line in lines if line.startswith("|")]
    assert not any("−" in label and "synthetic" in label for label in table_rows)  # no difference rows for them
    assert not any("**" in line for line in ours)  # and they never take the "best" mark from a published row


def test_table_after_the_demo_finds_the_demos_runs(two_runs, tmp_path, monkeypatch):
    demo = tmp_path / "cxrbench-demo/results"
    demo.mkdir(parents=True)
    (demo / "vindr").symlink_to(two_runs / "out/vindr")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["table", "vindr"])
    assert result.exit_code == 2
    assert "cxrbench table vindr --out cxrbench-demo/results" in " ".join(result.output.split())


# -- weights, names, commands ----------------------------------------------------------------------------------
def test_missing_weights_give_a_download_command_that_works(vindr_root, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")}
    result = runner.invoke(app, run_args(vindr_root, tmp_path / "out", tmp_path / "cache", "--encoder", "rad-dino"), env=env)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert ("`hf download microsoft/rad-dino config.json model.safetensors --revision "
            "24bf2cc3948650ce51e9d027fbd9eabba2b31ef9`") in message
    assert "HF_HUB_OFFLINE=1" in message and "huggingface-cli" not in message


def test_hub_failures_are_said_in_words(monkeypatch, tmp_path):
    import huggingface_hub

    from cxrbench.encoders.weights import resolve_weights
    from cxrbench.errors import WeightsError
    from cxrbench.registry import encoder_spec

    def unreachable(*args, **kwargs):
        raise ConnectionError("Max retries exceeded with url")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(WeightsError) as excinfo:
        resolve_weights(encoder_spec("dinov2-small"))
    message = str(excinfo.value)
    assert "could not be reached" in message and "ConnectionError" not in message and "hf download facebook/dinov2-small" in message


def test_unknown_encoder_is_reported_before_the_data_is_read(tmp_path):
    result = runner.invoke(app, run_args(tmp_path / "no-such-folder", tmp_path / "out", tmp_path / "cache", "--encoder", "rad-dinoo"))
    assert result.exit_code == 2 and "Unknown encoder 'rad-dinoo'" in result.output and "data root" not in result.output


def test_version_and_list_everything():
    import cxrbench

    assert runner.invoke(app, ["--version"]).output.strip() == f"cxrbench {cxrbench.__version__}"
    listing = runner.invoke(app, ["list"])
    assert listing.exit_code == 0
    for title in ("cxrbench encoders", "cxrbench heads", "cxrbench benchmarks"):
        assert title in listing.output
    shown = runner.invoke(app, ["list", "heads"]).output.split()
    from cxrbench.registry import head_spec

    assert all(word in shown for word in head_spec("knn").description.split())  # whole, never cut mid-word


def test_embed_on_a_bad_file_does_not_mention_a_label_csv(tmp_path):
    bad = tmp_path / "images/broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png")
    result = runner.invoke(app, ["embed", str(bad.parent), "--encoder", "pixels", "--out", str(tmp_path / "f.npz")])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "broken.png" in message and "leave it out of the inputs" in message and "CSV" not in message


def test_default_layers_of_an_encoder_without_layers_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")  # never read: the option is checked first
    result = runner.invoke(app, ["embed", str(tmp_path), "--encoder", "pixels", "--layers", "default", "--out",
                                 str(tmp_path / "f.npz")])
    assert result.exit_code == 2 and "declares no default layers" in result.output
    assert not (tmp_path / "f.npz").exists()


def test_demo_next_steps_name_the_results(monkeypatch, tmp_path):
    """The demo's closing lines (the runs themselves are the pipeline's, tested above)."""
    from cxrbench.cli import demo

    monkeypatch.setattr(demo, "run_and_show", lambda *args: [])
    monkeypatch.setattr(demo, "show_comparison", lambda *args: None)
    monkeypatch.setattr(demo, "DEMO_SEGMENTATION_IMAGES", 2)
    result = runner.invoke(app, ["demo", "--workdir", str(tmp_path / "demo"), "--patients", "20"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "not comparable with the papers" in text
    # the segmentation images are projections of one CT, and the demo says so
    assert "all images are of one person" in text and "The segmentation images are all of one person." in text
    jsrt = json.loads((tmp_path / "demo/jsrt/cxrbench-synthetic.json").read_text())
    assert jsrt["settings"]["images"] == 2 and "one chest CT" in jsrt["settings"]["anatomy"]
    assert f"cxrbench table vindr --out {tmp_path / 'demo/results'}" in text and "docs/datasets.md" in text
    assert f"cxrbench report --out {tmp_path / 'demo/results'}" in text
    marker = json.loads((tmp_path / "demo/data/cxrbench-synthetic.json").read_text())
    assert marker["synthetic"] is True and marker["settings"]["patients"] == 20
