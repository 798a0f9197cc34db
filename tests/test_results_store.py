"""The results store: explain and bias runs are ordinary runs (metrics.json with an identity: kept on the same
settings, refused on others without --overwrite, found by `results validate`, `table --all --check` and the report),
and no module outside the store spells a results path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cxrbench.errors import DataError
from cxrbench.evaluations.localisation import LocalisationEvaluation
from cxrbench.runs.pipeline import EncoderOptions, MachineOptions, evaluate
from cxrbench.report.collect import collect
from cxrbench.analyses.bias import store_bias_runs, write_bias
from cxrbench.analyses.check import check_committed
from cxrbench.results.schema import find_runs, validate_run
from cxrbench.results.store import (BIAS, EXPLAIN, explain_folder, json_writer, parquet_writer, run_folder,
                                    stored_runs, write_run)
from cxrbench.study import StudyOptions

SRC = Path(__file__).resolve().parents[1] / "src" / "cxrbench"
FAST_HEAD = {"lr": 0.1, "epochs": 2, "min_steps": 10, "batch_size": 64}

# -------------------------------------------------------------------------------------------- no path outside the store

#: what spells a results path: file names of a run folder, the benchmark-level folders, globs over run folders
PATH_PATTERNS = [r'"metrics\.json"', r'"predictions\.parquet"', r'"splits\.parquet"', r'"explain\.json"',
                 r'EXPLAIN_FOLDER', r'glob\(f?"[^"]*(metrics|METRICS|explain|bias_|efficiency_)',
                 r'/ "(tables|comparisons|report)"', r'/ benchmark /', r'f"(table|efficiency|bias)_\{']


def test_no_module_outside_the_store_builds_a_results_path():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("results/store/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if any(re.search(pattern, line) for pattern in PATH_PATTERNS):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


# -------------------------------------------------------------------------------------------- explain runs


def _explain(vindr_root: Path, tmp_path: Path, **options):
    evaluation = LocalisationEvaluation(tmp_path / "out", images_per_finding=0, head_overrides=FAST_HEAD,
                                        findings="Cardiomegaly,Nodule/Mass", **options)
    (result,) = evaluate(StudyOptions("vindr", vindr_root, seeds=2, bootstrap_resamples=20), evaluation,
                         EncoderOptions(["pixels"]), MachineOptions(tmp_path / "cache"))
    return result


def test_an_explain_run_resumes_refuses_other_settings_and_is_found(vindr_root, tmp_path):
    out = tmp_path / "out"
    first = _explain(vindr_root, tmp_path)
    folder = explain_folder(out, "vindr", "pixels")
    assert first.folder == folder and not first.resumed
    metrics = json.loads((folder / "metrics.json").read_text())
    stamp = (folder / "metrics.json").stat().st_mtime_ns

    again = _explain(vindr_root, tmp_path)  # the same settings: kept, nothing trained or written
    assert again.resumed and (folder / "metrics.json").stat().st_mtime_ns == stamp
    assert again.summary == metrics["explain"] and again.headline == first.headline
    with pytest.raises(DataError, match=r"other settings \(min_overlap differ\)\. Write to another --out or pass --overwrite"):
        _explain(vindr_root, tmp_path, min_overlap=0.25)
    assert (folder / "metrics.json").stat().st_mtime_ns == stamp
    replaced = _explain(vindr_root, tmp_path, min_overlap=0.25, overwrite=True)
    assert not replaced.resumed and json.loads((folder / "metrics.json").read_text())["run_identity"]["min_overlap"] == 0.25

    # its numbers are those its boxes give: hits / boxes per finding and seed, macro = mean over findings with boxes
    metrics = json.loads((folder / "metrics.json").read_text())
    boxes = pd.read_csv(folder / "explain.csv")
    scored = boxes[boxes["hit"].notna()].assign(hit=lambda f: f["hit"].astype(str).eq("True"))
    for seed in (0, 1):
        per_finding = scored[scored["seed"] == seed].groupby("finding")["hit"].agg(["sum", "count"])
        for name, row in per_finding.iterrows():
            assert metrics["explain"]["findings"][name]["hits"][str(seed)] == row["sum"]
        expected = float(np.mean(per_finding["sum"] / per_finding["count"]))
        assert metrics["explain"]["macro_accuracy"]["per_seed"][str(seed)] == pytest.approx(expected, abs=1e-12)

    assert metrics["kind"] == EXPLAIN and metrics["schema_version"] == 1 and metrics["provenance"]["command"]
    assert find_runs(out) == [folder] and validate_run(folder) == []
    assert stored_runs(out, "vindr") == [] and [r.folder for r in stored_runs(out, "vindr", EXPLAIN)] == [folder]
    (benchmark,) = collect(out)
    assert [e.folder for e in benchmark.explains] == [folder] and benchmark.runs == []
    report = check_committed(out)
    assert report.runs == 1 and report.problems == []

    boxes.loc[boxes["hit"].notna(), "hit"] = False  # every box now a miss: the stored hits no longer follow
    boxes.to_csv(folder / "explain.csv", index=False)
    assert any("explain.csv gives 0" in problem for problem in check_committed(out).problems)


# -------------------------------------------------------------------------------------------- bias runs

GROUPS = ("F", "M")


def _identity(head_lr: float = 0.1) -> dict:
    return {"weights": "none", "preprocessing": {"size": 32}, "dataset_options": {}, "split": {"scheme": "official"},
            "head": {"name": "logistic", "lr": head_lr}, "targets": [], "label_budget": None, "seeds": [0, 1, 2],
            "bootstrap": {"resamples": 0}, "synthetic_data": True, "metrics": ["auroc"]}


PROVENANCE = {"weights": {"kind": "none", "identity": "none", "files": {}},
              "data": {"manifest_sha256": "0" * 64, "images": 40, "patients": 40, "targets": ["A", "B"]}}


def _group_runs(out: Path, head_lr: float = 0.1) -> None:
    """Three group runs (F, M, All) of one model with random scores on 40 test images, 3 folds, two targets."""
    rng = np.random.default_rng(0)
    images = [f"i{k}" for k in range(40)]
    sex = ["F" if k % 2 else "M" for k in range(40)]
    for group in (*GROUPS, "All"):
        rows = [{"image_id": i, "patient_id": f"p-{i}", "seed": fold, "task": task, "label": float(rng.random() < 0.5),
                 "score": float(rng.random()), "group:sex": s}
                for fold in range(3) for task in ("A", "B") for i, s in zip(images, sex)]
        splits = pd.DataFrame([{"image_id": i, "patient_id": f"p-{i}", "seed": fold, "split": "test"}
                               for fold in range(3) for i in images])
        budget = {"train_group": {"attribute": "sex", "group": group, "patients": None, "share": 0.8}}
        metrics = {"benchmark": "vindr", "encoder": "pixels", "head": "logistic", "tag": None, "seeds": [0, 1, 2],
                   "label_budget": budget, "targets": [{"name": t, "kind": "binary"} for t in ("A", "B")],
                   "run_identity": {**_identity(head_lr), "label_budget": budget}, "provenance": PROVENANCE}
        write_run(run_folder(out, "vindr", "pixels", f"logistic_group-sex-{group}"), {
            "metrics.json": json_writer(metrics), "predictions.parquet": parquet_writer(pd.DataFrame(rows)),
            "splits.parquet": parquet_writer(splits)})


def test_a_bias_run_resumes_refuses_other_settings_and_is_found(tmp_path):
    out = tmp_path / "out"
    _group_runs(out)
    (run,) = store_bias_runs(out, "vindr", "sex", "auroc", GROUPS)
    assert run.kind == BIAS and run.folder.name == "logistic_bias-sex-auroc"
    stamp = (run.folder / "metrics.json").stat().st_mtime_ns

    # each fold score is the macro AUROC over targets of one head's predictions on one test group (scikit-learn)
    predictions = {g: pd.read_parquet(run.folder.parent / f"logistic_group-sex-{g}" / "predictions.parquet")
                   for g in (*GROUPS, "All")}
    for row in run.metrics["bias"]["folds"]:
        part = predictions[row["train_group"]]
        part = part[(part["seed"] == row["fold"]) & (part["group:sex"] == row["test_group"])]
        expected = np.mean([roc_auc_score(p["label"], p["score"]) for _, p in part.groupby("task")])
        assert row["value"] == pytest.approx(expected, abs=1e-12)
    assert len(run.metrics["bias"]["folds"]) == 3 * 2 * 3 and run.metrics["bias"]["shared_test_set"]

    (kept,) = store_bias_runs(out, "vindr", "sex", "auroc", GROUPS)  # the same settings: kept
    assert kept.metrics == run.metrics and (run.folder / "metrics.json").stat().st_mtime_ns == stamp
    assert validate_run(run.folder) == [] and run.folder in find_runs(out)

    _, _, _, paths = write_bias(out, "vindr", "sex", "auroc", GROUPS, "bias by sex")
    folds = pd.read_csv(paths["folds"])
    assert sorted(folds["value"]) == pytest.approx(sorted(r["value"] for r in run.metrics["bias"]["folds"]), abs=1e-15)
    (benchmark,) = collect(out)
    assert list(benchmark.bias) == ["sex"] and benchmark.bias["sex"]["png"] == paths["png"]
    assert all(r.kind == "run" for r in benchmark.runs) and len(benchmark.runs) == 3
    report = check_committed(out)
    assert report.problems == [] and report.runs == 3 + 1

    _group_runs(out, head_lr=0.5)  # the group runs trained again with another head setting
    with pytest.raises(DataError, match=r"logistic_bias-sex-auroc holds a run with other settings \(bias, head differ\)"):
        store_bias_runs(out, "vindr", "sex", "auroc", GROUPS)
    assert (run.folder / "metrics.json").stat().st_mtime_ns == stamp
    (replaced,) = store_bias_runs(out, "vindr", "sex", "auroc", GROUPS, overwrite=True)
    assert replaced.metrics["run_identity"]["head"]["lr"] == 0.5

    tampered = json.loads((run.folder / "metrics.json").read_text())
    tampered["bias"]["folds"][0]["value"] = 0.123
    (run.folder / "metrics.json").write_text(json.dumps(tampered))
    assert any("bias.folds" in p and "0.123" in p for p in check_committed(out).problems)
