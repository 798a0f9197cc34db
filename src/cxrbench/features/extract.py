"""Encode the images a store lacks, in shards, with decoding in DataLoader workers.

Only images missing from the store are decoded and encoded, so a second run does no forward pass and
a run killed mid-way resumes where its last complete shard ended.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cxrbench.data.common.images import DATASET_FIX, read_image
from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.errors import CxrbenchError, ImageReadError, StorageError
from cxrbench.features.batch_size import choose_batch_size
from cxrbench.features.cache import FeatureStore, image_key
from cxrbench.features.distributed import SINGLE, Ranks
from cxrbench.features.forward import DEFAULT_PRECISION, check_precision, forward_arrays
from cxrbench.features.pixel_cache import IDENTITY as PIXEL_CACHE_IDENTITY, PixelCache
from cxrbench.heads.base import CLS_LAYER_PREFIX, LAYER_PREFIX, FeatureSet
from cxrbench.memory import peak_memory
from cxrbench.progress import Progress, SilentProgress
from cxrbench.threads import use_threads


@dataclass
class ExtractionResult:
    store: FeatureStore
    keys: list[str]
    encoded: int  # by this process
    seconds: float = 0.0  # spent encoding (0 when everything was cached)
    by_other_ranks: int = 0  # encoded meanwhile by the other ranks of a data-parallel extraction

    @property
    def reused(self) -> int:
        """Found in the cache (not encoded by this run's ranks)."""
        return len(self.keys) - self.encoded - self.by_other_ranks


class ExtractionSettings(Protocol):
    """Where features are cached and how images are encoded (the CLI's --cache-dir, --batch-size, ...)."""

    cache_root: Path
    batch_size: int | None  # None: --batch-size auto (`features.batch_size`)
    shard_size: int
    num_workers: int | None
    device: str
    ranks: Ranks  # the data-parallel ranks of `cxrbench extract` under torchrun (SINGLE otherwise)
    precision: str  # fp32 | bf16 | fp16: the encoder forward under autocast (`features.forward`)
    pixel_cache: bool  # decode each image once for every encoder (`features.pixel_cache`)


@dataclass
class EncoderFeatures:
    """One encoder's cached features of a benchmark's images, in sample order: global embeddings in memory, patch
    grids read lazily (a batch at a time) from the shards by position, so resident memory stays at a batch."""

    encoder: Encoder
    extraction: ExtractionResult
    global_: np.ndarray
    patches: Any = None  # CachedRows, or None
    layers: dict[int, Any] = field(default_factory=dict)  # block index -> CachedRows
    cls_layers: dict[int, np.ndarray] = field(default_factory=dict)  # block index -> class tokens [N, D], in memory

    def rows(self, labels: np.ndarray, selected: np.ndarray) -> FeatureSet:
        """The features and labels of the `selected` images (a boolean mask over samples)."""
        patches = None if self.patches is None else self.patches.select(selected)
        layers = {index: rows.select(selected) for index, rows in self.layers.items()}
        cls_layers = {index: tokens[selected] for index, tokens in self.cls_layers.items()}
        return FeatureSet(self.global_[selected], labels[selected], patches, layers=layers, cls_layers=cls_layers)


def study_features(encoder: Encoder, paths: Sequence[str], request: FeatureRequest, settings: ExtractionSettings,
                   progress: Progress = SilentProgress()) -> EncoderFeatures:
    """Extract (or find in the cache) what `request` asks of `paths`, on the threads the work deserves."""
    with use_threads("heavy"):
        extraction = extract_features(encoder, request, paths, settings.cache_root, batch_size=settings.batch_size,
                                      shard_size=settings.shard_size, num_workers=settings.num_workers,
                                      device=settings.device, progress=progress, ranks=settings.ranks,
                                      precision=settings.precision, pixel_cache=settings.pixel_cache)
    name = encoder.spec.name
    if extraction.encoded == 0 and not extraction.by_other_ranks:
        progress.note(f"{name}: all {len(extraction.keys)} images found in the feature cache; no encoder forward pass.")
    else:
        others = f" (and the other ranks {extraction.by_other_ranks})" if extraction.by_other_ranks else ""
        progress.note(f"{name}: encoded {extraction.encoded} images in {extraction.seconds:.1f} s "
                      f"({extraction.encoded / max(extraction.seconds, 1e-9):.1f} images/s){others}, reused "
                      f"{extraction.reused} from the cache; {peak_memory()}.")
        dropped = encoder.load_report.dropped
        if dropped:
            progress.note(f"{name}: checkpoint keys left out on purpose: {', '.join(dropped[:8])}"
                          + (f" and {len(dropped) - 8} more" if len(dropped) > 8 else ""))
    patches = extraction.store.rows(extraction.keys, "patches") if request.patch_tokens else None
    layers = {index: extraction.store.rows(extraction.keys, f"{LAYER_PREFIX}{index}") for index in request.layers}
    cls_layers = {index: extraction.store.load(extraction.keys, f"{CLS_LAYER_PREFIX}{index}") for index in request.cls_layers}
    return EncoderFeatures(encoder, extraction, extraction.store.load(extraction.keys, "global"), patches, layers,
                           cls_layers)


class _Images(Dataset):
    """Decoded (or read from the pixel cache) and preprocessed images, in DataLoader workers."""

    def __init__(self, paths: Sequence[str], preprocessor: Preprocessor, pixel_cache: PixelCache | None = None):
        self.paths, self.preprocessor, self.pixel_cache = list(paths), preprocessor, pixel_cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            image = self.pixel_cache.read(path) if self.pixel_cache else read_image(path)
            return self.preprocessor(image), index, ""
        except CxrbenchError as exc:  # carried to the main process as text: worker exceptions lose their type
            side = self.preprocessor.output_size
            return torch.zeros(self.preprocessor.spec.channels, *side), index, f"{type(exc).__name__}:{exc}"


def _carried(text: str, fix: str) -> CxrbenchError:
    """The error a worker carried as text: a pixel-cache write that the disk refused says its own fix, anything else
    is the image's problem, with `fix`."""
    kind, _, message = text.partition(":")
    return StorageError(message) if kind == StorageError.__name__ else ImageReadError(f"{message} {fix}")


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


def default_workers(device: str) -> int:
    """Decoding overlaps a GPU forward pass; on the CPU it only takes cores from the forward pass
    (measured in tests/perf: 2 workers cost 18% on 2 cores, decoding in the main process 4-12%)."""
    return 0 if str(device).startswith("cpu") else min(8, os.cpu_count() or 1)


def encode_batches(
    encoder: Encoder,
    request: FeatureRequest,
    paths: Sequence[str],
    batch_size: int | None = 32,
    num_workers: int | None = None,
    device: str = "cpu",
    progress: Progress = SilentProgress(),
    fix: str = DATASET_FIX,
    precision: str = DEFAULT_PRECISION,
    pixel_cache: PixelCache | None = None,
) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """Decode, preprocess and encode `paths` in batches; yields (positions in `paths`, float32 arrays).
    An unreadable image stops the run with its problem and `fix` (what the user should do about it).

    `batch_size` None chooses it (`features.batch_size`). On CUDA, batches are collated into pinned memory and
    copied without blocking, so that the next batch's decoding and copy overlap the forward pass."""
    encoder.check_request(request)
    if batch_size is None:
        batch_size = choose_batch_size(encoder, request, device, precision, len(paths))
        progress.note(f"{encoder.spec.name}: batch size {batch_size} (--batch-size auto, {precision} on {device})")
    workers = default_workers(device) if num_workers is None else num_workers
    if len(paths) < 4 * batch_size:
        workers = 0  # worker start-up costs more than it saves on a few batches
    loader = DataLoader(
        _Images(paths, encoder.preprocessor, pixel_cache), batch_size=batch_size, num_workers=workers,
        worker_init_fn=_single_thread_worker if workers else None, pin_memory=torch.device(device).type == "cuda",
    )
    encoder.to(device)
    advance = progress.task(f"encoding with {encoder.spec.name}", len(paths))
    for pixels, indices, errors in loader:
        failed = [e for e in errors if e]
        if failed:
            raise _carried(failed[0], fix)
        yield indices.tolist(), forward_arrays(encoder, pixels, request, device, precision)
        advance(len(indices))


def extract_features(
    encoder: Encoder,
    request: FeatureRequest,
    paths: Sequence[str | Path],
    cache_root: Path,
    batch_size: int = 32,
    num_workers: int | None = None,
    shard_size: int = 512,
    device: str = "cpu",
    progress: Progress = SilentProgress(),
    ranks: Ranks = SINGLE,
    precision: str = DEFAULT_PRECISION,
    pixel_cache: bool = False,
) -> ExtractionResult:
    """Encode only what the store lacks; the encoder's network is built only if something is missing.

    Processes sharing a store take turns: the one holding its lock encodes, the others wait and then reuse its
    shards. Shards that fail their checksums are deleted and their images encoded again. The ranks of one
    data-parallel extraction (`features.distributed`) share the work instead; `encoded` is then this rank's count.
    `precision` and `pixel_cache` (`features.forward`, `features.pixel_cache`) other than the defaults get stores of
    their own.
    """
    identity = store_identity(encoder, request, precision, pixel_cache)
    pixels = PixelCache(cache_root) if pixel_cache else None
    keys = [image_key(p) for p in paths]
    unique = list(dict.fromkeys(keys))
    if ranks.distributed:
        return _extract_ranked(encoder, request, keys, unique, dict(zip(keys, map(str, paths))), cache_root, batch_size,
                               num_workers, shard_size, device, progress, ranks, identity, precision, pixels)
    store = FeatureStore.open(cache_root, identity)
    if not store.missing(unique) and not store.check(unique):
        return ExtractionResult(store, keys, 0)
    with store.lock(progress.note):
        _clear_for_work(store, unique, progress)
        missing = store.missing(unique)
        started = time.perf_counter()
        if missing:
            _encode_missing(encoder, request, store, missing, dict(zip(keys, map(str, paths))), batch_size,
                            num_workers, shard_size, device, progress, precision, pixels)
    return ExtractionResult(store, keys, len(missing), time.perf_counter() - started if missing else 0.0)


def store_identity(encoder: Encoder, request: FeatureRequest, precision: str = DEFAULT_PRECISION,
                   pixel_cache: bool = False) -> dict:
    """The feature store's identity: the encoder's, plus a non-default precision or pixel source. Only when they
    are used: default extractions keep the store keys that stored results name in their provenance."""
    return {**encoder.identity(request), **feature_numerics(precision, pixel_cache)}


def feature_numerics(precision: str = DEFAULT_PRECISION, pixel_cache: bool = False) -> dict:
    """How features were computed beyond the encoder's own identity: a non-default precision or pixel source (empty
    for the defaults). Feature stores and run identities both record it, so runs of other numerics never mix."""
    check_precision(precision)
    numerics: dict = {}
    if precision != DEFAULT_PRECISION:
        numerics["precision"] = precision
    if pixel_cache:
        numerics["pixel_cache"] = PIXEL_CACHE_IDENTITY
    return numerics


def _clear_for_work(store: FeatureStore, unique: list[str], progress: Progress) -> None:
    """Under the store's lock: reread its shards, remove killed runs' leftovers and discard damaged shards (their
    images are then missing, so they are encoded again)."""
    store.refresh()
    store.remove_stale_work()
    damaged = store.check(unique)
    for shard in damaged:
        progress.note(f"feature cache: shard {shard.path} is damaged ({shard.reason}); encoding its "
                      f"{shard.images or 'unknown number of'} images again.")
    store.discard(damaged)


def _extract_ranked(encoder, request, keys: list[str], unique: list[str], path_of: dict[str, str], cache_root: Path,
                    batch_size: int | None, num_workers: int | None, shard_size: int, device: str, progress: Progress,
                    ranks: Ranks, identity: dict, precision: str, pixels: PixelCache | None) -> ExtractionResult:
    """One rank's part of a data-parallel extraction: rank 0 creates the store and clears damaged shards and killed
    runs' leftovers (under the store's lock, so a single-process run is never raced); then every rank encodes its
    chunks of the missing keys, and all reread the shard list once every rank is done."""
    if ranks.rank == 0:
        store = FeatureStore.open(cache_root, identity)
        with store.lock(progress.note):
            _clear_for_work(store, unique, progress)
    ranks.barrier()
    store = FeatureStore.open(cache_root, identity, create=False) if ranks.rank else store
    store.refresh()
    missing = store.missing(unique)
    chunks = [missing[start:start + shard_size] for start in range(0, len(missing), shard_size)]
    mine = [key for number, chunk in enumerate(chunks) if ranks.owns(number) for key in chunk]
    started = time.perf_counter()
    if mine:
        _encode_missing(encoder, request, store, mine, path_of, batch_size, num_workers, shard_size, device, progress,
                        precision, pixels)
    seconds = time.perf_counter() - started
    ranks.barrier()
    store.refresh()
    return ExtractionResult(store, keys, len(mine), seconds if mine else 0.0, len(missing) - len(mine))


def _encode_missing(encoder, request, store: FeatureStore, missing: list[str], path_of: dict[str, str],
                    batch_size: int | None, num_workers: int | None, shard_size: int, device: str, progress: Progress,
                    precision: str, pixels: PixelCache | None) -> None:
    """Encode the images of `missing` keys and add them to `store` a shard at a time (the last may be smaller).

    A full shard is written by a background thread while the next one is encoded: casting, checking, saving and
    checksumming a shard of patch grids (a gigabyte at 518 px) would otherwise stall a GPU. At most one shard is
    in flight, so memory stays at two shards; a failed write stops the run at the next shard or at the end.
    """
    pending_keys: list[str] = []
    pending: dict[str, list[np.ndarray]] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrbench-shard-writer") as writer:
        in_flight: Future | None = None

        def flush() -> None:
            nonlocal in_flight, pending_keys, pending
            if in_flight is not None:
                in_flight.result()  # raises the previous write's error here, in the caller's thread
            arrays = {n: np.concatenate(v) for n, v in pending.items()}
            in_flight = writer.submit(store.write_shard, pending_keys, arrays, [path_of[k] for k in pending_keys])
            pending_keys, pending = [], {}

        batches = encode_batches(encoder, request, [path_of[k] for k in missing], batch_size, num_workers, device, progress,
                                 precision=precision, pixel_cache=pixels)
        for indices, arrays in batches:
            for name, array in arrays.items():
                pending.setdefault(name, []).append(array)
            pending_keys.extend(missing[i] for i in indices)
            if len(pending_keys) >= shard_size:
                flush()
        if pending_keys:
            flush()
        if in_flight is not None:
            in_flight.result()
