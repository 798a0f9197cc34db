"""One benchmark x encoder x head run: load data, extract (cached) features, train a head per seed,
summarise the test predictions, and write the run folder. The CLI is a thin shell around this module.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

import cxrbench
from cxrbench.data.samples import BenchmarkData
from cxrbench.data.synthetic import SYNTHETIC_MARKER, synthetic_settings
from cxrbench.data.splits import SPLIT_MANIFEST_VERSION, LabelBudget, apply_label_budget, seed_splits
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import DataError
from cxrbench.features.extract import extract_features
from cxrbench.heads.base import FeatureSet, Head
from cxrbench.progress import Progress, SilentProgress
from cxrbench.registry import registry
from cxrbench.results.store import json_writer, parquet_writer, read_metrics, run_folder, text_writer, write_run, yaml_writer
from cxrbench.results.tables import bootstrap_caveats, run_display_table, run_long_table, to_markdown
from cxrbench.specs import BenchmarkSpec, BootstrapSpec
from cxrbench.stats.summary import summarize
from cxrbench.threads import use_threads


@dataclass
class RunOptions:
    benchmark: str
    encoders: list[str]
    out: Path
    cache_root: Path
    head: str | None = None
    seeds: int | None = None
    data_root: Path | None = None
    weights: str | None = None
    revision: str | None = None
    image_size: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    head_params: dict[str, Any] = field(default_factory=dict)
    # cached: heads on cached un-augmented features (fast default); augmented: RAD-DINO's linear probe trained
    # online through the frozen encoder under augmentation (`cxrbench.training.augmented`)
    protocol: str = "cached"
    tag: str | None = None  # names a variant run (HEAD_TAG/), e.g. other weights or head parameters
    overwrite: bool = False  # replace a stored run of other settings
    # label budgets to train with (None = the whole training split); each is its own run folder
    budgets: list[LabelBudget | None] = field(default_factory=lambda: [None])
    bootstrap_resamples: int | None = None
    batch_size: int = 32
    shard_size: int = 512
    num_workers: int | None = None
    device: str = "cpu"


@dataclass
class RunResult:
    encoder: str
    head: str
    folder: Path
    metrics: dict
    encoded: int
    reused: int
    tasks: tuple[str, ...]


def resolve_data_root(spec: BenchmarkSpec, data_root: Path | None) -> Path:
    if data_root is not None:
        return Path(data_root).expanduser()
    if spec.data_root_env and os.environ.get(spec.data_root_env):
        return Path(os.environ[spec.data_root_env]).expanduser()
    env_hint = f" or set {spec.data_root_env}" if spec.data_root_env else ""
    raise DataError(f"Benchmark '{spec.name}' needs its data: pass --data-root DIR{env_hint}.")


def load_benchmark(name: str, data_root: Path | None, options: dict[str, Any]) -> tuple[BenchmarkSpec, BenchmarkData]:
    entry = registry().get("benchmarks", name)
    spec: BenchmarkSpec = entry.spec
    unknown = sorted(set(options) - set(spec.dataset))
    if unknown:
        flags = ", ".join("--" + key.replace("_", "-") for key in unknown)
        raise DataError(f"{flags}: benchmark '{name}' has no such dataset option (it takes: "
                        f"{', '.join(sorted(spec.dataset)) or 'none'}; see benchmarks/{name}.yaml); drop it.")
    loader = entry.load()
    data = loader(resolve_data_root(spec, data_root), spec, options)
    if synthetic_settings(data.root) is not None:
        data.synthetic = True
        data.notes.insert(0, f"synthetic data ({data.root / SYNTHETIC_MARKER}): written by cxrbench for demos and tests; "
                             "its numbers are not comparable with any paper")
    return spec, data


def run(options: RunOptions, progress: Progress = SilentProgress()) -> list[RunResult]:
    spec: BenchmarkSpec = registry().get("benchmarks", options.benchmark).spec
    head_name = options.head or spec.default_head
    head_entry = registry().get("heads", head_name)
    for encoder_name in options.encoders:  # every name is checked before any data is read
        registry().get("encoders", encoder_name)
    _check_protocol(options, spec, head_name)
    _check_head_params(options, spec, head_entry)
    spec, data = load_benchmark(options.benchmark, options.data_root, options.dataset_options)
    for note in data.notes:
        progress.note(note)
    seeds = list(range(options.seeds if options.seeds is not None else spec.seeds))
    if not seeds:
        raise DataError("--seeds must be at least 1.")
    manifests = pd.concat([seed_splits(data.samples, spec.name, s, spec.split) for s in seeds], ignore_index=True)
    budgeted = {budget: _apply_budget(manifests, data, budget, spec.name) for budget in options.budgets}
    for budget, manifest in budgeted.items():
        for seed, part in manifest.groupby("seed", sort=True):
            data.require_both_classes(part["split"].to_numpy(), f"seed {seed}" + (f", {budget.suffix}" if budget else ""),
                                      _class_fixes(spec, budget))
    bootstrap = spec.bootstrap if options.bootstrap_resamples is None else BootstrapSpec(
        **{**asdict(spec.bootstrap), "resamples": options.bootstrap_resamples}
    )
    results = []
    for encoder_name in options.encoders:
        encoder = build_encoder(encoder_name, options.weights, options.revision, options.image_size)
        plans = [_RunPlan(options, spec, encoder, head_entry, budget, seeds, bootstrap, data.synthetic) for budget in options.budgets]
        for plan in plans:
            plan.check_overwrite()
        needs = ("global",) if options.protocol == "augmented" else _head(head_entry, spec, options).needs
        features = encoder_features(encoder, data.samples["path"].tolist(), "patches" in needs, options, progress)
        for plan in plans:
            results.append(_train_and_write(options, spec, data, features, head_entry, seeds, budgeted[plan.budget], plan, bootstrap, progress))
    return results


def _class_fixes(spec: BenchmarkSpec, budget: LabelBudget | None) -> str:
    """What the user can change when a split lacks a class: the budget, the label rule where the benchmark has one."""
    fixes = ["Use a larger --train-fraction or --shots (or leave out this budget)"] if budget is not None else []
    if "label_rule" in spec.dataset:
        fixes.append("choose another --label-rule (training labels only)")
    return ", ".join(fixes)


def _apply_budget(manifests: pd.DataFrame, data: BenchmarkData, budget: LabelBudget | None, benchmark: str) -> pd.DataFrame:
    if budget is None:
        return manifests
    parts = [apply_label_budget(part, data.labels(), budget, benchmark, data.tasks) for _, part in manifests.groupby("seed", sort=True)]
    return pd.concat(parts, ignore_index=True)


class _RunPlan:
    """Where one run goes and what identifies its settings; a stored run of other settings is never replaced silently."""

    def __init__(self, options: RunOptions, spec: BenchmarkSpec, encoder, head_entry, budget: LabelBudget | None, seeds, bootstrap,
                 synthetic: bool):
        self.budget = budget
        if options.tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", options.tag):
            raise DataError(f"--tag {options.tag!r}: use letters, digits, '.' and '-' (it names a results folder).")
        parts = [head_entry.name, *(["augmented"] if options.protocol == "augmented" else []),
                 *([options.tag] if options.tag else []), *([budget.suffix] if budget else [])]
        self.name = "_".join(parts)
        self.folder = run_folder(options.out, spec.name, encoder.spec.name, self.name)
        self.overwrite = options.overwrite
        if options.protocol == "augmented":  # the probe's seed is the run's seed, recorded per seed
            self.head_params = {k: v for k, v in _augmented_config(options, None).to_dict().items() if k != "seed"}
        else:
            self.head_params = _head(head_entry, spec, options).params
        self.identity = json.loads(json.dumps({
            "weights": encoder.weights.identity, "preprocessing": asdict(encoder.preprocessing),
            "dataset_options": options.dataset_options, "split": asdict(spec.split), "protocol": options.protocol,
            "head": {k: v for k, v in self.head_params.items() if k != "device"},
            "label_budget": None if budget is None else budget.describe(), "seeds": seeds, "bootstrap": asdict(bootstrap),
            "synthetic_data": synthetic,
        }, default=str))

    def check_overwrite(self, stored: dict | None = None, at_write: bool = False) -> None:
        """Refuse to replace a stored run of other settings (`stored`: its metrics.json; default read from disk).

        Checked before any work, and again under the run folder's lock when writing: another process may have
        stored a run there meanwhile, and two results must never silently become one.
        """
        if not at_write:
            stored = read_metrics(self.folder)
        if self.overwrite or stored is None:
            return
        previous = stored.get("run_identity")
        if previous == self.identity:
            return
        differing = sorted(k for k in self.identity if (previous or {}).get(k) != self.identity[k])
        meanwhile = " (stored by another process while this run trained; its features are cached, so a rerun only trains the heads)" if at_write else ""
        raise DataError(
            f"{self.folder} holds a run with other settings ({', '.join(differing)} differ){meanwhile}. Name this run "
            "with --tag NAME, write to another --out, or pass --overwrite to replace it."
        )


PROTOCOLS = ("cached", "augmented")


def _check_protocol(options: RunOptions, spec: BenchmarkSpec, head_name: str) -> None:
    if options.protocol not in PROTOCOLS:
        raise DataError(f"--protocol {options.protocol}: choose one of {', '.join(PROTOCOLS)}.")
    if options.protocol == "augmented" and (head_name != "linear" or spec.task_type not in ("multilabel", "binary")):
        raise DataError(f"--protocol augmented trains RAD-DINO's linear probe on multi-label / binary tasks; "
                        f"drop --head {head_name} (or use --protocol cached).")


def _check_head_params(options: RunOptions, spec: BenchmarkSpec, head_entry) -> None:
    """Build the head (or the augmented probe's settings) once, so that a bad parameter fails before data is read."""
    if options.protocol == "augmented":
        _augmented_config(options, None)
    else:
        _head(head_entry, spec, options)


@dataclass
class EncoderFeatures:
    """One encoder's cached features of a benchmark's images, in sample order."""

    encoder: Any
    extraction: Any
    global_: np.ndarray
    patches: Any  # CachedRows, read a batch at a time, or None

    def rows(self, labels: np.ndarray, selected: np.ndarray) -> FeatureSet:
        """The features and labels of the `selected` images (a boolean mask over samples)."""
        patches = None if self.patches is None else self.patches.select(selected)
        return FeatureSet(self.global_[selected], labels[selected], patches)


class ExtractionSettings(Protocol):
    cache_root: Path
    batch_size: int
    shard_size: int
    num_workers: int | None
    device: str


def _head(head_entry, spec: BenchmarkSpec, options: RunOptions) -> Head:
    head_class: type[Head] = head_entry.load()
    overrides = dict(options.head_params)
    if "device" in head_class.defaults and "device" not in overrides and "device" not in head_entry.spec.params:
        overrides["device"] = options.device
    return head_class(head_entry.spec, overrides, spec.task_type)


def encoder_features(encoder, paths: list[str], patch_tokens: bool, settings: ExtractionSettings, progress: Progress) -> EncoderFeatures:
    """Extract (or find in the cache) global embeddings, and patch tokens if asked, of `paths`."""
    encoder_name = encoder.spec.name
    request = FeatureRequest(global_embedding=True, patch_tokens=patch_tokens)
    with use_threads("heavy"):
        extraction = extract_features(
            encoder, request, paths, settings.cache_root, batch_size=settings.batch_size, shard_size=settings.shard_size,
            num_workers=settings.num_workers, device=settings.device, progress=progress,
        )
    if extraction.encoded == 0:
        progress.note(f"{encoder_name}: all {len(extraction.keys)} images found in the feature cache; no encoder forward pass.")
    else:
        progress.note(f"{encoder_name}: encoded {extraction.encoded} images, reused {extraction.reused} from the cache.")
        dropped = encoder.load_report.dropped
        if dropped:
            progress.note(f"{encoder_name}: checkpoint keys left out on purpose: {', '.join(dropped[:8])}"
                          + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else ""))
    patches = extraction.store.rows(extraction.keys, "patches") if patch_tokens else None
    return EncoderFeatures(encoder, extraction, extraction.store.load(extraction.keys, "global"), patches)


