"""Run folders: OUT/BENCHMARK/ENCODER/HEAD/ with config.yaml, predictions.parquet, splits.parquet,
metrics.json, table.md and table.csv.

A run folder is assembled in a hidden sibling and renamed into place, so a crash never leaves a
half-written folder that looks complete, and a previous result is replaced only by a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from cxrbench.errors import DataError
from cxrbench.files import folder_lock, path_part, remove_stale, staging_name, storage_errors
from cxrbench.results.labels import method_label, run_label, variant_notes
from cxrbench.specs import BootstrapSpec, TargetSpec, parse_spec


def run_folder(out: Path, benchmark: str, encoder: str, head: str) -> Path:
    """The encoder's folder is its name made safe as one path component (`hf:org/name` -> `hf--org--name`); tables
    read the name itself from metrics.json."""
    return out / benchmark / path_part(encoder) / head


def run_name(head: str, tag: str | None = None, budget=None) -> str:
    """A run folder's name, for people: HEAD[_TAG][_train-F | _shots-N | _group-ATTRIBUTE-GROUP] (`budget`: a
    `LabelBudget`, a `GroupBudget` or None).
    Tables never parse it back: they read what the run is from its metrics.json."""
    return "_".join([head, *([tag] if tag else []), *([budget.suffix] if budget else [])])


def write_run(folder: Path, writers: dict[str, Callable[[Path], None]],
              check: Callable[[dict | None], None] | None = None, on_wait: Callable[[str], None] | None = None) -> Path:
    """Call each writer with its file path inside a staging folder, then move the folder into place.

    Under the folder's lock: `check(stored metrics.json or None)` runs first and may refuse (another process may
    have stored a run of other settings since this one started), staging leftovers of killed processes are
    removed, and the previous folder is replaced only by a complete one.
    """
    parent = folder.parent
    with storage_errors(parent, "Free some space, or pass --out on a disk with room, then rerun (features are cached)."):
        parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(parent / f".{folder.name}.lock", f"results into {folder}", on_wait):
            _restore_retired(folder, on_wait)
            if check is not None:
                check(read_metrics(folder))
            remove_stale(parent, f".{folder.name}.")
            staging = parent / staging_name(f"{folder.name}.partial")
            staging.mkdir()
            try:
                for name, write in writers.items():  # a name may hold a subfolder (masks/seed-0.npz)
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    write(staging / name)
                if folder.exists():
                    retired = parent / staging_name(f"{folder.name}.old")
                    os.rename(folder, retired)
                    os.rename(staging, folder)
                    shutil.rmtree(retired)
                else:
                    os.rename(staging, folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return folder


def recover_run(folder: Path, note: Callable[[str], None] | None = None) -> None:
    """Under the folder's lock, put back a run that a process killed inside `write_run` left only as its retired copy
    (see `_restore_retired`); call before deciding whether a run is stored there."""
    if folder.parent.is_dir() and not folder.exists():
        with folder_lock(folder.parent / f".{folder.name}.lock", f"results into {folder}", note):
            _restore_retired(folder, note)


def _restore_retired(folder: Path, note: Callable[[str], None] | None) -> None:
    """A kill between `write_run`'s two renames leaves the previous run only as `.HEAD.old.*` and no HEAD/: rename it
    back (call under the folder's lock), before anything is decided or cleared, so that the next run neither deletes it
    as a leftover nor stores other settings in its place without --overwrite."""
    if folder.exists():
        return
    retired = sorted(folder.parent.glob(f".{folder.name}.old.*"), key=lambda p: p.stat().st_mtime)
    retired = [path for path in retired if (path / "metrics.json").is_file()]
    if retired:
        os.rename(retired[-1], folder)
        if note is not None:
            note(f"restored {folder} from {retired[-1].name}: a process was stopped while replacing that run.")


def read_metrics(folder: Path) -> dict | None:
    """A run folder's metrics.json, or None when there is none (or it cannot be read as a run).

    Only for deciding whether a run is stored there (before writing over it); anything that shows or compares
    numbers reads runs with `load_metrics`, which refuses what it cannot trust."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def load_metrics(folder: Path) -> dict:
    """A run's metrics.json, checked before any number of it is shown: valid JSON without NaN / Infinity, a
    schema_version this cxrbench reads, the schema (files of an older cxrbench, without a version, are read as before),
    and invariants such as each mean inside its own interval (`results.schema.metrics_problems`). Tables, reports,
    comparisons and checks all read runs through here."""
    from cxrbench.results.schema import metrics_problems, parse_metrics

    path = folder / "metrics.json"
    try:
        metrics = parse_metrics(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} cannot be read as a run's metrics ({exc}). Restore it (e.g. from git), or run that "
                        f"benchmark again with --overwrite, or remove the folder {folder}.") from None
    problems = metrics_problems(metrics, older_ok=True) if isinstance(metrics, dict) else ["(top level): not a JSON object"]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DataError(f"{path} cannot be used: {shown}. `cxrbench results validate {folder}` lists every problem; "
                        "restore the file (e.g. from git) or rerun the run with --overwrite.")
    return metrics


