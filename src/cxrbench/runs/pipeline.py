"""The one orchestration path: prepare the study, then for each encoder compute (or find cached) the features the
evaluation needs and evaluate them. Every job of the fan-out (`cxrbench.runs.fanout`: `run`, `explain`, `bias`,
`reproduce`, the demo) goes through `evaluate`; `extract` is its first half. Used directly:

    evaluate(StudyOptions("vindr", data_root), ProbeEvaluation(out=Path("results")), EncoderOptions(["rad-dino"]),
             MachineOptions(cache_root))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.encoders.weights import resolve_weights
from cxrbench.evaluations.base import Evaluation
from cxrbench.features.distributed import SINGLE, Ranks
from cxrbench.features.extract import EncoderFeatures, study_features
from cxrbench.features.forward import DEFAULT_PRECISION, check_precision
from cxrbench.memory import peak_memory
from cxrbench.progress import Progress, SilentProgress
from cxrbench.registry import registry
from cxrbench.runs.spec import MachineSpec
from cxrbench.study import StudyOptions, load_benchmark, prepare_study


@dataclass
class EncoderOptions:
    names: list[str]
    weights: str | None = None  # a local file or folder, 'random[:SEED]', or None: the adapter's hub source
    revision: str | None = None
    image_size: int | None = None


@dataclass
class MachineOptions:
    """Where features are cached and how images are encoded (an `ExtractionSettings`)."""

    cache_root: Path
    batch_size: int | None = 32  # None: the largest that fits the GPU (`features.batch_size`)
    shard_size: int = 512
    num_workers: int | None = None
    device: str = "cpu"
    ranks: Ranks = SINGLE  # data-parallel extraction under torchrun (`cxrbench extract` only)
    precision: str = DEFAULT_PRECISION  # fp32 | bf16 | fp16: the encoder forward under autocast (`features.forward`)
    pixel_cache: bool = False  # decode each image once for every encoder (`features.pixel_cache`)

    def __post_init__(self) -> None:
        check_precision(self.precision)  # before any data is read


def evaluate(study: StudyOptions, evaluation: Evaluation, encoders: EncoderOptions, machine: MachineOptions,
             progress: Progress = SilentProgress()) -> list[Any]:
    """Every name and setting is checked before any data is read; the data is read once; each encoder's features
    are computed once (or read from the cache) and handed to the evaluation."""
    check_run(study, evaluation, encoders)
    prepared = evaluation.prepare(prepare_study(study, progress), progress)
    results = []
    for name in encoders.names:
        encoder = build_encoder(name, encoders.weights, encoders.revision, encoders.image_size)
        features = None
        if evaluation.plan(prepared, encoder, machine):
            features = study_features(encoder, prepared.data.samples["path"].tolist(), evaluation.request(prepared, encoder),
                                      machine, progress)
        results += evaluation.evaluate(prepared, features, machine, progress)
        progress.note(f"{name}: evaluated; {peak_memory()} so far.")
    return results


def check_run(study: StudyOptions, evaluation: Evaluation, encoders: EncoderOptions, weights: bool = True) -> None:
    """Names, the evaluation's settings and (`weights`) the weights, checked from specs alone: `evaluate` starts
    with it, and the fan-out runs it without the weights (they may be on the workers' disks only, or downloaded
    there) before submitting jobs, so that a typo fails in seconds here, not in each job on a cluster."""
    spec = registry().get("benchmarks", study.benchmark).spec
    for name in encoders.names:
        registry().get("encoders", name)
    evaluation.check(spec)
    if weights:
        check_weights(encoders)


def machine_options(machine: MachineSpec, precision: str = DEFAULT_PRECISION, device: str | None = None,
                    ranks: Ranks = SINGLE) -> MachineOptions:
    """The one place a `MachineSpec` (and a run's precision) becomes the settings extraction reads; `device`: one
    already resolved here (default: the spec's, resolved later by each job with `on_this_host`)."""
    from cxrbench.features.batch_size import parse_batch_size
    from cxrbench.features.cache import default_cache_root

    cache = Path(machine.cache_dir).expanduser() if machine.cache_dir else default_cache_root()
    return MachineOptions(cache, parse_batch_size(str(machine.batch_size)), machine.shard_size, machine.workers,
                          device or machine.device, ranks, precision=precision, pixel_cache=machine.pixel_cache)


def check_weights(encoders: EncoderOptions) -> None:
    """Every encoder's weights found (a local file, the Hugging Face cache at the pinned revision or a download, or
    `random`) before the data folder is scanned: a missing download is then reported in seconds, not after a scan of
    a large dataset."""
    for name in encoders.names:
        spec = registry().get("encoders", name).spec
        spec.sized(encoders.image_size)
        resolve_weights(spec, encoders.weights, encoders.revision)


def extract(benchmark: str, encoders: EncoderOptions, machine: MachineOptions, request: FeatureRequest,
            data_root: Path | None = None, dataset_options: dict[str, Any] | None = None,
            progress: Progress = SilentProgress()) -> list[EncoderFeatures]:
    """Fill the cache with `request`'s features of every image of the benchmark, for each encoder (`cxrbench
    extract`); a later run or explain finds them there."""
    check_weights(encoders)
    _, data = load_benchmark(benchmark, data_root, dataset_options or {})
    for note in data.notes:
        progress.note(note)
    paths = data.samples["path"].tolist()
    return [study_features(build_encoder(name, encoders.weights, encoders.revision, encoders.image_size), paths, request,
                           machine, progress) for name in encoders.names]


def on_this_host(machine: MachineOptions, threads: int | None, progress: Progress = SilentProgress()) -> MachineOptions:
    """`machine` with its device resolved where the job runs, and this process's thread cap set (`settle_here`)."""
    from cxrbench.device import settle_here

    device, line = settle_here(machine.device, threads)
    progress.note(line)
    return replace(machine, device=device)


def wants_gpu(device: str) -> bool:
    """Whether a job on `device` should be given a GPU by a cluster launcher ('auto' takes one where there is one)."""
    return device == "auto" or device.startswith("cuda")
