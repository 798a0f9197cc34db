"""Sweeps fanned out by `--launcher local|ray|slurm`: the same runs, the same numbers, wherever the jobs ran.

The Ray case starts a local Ray cluster (ray.init in the command's process, as on a workstation); the Slurm case goes
through submitit with its local executor, which runs each job of the array as its own process with its own log
folder, exactly the code path of a Slurm submission up to `sbatch`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr
from cxrbench.errors import CxrbenchError
from cxrbench.launchers import Job, JobLog, make_launcher, run_job
from cxrbench.launchers.local import LocalLauncher
from cxrbench.progress import SilentProgress
from cxrbench.results.labels import run_label, variant_notes
from cxrbench.recording import recorded_command, typed_command

RUNS = ("biovil-t/logistic-default", "rad-dino/logistic-default")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Table C.2's recipe for two encoders (random weights, 56 px) on a small MIMIC-CXR folder, run locally; returns
    the base folder and a function running the same command with other arguments in a fresh process.

    Every run uses one thread: a forward pass on another number of threads sums in another order, which moves
    features in their last bits (scores by ~1e-6), and the comparison below is exact."""
    base = tmp_path_factory.mktemp("launchers")
    root = write_synthetic_mimic_cxr(base / "mimic", patients=120, seed=0)
    args = ["reproduce", "rad-dino-c2", "--encoder", "biovil-t,rad-dino", "--data-root", str(root), "--weights", "random",
            "--image-size", "56", "--bootstrap", "50", "--device", "cpu", "--threads", "1"]  # same summation order
    local = invoke(*args, "--out", str(base / "local"), "--cache-dir", str(base / "cache-local"))
    assert local.exit_code == 0, local.output

    def run(name: str, *extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "cxrbench", *args, "--out", str(base / name), "--cache-dir",
                   str(base / f"cache-{name}"), *extra]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "200"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=base, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    return base, run


def _same_results(base: Path, name: str, launcher: str) -> None:
    """Every number, prediction and table cell equal to the local run's; the recorded command is the one typed."""
    for run in RUNS:
        ours, local = (json.loads((base / out / "mimic-demographics" / run / "metrics.json").read_text())
                       for out in (name, "local"))
        assert ours["metrics"] == local["metrics"] and ours["run_identity"] == local["run_identity"]
        assert f"--launcher {launcher}" in ours["provenance"]["command"]
        assert ours["provenance"]["command"].startswith("cxrbench reproduce rad-dino-c2")
        config = yaml.safe_load((base / name / "mimic-demographics" / run / "config.yaml").read_text())
        assert config["command"] == ours["provenance"]["command"]  # one typed command, not the worker's argv
        assert config["run_spec"]["encoder"] == run.split("/")[0]
        pd.testing.assert_frame_equal(*(pd.read_parquet(base / out / "mimic-demographics" / run / "predictions.parquet")
                                        for out in (name, "local")))
    assert (base / name / "tables/rad-dino-c2.csv").read_bytes() == (base / "local/tables/rad-dino-c2.csv").read_bytes()


def test_ray_gives_the_local_numbers(sweep):
    base, run = sweep
    done = run("ray", "--launcher", "ray", "--launcher-param", "cpus=1")
    assert "ray: 2 job(s)" in done.stdout + done.stderr
    assert "2 run(s) trained, 0 kept as stored, 0 remaining" in done.stdout
    _same_results(base, "ray", "ray")


def test_slurm_through_submitit_gives_the_local_numbers_with_a_log_per_job(sweep):
    base, run = sweep
    logs = base / "slurm-logs"
    done = run("slurm", "--launcher", "slurm", "--launcher-param", "cluster=local", "--launcher-param", f"logs={logs}")
    assert "2 run(s) trained, 0 kept as stored, 0 remaining" in done.stdout
    _same_results(base, "slurm", "slurm")
    job_logs = sorted(logs.glob("*_log.out"))
    assert len(job_logs) == 2
    assert {"[mimic-demographics · biovil-t · logistic-default]", "[mimic-demographics · rad-dino · logistic-default]"} \
        == {next(line.split("]")[0] + "]" for line in log.read_text().splitlines() if line.startswith("[")) for log in job_logs}
    again = run("slurm", "--launcher", "slurm", "--launcher-param", "cluster=local", "--launcher-param", f"logs={logs}")
    assert "0 run(s) trained, 2 kept as stored, 0 remaining" in again.stdout  # resumable like a local sweep


