"""Where every file of a results folder lives; the one module that spells a path under OUT.

    OUT/BENCHMARK/ENCODER/HEAD[_TAG][_train-F | _shots-N | _group-A-G]/   a run (`cxrbench run`, `bias` group runs)
    OUT/BENCHMARK/ENCODER/explain/                                      an explain run (`cxrbench explain`)
    OUT/BENCHMARK/ENCODER/HEAD[_TAG]_bias-ATTRIBUTE-METRIC/             a bias run: one model's group runs analysed
    OUT/BENCHMARK/bias_ATTRIBUTE{_folds.csv,_tests.csv,_models.csv,.md,.png}   every model's bias runs side by side
    OUT/BENCHMARK/comparisons/METRIC_vs_REFERENCE.{csv,md}              paired comparisons (`cxrbench compare`)
    OUT/BENCHMARK/efficiency_METRIC.{md,csv,png}                        label efficiency (`cxrbench curve`)
    OUT/BENCHMARK/table_METRIC[_vs_ENCODER].{md,csv,tex}                a benchmark's table (`cxrbench table BENCH`)
    OUT/tables/LAYOUT[_vs_ENCODER].{md,csv,tex}                         paper tables (`cxrbench table --all`)
    OUT/report/                                                         the HTML report (`cxrbench report`)

Every run folder holds metrics.json, which says what the run is (its `kind` and `run_identity`): folder names are
for people and are never parsed back. Writers and readers ask here for a path instead of joining names themselves,
so the layout can change in one place.
"""

from __future__ import annotations

from pathlib import Path

from cxrbench.files import path_part

METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
SPLITS = "splits.parquet"
#: the folder of an encoder's explain run (one per benchmark and encoder; another head or setting replaces it only
#: with --overwrite)
EXPLAIN_RUN = "explain"
TABLES = "tables"
COMPARISONS = "comparisons"
REPORT = "report"
#: the kinds of run a metrics.json may hold (its `kind`; absent: a run of `cxrbench run`, scored from its predictions)
RUN, EXPLAIN, BIAS = "run", "explain", "bias"
RUN_KINDS = (RUN, EXPLAIN, BIAS)
BIAS_FILES = {"folds": "_folds.csv", "tests": "_tests.csv", "models": "_models.csv", "md": ".md", "png": ".png"}


def benchmark_folder(out: Path, benchmark: str) -> Path:
    return Path(out) / benchmark


def run_folder(out: Path, benchmark: str, encoder: str, head: str) -> Path:
    """The encoder's folder is its name made safe as one path component (`hf:org/name` -> `hf--org--name`); tables
    read the name itself from metrics.json."""
    return benchmark_folder(out, benchmark) / path_part(encoder) / head


def run_name(head: str, tag: str | None = None, budget=None) -> str:
    """A run folder's name, for people: HEAD[_TAG][_train-F | _shots-N | _group-ATTRIBUTE-GROUP] (`budget`: a
    `LabelBudget`, a `GroupBudget` or None).
    Tables never parse it back: they read what the run is from its metrics.json."""
    return "_".join([head, *([tag] if tag else []), *([budget.suffix] if budget else [])])


def explain_folder(out: Path, benchmark: str, encoder: str) -> Path:
    return run_folder(out, benchmark, encoder, EXPLAIN_RUN)


def bias_folder(out: Path, benchmark: str, encoder: str, head: str, tag: str | None, attribute: str, metric: str) -> Path:
    """One model's bias run: its group runs of `attribute` scored per test group with `metric` (another metric is
    another analysis, so it has its own folder)."""
    return run_folder(out, benchmark, encoder, f"{run_name(head, tag)}_bias-{path_part(attribute)}-{path_part(metric)}")


def bias_files(out: Path, benchmark: str, attribute: str) -> dict[str, Path]:
    """Every model's bias runs of `attribute` side by side: folds, tests, models (CSV), md and png."""
    stem = f"bias_{path_part(attribute)}"
    return {kind: benchmark_folder(out, benchmark) / f"{stem}{suffix}" for kind, suffix in BIAS_FILES.items()}


def comparisons_folder(out: Path, benchmark: str) -> Path:
    return benchmark_folder(out, benchmark) / COMPARISONS


def comparison_stem(out: Path, benchmark: str, metric: str, reference: str) -> Path:
    """`cxrbench compare`'s files without their suffix (.csv, .md)."""
    return comparisons_folder(out, benchmark) / f"{metric}_vs_{path_part(reference)}"


def efficiency_files(out: Path, benchmark: str, metric: str) -> dict[str, Path]:
    stem = benchmark_folder(out, benchmark) / f"efficiency_{metric}"
    return {suffix: stem.with_name(f"{stem.name}.{suffix}") for suffix in ("md", "csv", "png")}


def efficiency_pictures(out: Path, benchmark: str) -> list[Path]:
    """The label-efficiency figures `cxrbench curve` wrote for a benchmark, one per metric."""
    return sorted(benchmark_folder(out, benchmark).glob("efficiency_*.png"))


def comparison_files(out: Path, benchmark: str) -> list[Path]:
    """The comparison CSVs `cxrbench compare` wrote for a benchmark (hidden names are work in progress)."""
    return sorted(p for p in comparisons_folder(out, benchmark).glob("*.csv") if not p.name.startswith("."))


def benchmark_table_stem(out: Path, benchmark: str, metric: str, versus: str | None = None) -> Path:
    """`cxrbench table BENCHMARK`'s files without their suffix (.md, .csv, .tex)."""
    return benchmark_folder(out, benchmark) / (f"table_{metric}" + (f"_vs_{path_part(versus)}" if versus else ""))


def tables_folder(out: Path) -> Path:
    return Path(out) / TABLES


def paper_table_stem(out: Path, name: str) -> Path:
    """A paper table's files without their suffix (.md, .csv, .tex): OUT/tables/NAME."""
    return tables_folder(out) / name


def report_folder(out: Path) -> Path:
    return Path(out) / REPORT
