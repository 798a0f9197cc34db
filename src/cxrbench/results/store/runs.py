"""Reading stored runs: a run is found by its metrics.json (checked against the schema before any number of it is
shown) and known by what that file says, its `kind` and `run_identity`, never by its folder's name.

Runs of `cxrbench run` (probes, segmentation; no `kind`, or `kind: run`) are the rows of tables and curves; explain
and bias runs are runs of their own kinds, found the same way (`stored_runs(out, benchmark, kind)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrbench.errors import DataError
from cxrbench.files import is_staging
from cxrbench.results.labels import method_label, run_label, variant_notes
from cxrbench.results.store.layout import METRICS, PREDICTIONS, RUN, RUN_KINDS, SPLITS, benchmark_folder
from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.typed_yaml import parse_spec


def read_metrics(folder: Path) -> dict | None:
    """A run folder's metrics.json, or None when there is none (or it cannot be read as a run).

    Only for deciding whether a run is stored there (before writing over it); anything that shows or compares
    numbers reads runs with `load_metrics`, which refuses what it cannot trust."""
    try:
        metrics = json.loads((folder / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def load_metrics(folder: Path) -> dict:
    """A run's metrics.json, checked before any number of it is shown: valid JSON without NaN / Infinity, a
    schema_version this cxrbench reads, the schema (files of an older cxrbench, without a version, are read as before),
    and invariants such as each mean being the mean of its seeds (`results.schema.metrics_problems`). Tables, reports,
    comparisons and checks all read runs through here."""
    from cxrbench.results.schema import metrics_problems, parse_metrics

    path = folder / METRICS
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


@dataclass
class StoredRun:
    """A stored run, known by its metrics.json (never by its folder's name, which is for people)."""

    benchmark: str
    folder: Path
    metrics: dict

    @property
    def kind(self) -> str:
        return run_kind(self.metrics)

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
        where = f"{self.folder / METRICS}: targets"
        targets = [parse_spec(TargetSpec, dict(t), where) for t in self.metrics.get("targets", [])]
        return [TargetSpec(s, "mask", structures=(s,), metrics=t.metrics) if t.kind == "mask" else t
                for t in targets for s in (t.structures if t.kind == "mask" else (t.name,))]

    def bootstrap(self) -> BootstrapSpec:
        return parse_spec(BootstrapSpec, dict(self.metrics.get("bootstrap", {})), f"{self.folder / METRICS}: bootstrap")

    def predictions(self) -> pd.DataFrame:
        return read_predictions(self.folder / PREDICTIONS, self.metrics)


def run_kind(metrics: dict) -> str:
    """What a metrics.json holds: 'run' (a run of `cxrbench run`; files without `kind` are such runs), 'explain' or
    'bias'."""
    return str(metrics.get("kind") or RUN)


def stored_runs(out: Path, benchmark: str, kind: str | None = RUN) -> list[StoredRun]:
    """Every complete run of `benchmark` under `out` of `kind` (None: of every kind), each read by `load_metrics`: one
    that cannot be trusted stops the table with its file and problem named, instead of becoming a row."""
    if kind is not None and kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    runs = []
    for metrics_path in sorted(benchmark_folder(out, benchmark).glob(f"*/*/{METRICS}")):
        folder = metrics_path.parent
        if folder.name.startswith(".") or folder.parent.name.startswith("."):
            continue
        run = StoredRun(benchmark, folder, load_metrics(folder))
        if kind is None or run.kind == kind:
            runs.append(run)
    return runs


def stored_benchmarks(out: Path) -> list[str]:
    """The benchmarks under `out` holding at least one run of any kind (hidden folders are work in progress)."""
    out = Path(out)
    if not out.is_dir():
        return []
    return [folder.name for folder in sorted(out.iterdir())
            if folder.is_dir() and not is_staging(folder.name) and not folder.name.startswith(".")
            and any(not p.parent.name.startswith(".") and not p.parent.parent.name.startswith(".")
                    for p in folder.glob(f"*/*/{METRICS}"))]


def split_manifests(run: StoredRun) -> pd.DataFrame:
    """A run's splits.parquet through the strict reader (its columns named when missing)."""
    return read_predictions(run.folder / SPLITS, run.metrics)
