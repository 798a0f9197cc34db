"""Probes: heads trained on an encoder's features for binary, multiclass and regression targets (`cxrbench run`).

Targets are grouped by what one head can learn together: every binary target in one multi-label head (masked
BCE, as the papers' probes), each multiclass target in its own head (softmax over its classes), every regression
target in one head. Per seed and label budget each group's head trains on the training split (choosing among its
settings on the validation split where it has several) and scores the test split; the long-form predictions of all
groups are summarised with the benchmark's metrics and written as one run folder:

    OUT/BENCHMARK/ENCODER/HEAD[_TAG][_train-F | _shots-N | _group-A-G]/   (names for people; metrics.json says what
        config.yaml  predictions.parquet  splits.parquet  metrics.json       the run is)
        table.md  table.csv  [selection.csv]  [stratified.csv]

A benchmark with `groups:` also gets its results per patient group (`stats.stratified`), each binary target's
decision threshold chosen on validation (for the false-negative rate per group), and a group column per attribute
beside the predictions.

A head with `features: online` (e.g. `linear-augmented`, RAD-DINO's own probe) trains on the frozen encoder's
features of augmented views (`cxrbench.training.online`); everything else is the same.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cxrbench
from cxrbench.data.groups import group_frame
from cxrbench.data.splits import SPLIT_MANIFEST_VERSION, GroupBudget, LabelBudget
from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.errors import DataError, SpecError
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings, feature_numerics
from cxrbench.heads.base import CLS_LAYER_PREFIX, FeatureSet, FitReport, Head
from cxrbench.progress import Progress
from cxrbench.recording import recorded_command, recorded_run_spec
from cxrbench.registry import Entry, metric_spec, registry
from cxrbench.results.provenance import SCHEMA_VERSION, package_versions, provenance
from cxrbench.results.labels import method_label, run_label, run_variant, variant_notes
from cxrbench.results.store import (json_writer, parquet_writer, read_metrics, recover_run, run_folder, run_name, text_writer, write_run,
                                    yaml_writer)
from cxrbench.results.tables import bootstrap_caveats, run_display_table, run_long_table, to_markdown
from cxrbench.results.stratified_tables import stratified_long_table, stratified_markdown
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.stats.stratified import stratify
from cxrbench.stats.summary import PROBABILITIES, summarize
from cxrbench.stats.thresholds import choose_threshold
from cxrbench.study import Study
from cxrbench.threads import use_threads

PREDICTION_COLUMNS = ["image_id", "patient_id", "seed", "task", "label", "score"]


@dataclass(frozen=True)
class TargetGroup:
    """Targets one head learns together, and how its label matrix is laid out."""

    kind: str
    targets: tuple[TargetSpec, ...]

    @property
    def name(self) -> str:
        return self.targets[0].name if self.kind == "multiclass" else self.kind

    def labels(self, values: np.ndarray) -> np.ndarray:
        """The head's labels from the targets' columns [N, len(targets)]: as they are, or for a multiclass target a
        one-hot [N, K] (a NaN row when the class is unknown)."""
        if self.kind != "multiclass":
            return values
        column = values[:, 0]
        onehot = np.zeros((len(column), self.targets[0].outputs), dtype=np.float32)
        known = ~np.isnan(column)
        onehot[np.flatnonzero(known), column[known].astype(np.int64)] = 1.0
        onehot[~known] = np.nan
        return onehot


def target_groups(spec: BenchmarkSpec) -> list[TargetGroup]:
    masks = [t.name for t in spec.targets if t.kind == "mask"]
    if masks:
        raise SpecError(f"benchmark '{spec.name}': target(s) {masks} are masks; probes score binary, multiclass and "
                        "regression targets (segmentation decoders score masks).")
    groups: list[TargetGroup] = []
    for kind in dict.fromkeys(t.kind for t in spec.targets):
        mine = tuple(t for t in spec.targets if t.kind == kind)
        groups += [TargetGroup(kind, (t,)) for t in mine] if kind == "multiclass" else [TargetGroup(kind, mine)]
    return groups


def selection_metric(spec: BenchmarkSpec, group: TargetGroup) -> str | None:
    """What a head's `selection_metric: auto` means for this group: the benchmark's primary metric where it scores
    the group's kind, else the first of the group's metrics that does, else None (the validation loss)."""
    names = [spec.primary_metric, *spec.metrics_for(group.targets[0])]
    return next((n for n in names if group.kind in metric_spec(n).kinds), None)


@dataclass
class RunResult:
    encoder: str
    head: str
    folder: Path
    metrics: dict
    encoded: int
    reused: int
    tasks: tuple[str, ...]
    resumed: bool = False  # stored already with the same settings: kept, nothing trained (ProbeEvaluation.resume)


@dataclass
class Trained:
    """What an evaluation's training and prediction produced for one run, before it is summarised and written."""

    predictions: pd.DataFrame | None = None  # long form, one row per test item x target x seed
    reports: dict = field(default_factory=dict)  # seed -> group -> what the head chose and its final losses
    selections: list[dict] = field(default_factory=list)  # one row per configuration a head tried (selection.csv)
    n_train: dict = field(default_factory=dict)  # seed -> training images
    thresholds: dict = field(default_factory=dict)  # seed -> binary target -> decision threshold chosen on validation
    files: dict = field(default_factory=dict)  # further files of the run folder: name -> writer

    def record(self, seed: int, group: str, report: FitReport, source=None) -> None:
        """Keep what a head reported for one seed and target group."""
        chosen = report.chosen if source is None else {**report.chosen, **source.describe()}
        self.reports[seed][group] = {"chosen": chosen, "final_train_loss": _last(report.history.get("train_loss")),
                                     "final_val_loss": _last(report.history.get("val_loss"))}
        self.selections += [{"seed": seed, "group": group, **row} for row in report.table]


