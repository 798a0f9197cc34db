"""Check a run folder against the documented format of its files (`cxrbench results validate DIR`).

metrics.json is held to `metrics.schema.json` (JSON Schema draft 2020-12, beside this module: the documentation of
the format) and to what a schema cannot say: the per-seed keys equal the run's seeds, every scored target is one of
its targets, and predictions.parquet and splits.parquet are there, readable, with their columns and the run's seeds.
A results tree is checked before it is shared or compared, so every problem names the file and the JSON path (or
column) at fault, and how to fix what the user can fix.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jsonschema import Draft202012Validator, ValidationError

from cxrbench.errors import DataError
from cxrbench.results.provenance import SCHEMA_VERSION
from cxrbench.results.store.layout import BIAS, EXPLAIN, METRICS, PREDICTIONS, RUN, SPLITS
from cxrbench.stats.summary import MACRO
from cxrbench.targets import kind_names, target_kind

SCHEMA_FILE = Path(__file__).with_name("metrics.schema.json")
#: columns each parquet file of a run must have (predictions may have more: probabilities, per-case values)
REQUIRED_COLUMNS = {
    PREDICTIONS: ("image_id", "patient_id", "seed", "task", "label"),
    SPLITS: ("image_id", "patient_id", "seed", "split"),
}
SPLITS = {"train", "val", "test", "unused"}
#: rounding room when a bootstrap median is compared with its interval (both are stored as computed, not rounded)
INTERVAL_SLACK = 1e-9
#: an explain run's scored boxes, one row per seed and box (the numbers of its metrics.json are counted from them)
EXPLAIN_CSV = "explain.csv"
EXPLAIN_COLUMNS = ("seed", "image_id", "finding", "hit")
#: metrics.json keys holding one entry per seed
PER_SEED_KEYS = ("n_train_images", "n_test_images", "n_test_patients", "heads")


def find_runs(path: Path) -> list[Path]:
    """The run folders at `path`: itself when it holds metrics.json (or is one), else every folder below it that
    does, skipping hidden folders (runs being written or left by a killed process) and a run's own subfolders."""
    if path.is_file() and path.name == METRICS:
        return [path.parent]
    if not path.is_dir():
        raise DataError(f"{path}: no such folder. Give a run folder (holding metrics.json) or a results folder (--out of "
                        "`cxrbench run`).")
    if (path / METRICS).is_file():
        return [path]
    runs = []
    for folder, subfolders, files in os.walk(path):
        if METRICS in files and folder != str(path):
            runs.append(Path(folder))
            subfolders.clear()
        else:
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
    return sorted(runs)


def validate_run(folder: Path) -> list[str]:
    """Every problem of the run folder, each as 'FILE: PATH: what is wrong'; empty when the run is valid."""
    metrics, problems = _read_metrics(folder / METRICS)
    if metrics is None:
        return problems
    problems += [f"metrics.json: {message}" for message in metrics_problems(metrics)]
    if _newer(metrics):
        return problems
    seeds, names = _seeds(metrics), _target_names(metrics.get("targets"))
    kind = metrics.get("kind") or RUN
    if kind == EXPLAIN:
        return problems + [f"{EXPLAIN_CSV}: {message}" for message in _csv_problems(folder / EXPLAIN_CSV, seeds)]
    if kind == BIAS:
        return problems + _bias_run_problems(folder, metrics)
    for name in REQUIRED_COLUMNS:
        columns = required_columns(name, metrics)
        problems += [f"{name}: {message}" for message in _parquet_problems(folder / name, columns, seeds, names)]
    return problems


def required_columns(name: str, metrics: dict) -> tuple[str, ...]:
    """The columns a run's parquet file `name` must have: predictions of a run scoring anything but masks also hold
    each image's `score` (segmentation runs store per-case values instead)."""
    targets = metrics.get("targets") if isinstance(metrics.get("targets"), list) else []
    scored = any(isinstance(t, dict) and not (t.get("kind") in kind_names() and target_kind(t["kind"]).per_case) for t in targets)
    return REQUIRED_COLUMNS[name] + (("score",) if name == PREDICTIONS and scored else ())