def _train_and_write(options, spec, data, features: EncoderFeatures, head_entry, seeds, manifests, plan: _RunPlan, bootstrap,
                     progress) -> RunResult:
    encoder_name = features.encoder.spec.name
    head_name, run_name, budget = head_entry.name, plan.name, plan.budget
    labels = data.labels()
    samples = data.samples
    predictions, reports, selections, n_train = [], {}, [], {}
    advance = progress.task(f"training {run_name} heads on {encoder_name}", len(seeds))
    for seed in seeds:
        split = manifests.loc[manifests["seed"] == seed, "split"].to_numpy()
        parts = {name: features.rows(labels, split == name) for name in ("train", "val", "test")}
        if budget is not None:  # standardise with the whole training split (labelled or not), not the few budgeted images
            parts["train"].standardise_on = features.rows(labels, np.isin(split, ["train", "unused"]))
        n_train[seed] = int((split == "train").sum())
        if options.protocol == "augmented":
            with use_threads("heavy"):
                report, scores = _augmented_probe(options, features, samples["path"].to_numpy(), labels, split, seed, progress)
        else:
            head = _head(head_entry, spec, options)
            with use_threads(head.work):
                report = head.fit(parts["train"], parts["val"], seed, progress)
                scores = head.predict(parts["test"])
        reports[seed] = {"chosen": report.chosen, "final_train_loss": _last(report.history.get("train_loss")),
                         "final_val_loss": _last(report.history.get("val_loss"))}
        selections += [{"seed": seed, **row} for row in report.table]
        test = samples.loc[split == "test", ["image_id", "patient_id"]].reset_index(drop=True)
        for t, task in enumerate(data.tasks):
            predictions.append(test.assign(seed=seed, task=task, label=parts["test"].labels[:, t], score=scores[:, t]))
        advance(1)
    predictions_frame = pd.concat(predictions, ignore_index=True)[["image_id", "patient_id", "seed", "task", "label", "score"]]
    summary = summarize(predictions_frame, data.tasks, spec.metrics, bootstrap)
    metrics = {
        "benchmark": spec.name,
        "encoder": encoder_name,
        "head": head_name,
        "label_budget": None if budget is None else budget.describe(),
        "split": "test",
        "seeds": seeds,
        "n_train_images": n_train,
        "n_test_images": {s: int((manifests["seed"].eq(s) & manifests["split"].eq("test")).sum()) for s in seeds},
        "n_test_patients": {s: int(manifests.loc[manifests["seed"].eq(s) & manifests["split"].eq("test"), "patient_id"].nunique())
                            for s in seeds},
        "std_ddof": 1,
        "bootstrap": asdict(bootstrap),
        "primary_metric": spec.primary_metric,
        "metrics": summary,
        "heads": {str(k): v for k, v in reports.items()},
        "run_identity": plan.identity,
    }
    config = _resolved_config(options, spec, data, features, head_entry, plan, seeds, bootstrap)
    folder = plan.folder
    files = {
        "config.yaml": yaml_writer(config),
        "predictions.parquet": parquet_writer(predictions_frame),
        "splits.parquet": parquet_writer(manifests),
        "metrics.json": json_writer(metrics),
        "table.md": text_writer(f"# {spec.title}: {encoder_name} / {run_name}\n\n"
                                + ("**Synthetic data** (written by cxrbench): not comparable with any paper.\n\n" if data.synthetic else "")
                                + to_markdown(run_display_table(metrics, data.tasks), "metric")
                                + "".join(f"\nNote: {caveat}\n" for caveat in bootstrap_caveats(metrics))),
        "table.csv": lambda path: run_long_table(metrics, data.tasks).to_csv(path, index=False),
    }
    if selections:
        files["selection.csv"] = lambda path: pd.DataFrame(selections).to_csv(path, index=False)
    write_run(folder, files, check=lambda stored: plan.check_overwrite(stored, at_write=True), on_wait=progress.note)
    return RunResult(encoder_name, run_name, folder, metrics, features.extraction.encoded, features.extraction.reused, data.tasks)


