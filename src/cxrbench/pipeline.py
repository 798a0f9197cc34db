"""One benchmark x encoder x head run: load data, extract (cached) features, train a head per seed,
summarise the test predictions, and write the run folder. The CLI is a thin shell around this module.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cxrbench
from cxrbench.data.samples import BenchmarkData
from cxrbench.data.splits import SPLIT_MANIFEST_VERSION, seed_splits
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import DataError
from cxrbench.features.extract import extract_features
from cxrbench.heads.base import FeatureSet, Head
from cxrbench.progress import Progress, SilentProgress
from cxrbench.registry import registry
from cxrbench.results.store import json_writer, parquet_writer, run_folder, text_writer, write_run, yaml_writer
from cxrbench.results.tables import run_display_table, run_long_table, to_markdown
from cxrbench.specs import BenchmarkSpec, BootstrapSpec
from cxrbench.stats.summary import summarize


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
    loader = entry.load()
    return spec, loader(resolve_data_root(spec, data_root), spec, options)


def run(options: RunOptions, progress: Progress = SilentProgress()) -> list[RunResult]:
    spec, data = load_benchmark(options.benchmark, options.data_root, options.dataset_options)
    for note in data.notes:
        progress.note(note)
    data.require_both_classes()
    head_name = options.head or spec.default_head
    head_entry = registry().get("heads", head_name)
    seeds = list(range(options.seeds if options.seeds is not None else spec.seeds))
    if not seeds:
        raise DataError("--seeds must be at least 1.")
    manifests = pd.concat([seed_splits(data.samples, spec.name, s, spec.validation.fraction) for s in seeds], ignore_index=True)
    bootstrap = spec.bootstrap if options.bootstrap_resamples is None else BootstrapSpec(
        **{**asdict(spec.bootstrap), "resamples": options.bootstrap_resamples}
    )
    return [
        _run_encoder(options, spec, data, name, head_name, head_entry, seeds, manifests, bootstrap, progress)
        for name in options.encoders
    ]


def _run_encoder(options, spec, data, encoder_name, head_name, head_entry, seeds, manifests, bootstrap, progress) -> RunResult:
    head_class: type[Head] = head_entry.load()
    encoder = build_encoder(encoder_name, options.weights, options.revision, options.image_size)
    request = FeatureRequest(global_embedding=True, patch_tokens="patches" in head_class.needs)
    extraction = extract_features(
        encoder, request, data.samples["path"].tolist(), options.cache_root,
        batch_size=options.batch_size, shard_size=options.shard_size, num_workers=options.num_workers, device=options.device, progress=progress,
    )
    if extraction.encoded == 0:
        progress.note(f"{encoder_name}: all {len(extraction.keys)} images found in the feature cache; no encoder forward pass.")
    else:
        progress.note(f"{encoder_name}: encoded {extraction.encoded} images, reused {extraction.reused} from the cache.")
        dropped = encoder.load_report.dropped
        if dropped:
            progress.note(f"{encoder_name}: checkpoint keys left out on purpose: {', '.join(dropped[:8])}"
                          + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else ""))
    features = extraction.store.load(extraction.keys, "global")
    patches = extraction.store.load(extraction.keys, "patches") if request.patch_tokens else None
    labels = data.labels()
    samples = data.samples

    predictions, reports = [], {}
    advance = progress.task(f"training {head_name} heads on {encoder_name}", len(seeds))
    for seed in seeds:
        split = manifests.loc[manifests["seed"] == seed, "split"].to_numpy()
        parts = {
            name: FeatureSet(features[split == name], labels[split == name], None if patches is None else patches[split == name])
            for name in ("train", "val", "test")
        }
        head = head_class(head_entry.spec)
        report = head.fit(parts["train"], parts["val"], seed)
        reports[seed] = {"chosen": report.chosen, "final_train_loss": _last(report.history.get("train_loss")),
                         "final_val_loss": _last(report.history.get("val_loss"))}
        scores = head.predict(parts["test"])
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
        "split": "test",
        "seeds": seeds,
        "n_test_images": int((manifests["seed"].eq(seeds[0]) & manifests["split"].eq("test")).sum()),
        "n_test_patients": int(predictions_frame["patient_id"].nunique()),
        "std_ddof": 1,
        "bootstrap": asdict(bootstrap),
        "primary_metric": spec.primary_metric,
        "metrics": summary,
        "heads": {str(k): v for k, v in reports.items()},
    }
    config = _resolved_config(options, spec, data, encoder, head_entry.spec, head_class, seeds, bootstrap, extraction)
    folder = run_folder(options.out, spec.name, encoder_name, head_name)
    write_run(folder, {
        "config.yaml": yaml_writer(config),
        "predictions.parquet": parquet_writer(predictions_frame),
        "splits.parquet": parquet_writer(manifests),
        "metrics.json": json_writer(metrics),
        "table.md": text_writer(f"# {spec.title}: {encoder_name} / {head_name}\n\n" + to_markdown(run_display_table(metrics, data.tasks), "metric")),
        "table.csv": lambda path: run_long_table(metrics, data.tasks).to_csv(path, index=False),
    })
    return RunResult(encoder_name, head_name, folder, metrics, extraction.encoded, extraction.reused, data.tasks)


def _last(values: list[float] | None) -> float | None:
    return None if not values or not np.isfinite(values[-1]) else float(values[-1])


def _resolved_config(options, spec, data, encoder, head_spec, head_class, seeds, bootstrap, extraction) -> dict:
    return {
        "cxrbench_version": cxrbench.__version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "benchmark": {**asdict(spec), "data_root": str(data.root), "dataset_options": options.dataset_options, "loader_notes": data.notes},
        "encoder": {"name": encoder.spec.name, "weights": encoder.weights.identity,
                    "preprocessing": asdict(encoder.preprocessing), "global_embedding": encoder.spec.global_embedding},
        "head": {"name": head_spec.name, "params": head_class(head_spec).params},
        "seeds": seeds,
        "bootstrap": asdict(bootstrap),
        "split_manifest_version": SPLIT_MANIFEST_VERSION,
        "feature_cache": {"folder": str(extraction.store.folder), "key": extraction.store.manifest["key"]},
        "environment": _versions(),
    }


def _versions() -> dict:
    import sklearn
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__}