def test_a_multi_encoder_run_fans_out_one_job_per_encoder(vindr_root, tmp_path):
    args = ["run", "vindr", "--encoder", "pixels,biovil-t", "--weights", "random", "--image-size", "32", "--head",
            "logistic", "--seeds", "1", "--bootstrap", "20", "--data-root", str(vindr_root), "--device", "cpu"]
    outs = {}
    for name, extra in (("local", []), ("debug", ["--launcher", "slurm", "--launcher-param", "cluster=debug",
                                                   "--launcher-param", f"logs={tmp_path / 'logs'}"])):
        result = invoke(*args, "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / f"cache-{name}"), *extra)
        assert result.exit_code == 0, result.output
        outs[name] = result.output
    for encoder in ("pixels", "biovil-t"):
        ours, local = (json.loads((tmp_path / out / "vindr" / encoder / "logistic/metrics.json").read_text())
                       for out in ("debug", "local"))
        assert ours["metrics"] == local["metrics"]
        label = run_label(encoder, "logistic", variant_notes(encoder, ours["run_identity"]))  # each job's own table
        assert f"vindr · {label}" in " ".join(outs["debug"].split()), label


# ------------------------------------------------------------------------------------------------ launcher seams


def _fails(progress=None) -> None:
    raise CxrbenchError("no data on this host: pass --data-root")


def _crashes(progress=None) -> None:
    return {}["missing"]


def _command(progress=None) -> str:
    return recorded_command()


def test_a_users_error_or_a_bug_in_one_job_is_that_jobs_outcome():
    user, bug = run_job(Job("a", _fails)), run_job(Job("b", _crashes))
    assert user.value is None and user.error == "no data on this host: pass --data-root"
    assert "KeyError: 'missing'" in bug.error and "_crashes" in bug.error
    outcomes = LocalLauncher({}).run([Job("a", _fails), Job("c", _command, command="cxrbench x")], SilentProgress())
    assert [o.label for o in outcomes] == ["a", "c"] and outcomes[0].error and outcomes[1].error is None


def test_a_job_records_the_submitting_command_as_its_own():
    here = recorded_command()
    assert run_job(Job("a", _command, command=typed_command(("/usr/bin/cxrbench", "reproduce", "my table")))).value \
        == "cxrbench reproduce 'my table'"
    assert recorded_command() == here  # the worker's own command again once the job is done


def test_unknown_launchers_and_parameters_are_named_with_the_fix(monkeypatch):
    with pytest.raises(CxrbenchError, match="Did you mean 'slurm'"):
        make_launcher("slurn")
    with pytest.raises(CxrbenchError, match="not a Ray launcher parameter; it takes address"):
        make_launcher("ray", {"gpu": 1})
    with pytest.raises(CxrbenchError, match=r"cpus=-1: give a number"):
        make_launcher("ray", {"cpus": -1})
    with pytest.raises(CxrbenchError, match="local launcher takes no parameters"):
        make_launcher("local", {"cpus": 1})
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(CxrbenchError, match="no `sbatch`.*cluster=local"):
        make_launcher("slurm")
    slurm = make_launcher("slurm", {"cluster": "local", "slurm_partiton": "gpu"})
    with pytest.raises(CxrbenchError, match="submitit refused the parameters.*slurm_partiton"):
        slurm.run([Job("a", _fails)], SilentProgress())


@pytest.mark.parametrize("launcher, module, extra", [("ray", "ray", "ray"), ("slurm", "submitit", "slurm")])
def test_a_missing_engine_names_the_extra_to_install(monkeypatch, launcher, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import ray` now fails as if Ray were not installed
    monkeypatch.delitem(sys.modules, f"cxrbench.launchers.{launcher}", raising=False)
    result = invoke("reproduce", "rad-dino-1a", "--launcher", launcher, "--encoder", "rad-dino")
    assert result.exit_code == 2, result.output
    assert f"pip install 'cxrbench[{extra}]'" in " ".join(result.output.split())


def test_a_preempted_slurm_job_is_resubmitted_with_the_same_job():
    """submitit calls `checkpoint` on preemption or timeout and requeues what it returns: the same job, which then
    resumes from the finished shards and runs of its first attempt."""
    from cxrbench.launchers.slurm import RequeuedJob

    job = Job("vindr · rad-dino · linear", _command, command="cxrbench reproduce rad-dino-1a")
    again = RequeuedJob().checkpoint(job)
    assert isinstance(again.function, RequeuedJob) and again.args == (job,)
    assert again.result().value == "cxrbench reproduce rad-dino-1a"


def test_a_jobs_progress_is_a_few_labelled_lines(capsys):
    log = JobLog("vindr · pixels · linear")
    advance = log.task("encoding with pixels", 100)
    for _ in range(100):
        advance(1)
    log.task("epochs", 4000, transient=True)(4000)
    log.note("pixels: encoded 100 images")
    lines = capsys.readouterr().out.splitlines()  # a quick task: its start and its end; a quick seed: nothing
    assert all(line.startswith("[vindr · pixels · linear] ") for line in lines)
    assert [line.split("] ", 1)[1] for line in lines] == ["encoding with pixels: 0/100",
                                                          "encoding with pixels: 100/100 (0 s)",
                                                          "pixels: encoded 100 images"]


def test_a_long_transient_task_speaks_in_a_log_after_its_quiet_time(monkeypatch):
    """One seed's epochs of a slow head (an hour of RayDINO's grid on CPU) must show in a log that it moves; a quick
    one leaves no line; a steady task says a tenth at most every 10 s."""
    import cxrbench.progress as progress

    clock, lines = [0.0], []
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    log = progress.LineProgress(quiet_s=30, bullet="• ", write=lines.append)
    quick = log.task("seed 0: epochs", 100, transient=True)
    quick(100)
    assert lines == []
    slow = log.task("seed 1: epochs", 100, transient=True)
    clock[0] = 10.0
    slow(10)  # a tenth, but within the quiet time
    clock[0] = 45.0
    slow(10)
    slow(5)  # no tenth crossed
    clock[0] = 200.0
    slow(75)
    log.note("done")
    assert lines == ["seed 1: epochs: 20/100 (45 s)", "seed 1: epochs: 100/100 (200 s)", "• done"]
    lines.clear()
    steady = log.task("encoding", 100)  # between start and end, a tenth at most every 10 s
    for second in range(1, 101):
        clock[0] = 200.0 + second / 4
        steady(1)
    assert lines == ["encoding: 0/100", "encoding: 40/100 (10 s)", "encoding: 80/100 (20 s)", "encoding: 100/100 (25 s)"]
