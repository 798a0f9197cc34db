"""Processes sharing a results folder or a feature cache: no lost result, no duplicate work, no crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cxrbench.errors import DataError
from cxrbench.features.cache import FeatureStore
from cxrbench.features.cache_admin import list_stores
from cxrbench.results.store import writing as store_module
from cxrbench.results.store import recover_run, write_run

CLI = [sys.executable, "-c", "from cxrbench.cli import main; main()"]


def _start_together(commands: list[list[str]], go: Path, **kwargs) -> list[subprocess.CompletedProcess]:
    """Start every command, let them all import, then release them at once (each waits for the file `go`)."""
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) for c in commands]
    time.sleep(0.5)
    go.write_text("go")
    results = []
    for command, process in zip(commands, processes):
        out, err = process.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
    return results


def _gated(go: Path, code: str) -> list[str]:
    """A Python command that waits for `go`, then runs `code`."""
    wait = f"import pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"
    return [sys.executable, "-c", wait + textwrap.dedent(code)]


def test_two_runs_with_other_settings_on_one_results_folder_never_lose_a_result(vindr_root, tmp_path):
    """The fault as found: both exited 0 and one result was silently replaced by the other."""
    go = tmp_path / "go"
    commands = []
    for c in ("1.0", "0.01"):
        args = ["run", "vindr", "--encoder", "pixels", "--head", "logistic", "--head-param", f"C=[{c}]",
                "--data-root", str(vindr_root), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                "--seeds", "1", "--bootstrap", "20"]
        commands.append(_gated(go, f"import sys; sys.argv = ['cxrbench', *{args!r}]\nfrom cxrbench.cli import main; main()"))
    results = _start_together(commands, go)
    codes = sorted(r.returncode for r in results)
    assert codes == [0, 2], [r.stderr[-2000:] for r in results]
    winner = next(r for r in results if r.returncode == 0)
    loser = next(r for r in results if r.returncode == 2)
    message = " ".join(loser.stderr.split())
    assert "holds a run with other settings (head differ)" in message and "--tag NAME" in message
    stored = json.loads((tmp_path / "out/vindr/pixels/logistic/metrics.json").read_text())
    winner_c = "1.0" if "C=[1.0]" in " ".join(winner.args) else "0.01"
    assert stored["run_identity"]["head"]["C"] == [float(winner_c)]
    leftovers = [p.name for p in (tmp_path / "out/vindr/pixels").iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert leftovers == []


def test_write_run_against_itself_in_two_processes(tmp_path):
    """The fault as found: 2 processes x 3000 writes gave OSErrors and left `.old-*` folders behind."""
    go = tmp_path / "go"
    folder = tmp_path / "out/bench/enc/linear"
    code = f"""
        import pathlib, os
        from cxrbench.results.store import write_run
        folder = pathlib.Path({str(folder)!r})
        for i in range(1500):
            write_run(folder, {{"metrics.json": lambda p, i=i: p.write_text(str((os.getpid(), i)))}})
        """
    results = _start_together([_gated(go, code), _gated(go, code)], go)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert sorted(p.name for p in folder.parent.iterdir()) == [".linear.lock", "linear"]
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"]


def test_two_extractions_into_one_cache_encode_each_image_once(vindr_root, tmp_path):
    """The fault as found: both encoded every image and wrote duplicate shards (cache ls counted 928 of 464)."""
    go = tmp_path / "go"
    paths = sorted(str(p) for p in (vindr_root / "train").glob("*.dicom"))[:48]
    code = f"""
        import pathlib, time
        from cxrbench.encoders.base import FeatureRequest
        from cxrbench.encoders.factory import build_encoder
        from cxrbench.features.extract import extract_features
        encoder = build_encoder("pixels")
        original = encoder.encode
        def slow(pixels, request):  # long enough that the two runs overlap
            time.sleep(0.2)
            return original(pixels, request)
        encoder.encode = slow
        result = extract_features(encoder, FeatureRequest(), {paths!r}, pathlib.Path({str(tmp_path / "cache")!r}), batch_size=4,
                                  shard_size=8, num_workers=0)
        print("encoded", result.encoded)
        """
    results = _start_together([_gated(go, code), _gated(go, code)], go)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    encoded = sorted(int(r.stdout.split("encoded")[1]) for r in results)
    assert encoded == [0, 48]  # one encoded everything, the other waited and reused it
    (summary,) = list_stores(tmp_path / "cache")
    assert summary.images == 48 and summary.status == "ok"
    folder = summary.folder
    rows = sum(len((s / "keys.txt").read_text().split()) for s in (folder / "shards").iterdir())
    assert rows == 48  # no duplicate shards
    store = FeatureStore(folder, json.loads((folder / "manifest.json").read_text()))
    assert np.isfinite(store.load([k for k in store._index], "global")).all()  # noqa: SLF001


def _refuse_other_settings(identity: str):
    """What `cxrbench run` checks under the lock: a stored run of other settings is never replaced silently."""
    def check(stored: dict | None) -> None:
        if stored is not None and stored["run_identity"] != identity:
            raise DataError(f"holds a run with other settings ({stored['run_identity']})")
    return check


def test_a_kill_between_the_two_renames_keeps_the_old_run(tmp_path, monkeypatch):
    """The fault as found: only `.HEAD.old.*` was left, and the next run of other settings deleted it and stored
    itself without --overwrite."""
    folder = tmp_path / "out/vindr/pixels/logistic"
    write = {"metrics.json": lambda p: p.write_text(json.dumps({"run_identity": "A"}))}
    write_run(folder, write, check=_refuse_other_settings("A"))
    renames, rename = [], os.rename

    def killed_at_the_second(source, target):
        renames.append(source)
        if len(renames) == 2:
            raise KeyboardInterrupt
        rename(source, target)

    monkeypatch.setattr(store_module.os, "rename", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        write_run(folder, write, check=_refuse_other_settings("A"))
    monkeypatch.undo()
    assert not folder.exists() and len(list(folder.parent.glob(".logistic.old.*"))) == 1
    notes: list[str] = []
    other = {"metrics.json": lambda p: p.write_text(json.dumps({"run_identity": "B"}))}
    with pytest.raises(DataError, match="other settings"):
        write_run(folder, other, check=_refuse_other_settings("B"), on_wait=notes.append)
    assert json.loads((folder / "metrics.json").read_text()) == {"run_identity": "A"}
    assert any("restored" in n and str(folder) in n for n in notes), notes
    assert not list(folder.parent.glob(".logistic.old.*"))


def test_a_run_left_only_as_its_retired_copy_is_restored_before_planning(tmp_path):
    folder = tmp_path / "out/vindr/pixels/logistic"
    retired = folder.parent / ".logistic.old.otherhost-1-abcdef01"  # a killed process's name
    retired.mkdir(parents=True)
    (retired / "metrics.json").write_text("{}")
    notes: list[str] = []
    recover_run(folder, notes.append)
    assert (folder / "metrics.json").read_text() == "{}" and not retired.exists() and notes