@dataclass
class ProbeEvaluation:
    out: Path
    head: str | None = None  # None: the benchmark's default head
    head_params: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None  # names a variant run (HEAD_TAG/), e.g. other weights or head parameters
    overwrite: bool = False  # replace a stored run of other settings
    metrics: list[str] = field(default_factory=list)  # scored besides the benchmark's own (e.g. a plugin's)
    resume: bool = False  # keep a stored run of the same settings instead of training it again (`cxrbench reproduce`)

    def __post_init__(self) -> None:
        if self.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", self.tag):
            raise DataError(f"--tag {self.tag!r}: use letters, digits, '.' and '-' (it names a results folder).")

    # -- the seam ---------------------------------------------------------------------------------------------
    def check(self, spec: BenchmarkSpec) -> None:
        self.entry: Entry = registry().get("heads", self.head or spec.default_head)
        self.groups = target_groups(spec)
        for name in self.metrics:
            kinds = metric_spec(name).kinds
            wrong = [t.name for t in spec.targets if t.kind not in kinds]
            if wrong:
                raise SpecError(f"--metric {name} scores {' / '.join(kinds)} targets; {', '.join(wrong)} of "
                                f"'{spec.name}' are not.")
        self.params = {}
        for group in self.groups:  # builds each head once: a bad parameter or kind fails before data is read
            self.params = self._head(spec, group).params

    def prepare(self, study: Study, progress: Progress) -> Study:
        return study

    def plan(self, study: Study, encoder: Encoder, settings: ExtractionSettings) -> bool:
        numerics = feature_numerics(settings.precision, settings.pixel_cache)
        self.plans = [_RunPlan(self, study, encoder, budget, numerics) for budget in study.budgets]
        for plan in self.plans:
            plan.check_overwrite()
        return not all(plan.stored for plan in self.plans)

    def request(self, study: Study, encoder: Encoder) -> FeatureRequest:
        needs: set[str] = set()
        for group in self.groups:
            head = self._head(study.spec, group)
            if head.reads_blocks:  # only then: the encoder's depth is read from its model, which is built for it
                encoder.check_cls_layers()
                head.select_blocks(encoder.num_layers)
            needs.update(head.needs)
        cls_layers = tuple(sorted(int(n[len(CLS_LAYER_PREFIX):]) for n in needs if n.startswith(CLS_LAYER_PREFIX)))
        return FeatureRequest(global_embedding=True, patch_tokens="patches" in needs, cls_layers=cls_layers)

    def evaluate(self, study: Study, features: EncoderFeatures | None, settings: ExtractionSettings,
                 progress: Progress) -> list[RunResult]:
        tasks = tuple(t.name for t in self.scored_targets(study.data))
        return [RunResult(plan.encoder, plan.name, plan.folder, plan.stored, 0, 0, tasks, resumed=True) if plan.stored
                else self._run(study, features, settings, plan, progress) for plan in self.plans]

    # -- one run ----------------------------------------------------------------------------------------------
    def _head(self, spec: BenchmarkSpec, group: TargetGroup, device: str | None = None) -> Head:
        overrides = dict(self.head_params)
        head_class: type[Head] = self.entry.load()
        if device is not None and "device" in head_class.defaults and "device" not in overrides and "device" not in self.entry.spec.params:
            overrides["device"] = device
        return head_class(self.entry.spec, overrides, group.kind, selection_metric(spec, group))

    def _run(self, study: Study, features: EncoderFeatures, settings: ExtractionSettings, plan: "_RunPlan",
             progress: Progress) -> RunResult:
        spec, data, budget = study.spec, study.data, plan.budget
        encoder_name = features.encoder.spec.name
        trained = self._train(study, features, settings, plan, progress)
        frame = trained.predictions.merge(group_frame(data.samples, spec.groups, spec.name), on="image_id", how="left")
        scored = self.scored_targets(data)
        tasks = tuple(t.name for t in scored)
        summary = summarize(frame, scored, self.metrics_for(spec), study.bootstrap)
        stratified = stratify(frame, spec, scored, self.metrics_for(spec), study.bootstrap, trained.thresholds) if spec.groups else None
        manifests = study.manifests[budget]
        test_rows = manifests["split"].eq("test")
        metrics = {
            "schema_version": SCHEMA_VERSION,
            "benchmark": spec.name,
            "encoder": encoder_name,
            "head": self.entry.name,
            "tag": self.tag,
            "label_budget": None if budget is None else budget.describe(),
            "split": "test",
            "seeds": study.seeds,
            "targets": [asdict(t) for t in data.targets],
            "n_train_images": trained.n_train,
            "n_test_images": {s: int((manifests["seed"].eq(s) & test_rows).sum()) for s in study.seeds},
            "n_test_patients": {s: int(manifests.loc[manifests["seed"].eq(s) & test_rows, "patient_id"].nunique())
                                for s in study.seeds},
            "std_ddof": 1,
            "bootstrap": asdict(study.bootstrap),
            "primary_metric": spec.primary_metric,
            "metrics": summary,
            "heads": {str(k): v for k, v in trained.reports.items()},
            "thresholds": {str(k): v for k, v in trained.thresholds.items()},
            **({"stratified": stratified} if stratified is not None else {}),
            "run_identity": plan.identity,
            "provenance": provenance(features.encoder.weights, data.samples, list(data.tasks), manifests, data.root),
        }
        head = method_label(plan.name, selected_on_test=plan.head_params.get("select_on") == "test")
        heading = f"# {spec.title}: {run_label(encoder_name, head, variant_notes(encoder_name, plan.identity))}\n\n" + (
            "**Synthetic data** (written by cxrbench): not comparable with any paper.\n\n" if data.synthetic else "") + (
            "**Settings selected on the test split** (`select_on: test`, as the paper being reproduced did): "
            "optimistic, not a held-out estimate.\n\n" if plan.head_params.get("select_on") == "test" else "")
        files = {
            "config.yaml": yaml_writer(_resolved_config(study, features, self, plan)),
            "predictions.parquet": parquet_writer(frame),
            "splits.parquet": parquet_writer(manifests),
            "metrics.json": json_writer(metrics),
            "table.md": text_writer(heading + to_markdown(run_display_table(metrics, tasks), "metric")
                                    + "".join(f"\nNote: {caveat}\n" for caveat in bootstrap_caveats(metrics))
                                    + (stratified_markdown(metrics) if stratified else "")),
            "table.csv": lambda path: run_long_table(metrics, tasks).to_csv(path, index=False),
            **({"stratified.csv": lambda path: stratified_long_table(metrics).to_csv(path, index=False)} if stratified else {}),
            **trained.files,
        }
        if trained.selections:
            files["selection.csv"] = lambda path: pd.DataFrame(trained.selections).to_csv(path, index=False)
        write_run(plan.folder, files, check=lambda stored: plan.check_overwrite(stored, at_write=True), on_wait=progress.note)
        extraction = features.extraction
        return RunResult(encoder_name, plan.name, plan.folder, metrics, extraction.encoded, extraction.reused, tasks)

    def _train(self, study: Study, features: EncoderFeatures, settings: ExtractionSettings, plan: "_RunPlan",
               progress: Progress) -> "Trained":
        """Per seed, train each target group's head and predict the test split (long-form predictions)."""
        spec, data, budget = study.spec, study.data, plan.budget
        values = data.labels()
        columns = {t.name: i for i, t in enumerate(data.targets)}
        samples = data.samples
        trained = Trained()
        advance = progress.task(f"training {plan.name} heads on {features.encoder.spec.name}", len(study.seeds))
        predictions = []
        for seed in study.seeds:
            split = study.split(budget, seed)
            trained.n_train[seed] = int((split == "train").sum())
            test = samples.loc[split == "test", ["image_id", "patient_id"]].reset_index(drop=True)
            trained.reports[seed] = {}
            for group in self.groups:
                labels = group.labels(values[:, [columns[t.name] for t in group.targets]])
                parts = {name: features.rows(labels, split == name) for name in ("train", "test")}
                parts["val"] = features.rows(labels, split == study.spec.split.validation_split)
                if budget is not None and budget.standardise_on_unused:
                    parts["train"].standardise_on = features.rows(labels, np.isin(split, ["train", "unused"]))
                head = self._head(spec, group, settings.device)
                if head.reads_blocks:
                    head.select_blocks(features.encoder.num_layers)
                source = self._online_source(head, features, samples["path"].to_numpy()[split == "train"], seed, settings, progress)
                with use_threads("heavy" if source is not None else head.work):
                    chooser = selection_split(head)
                    report = head.fit(parts["train"], parts[chooser], seed, progress, source)
                    if chooser != "val":  # the selection table's scores are the test split's: name them so
                        report.table = [{k.replace("val_", f"{chooser}_", 1) if k.startswith("val_") else k: v
                                         for k, v in row.items()} for row in report.table]
                    scores = head.predict(parts["test"])
                    if group.kind == "binary":
                        trained.thresholds.setdefault(seed, {}).update(
                            _thresholds(group, parts["val"].labels, head.predict(parts["val"]) if len(parts["val"].labels) else None,
                                        spec.operating_point))
                trained.record(seed, group.name, report, source)
                predictions += _long_form(test, seed, group, parts["test"].labels, scores, values[split == "test"], columns)
            advance(1)
        frame = pd.concat(predictions, ignore_index=True)
        trained.predictions = frame[PREDICTION_COLUMNS + ([PROBABILITIES] if PROBABILITIES in frame else [])]
        return trained

    def scored_targets(self, data) -> tuple[TargetSpec, ...]:
        """The targets the summary scores and the tables show, one column each."""
        return data.targets

    def metrics_for(self, spec: BenchmarkSpec):
        """Each target's metrics: the benchmark's, then those asked for with --metric."""
        return lambda target: list(dict.fromkeys([*spec.metrics_for(target), *self.metrics]))

    def _online_source(self, head: Head, features: EncoderFeatures, paths: np.ndarray, seed: int,
                       settings: ExtractionSettings, progress: Progress):
        """The frozen encoder on augmented views for a head with `features: online`; None for cached features."""
        if head.params.get("features", "cached") == "cached":
            return None
        if head.params["features"] != "online":
            raise SpecError(f"Head '{head.spec.name}': features must be cached or online, not {head.params['features']!r}.")
        from cxrbench.training.online import ImageViews, OnlineBatches, augmentation_policy

        policy = augmentation_policy(head.params["augmentation"], features.encoder, f"Head '{head.spec.name}'")
        views = ImageViews(list(paths), policy, features.encoder.preprocessor, seed)
        return OnlineBatches(features.encoder, views, settings.device, settings.num_workers, progress)


