"""The run steps every run-writing evaluation shares: planning a run folder and its identity, the resume and
overwrite decisions, and turning an `EvaluationResult` into a run folder through the results store:

    OUT/BENCHMARK/ENCODER/HEAD[_TAG][_train-F | _shots-N | _group-A-G]/   (names for people; metrics.json says what
        config.yaml  predictions.parquet  splits.parquet  metrics.json       the run is)
        table.md  table.csv  [selection.csv]  [stratified.csv]  [the evaluation's own files]

A benchmark with `groups:` also gets its results per patient group (`stats.stratified`). An evaluation describes
what it trains as a `Method`; these functions know nothing of heads, decoders or target kinds beyond that.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

import cxrbench
from cxrbench.data.groups import group_frame
from cxrbench.data.splits import SPLIT_MANIFEST_VERSION, GroupBudget, LabelBudget
from cxrbench.encoders.base import Encoder
from cxrbench.evaluations.base import EvaluationResult, RunOptions, RunResult
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings, feature_numerics
from cxrbench.metrics.points import MetricContext, train_prevalence
from cxrbench.progress import Progress
from cxrbench.recording import recorded_command, recorded_run_spec
from cxrbench.results.labels import method_label, run_label, variant_notes
from cxrbench.results.provenance import SCHEMA_VERSION, package_versions, provenance
from cxrbench.results.store import (METRICS, PREDICTIONS, SPLITS, json_writer, parquet_writer, refuse_other_settings,
                                    resume_decision, run_folder, run_name, text_writer, write_run, yaml_writer)
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.stats.stratified import stratify
from cxrbench.stats.summary import point_metric_blocks, summarize
from cxrbench.study import Study
from cxrbench.tables.markdown import to_markdown
from cxrbench.tables.runs import bootstrap_caveats, run_display_table, run_long_table
from cxrbench.tables.stratified import stratified_long_table, stratified_markdown
from cxrbench.targets import scored_targets

MetricsFor = Callable[[TargetSpec], list[str]]


@dataclass(frozen=True)
class Method:
    """What an evaluation trains, as the run steps record it: the registered head, its resolved parameters (part of
    the run identity) and the target groups it learns (config.yaml; none for a decoder of every structure)."""

    head: str
    params: dict
    groups: tuple[dict, ...] = ()


def metrics_for(spec: BenchmarkSpec, extra: Sequence[str]) -> MetricsFor:
    """Each target's metrics: the benchmark's (or the target's own), then those asked for with --metric. A mask
    structure's scored target carries its owner's `metrics`, so it gets its owner's."""
    return lambda target: list(dict.fromkeys([*spec.metrics_for(target), *extra]))


class RunPlan:
    """Where one run goes and what identifies its settings; a stored run of other settings is never replaced silently."""

    def __init__(self, options: RunOptions, method: Method, study: Study, encoder: Encoder,
                 budget: LabelBudget | GroupBudget | None, numerics: dict):
        self.budget = budget
        self.encoder = encoder.spec.name
        self.name = run_name(method.head, options.tag, budget)
        self.folder = run_folder(options.out, study.spec.name, encoder.spec.name, self.name)
        self.resume = options.resume
        self.stored: dict | None = None  # metrics.json of this very run, when resuming finds it stored
        self.overwrite = options.overwrite
        self.head_params = method.params
        scored_by = metrics_for(study.spec, options.metrics)
        self.identity = json.loads(json.dumps({
            "weights": encoder.weights.identity, "preprocessing": asdict(encoder.preprocessing),
            "dataset_options": study.dataset_options, "split": study.spec.split.identity(),
            "head": {"name": method.head, **{k: v for k, v in self.head_params.items() if k != "device"}},
            "targets": [asdict(t) for t in study.data.targets],
            "label_budget": None if budget is None else budget.describe(), "seeds": study.seeds,
            "bootstrap": asdict(study.bootstrap), "synthetic_data": study.data.synthetic,
            "metrics": sorted({m for t in study.data.targets for m in scored_by(t)}),
            **({"features": numerics} if numerics else {}),  # only when not fp32 from the originals: stored ids stay
        }, default=str))

    def check_overwrite(self, stored: dict | None = None, at_write: bool = False) -> None:
        """Refuse to replace a stored run of other settings (the store's rule), before any work and again under the
        run folder's lock when writing (`stored`: the metrics.json found there then); before any work, also keep a
        stored run of these very settings when resuming."""
        if at_write:
            refuse_other_settings(self.folder, stored, self.identity, self.overwrite, at_write=True)
            return
        from cxrbench.console import warn

        found = resume_decision(self.folder, self.identity, self.overwrite, warn)
        self.stored = found if self.resume else None


def plan_runs(options: RunOptions, method: Method, study: Study, encoder: Encoder, settings: ExtractionSettings) -> list[RunPlan]:
    """One plan per label budget of the study, each checked against what is stored (refused or resumed)."""
    numerics = feature_numerics(settings.precision, settings.pixel_cache)
    plans = [RunPlan(options, method, study, encoder, budget, numerics) for budget in study.budgets]
    for plan in plans:
        plan.check_overwrite()
    return plans


def run_each(plans: list[RunPlan], study: Study, run: Callable[[RunPlan], RunResult]) -> list[RunResult]:
    """`run(plan)` for each plan, except a run stored already with these settings, which is kept (resuming)."""
    tasks = tuple(t.name for t in scored_targets(study.data.targets))
    return [RunResult(plan.encoder, plan.name, plan.folder, plan.stored, 0, 0, tasks, resumed=True) if plan.stored
            else run(plan) for plan in plans]


def write_result(study: Study, features: EncoderFeatures, options: RunOptions, method: Method, plan: RunPlan,
                 result: EvaluationResult, progress: Progress) -> RunResult:
    """Summarise one run's predictions and write its folder (metrics.json, tables, config.yaml, the predictions,
    the split manifests and the evaluation's own files) through the results store."""
    spec, data = study.spec, study.data
    encoder_name = features.encoder.spec.name
    frame = result.predictions.merge(group_frame(data.samples, spec.groups, spec.name), on="image_id", how="left")
    scored = scored_targets(data.targets)
    tasks = tuple(t.name for t in scored)
    scored_by = metrics_for(spec, options.metrics)
    training = [study.split(plan.budget, s) == "train" for s in study.seeds]
    context = MetricContext(result.thresholds, train_prevalence(data.labels(), data.targets, training))
    summary = summarize(frame, scored, scored_by, study.bootstrap, context)
    stratified = stratify(frame, spec, scored, scored_by, study.bootstrap, result.thresholds) if spec.groups else None
    manifests = study.manifests[plan.budget]
    points = point_metric_blocks(summary, scored, context)
    metrics = _metrics_json(study, encoder_name, options, method, plan, result, summary, points, stratified, features)
    files = {
        "config.yaml": yaml_writer(resolved_config(study, features, options, method, plan)),
        PREDICTIONS: parquet_writer(frame),
        SPLITS: parquet_writer(manifests),
        METRICS: json_writer(metrics),
        "table.md": text_writer(_heading(study, encoder_name, plan) + to_markdown(run_display_table(metrics, tasks), "metric")
                                + "".join(f"\nNote: {caveat}\n" for caveat in bootstrap_caveats(metrics))
                                + (stratified_markdown(metrics) if stratified else "")),
        "table.csv": lambda path: run_long_table(metrics, tasks).to_csv(path, index=False),
        **({"stratified.csv": lambda path: stratified_long_table(metrics).to_csv(path, index=False)} if stratified else {}),
        **result.files,
    }
    if result.selections:
        files["selection.csv"] = lambda path: pd.DataFrame(result.selections).to_csv(path, index=False)
    write_run(plan.folder, files, check=lambda stored: plan.check_overwrite(stored, at_write=True), on_wait=progress.note)
    extraction = features.extraction
    return RunResult(encoder_name, plan.name, plan.folder, metrics, extraction.encoded, extraction.reused, tasks)


def _metrics_json(study: Study, encoder_name: str, options: RunOptions, method: Method, plan: RunPlan,
                  result: EvaluationResult, summary: dict, points: dict, stratified: dict | None,
                  features: EncoderFeatures) -> dict:
    """metrics.json: what the run is, its numbers (`points`: the blocks of metrics read at points, e.g. auprc_bins'
    classes per bin) and where they come from."""
    spec, data, budget = study.spec, study.data, plan.budget
    manifests = study.manifests[budget]
    test_rows = manifests["split"].eq("test")
    return {
        "schema_version": SCHEMA_VERSION,
        "benchmark": spec.name,
        "encoder": encoder_name,
        "head": method.head,
        "tag": options.tag,
        "label_budget": None if budget is None else budget.describe(),
        "split": "test",
        "seeds": study.seeds,
        "targets": [asdict(t) for t in data.targets],
        "n_train_images": result.n_train,
        "n_test_images": {s: int((manifests["seed"].eq(s) & test_rows).sum()) for s in study.seeds},
        "n_test_patients": {s: int(manifests.loc[manifests["seed"].eq(s) & test_rows, "patient_id"].nunique())
                            for s in study.seeds},
        "std_ddof": 1,
        "bootstrap": asdict(study.bootstrap),
        "primary_metric": spec.primary_metric,
        "metrics": summary,
        "heads": {str(k): v for k, v in result.reports.items()},
        "thresholds": {str(k): v for k, v in result.thresholds.items()},
        **points,
        **({"stratified": stratified} if stratified is not None else {}),
        **({"transfer": study.transfer} if study.transfer is not None else {}),
        **({"run_spec": recorded_run_spec()} if recorded_run_spec() is not None else {}),
        "run_identity": plan.identity,
        "provenance": provenance(features.encoder.weights, data.samples, list(data.tasks), manifests, data.root),
    }


def _heading(study: Study, encoder_name: str, plan: RunPlan) -> str:
    """table.md's title and the warnings a reader must see first (synthetic data, settings chosen on test)."""
    on_test = plan.head_params.get("select_on") == "test"
    head = method_label(plan.name, selected_on_test=on_test)
    return f"# {study.spec.title}: {run_label(encoder_name, head, variant_notes(encoder_name, plan.identity))}\n\n" + (
        "**Synthetic data** (written by cxrbench): not comparable with any paper.\n\n" if study.data.synthetic else "") + (
        "**Settings selected on the test split** (`select_on: test`, as the paper being reproduced did): "
        "optimistic, not a held-out estimate.\n\n" if on_test else "")


def resolved_config(study: Study, features: EncoderFeatures, options: RunOptions, method: Method, plan: RunPlan) -> dict:
    """config.yaml: everything the run was made from, resolved (for people; the identity is in metrics.json)."""
    encoder, store, spec = features.encoder, features.extraction.store, study.spec
    return {
        "cxrbench_version": cxrbench.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": recorded_command(),
        "run_spec": recorded_run_spec(),
        "benchmark": {**asdict(spec), "data_root": str(study.data.root), "synthetic_data": study.data.synthetic,
                      "dataset_options": study.dataset_options, "loader_notes": study.data.notes},
        "encoder": {"name": encoder.spec.name, "weights": encoder.weights.identity,
                    "preprocessing": asdict(encoder.preprocessing), "global_embedding": encoder.spec.global_embedding},
        "head": {"name": method.head, "tag": options.tag, "params": plan.head_params, "groups": list(method.groups)},
        "label_budget": None if plan.budget is None else plan.budget.describe(),
        "seeds": study.seeds,
        "bootstrap": asdict(study.bootstrap),
        "split_manifest_version": SPLIT_MANIFEST_VERSION,
        "feature_cache": {"folder": str(store.folder), "key": store.manifest["key"]},
        "environment": package_versions(),
    }
