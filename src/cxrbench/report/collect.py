"""What a results folder holds, benchmark by benchmark, for the report.

    runs (`results.store.stored_runs`, kind run)     metrics.json, predictions.parquet, overlays/*.png (segmentation)
    explain runs (kind explain, `cxrbench explain`)  metrics.json's `explain` block, heatmaps/FINDING/*.png
    bias runs (kind bias, `cxrbench bias`)           their attributes' side-by-side files (`results.store.bias_files`)
    paired comparisons (`cxrbench compare`)          `results.store.comparisons_folder`/METRIC_vs_REFERENCE.csv
    label-efficiency curves (`cxrbench curve`)       `results.store.efficiency_pictures`

Every run is found by its metrics.json through the results store, never by its folder's name. Hidden names are
work in progress or locks and are never read. Pictures are chosen here, a bounded number per
run, so that a results folder of many runs still gives a page that loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

from cxrbench.errors import CxrbenchError
from cxrbench.files import is_staging
from cxrbench.results.store import (BIAS, EXPLAIN, RUN, StoredRun, bias_files, comparison_files, efficiency_pictures,
                                    stored_runs)
from cxrbench.specs import TargetSpec
from cxrbench.typed_yaml import parse_spec
from cxrbench.stats.summary import MACRO

HEATMAPS_PER_EXPLAIN = 8  # spread over the findings
OVERLAYS_PER_RUN = 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ExplainRun:
    """An explain run: its metrics.json's `explain` block, how its encoder differs from the released one, its heatmaps."""

    encoder: str
    folder: Path
    summary: dict
    variant: list[str]
    heatmaps: list[Path]


@dataclass
class BenchmarkResults:
    name: str
    folder: Path
    runs: list[StoredRun] = field(default_factory=list)
    comparisons: list[Path] = field(default_factory=list)
    explains: list[ExplainRun] = field(default_factory=list)
    efficiency_images: list[Path] = field(default_factory=list)
    bias: dict[str, dict[str, Path]] = field(default_factory=dict)  # attribute -> its bias files (`store.bias_files`)
    problems: list[str] = field(default_factory=list)  # what could not be read, shown on the page

    @property
    def empty(self) -> bool:
        return not (self.runs or self.comparisons or self.explains or self.efficiency_images or self.bias
                    or self.problems)


def collect(out: Path, exclude: Sequence[Path] = ()) -> list[BenchmarkResults]:
    """Every benchmark folder under `out` holding something to show (`exclude`: folders to skip, e.g. the report's
    own destination inside `out`)."""
    skipped = {path.resolve() for path in exclude}
    found = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not is_staging(p.name)):
        if folder.resolve() in skipped:
            continue
        results = BenchmarkResults(folder.name, folder, comparisons=comparison_files(out, folder.name),
                                   efficiency_images=efficiency_pictures(out, folder.name))
        try:
            stored = stored_runs(out, folder.name, kind=None)
            results.runs = [run for run in stored if run.kind == RUN]
            results.explains = [_explain_run(run) for run in stored if run.kind == EXPLAIN]
            results.bias = _bias_files(out, folder.name, [run for run in stored if run.kind == BIAS])
        except CxrbenchError as exc:  # one damaged metrics.json: say so, show the rest
            results.problems.append(str(exc))
        if not results.empty:
            found.append(results)
    return found


def _explain_run(run: StoredRun) -> ExplainRun:
    return ExplainRun(run.encoder, run.folder, run.metrics["explain"], run.variant,
                      _spread(run.folder / "heatmaps", HEATMAPS_PER_EXPLAIN))


def _bias_files(out: Path, benchmark: str, runs: Sequence[StoredRun]) -> dict[str, dict[str, Path]]:
    """Per attribute of the stored bias runs, the side-by-side files `cxrbench bias` wrote (when its figure is there)."""
    attributes = sorted({run.metrics["bias"]["attribute"] for run in runs})
    files = {attribute: bias_files(out, benchmark, attribute) for attribute in attributes}
    return {attribute: paths for attribute, paths in files.items() if paths["png"].is_file()}


def _spread(folder: Path, limit: int) -> list[Path]:
    """Up to `limit` PNGs under `folder`, taking one from each subfolder (finding) in turn."""
    groups: dict[Path, list[Path]] = {}
    for path in sorted(folder.rglob("*.png")):
        if is_png(path):
            groups.setdefault(path.parent, []).append(path)
    return [path for row in zip_longest(*groups.values()) for path in row if path is not None][:limit]


def is_png(path: Path) -> bool:
    """Whether the file starts as a PNG does (a truncated or foreign file would show as a broken image)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False


def overlays(run: StoredRun) -> list[Path]:
    """A segmentation run's first overlays (reference and predicted outlines)."""
    return [path for path in sorted((run.folder / "overlays").glob("*.png")) if is_png(path)][:OVERLAYS_PER_RUN]


def run_targets(run: StoredRun) -> list[TargetSpec]:
    """The run's targets as it stored them (metrics.json `targets`), else its benchmark's as registered now, else
    none (an old run of a benchmark no longer registered: its tables show, its curves cannot)."""
    stored = run.metrics.get("targets")
    if isinstance(stored, list):
        try:
            return [parse_spec(TargetSpec, dict(t), f"{run.folder / 'metrics.json'}: targets") for t in stored]
        except (CxrbenchError, TypeError, ValueError):
            pass
    from cxrbench.registry import benchmark_spec

    try:
        return list(benchmark_spec(run.benchmark).targets)
    except CxrbenchError:
        return []


def result_columns(run: StoredRun, targets: Sequence[TargetSpec]) -> list[str]:
    """The run table's columns: each target, or each structure of a mask target (as BenchmarkSpec.result_columns);
    for a run whose targets are unknown, what its metrics hold."""
    if targets:
        return [c for t in targets for c in t.target_kind.result_columns(t)]
    entries = next(iter(run.metrics.get("metrics", {}).values()), {})
    return [task for task in entries if task != MACRO]