def read_predictions(path: Path, metrics: dict) -> pd.DataFrame:
    """A run's predictions.parquet, with the columns its run needs (`results.schema.required_columns`; `metrics`: the
    run's metrics.json) and numeric labels and scores: a column deleted or retyped by hand is named here, not met as a
    KeyError inside a statistic."""
    import pyarrow as pa

    from cxrbench.results.schema import required_columns

    fix = "Restore the file (e.g. from git) or rerun the run with --overwrite (cached features are reused)."
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{path} cannot be read as Parquet ({exc}). {fix}") from None
    needed = required_columns(path.name, metrics)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)} (this run's predictions need "
                        f"{', '.join(needed)}). {fix}")
    wrong = [c for c in ("seed", "label", "score") if c in frame and not pd.api.types.is_numeric_dtype(frame[c])]
    if wrong:
        raise DataError(f"{path}: column(s) {', '.join(wrong)} are not numeric "
                        f"({', '.join(f'{c}: {frame[c].dtype}' for c in wrong)}). {fix}")
    return frame


def yaml_writer(data: dict) -> Callable[[Path], None]:
    plain = json.loads(json.dumps(data, default=str))  # tuples -> lists, version objects -> strings
    return lambda path: path.write_text(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True), encoding="utf-8")


def json_writer(data: dict) -> Callable[[Path], None]:
    return lambda path: path.write_text(json.dumps(data, indent=2, allow_nan=False), encoding="utf-8")


def parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path, index=False)


def text_writer(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text, encoding="utf-8")


@dataclass
class StoredRun:
    """A stored run, known by its metrics.json (never by its folder's name, which is for people)."""

    benchmark: str
    folder: Path
    metrics: dict

    @property
    def encoder(self) -> str:
        return str(self.metrics.get("encoder") or self.folder.parent.name)

    @property
    def head(self) -> str:
        return str(self.metrics.get("head") or self.folder.name)

    @property
    def tag(self) -> str | None:
        return self.metrics.get("tag")

    @property
    def method(self) -> str:
        """The head, with the run's tag when it has one: 'linear [lr-sweep]', and a mark when it chose its settings on
        the test split ('knn [selected on test]'), so that such an optimistic number never passes unlabelled."""
        return method_label(self.head, self.tag, self.selected_on_test)

    @property
    def selected_on_test(self) -> bool:
        """Whether the head chose its settings (kNN's k) on the test split (head parameter `select_on: test`)."""
        return ((self.metrics.get("run_identity") or {}).get("head") or {}).get("select_on") == "test"

    @property
    def variant(self) -> list[str]:
        """How the run differs from the published protocol (random weights, another input size, synthetic data): such
        a run must never pass in a table for the published encoder on the real dataset (`cxrbench.results.labels`)."""
        return list(variant_notes(self.encoder, self.metrics.get("run_identity")))

    @property
    def label(self) -> str:
        return run_label(self.encoder, self.method, self.variant)

    def scored_targets(self) -> list[TargetSpec]:
        """The targets its summary scored: its targets, a mask target once per structure (as segmentation scores it)."""
        where = f"{self.folder / 'metrics.json'}: targets"
        targets = [parse_spec(TargetSpec, dict(t), where) for t in self.metrics.get("targets", [])]
        return [TargetSpec(s, "mask", structures=(s,), metrics=t.metrics) if t.kind == "mask" else t
                for t in targets for s in (t.structures if t.kind == "mask" else (t.name,))]

    def bootstrap(self) -> BootstrapSpec:
        return parse_spec(BootstrapSpec, dict(self.metrics.get("bootstrap", {})), f"{self.folder / 'metrics.json'}: bootstrap")

    def predictions(self) -> pd.DataFrame:
        return read_predictions(self.folder / "predictions.parquet", self.metrics)


def stored_runs(out: Path, benchmark: str) -> list[StoredRun]:
    """Every complete run of `benchmark` under `out` (folders holding metrics.json), each read by `load_metrics`:
    one that cannot be trusted stops the table with its file and problem named, instead of becoming a row."""
    runs = []
    for metrics_path in sorted((out / benchmark).glob("*/*/metrics.json")):
        folder = metrics_path.parent
        if folder.name.startswith(".") or folder.parent.name.startswith("."):
            continue
        runs.append(StoredRun(benchmark, folder, load_metrics(folder)))
    return runs