def selection_split(head: Head) -> str:
    """The split a head chooses its settings on: validation, or the test split for a head told `select_on: test`
    (to reproduce a paper that selected on test; `StoredRun.method` marks such runs in every table)."""
    return "test" if head.params.get("select_on") == "test" else "val"


def _long_form(test: pd.DataFrame, seed: int, group: TargetGroup, labels: np.ndarray, scores: np.ndarray,
               values: np.ndarray, columns: dict[str, int]) -> list[pd.DataFrame]:
    """One frame per target: a row per test image. Binary: label 0/1, score P(positive); regression: label and
    predicted value; multiclass: the class index, the predicted class as `score`, and the class probabilities."""
    if group.kind == "multiclass":
        target = group.targets[0]
        frame = test.assign(seed=seed, task=target.name, label=values[:, columns[target.name]].astype(np.float64),
                            score=scores.argmax(axis=1).astype(np.float64))
        frame[PROBABILITIES] = list(scores.astype(np.float64))
        return [frame]
    return [test.assign(seed=seed, task=t.name, label=labels[:, j], score=scores[:, j]) for j, t in enumerate(group.targets)]


class _RunPlan:
    """Where one run goes and what identifies its settings; a stored run of other settings is never replaced silently."""

    def __init__(self, evaluation: ProbeEvaluation, study: Study, encoder: Encoder, budget: LabelBudget | GroupBudget | None,
                 numerics: dict):
        self.budget = budget
        self.encoder = encoder.spec.name
        self.name = run_name(evaluation.entry.name, evaluation.tag, budget)
        self.folder = run_folder(evaluation.out, study.spec.name, encoder.spec.name, self.name)
        self.resume = evaluation.resume
        self.stored: dict | None = None  # metrics.json of this very run, when resuming finds it stored
        self.overwrite = evaluation.overwrite
        self.head_params = evaluation.params
        self.identity = json.loads(json.dumps({
            "weights": encoder.weights.identity, "preprocessing": asdict(encoder.preprocessing),
            "dataset_options": study.dataset_options, "split": study.spec.split.identity(),
            "head": {"name": evaluation.entry.name, **{k: v for k, v in self.head_params.items() if k != "device"}},
            "targets": [asdict(t) for t in study.data.targets],
            "label_budget": None if budget is None else budget.describe(), "seeds": study.seeds,
            "bootstrap": asdict(study.bootstrap), "synthetic_data": study.data.synthetic,
            "metrics": sorted({m for t in study.data.targets for m in evaluation.metrics_for(study.spec)(t)}),
            **({"features": numerics} if numerics else {}),  # only when not fp32 from the originals: stored ids stay
        }, default=str))

    def check_overwrite(self, stored: dict | None = None, at_write: bool = False) -> None:
        """Refuse to replace a stored run of other settings (`stored`: its metrics.json; default read from disk).

        Checked before any work, and again under the run folder's lock when writing: another process may have
        stored a run there meanwhile, and two results must never silently become one.
        """
        if not at_write:
            from cxrbench.console import warn

            recover_run(self.folder, warn)
            stored = read_metrics(self.folder)
            same = stored and stored.get("run_identity") == self.identity and stored.get("schema_version") == SCHEMA_VERSION
            self.stored = stored if self.resume and same else None
        if self.overwrite or stored is None:
            return
        previous = stored.get("run_identity")
        if previous == self.identity:
            return
        differing = sorted(k for k in self.identity if (previous or {}).get(k) != self.identity[k])
        meanwhile = (" (stored by another process while this run trained; its features are cached, so a rerun only "
                     "trains the heads)") if at_write else ""
        found, asked = run_variant(previous), run_variant(self.identity)
        kinds = f": it holds {found.describe()}, this run is {asked.describe()}" if found != asked else ""
        raise DataError(
            f"{self.folder} holds a run with other settings ({', '.join(differing)} differ){kinds}{meanwhile}. Name this "
            "run with --tag NAME, write to another --out, or pass --overwrite to replace it."
        )


