"""RunSpec, `--config` / `--print-config` and the one fan-out (issue 22, items 1 and 3).

- `--print-config` writes a file that `--config` reads back as the same resolved specs, and a run made from it has
  the same run identity as the run made from the flags;
- defaults < file < flags, key by key, for the run keys and the `machine:` section;
- an unknown key in the file is named with its file and a did-you-mean;
- several encoders are one RunSpec each, handed to the launcher through the same fan-out `reproduce` uses;
- the command recorded by a job run in another process is the one typed where the job was made;
- the local launcher's jobs on one study read the data once, and score as if each had read it.
"""

from __future__ import annotations

import json
import multiprocessing

import pytest
import yaml
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.launchers import Job, JobOutcome, run_job
from cxrbench.launchers.local import LocalLauncher
from cxrbench import study as study_module
from cxrbench.runs import fanout
from cxrbench.runs.config import build_request, read_config, resolved
from cxrbench.recording import recorded_command, recorded_run_spec, typed_command

runner = CliRunner()
TINY = ["--weights", "random", "--image-size", "32", "--head", "logistic", "--seeds", "1", "--bootstrap", "20",
        "--device", "cpu", "--threads", "1"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def printed(*args: str) -> str:
    result = invoke("run", *args, "--print-config")
    assert result.exit_code == 0, result.output
    return result.output


def test_print_config_reads_back_as_the_same_specs_and_the_same_run(vindr_root, tmp_path):
    args = ["vindr", "--encoder", "pixels", *TINY, "--data-root", str(vindr_root), "--out", str(tmp_path / "flags"),
            "--cache-dir", str(tmp_path / "cache"), "--head-param", "max_iter=50", "--train-fraction", "0.5"]
    config = tmp_path / "run.yaml"
    config.write_text(printed(*args))
    # read back by --config alone (benchmark and encoder from the file): every key printed again as it was
    assert printed("--config", str(config)) == config.read_text()
    from_file = resolved(build_request({}, read_config(config)))
    assert [spec.encoder for spec in from_file.specs] == ["pixels"] and from_file.specs[0].train_fractions == (0.5,)
    assert invoke("run", *args).exit_code == 0
    assert invoke("run", "--config", str(config), "--out", str(tmp_path / "file")).exit_code == 0
    run = "vindr/pixels/logistic_train-0.5"
    stored = [json.loads((tmp_path / out / run / "metrics.json").read_text()) for out in ("flags", "file")]
    assert stored[0]["run_identity"] == stored[1]["run_identity"] and stored[0]["metrics"] == stored[1]["metrics"]
    recorded = yaml.safe_load((tmp_path / "file" / run / "config.yaml").read_text())
    assert recorded["run_spec"] == from_file.specs[0].as_dict() == stored[1]["run_spec"]


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"benchmark": "vindr", "encoder": ["pixels", "dinov2-small"], "seeds": 3,
                                      "head_params": {"max_iter": 50, "C": [2.0]}, "tag": "from-file",
                                      "machine": {"device": "cpu", "batch_size": 8}}))
    out = yaml.safe_load(printed("--config", str(config), "--seeds", "2", "--head-param", "C=[0.5]", "--batch-size", "4",
                                 "--head", "logistic"))
    assert out["seeds"] == 2 and out["tag"] == "from-file"  # flag over file; file over default
    assert out["head_params"] == {"max_iter": 50, "C": [0.5]}  # a mapping merged key by key
    assert out["encoder"] == ["pixels", "dinov2-small"] and out["head"] == "logistic"
    assert out["machine"]["device"] == "cpu" and out["machine"]["batch_size"] == 4  # machine: file, then flags
    assert out["machine"]["shard_size"] == 512 and out["bootstrap"] == 1000  # defaults (the benchmark's, resolved)
    defaults = yaml.safe_load(printed("vindr", "--encoder", "pixels"))
    assert defaults["seeds"] == 5 and defaults["head"] == "linear" and defaults["machine"]["device"] == "auto"


@pytest.mark.parametrize("text, key, close", [("benchmark: vindr\nencoder: pixels\nseedz: 2\n", "seedz", "seeds"),
                                             ("benchmark: vindr\nmachine:\n  devise: cpu\n", "devise", "device")])
def test_an_unknown_key_is_named_with_its_file_and_the_closest_key(tmp_path, text, key, close):
    config = tmp_path / "my-run.yaml"
    config.write_text(text)
    result = invoke("run", "--config", str(config))
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "my-run.yaml" in message.replace(" ", "")
    assert f"unknown key '{key}'" in message and f"Did you mean '{close}'?" in message


