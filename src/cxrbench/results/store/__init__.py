"""The results store: the one owner of run folders under OUT (paths, discovery by identity, locking, atomic
writes, resume decisions, schema checks on every read). Nothing else in cxrbench spells a results path.

- `layout`: where each file lives (run folders, benchmark-level tables, comparisons, curves, bias files);
- `runs`: finding and reading stored runs (`stored_runs`, `load_metrics`, `StoredRun`);
- `writing`: writing a run folder atomically under its lock, and deciding whether to (`resume_decision`).
"""

from cxrbench.results.store.layout import (
    BIAS, EXPLAIN, EXPLAIN_RUN, METRICS, PREDICTIONS, RUN, RUN_KINDS, SPLITS, benchmark_folder, benchmark_table_stem,
    bias_files, bias_folder, comparison_files, comparison_stem, comparisons_folder, efficiency_files,
    efficiency_pictures, explain_folder, paper_table_stem, report_folder, run_folder, run_name, tables_folder,
)
from cxrbench.results.store.runs import (
    StoredRun, load_metrics, read_metrics, read_predictions, run_kind, split_manifests, stored_benchmarks, stored_runs,
)
from cxrbench.results.store.writing import (
    csv_writer, json_writer, parquet_writer, recover_run, refuse_other_settings, resume_decision, text_writer, write_run,
    write_texts, yaml_writer,
)

__all__ = [
    "BIAS", "EXPLAIN", "EXPLAIN_RUN", "METRICS", "PREDICTIONS", "RUN", "RUN_KINDS", "SPLITS", "StoredRun",
    "benchmark_folder", "benchmark_table_stem", "bias_files", "bias_folder", "comparison_files", "comparison_stem",
    "comparisons_folder", "csv_writer", "efficiency_files", "efficiency_pictures", "explain_folder", "json_writer",
    "load_metrics", "paper_table_stem", "parquet_writer", "read_metrics", "read_predictions", "recover_run",
    "refuse_other_settings", "report_folder", "resume_decision", "run_folder", "run_kind", "run_name",
    "split_manifests", "stored_benchmarks", "stored_runs", "tables_folder", "text_writer", "write_run", "write_texts",
    "yaml_writer",
]
