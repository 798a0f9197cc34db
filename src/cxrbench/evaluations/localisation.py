"""Localisation: do an encoder's attentive probes look where the radiologists drew boxes? (`cxrbench explain`)

RayDINO's explainability protocol on any benchmark whose loader supplies test boxes (`BenchmarkData.boxes`;
VinDr-CXR's annotations/annotations_test.csv): the study's targets become the findings with boxes (every one by
default, as RayDINO's "one classifier for each class"; or the benchmark's own targets, or a list), one attentive
probe per finding trains on the official training split per seed (validation carved as for `cxrbench run`), and
each test box is a hit when the most-attended patch overlaps it by `min_overlap` of a patch (`cxrbench.explain`).
Writes an explain run, OUT/BENCHMARK/ENCODER/explain/ (metrics.json, explain.csv, config.yaml, table.md, heatmaps/),
through the results store: a stored run of the same settings is kept, one of other settings refused without
--overwrite, as for `cxrbench run`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cxrbench
from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.errors import CxrbenchError, DataError
from cxrbench.evaluations.probe import TargetGroup, selection_metric
from cxrbench.explain.hits import DEFAULT_MIN_OVERLAP
from cxrbench.explain.runner import ExplainResult, attentive_head_class, fit_attention_maps, run_explain
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings, feature_numerics
from cxrbench.progress import Progress
from cxrbench.results.provenance import provenance
from cxrbench.results.store import explain_folder, refuse_other_settings, resume_decision
from cxrbench.recording import recorded_command, recorded_run_spec
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.study import Study
from cxrbench.threads import use_threads


@dataclass
class LocalisationEvaluation:
    out: Path
    # "all": every finding with a test box that is also a label column; "benchmark": the benchmark's own targets;
    # or a list of finding names
    findings: str | list[str] = "all"
    images_per_finding: int = 4
    min_overlap: float = DEFAULT_MIN_OVERLAP
    head: str = "attentive"
    head_overrides: dict[str, Any] = field(default_factory=dict)
    # True: a separate head (one query) per finding, as RayDINO; False: one head with a query per finding
    one_head_per_finding: bool = True
    overwrite: bool = False  # replace a stored explain run of other settings

    def check(self, spec: BenchmarkSpec) -> None:
        if self.images_per_finding < 0:
            raise CxrbenchError(f"--images-per-finding must be 0 or more, got {self.images_per_finding}.")
        self.entry, head_class = attentive_head_class(self.head)
        self.overrides = dict(self.head_overrides)
        pooling = self.entry.spec.params.get("pooling")
        self.restricted = "pooling" not in self.overrides and isinstance(pooling, list) and "attentive" in pooling
        if self.restricted:
            self.overrides["pooling"] = "attentive"  # a grid head (e.g. raydino-grid): only its attentive decoders have maps
        self.params = head_class(self.entry.spec, self.overrides, "binary").params  # fails now on a bad parameter

    def prepare(self, study: Study, progress: Progress) -> Study:
        spec, data = study.spec, study.data
        if data.boxes is None:
            raise DataError(f"Benchmark '{spec.name}' has no radiologists' test boxes at {data.root} (its loader supplies "
                            "none, or the box file is missing; VinDr-CXR's is annotations/annotations_test.csv).")
        if self.restricted:
            progress.note(f"head {self.head}: pooling restricted to attentive (its attention maps are scored)")
        official = data.samples["split"].to_numpy() == "test"
        if not all(np.array_equal(study.split(None, s) == "test", official) for s in study.seeds):
            raise DataError(f"Benchmark '{spec.name}' draws its test split; explainability needs the official test boxes' split.")
        findings = _choose_findings(self.findings, data.boxes, spec.tasks)
        missing = [f for f in findings if f not in data.samples.columns]
        if missing:
            raise DataError(f"Finding(s) {missing} have test boxes but no image-level label column in '{spec.name}'; "
                            "an attentive probe needs the labels to train.")
        study = study.with_targets([TargetSpec(f) for f in findings])
        train = data.samples["split"] == "train"
        self.trainable = [f for f in findings if np.nansum(study.data.samples.loc[train, f].to_numpy(dtype=float)) > 0]
        self.untrainable = [f for f in findings if f not in self.trainable]
        if self.untrainable:
            progress.note(f"no positive training image, not evaluated: {', '.join(self.untrainable)}")
        if not self.trainable:
            raise DataError(f"None of the findings {findings} has a positive training image in {data.root}; nothing to explain.")
        return study.with_targets([TargetSpec(f) for f in self.trainable])

    def plan(self, study: Study, encoder: Encoder, settings: ExtractionSettings) -> bool:
        """Where the run goes and what identifies it; False (no features needed) when it is stored with these settings."""
        self.folder = explain_folder(Path(self.out), study.spec.name, encoder.spec.name)  # `hf:` names made safe
        self.identity = self._identity(study, encoder, feature_numerics(settings.precision, settings.pixel_cache))
        from cxrbench.console import warn

        self.stored = resume_decision(self.folder, self.identity, self.overwrite, warn, tagged=False)
        return self.stored is None

    def _identity(self, study: Study, encoder: Encoder, numerics: dict) -> dict:
        """The settings that make this explain run this run (metrics.json `run_identity`), as a probe run's plus the
        protocol's own: the findings asked for, the overlap rule, the overlays written and the head layout."""
        return json.loads(json.dumps({
            "weights": encoder.weights.identity, "preprocessing": asdict(encoder.preprocessing),
            "dataset_options": study.dataset_options, "split": study.spec.split.identity(),
            "head": {"name": self.head, **{k: v for k, v in self.params.items() if k != "device"},
                     "one_head_per_finding": self.one_head_per_finding},
            "targets": [asdict(t) for t in study.data.targets], "label_budget": None, "seeds": study.seeds,
            "bootstrap": asdict(study.bootstrap), "synthetic_data": study.data.synthetic, "metrics": ["localisation_accuracy"],
            "findings": self.findings, "min_overlap": self.min_overlap, "images_per_finding": self.images_per_finding,
            **({"features": numerics} if numerics else {}),
        }, default=str))

    def request(self, study: Study, encoder: Encoder) -> FeatureRequest:
        return FeatureRequest(global_embedding=True, patch_tokens=True)

    def evaluate(self, study: Study, features: EncoderFeatures | None, settings: ExtractionSettings,
                 progress: Progress) -> list[ExplainResult]:
        if self.stored is not None:
            return [ExplainResult.stored(self.folder, self.stored)]
        spec, data, encoder = study.spec, study.data, features.encoder
        labels = data.labels()
        selection = selection_metric(spec, TargetGroup("binary", data.targets))
        attention, reports = {}, {}
        for seed in study.seeds:
            split = study.split(None, seed)
            parts = {name: features.rows(labels, split == name) for name in ("train", "test")}
            parts["val"] = features.rows(labels, split == spec.split.validation_split)
            with use_threads("heavy"):
                attention[seed], reports[str(seed)] = fit_attention_maps(
                    parts["train"], parts["val"], parts["test"], seed, head=self.head, overrides=self.overrides,
                    one_head_per_finding=self.one_head_per_finding, findings=self.trainable, selection=selection,
                    progress=progress,
                )
        result = run_explain(
            data, self.trainable, attention, encoder.preprocessing, encoder.patch_stride, self.folder,
            min_overlap=self.min_overlap, images_per_finding=self.images_per_finding, bootstrap=study.bootstrap,
            info={"benchmark": spec.name, "encoder": encoder.spec.name, "head": self.head,
                  "one_head_per_finding": self.one_head_per_finding, "fit": reports,
                  "findings_without_positive_training_image": self.untrainable},
            config=self._config(study, features), progress=progress,
            run={"benchmark": spec.name, "encoder": encoder.spec.name, "head": self.head, "tag": None, "seeds": study.seeds,
                 "run_identity": self.identity,
                 "provenance": provenance(encoder.weights, data.samples, list(data.tasks), study.manifests[None], data.root)},
            check=lambda stored: refuse_other_settings(self.folder, stored, self.identity, self.overwrite, at_write=True,
                                                       tagged=False),
        )
        return [result]

    def _config(self, study: Study, features: EncoderFeatures) -> dict:
        encoder, store = features.encoder, features.extraction.store
        return {
            "cxrbench_version": cxrbench.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": recorded_command(),
            "run_spec": recorded_run_spec(),
            "benchmark": {"name": study.spec.name, "data_root": str(study.data.root), "dataset_options": study.dataset_options,
                          "split": study.spec.split.identity(), "synthetic_data": study.data.synthetic,
                          "loader_notes": study.data.notes},
            "encoder": {"name": encoder.spec.name, "weights": encoder.weights.identity,
                        "preprocessing": asdict(encoder.preprocessing), "patch_stride": encoder.patch_stride},
            "head": {"name": self.head, "params": self.params, "one_head_per_finding": self.one_head_per_finding},
            "findings": self.trainable,
            "findings_without_positive_training_image": self.untrainable,
            "seeds": study.seeds,
            "min_overlap": self.min_overlap,
            "images_per_finding": self.images_per_finding,
            "bootstrap": asdict(study.bootstrap),
            "feature_cache": {"folder": str(store.folder), "key": store.manifest["key"]},
        }


def _choose_findings(choice: str | Sequence[str], boxes: pd.DataFrame, tasks: Sequence[str]) -> list[str]:
    boxed = list(dict.fromkeys(boxes["finding"]))
    if isinstance(choice, str) and choice == "all":
        return boxed
    wanted = list(tasks) if isinstance(choice, str) and choice == "benchmark" else (
        [c.strip() for c in choice.split(",") if c.strip()] if isinstance(choice, str) else list(choice))
    unknown = [f for f in wanted if f not in boxed]
    chosen = [f for f in wanted if f in boxed]
    if isinstance(choice, str) and choice == "benchmark":
        return chosen  # the benchmark's global labels (e.g. Tuberculosis) have no boxes
    if unknown:
        raise DataError(f"Finding(s) {unknown} have no box in the test boxes; findings with boxes: {', '.join(boxed)}.")
    return chosen