def metrics_problems(metrics: dict, older_ok: bool = False) -> list[str]:
    """'PATH: what is wrong' for each problem of a parsed metrics.json: a format this cxrbench cannot read, a break of
    the schema, per-seed keys or targets that disagree, and invariants a hand edit breaks (a mean that is not the
    mean of its seeds). Every reader of stored runs goes through it (`results.store.load_metrics`), not only
    `validate`.

    `older_ok`: a file of an older cxrbench (no schema_version, from before the schema) is read as before, held to the
    consistency checks and invariants only (a reader can still use it; `validate` says to rerun it)."""
    version = metrics.get("schema_version")
    if "schema_version" not in metrics:
        problems = [] if older_ok else ["schema_version: missing: the run was written by an older cxrbench, before run folders recorded "
                    "their format and provenance. Run it again with this cxrbench (the same `cxrbench run` command, "
                    "with --overwrite; cached features are reused)."]
    elif _newer(metrics):
        return [f"schema_version: {version}: written by a newer cxrbench (this one reads versions up to "
                f"{SCHEMA_VERSION}). Upgrade cxrbench to read this run."]
    else:
        problems = _schema_problems(metrics)
    return problems + _consistency_problems(metrics, _seeds(metrics), _target_names(metrics.get("targets"))) + \
        _interval_problems(metrics)


def _newer(metrics: dict) -> bool:
    version = metrics.get("schema_version")
    return _is_int(version) and version > SCHEMA_VERSION


def _seeds(metrics: dict) -> set[str] | None:
    seeds = metrics.get("seeds")
    return {str(s) for s in seeds} if isinstance(seeds, list) and all(_is_int(s) for s in seeds) else None


# -- metrics.json ---------------------------------------------------------------------------------------------
def parse_metrics(text: str):
    """metrics.json's text as JSON, refusing NaN and Infinity (Python's json reads them; cxrbench writes neither, so
    one is a hand edit or damage, and it would print as a number)."""
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a run stores (metrics.json is written without NaN or Infinity)")


