"""Probes: heads trained on an encoder's features for binary, multiclass and regression targets (`cxrbench run`).

Targets are grouped by what one head can learn together (their kind says: `TargetKind.one_hot` kinds, e.g.
multiclass, get a head per target, softmax over its classes; every target of another kind shares one head, e.g.
every binary target in one multi-label head with masked BCE, as the papers' probes). Per seed and label budget
each group's head trains on the training split (choosing among its settings on the validation split where it has
several) and scores the test split; the long-form predictions of all groups (`TargetKind.long_form`) go to the
shared run steps (`evaluations.runs`), which summarise them with the benchmark's metrics and write one run folder.

A benchmark with `groups:` also gets each thresholded (binary) target's decision threshold chosen on validation
(for the false-negative rate per group), and a group column per attribute beside the predictions.

A head with `features: online` (e.g. `linear-augmented`, RAD-DINO's own probe) trains on the frozen encoder's
features of augmented views (`cxrbench.training.online`); everything else is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.errors import SpecError
from cxrbench.evaluations.base import EvaluationResult, RunOptions, RunResult
from cxrbench.evaluations.runs import Method, RunPlan, plan_runs, run_each, write_result
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings
from cxrbench.heads.base import CLS_LAYER_PREFIX, FeatureSet, Head
from cxrbench.progress import Progress
from cxrbench.registry import Entry, metric_spec, registry
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.stats.summary import PROBABILITIES
from cxrbench.stats.thresholds import choose_threshold
from cxrbench.study import Study
from cxrbench.targets import target_kind
from cxrbench.threads import use_threads

PREDICTION_COLUMNS = ["image_id", "patient_id", "seed", "task", "label", "score"]


@dataclass(frozen=True)
class TargetGroup:
    """Targets one head learns together, and how its label matrix is laid out (their kind's `head_labels`)."""

    kind: str
    targets: tuple[TargetSpec, ...]

    @property
    def name(self) -> str:
        return self.targets[0].name if target_kind(self.kind).one_hot else self.kind

    def labels(self, values: np.ndarray) -> np.ndarray:
        """The head's labels from the targets' columns [N, len(targets)]: as they are, or for a one-hot (multiclass)
        target a one-hot [N, K] (a NaN row when the class is unknown)."""
        return target_kind(self.kind).head_labels(self.targets, values)


def target_groups(spec: BenchmarkSpec) -> list[TargetGroup]:
    """The heads a probe trains: one per target of a one-hot kind, one per other kind, in the targets' order."""
    others = [t.name for t in spec.targets if t.target_kind.evaluation != "probe"]
    if others:
        raise SpecError(f"benchmark '{spec.name}': target(s) {others} are not probed (masks: segmentation decoders "
                        "score them); probes score binary, multiclass and regression targets.")
    groups: list[TargetGroup] = []
    for kind in dict.fromkeys(t.kind for t in spec.targets):
        mine = tuple(t for t in spec.targets if t.kind == kind)
        groups += [TargetGroup(kind, (t,)) for t in mine] if target_kind(kind).one_hot else [TargetGroup(kind, mine)]
    return groups


def selection_metric(spec: BenchmarkSpec, group: TargetGroup) -> str | None:
    """What a head's `selection_metric: auto` means for this group: the benchmark's primary metric where it scores
    the group's kind, else the first of the group's metrics that does, else None (the validation loss)."""
    names = [spec.primary_metric, *spec.metrics_for(group.targets[0])]
    return next((n for n in names if group.kind in metric_spec(n).kinds), None)


@dataclass
class ProbeEvaluation(RunOptions):
    """Heads on cached (or online) features, one per target group; the run steps of `evaluations.runs` write it."""

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
        params = {}
        for group in self.groups:  # builds each head once: a bad parameter or kind fails before data is read
            params = self._head(spec, group).params
        groups = tuple({"kind": g.kind, "targets": [t.name for t in g.targets], "selection": selection_metric(spec, g)}
                       for g in self.groups)
        self.method = Method(self.entry.name, params, groups)

    def prepare(self, study: Study, progress: Progress) -> Study:
        return study

    def plan(self, study: Study, encoder: Encoder, settings: ExtractionSettings) -> bool:
        self.plans = plan_runs(self, self.method, study, encoder, settings)
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
        return run_each(self.plans, study, lambda plan: write_result(
            study, features, self, self.method, plan, self._train(study, features, settings, plan, progress), progress))

    # -- one run ----------------------------------------------------------------------------------------------
    def _head(self, spec: BenchmarkSpec, group: TargetGroup, device: str | None = None) -> Head:
        overrides = dict(self.head_params)
        head_class: type[Head] = self.entry.load()
        if device is not None and "device" in head_class.defaults and "device" not in overrides and "device" not in self.entry.spec.params:
            overrides["device"] = device
        return head_class(self.entry.spec, overrides, group.kind, selection_metric(spec, group))

    def _train(self, study: Study, features: EncoderFeatures, settings: ExtractionSettings, plan: RunPlan,
               progress: Progress) -> EvaluationResult:
        """Per seed, train each target group's head and predict the test split (long-form predictions)."""
        spec, data, budget = study.spec, study.data, plan.budget
        values = data.labels()
        columns = {t.name: i for i, t in enumerate(data.targets)}
        samples = data.samples
        trained = EvaluationResult()
        advance = progress.task(f"training {plan.name} heads on {features.encoder.spec.name}", len(study.seeds))
        predictions = []
        for seed in study.seeds:
            split = study.split(budget, seed)
            trained.n_train[seed] = int((split == "train").sum())
            test = samples.loc[split == "test", ["image_id", "patient_id"]].reset_index(drop=True)
            trained.reports[seed] = {}
            for group in self.groups:
                own = values[:, [columns[t.name] for t in group.targets]]
                labels = group.labels(own)
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
                    if target_kind(group.kind).thresholded:
                        trained.thresholds.setdefault(seed, {}).update(
                            _thresholds(group, parts["val"].labels, head.predict(parts["val"]) if len(parts["val"].labels) else None,
                                        spec.operating_point))
                trained.record(seed, group.name, report, source)
                predictions += target_kind(group.kind).long_form(test, seed, group.targets, parts["test"].labels, scores,
                                                                 own[split == "test"])
            advance(1)
        frame = pd.concat(predictions, ignore_index=True)
        trained.predictions = frame[PREDICTION_COLUMNS + ([PROBABILITIES] if PROBABILITIES in frame else [])]
        return trained

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


def _thresholds(group: TargetGroup, labels: np.ndarray, scores: np.ndarray | None, rule: str) -> dict[str, float | None]:
    """Each binary target's decision threshold on this seed's validation predictions (None without validation
    images, or without both classes among them)."""
    return {t.name: None if scores is None else choose_threshold(labels[:, j], scores[:, j], rule)
            for j, t in enumerate(group.targets)}


__all__ = ["FeatureSet", "ProbeEvaluation", "RunResult", "TargetGroup", "target_groups"]