def _thresholds(group: TargetGroup, labels: np.ndarray, scores: np.ndarray | None, rule: str) -> dict[str, float | None]:
    """Each binary target's decision threshold on this seed's validation predictions (None without validation
    images, or without both classes among them)."""
    return {t.name: None if scores is None else choose_threshold(labels[:, j], scores[:, j], rule)
            for j, t in enumerate(group.targets)}


def _last(values: list[float] | None) -> float | None:
    return None if not values or not np.isfinite(values[-1]) else float(values[-1])


def _resolved_config(study: Study, features: EncoderFeatures, evaluation: ProbeEvaluation, plan: _RunPlan) -> dict:
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
        "head": {"name": evaluation.entry.name, "tag": evaluation.tag, "params": plan.head_params,
                 "groups": [{"kind": g.kind, "targets": [t.name for t in g.targets], "selection": selection_metric(spec, g)}
                            for g in evaluation.groups]},
        "label_budget": None if plan.budget is None else plan.budget.describe(),
        "seeds": study.seeds,
        "bootstrap": asdict(study.bootstrap),
        "split_manifest_version": SPLIT_MANIFEST_VERSION,
        "feature_cache": {"folder": str(store.folder), "key": store.manifest["key"]},
        "environment": package_versions(),
    }


__all__ = ["FeatureSet", "ProbeEvaluation", "RunResult", "TargetGroup", "target_groups"]