def _read_metrics(path: Path) -> tuple[dict | None, list[str]]:
    try:
        metrics = parse_metrics(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ["metrics.json: missing: not a run folder, or its run did not finish."]
    except OSError as exc:
        return None, [f"metrics.json: cannot be read ({exc.strerror or exc})."]
    except ValueError as exc:
        return None, [f"metrics.json: not valid JSON ({exc}); the file is damaged: run the benchmark again."]
    if not isinstance(metrics, dict):
        return None, [f"metrics.json: (top level): a JSON object is expected, not {type(metrics).__name__}."]
    return metrics, []


@lru_cache(maxsize=1)
def schema() -> dict:
    """The JSON Schema of metrics.json (the documentation of its format)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _schema_problems(metrics: dict) -> list[str]:
    """'PATH: message' for each place metrics.json breaks the schema, sorted by path."""
    errors = sorted(Draft202012Validator(schema()).iter_errors(metrics), key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(_describe(error) for error in errors)) + _kind_problems(metrics.get("targets"))


def _kind_problems(targets) -> list[str]:
    """A target of a kind this cxrbench does not know (a damaged file, or one written with a plugin's kind that is not
    installed): the kinds are the registry's (`cxrbench.targets`), so a new kind needs no schema edit."""
    if not isinstance(targets, list):
        return []
    known = kind_names()
    return [f"targets[{i}].kind: {t['kind']!r} is not one of the target kinds {', '.join(known)}"
            for i, t in enumerate(targets) if isinstance(t, dict) and isinstance(t.get("kind"), str) and t["kind"] not in known]


def _describe(error: ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "required":  # name the missing key's own path
        missing = [k for k in error.validator_value if error.message == f"{k!r} is a required property"]
        if missing:
            return f"{json_path([*path, missing[0]])}: missing (required)"
    return f"{json_path(path)}: {error.message}"


def json_path(parts: list) -> str:
    """metrics.auprc.Cardiomegaly.ci_low, targets[2].kind; '(top level)' for the document itself."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "(top level)"


def _consistency_problems(metrics: dict, seeds: set[str] | None, names: set[str] | None) -> list[str]:
    """What the schema cannot say: per-seed keys are the run's seeds, scored targets are its targets."""
    problems = []
    if seeds is not None:
        for key in PER_SEED_KEYS:
            if isinstance(metrics.get(key), dict) and set(metrics[key]) != seeds:
                problems.append(f"{key}: {_seed_mismatch(metrics[key], seeds)}")
    problems += _explain_seed_problems(metrics.get("explain"), seeds)
    summaries = metrics.get("metrics")
    for metric, entries in (summaries.items() if isinstance(summaries, dict) else ()):
        for target, entry in (entries.items() if isinstance(entries, dict) else ()):
            where = json_path(["metrics", metric, target])
            if names is not None and target != MACRO and target not in names:
                problems.append(f"{where}: '{target}' is not among the run's targets ({', '.join(sorted(names))}) nor "
                                f"'{MACRO}'.")
            per_seed = entry.get("per_seed") if isinstance(entry, dict) else None
            if seeds is not None and isinstance(per_seed, dict) and set(per_seed) != seeds:
                problems.append(f"{where}.per_seed: {_seed_mismatch(per_seed, seeds)}")
    return problems


def _explain_seed_problems(explain, seeds: set[str] | None) -> list[str]:
    """An explain run's per-seed numbers (macro accuracy, each finding's hits) are keyed by exactly its seeds."""
    if not isinstance(explain, dict) or seeds is None:
        return []
    keyed = [(["explain", "macro_accuracy", "per_seed"], (explain.get("macro_accuracy") or {}).get("per_seed"))]
    findings = explain.get("findings") if isinstance(explain.get("findings"), dict) else {}
    keyed += [(["explain", "findings", name, "hits"], item.get("hits")) for name, item in findings.items() if isinstance(item, dict)]
    return [f"{json_path(path)}: {_seed_mismatch(value, seeds)}" for path, value in keyed
            if isinstance(value, dict) and set(value) != seeds]


def _interval_problems(metrics: dict) -> list[str]:
    """Each summary whose numbers cannot come from the run's seeds and one bootstrap: the mean is the mean of the
    per-seed values, and ci_low <= bootstrap_median <= ci_high (percentiles of one distribution). A hand-edited
    `80.6 [11.4, 33.2]` breaks the first. The mean itself may lie outside its percentile interval and is no sign of
    damage: the bootstrap distribution of a skewed or biased metric (the AUPRC of a class with two positives, whose
    duplicated positives raise it) or one conditioned on resamples that draw every class can sit off the estimate.
    Cheap: no prediction is read."""
    problems = []
    summaries = metrics.get("metrics")
    for metric, entries in (summaries.items() if isinstance(summaries, dict) else ()):
        for target, entry in (entries.items() if isinstance(entries, dict) else ()):
            if not isinstance(entry, dict):
                continue
            where = json_path(["metrics", metric, target])
            seeds = list(entry["per_seed"].values()) if isinstance(entry.get("per_seed"), dict) else []
            mean = entry.get("mean")
            if _is_number(mean) and seeds and all(_is_number(v) for v in seeds):
                expected = sum(seeds) / len(seeds)
                if not math.isclose(mean, expected, rel_tol=1e-9, abs_tol=1e-12):
                    problems.append(f"{where}.mean: {mean} is not the mean of its per_seed values ({expected}): the "
                                    "file was edited or damaged. Restore it (e.g. from git) or rerun the run with "
                                    "--overwrite.")
            low, high, median = entry.get("ci_low"), entry.get("ci_high"), entry.get("bootstrap_median")
            if _is_number(low) and _is_number(high) and _is_number(median) and \
                    not low - INTERVAL_SLACK <= median <= high + INTERVAL_SLACK:
                problems.append(f"{where}.bootstrap_median: {median} lies outside its own interval [ci_low {low}, "
                                f"ci_high {high}]: the file was edited or damaged. Restore it (e.g. from git) or rerun "
                                "the run with --overwrite.")
    return problems


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _seed_mismatch(keyed: dict, seeds: set[str]) -> str:
    return f"has seeds {_listed(set(keyed))}, but the run's seeds are {_listed(seeds)}."


def _listed(keys: set) -> str:
    return ", ".join(sorted((str(k) for k in keys), key=lambda k: (len(k), k))) or "none"


def _target_names(targets) -> set[str] | None:
    """What metrics may be keyed by: each target's name, and each structure of a mask target (scored one by one; only
    mask targets have structures); None when `targets` is too damaged to tell (the schema reports it)."""
    if not isinstance(targets, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in targets):
        return None
    return {t["name"] for t in targets} | {s for t in targets for s in t.get("structures") or ()
                                           if isinstance(s, str)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- files of explain and bias runs ----------------------------------------------------------------------------
def _csv_problems(path: Path, seeds: set[str] | None) -> list[str]:
    """explain.csv is there, readable, with its columns, and holds exactly the run's seeds."""
    import pandas as pd

    if not path.is_file():
        return ["missing: the explain run is incomplete; run `cxrbench explain` again with --overwrite."]
    try:
        frame = pd.read_csv(path, usecols=lambda c: c in EXPLAIN_COLUMNS)
    except (OSError, ValueError) as exc:
        return [f"cannot be read as CSV ({exc}); the file is damaged: run `cxrbench explain` again with --overwrite."]
    missing = [c for c in EXPLAIN_COLUMNS if c not in frame.columns]
    if missing:
        return [f"{', '.join(missing)}: required column(s) missing (it needs {', '.join(EXPLAIN_COLUMNS)})."]
    stored = {str(s) for s in frame["seed"].unique()}
    if seeds is not None and frame.size and stored != seeds:
        return [f"seed: holds seeds {_listed(stored)}, but metrics.json's seeds are {_listed(seeds)}."]
    return []


def _bias_run_problems(folder: Path, metrics: dict) -> list[str]:
    """Every group run a bias run scored is stored beside it, and its folds are the run's seeds."""
    bias = metrics.get("bias") if isinstance(metrics.get("bias"), dict) else {}
    runs = bias.get("runs") if isinstance(bias.get("runs"), dict) else {}
    problems = [f"metrics.json: bias.runs.{group}: {folder.parent / str(name)} holds no run (no metrics.json); run "
                "`cxrbench bias` again." for group, name in runs.items() if not (folder.parent / str(name) / METRICS).is_file()]
    seeds = _seeds(metrics)
    folds = {str(row.get("fold")) for row in bias.get("folds") or [] if isinstance(row, dict)}
    if seeds is not None and folds and folds != seeds:
        problems.append(f"metrics.json: bias.folds: has folds {_listed(folds)}, but the run's seeds are {_listed(seeds)}.")
    return problems


# -- parquet files --------------------------------------------------------------------------------------------
def _parquet_problems(path: Path, columns: tuple[str, ...], seeds: set[str] | None, names: set[str] | None) -> list[str]:
    """The file is there and readable, has `columns`, holds exactly the run's seeds; predictions only the run's
    targets, splits only known split names."""
    if not path.is_file():
        return ["missing: the run folder is incomplete; run the benchmark again (cached features are reused)."]
    try:
        missing = [c for c in columns if c not in pq.read_schema(path).names]
        if missing:
            return [f"{', '.join(missing)}: required column(s) missing (it needs {', '.join(columns)})."]
        table = pq.read_table(path, columns=list(columns))
    except (OSError, ValueError, pa.ArrowException) as exc:
        return [f"cannot be read as Parquet ({exc}); the file is damaged: run the benchmark again."]
    problems = []
    stored = {str(s) for s in pc.unique(table["seed"]).to_pylist()}
    if seeds is not None and stored != seeds:
        problems.append(f"seed: holds seeds {_listed(stored)}, but metrics.json's seeds are {_listed(seeds)}.")
    if "task" in columns and names is not None:
        unknown = {str(t) for t in pc.unique(table["task"]).to_pylist()} - names
        if unknown:
            problems.append(f"task: {', '.join(sorted(unknown))} not among metrics.json's targets.")
    if "split" in columns:
        unknown = {str(s) for s in pc.unique(table["split"]).to_pylist()} - SPLITS
        if unknown:
            problems.append(f"split: unknown split name(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(SPLITS))}).")
    return problems


__all__ = ["REQUIRED_COLUMNS", "parse_metrics", "required_columns", "SCHEMA_FILE", "find_runs", "json_path", "metrics_problems", "schema", "validate_run"]