def test_several_encoders_are_one_spec_each_through_the_fan_out_reproduce_uses(monkeypatch, tmp_path):
    seen: list[list[Job]] = []

    def record(self, jobs, progress):
        seen.append(list(jobs))
        return [JobOutcome(job.label, value=[]) for job in jobs]

    monkeypatch.setattr(LocalLauncher, "run", record)
    assert invoke("run", "vindr", "--encoder", "pixels,dinov2-small", "--weights", "random", "--out",
                  str(tmp_path / "out")).exit_code == 0
    assert invoke("reproduce", "rad-dino-c2", "--encoder", "biovil-t,rad-dino", "--weights", "random", "--out",
                  str(tmp_path / "out")).exit_code == 0
    run_jobs, reproduce_jobs = seen
    for jobs, encoders in ((run_jobs, ["pixels", "dinov2-small"]), (reproduce_jobs, ["biovil-t", "rad-dino"])):
        assert [job.function for job in jobs] == [fanout.run_spec] * 2
        assert [job.run_spec["encoder"] for job in jobs] == encoders
        assert [job.args[0].encoder for job in jobs] == encoders


def _recorded(progress=None) -> tuple[str, dict | None]:
    return recorded_command(), recorded_run_spec()


def _in_another_process(job: Job) -> JobOutcome:
    return run_job(job)


def test_a_job_in_another_process_records_the_command_typed_where_it_was_made():
    typed = typed_command(["/usr/bin/cxrbench", "run", "vindr", "--encoder", "pixels", "--tag", "a b"])
    job = Job("vindr · pixels · linear", _recorded, command=typed, run_spec={"encoder": "pixels"})
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh interpreter, whose argv is not the command
        outcome = pool.apply(_in_another_process, (job,))
    assert outcome.error is None, outcome.error
    assert outcome.value == ("cxrbench run vindr --encoder pixels --tag 'a b'", {"encoder": "pixels"})
    assert recorded_run_spec() is None  # and nothing is left recorded in this process


def test_local_jobs_on_the_same_study_read_the_folder_once_and_score_alike(vindr_root, tmp_path, monkeypatch):
    reads = []
    load = study_module.load_benchmark

    def counted(*args, **kwargs):
        reads.append(args[0])
        return load(*args, **kwargs)

    monkeypatch.setattr(study_module, "load_benchmark", counted)
    tiny = [("28" if value == "32" else value) for value in TINY]  # a multiple of dinov2's patch size
    common = ["--data-root", str(vindr_root), *tiny, "--cache-dir", str(tmp_path / "cache")]
    together = invoke("run", "vindr", "--encoder", "pixels,dinov2-small", "--out", str(tmp_path / "together"), *common)
    assert together.exit_code == 0, together.output
    assert reads == ["vindr"] and "vindr: the data and splits read for the previous job serve this one" in together.output
    for encoder in ("pixels", "dinov2-small"):  # each on its own: one read per command
        alone = invoke("run", "vindr", "--encoder", encoder, "--out", str(tmp_path / "alone"), *common)
        assert alone.exit_code == 0, alone.output
    assert reads == ["vindr"] * 3
    for encoder in ("pixels", "dinov2-small"):
        shared, own = (json.loads(next((tmp_path / out).rglob(f"{encoder}/**/metrics.json")).read_text())
                       for out in ("together", "alone"))
        assert shared["metrics"] == own["metrics"]


def test_a_spec_naming_an_unknown_benchmark_is_an_outcome_not_a_crash(tmp_path):
    """The fault as found: labelling the job looked the benchmark's default head up and raised before the spec's
    own check could become its outcome; the other specs must still run."""
    from cxrbench.runs.spec import MachineSpec, RunSpec

    outcomes = fanout.run_specs([RunSpec("nosuchbench", "pixels")], fanout.Storage(tmp_path / "out"), MachineSpec())
    assert len(outcomes) == 1 and outcomes[0].label == "nosuchbench · pixels · default head"
    assert "nosuchbench" in outcomes[0].error


def test_a_localisation_setting_that_is_not_one_is_named_with_the_ones_there_are(tmp_path):
    from cxrbench.runs.spec import MachineSpec, RunSpec

    spec = RunSpec("vindr", "pixels", evaluation="localisation", evaluation_params={"min_overlp": 0.3})
    [outcome] = fanout.run_specs([spec], fanout.Storage(tmp_path / "out"), MachineSpec())
    assert outcome.error == ("evaluation_params min_overlp: localisation takes findings, images_per_finding, "
                             "min_overlap, one_head_per_finding.")
