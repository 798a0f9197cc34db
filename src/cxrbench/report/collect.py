"""What a results folder holds, benchmark by benchmark, for the report.

    OUT/BENCHMARK/ENCODER/HEAD/metrics.json          stored runs (`results.store.stored_runs`), with
                                ... predictions.parquet, overlays/*.png (segmentation)
    OUT/BENCHMARK/ENCODER/explain/explain.json       explain runs (`explain.runner`), heatmaps/FINDING/*.png
    OUT/BENCHMARK/comparisons/METRIC.csv             paired comparisons (`cxrbench compare`)
    OUT/BENCHMARK/efficiency_METRIC.png              label-efficiency curves (`cxrbench curve`)

Hidden names are work in progress or locks and are never read. Pictures are chosen here, a bounded number per
run, so that a results folder of many runs still gives a page that loads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import yaml

from cxrbench.errors import CxrbenchError
from cxrbench.files import is_staging
from cxrbench.report.comparisons import comparison_files
from cxrbench.results.labels import config_identity, variant_notes
from cxrbench.results.store import StoredRun, stored_runs
from cxrbench.specs import TargetSpec, parse_spec
from cxrbench.stats.summary import MACRO

EXPLAIN_FOLDER = "explain"  # explain.runner.EXPLAIN_FOLDER (importing that module loads torch)
HEATMAPS_PER_EXPLAIN = 8  # spread over the findings
OVERLAYS_PER_RUN = 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ExplainRun:
    """An explain folder: explain.json's summary, how its encoder differs from the released one, its heatmaps."""

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
    bias_images: list[Path] = field(default_factory=list)  # bias_ATTRIBUTE.png of `cxrbench bias`
    problems: list[str] = field(default_factory=list)  # what could not be read, shown on the page

    @property
    def empty(self) -> bool:
        return not (self.runs or self.comparisons or self.explains or self.efficiency_images or self.bias_images
                    or self.problems)


def collect(out: Path, exclude: Sequence[Path] = ()) -> list[BenchmarkResults]:
    """Every benchmark folder under `out` holding something to show (`exclude`: folders to skip, e.g. the report's
    own destination inside `out`)."""
    skipped = {path.resolve() for path in exclude}
    found = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not is_staging(p.name)):
        if folder.resolve() in skipped:
            continue
        results = BenchmarkResults(folder.name, folder, comparisons=comparison_files(folder),
                                   efficiency_images=sorted(folder.glob("efficiency_*.png")),
                                   bias_images=sorted(folder.glob("bias_*.png")))
        try:
            results.runs = stored_runs(out, folder.name)
        except CxrbenchError as exc:  # one damaged metrics.json: say so, show the rest
            results.problems.append(str(exc))
        for path in sorted(folder.glob(f"*/{EXPLAIN_FOLDER}/explain.json")):
            explain = None if is_staging(path.parent.parent.name) else _explain_run(folder.name, path, results.problems)
            if explain is not None:
                results.explains.append(explain)
        if not results.empty:
            found.append(results)
    return found


def _explain_run(benchmark: str, path: Path, problems: list[str]) -> ExplainRun | None:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path} cannot be read ({exc}); run `cxrbench explain` again.")
        return None
    folder = path.parent
    name = str(summary.get("encoder") or folder.parent.name)
    variant = list(variant_notes(name, config_identity(_yaml(folder / "config.yaml"))))
    return ExplainRun(name, folder, summary, variant, _spread(folder / "heatmaps", HEATMAPS_PER_EXPLAIN))


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


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