def _augmented_config(options: RunOptions, seed: int | None):
    """The augmented probe's settings from --head-param; the run's seed and decoding workers unless given there."""
    from cxrbench.training.augmented import AugmentedProbeConfig

    given = dict(options.head_params)
    if options.num_workers is not None:
        given.setdefault("num_workers", options.num_workers)
    return AugmentedProbeConfig.from_params({**given, **({"seed": seed} if seed is not None else {})})


def _augmented_probe(options: RunOptions, features: EncoderFeatures, paths: np.ndarray, labels: np.ndarray, split: np.ndarray,
                     seed: int, progress):
    """Train RAD-DINO's online, augmented linear probe for one seed. Only the training views are encoded anew; the
    un-augmented validation and test images are read from the feature cache, like every other head's."""
    from cxrbench.training.augmented import train_augmented_probe

    config = _augmented_config(options, seed)
    train, val = split == "train", split == "val"
    statistics_rows = np.isin(split, ["train", "unused"])  # the whole training split, as for the cached heads
    probe = train_augmented_probe(features.encoder, list(paths[train]), labels[train], list(paths[val]), labels[val], config,
                                  options.device, progress, standardise_features=features.global_[statistics_rows],
                                  val_features=features.global_[val])
    scores = probe.predict_features(features.global_[split == "test"])
    report = probe.report
    report.chosen = {**report.chosen, "protocol": "augmented", "config": config.to_dict()}
    return report, scores


def _last(values: list[float] | None) -> float | None:
    return None if not values or not np.isfinite(values[-1]) else float(values[-1])


def _resolved_config(options, spec, data, features: EncoderFeatures, head_entry, plan: _RunPlan, seeds, bootstrap) -> dict:
    encoder, store = features.encoder, features.extraction.store
    return {
        "cxrbench_version": cxrbench.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "benchmark": {**asdict(spec), "data_root": str(data.root), "synthetic_data": data.synthetic,
                      "dataset_options": options.dataset_options, "loader_notes": data.notes},
        "encoder": {"name": encoder.spec.name, "weights": encoder.weights.identity,
                    "preprocessing": asdict(encoder.preprocessing), "global_embedding": encoder.spec.global_embedding},
        "head": {"name": head_entry.name, "protocol": options.protocol, "params": plan.head_params, "task_type": spec.task_type},
        "label_budget": None if plan.budget is None else plan.budget.describe(),
        "seeds": seeds,
        "bootstrap": asdict(bootstrap),
        "split_manifest_version": SPLIT_MANIFEST_VERSION,
        "feature_cache": {"folder": str(store.folder), "key": store.manifest["key"]},
        "environment": _versions(),
    }


def _versions() -> dict:
    import sklearn
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__}
