"""RAD-DINO's paper-faithful classification probe: a linear head trained online through the frozen encoder.

RAD-DINO (appendix E.3.1) trains its linear probes with AdamW, base lr 5e-5, a cosine schedule, batch 96, for
100 epochs, keeps the last checkpoint, and augments every training image (random horizontal flip, random crop,
random affine, colour jitter, Gaussian noise; see `cxrbench.training.augment` for the strengths and where each
comes from). The encoder stays frozen, so the probe is the same model as cxrbench's default - one linear layer on
the encoder's global embedding, masked BCE - but its input is recomputed for a fresh augmented view of every
image at every step.

How this differs from the cached default (`cxrbench.heads.linear.LinearProbe`):

- Features: the default encodes each image once, un-augmented, and caches the features; training then takes
  seconds. Here every epoch decodes, augments and encodes the whole training set again: 100 epochs are ~100
  encoder passes over the training set (the validation and test images are encoded once, un-augmented, with
  the encoder's normal feature path, as in the default). Measured on this project's 2-core CPU, RAD-DINO's
  ViT-B/14 at 518 px took ~2.8 s per image (random weights, other jobs running): the 15,000 VinDr training images x 100 epochs are ~1.5 M forward
  passes, about 48 days of CPU, against ~14 h for the one cached pass over train + test. The paper used 8 V100s;
  plan on a GPU (and `num_workers` > 0 for decoding) for anything but small subsets. Each augmented view
  also costs a decode and a resize of the full-size radiograph (~0.5 s on this CPU for a 2800x3360 image).
- Optimisation: lr 5e-5 (the default uses 1e-3), batch 96 (256), exactly `epochs` epochs (the default trains at
  least `min_steps` steps on small datasets), features not standardised by default (the default standardises
  with training-set statistics; `standardize=True` does so here from one extra un-augmented pass).
- Weight decay is not published. `weight_decay=0.01` is PyTorch's AdamW default, the likeliest reading of a
  paper that names the optimiser without a value. At lr 5e-5 the decoupled decay shrinks the weights by a factor
  of ~0.996 over 100 VinDr epochs, so the choice barely matters.
- The paper reports 5-fold cross-validation; cxrbench's seeds and patient-disjoint splits are the caller's job.

Determinism: the head's initial weights, the epoch orders and every augmented view (see
`cxrbench.training.augment.view_seed`) derive from `config.seed`, so a CPU run is reproducible bit for bit
whatever `num_workers` is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cxrbench.data.images import DATASET_FIX, read_image
from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.errors import CxrbenchError, DataError, ImageReadError, SpecError
from cxrbench.features.extract import default_workers, encode_batches
from cxrbench.heads.base import FitReport
from cxrbench.heads.losses import masked_bce
from cxrbench.heads.params import check_params
from cxrbench.heads.standardise import Standardiser
from cxrbench.progress import Progress, SilentProgress
from cxrbench.training.augment import AugmentationParams, AugmentationPolicy, view_seed

GLOBAL_ONLY = FeatureRequest(global_embedding=True)


@dataclass(frozen=True)
class AugmentedProbeConfig:
    """The paper's probe protocol; fields not published by RAD-DINO are documented in the module docstring."""

    lr: float = 5e-5
    weight_decay: float = 0.01
    epochs: int = 100
    batch_size: int = 96
    augmentation: AugmentationParams = field(default_factory=AugmentationParams)
    # None: 0 on the CPU (decoding only takes cores from the forward pass), up to 8 on a GPU
    num_workers: int | None = None
    seed: int = 0
    standardize: bool = False
    # batch size of the un-augmented passes (validation, prediction, standardisation statistics)
    eval_batch_size: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.augmentation, AugmentationParams):  # a params dict from YAML
            object.__setattr__(self, "augmentation", AugmentationParams.from_dict(self.augmentation))
        if self.lr <= 0 or self.weight_decay < 0:
            raise SpecError(f"augmented probe: lr must be > 0 and weight_decay >= 0 (got {self.lr}, {self.weight_decay}).")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise SpecError("augmented probe: epochs, batch_size and eval_batch_size must be at least 1.")
        if self.num_workers is not None and self.num_workers < 0:
            raise SpecError(f"augmented probe: num_workers must be >= 0, got {self.num_workers}.")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> "AugmentedProbeConfig":
        """From one flat params dict (YAML / `--head-param` style): training fields by name, every other key an
        augmentation parameter (or give them nested under `augmentation`). Unknown keys are refused."""
        params = dict(params or {})
        own = {f.name for f in dataclasses.fields(cls)} - {"augmentation"}
        augmentation = dict(params.pop("augmentation", None) or {})
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in own}
        training = check_params("augmented probe", defaults, {k: params.pop(k) for k in list(params) if k in own})
        known_augmentation = {f.name for f in dataclasses.fields(AugmentationParams)}
        unknown = sorted(set(params) - known_augmentation)
        if unknown:
            raise SpecError(f"augmented probe has no parameter(s) {unknown}; it accepts {sorted(own | known_augmentation)}.")
        augmentation.update(params)
        return cls(**training, augmentation=AugmentationParams.from_dict(augmentation))

    def to_dict(self) -> dict[str, Any]:
        """Flat and JSON/YAML-friendly, for the run's resolved config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "augmentation"}
        return {**out, "augmentation": self.augmentation.to_dict()}


@dataclass
class AugmentedProbe:
    """The trained head: logits = W ((x - mean) / std) + b on the encoder's global embedding."""

    layer: torch.nn.Linear
    mean: torch.Tensor
    std: torch.Tensor
    config: AugmentedProbeConfig
    history: dict[str, list[float]]
    chosen: dict[str, Any]

    @property
    def report(self) -> FitReport:
        """In the shape the pipeline stores for the cached heads."""
        return FitReport(chosen=dict(self.chosen), history={k: list(v) for k, v in self.history.items()})

    @torch.no_grad()
    def logits_from_features(self, global_: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(global_, dtype=torch.float32).cpu()
        return self.layer((x - self.mean) / self.std)

    def predict_features(self, global_: np.ndarray | torch.Tensor) -> np.ndarray:
        """Probabilities [N, T] from global embeddings [N, D] computed by the encoder's normal feature path."""
        return torch.sigmoid(self.logits_from_features(global_)).numpy().astype(np.float64)

    def predict(
        self,
        encoder: Encoder,
        paths: Sequence[str | Path],
        device: str = "cpu",
        batch_size: int = 32,
        num_workers: int | None = None,
        progress: Progress = SilentProgress(),
    ) -> np.ndarray:
        """Probabilities [N, T] for `paths`, un-augmented, through the encoder's normal preprocessing."""
        return self.predict_features(encode_global(encoder, paths, device, batch_size, num_workers, progress))


def encode_global(
    encoder: Encoder,
    paths: Sequence[str | Path],
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: Progress = SilentProgress(),
) -> np.ndarray:
    """Global embeddings [N, D] float32 of un-augmented images, in input order (cxrbench's normal feature path)."""
    out: np.ndarray | None = None
    for positions, arrays in encode_batches(encoder, GLOBAL_ONLY, [str(p) for p in paths], batch_size, num_workers, device, progress):
        features = arrays["global"]
        if out is None:
            out = np.empty((len(paths), features.shape[1]), dtype=np.float32)
        out[positions] = features
    return np.empty((0, encoder.embed_dim), dtype=np.float32) if out is None else out


class _AugmentedImages(Dataset):
    """Item (epoch, index) -> (encoder input of an augmented view, labels, index, error text)."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray, policy: AugmentationPolicy, preprocessor: Preprocessor, seed: int):
        self.paths, self.policy, self.preprocessor, self.seed = list(paths), policy, preprocessor, seed
        self.labels = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]):
        epoch, index = item
        try:
            view = self.policy(read_image(self.paths[index]), view_seed(self.seed, epoch, index))
            return self.preprocessor(view), self.labels[index], index, ""
        except CxrbenchError as exc:  # carried to the main process as text: worker exceptions lose their type
            side = self.preprocessor.output_size
            return torch.zeros(self.preprocessor.spec.channels, *side), self.labels[index], index, str(exc)


class _EpochSampler(Sampler):
    """A seeded permutation per epoch, yielding (epoch, index) so that each item knows which view to draw."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(view_seed(self.seed, self.epoch, -1) % 2**63)
        for index in torch.randperm(self.size, generator=generator).tolist():
            yield self.epoch, index


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


def _check_labels(name: str, paths: Sequence, labels: np.ndarray, tasks: int | None = None) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or len(labels) != len(paths):
        raise DataError(f"augmented probe: {name} labels must be [N, T] with N = {len(paths)} images, got shape {labels.shape}.")
    if tasks is not None and labels.shape[1] != tasks:
        raise DataError(f"augmented probe: {name} labels have {labels.shape[1]} tasks, training labels {tasks}.")
    known = labels[~np.isnan(labels)]
    if known.size and not np.isin(known, (0.0, 1.0)).all():
        raise DataError(f"augmented probe: {name} labels must be 0, 1 or NaN (unknown).")
    return labels


def train_augmented_probe(
    encoder: Encoder,
    paths_train: Sequence[str | Path],
    labels_train: np.ndarray,
    paths_val: Sequence[str | Path],
    labels_val: np.ndarray,
    config: AugmentedProbeConfig = AugmentedProbeConfig(),
    device: str = "cpu",
    progress: Progress = SilentProgress(),
    *,
    standardise_features: np.ndarray | None = None,
    val_features: np.ndarray | None = None,
) -> AugmentedProbe:
    """Train a linear probe on the frozen `encoder`'s global embedding of augmented training views.

    Labels are [N, T] floats, NaN = unknown (left out of the loss). The validation images are encoded once,
    un-augmented, and the validation loss is recorded after every epoch (the last epoch is kept, as in the paper).
    `standardise_features`: un-augmented global embeddings (the feature cache) for the standardisation statistics,
    by default the training images encoded once; under a label budget, pass the whole training split's, since a
    few budgeted images give meaningless statistics. `val_features`: the validation images' cached embeddings, for
    the validation loss, instead of encoding them again.
    """
    labels_train = _check_labels("training", paths_train, labels_train)
    labels_val = _check_labels("validation", paths_val, labels_val, labels_train.shape[1])
    if len(paths_train) == 0:
        raise DataError("augmented probe: no training images.")
    encoder.check_request(GLOBAL_ONLY)
    model = encoder.model
    if model is not None:  # frozen whatever the caller did to it: eval mode (no dropout, fixed norms), no gradients
        model.eval().requires_grad_(False)
    encoder.to(device)

    n, tasks = labels_train.shape
    dim = encoder.embed_dim
    progress.note(f"augmented probe on {encoder.spec.name}: {config.epochs} epochs x {n} training images = "
                  f"{config.epochs * n} augmented encoder passes (the cached probe needs {n}).")
    if config.standardize:
        if standardise_features is None:
            progress.note(f"augmented probe: one un-augmented pass over {n} training images for the feature statistics.")
            standardise_features = encode_global(encoder, paths_train, device, config.eval_batch_size, config.num_workers, progress)
        scale = Standardiser(standardise_features)
        mean, std = scale.mean, scale.std
    else:
        mean, std = torch.zeros(dim), torch.ones(dim)
    if val_features is None and len(paths_val):
        val_features = encode_global(encoder, paths_val, device, config.eval_batch_size, config.num_workers, progress)
    if val_features is not None:
        val_features = torch.from_numpy(np.ascontiguousarray(val_features, dtype=np.float32))
    val_labels = torch.from_numpy(np.array(labels_val, dtype=np.float32))

    generator = torch.Generator().manual_seed(config.seed)
    layer = torch.nn.Linear(dim, tasks)
    with torch.no_grad():  # DINOv2's linear-head init, as the cached probe (near-zero start)
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.01)
        layer.bias.zero_()
    layer.to(device)
    mean_d, std_d = mean.to(device), std.to(device)

    batch = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total = config.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(layer.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))

    workers = default_workers(device) if config.num_workers is None else config.num_workers
    policy = AugmentationPolicy(config.augmentation, encoder.preprocessing)
    dataset = _AugmentedImages([str(p) for p in paths_train], labels_train, policy, encoder.preprocessor, config.seed)
    sampler = _EpochSampler(n, config.seed)
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
        worker_init_fn=_single_thread_worker if workers else None,
        generator=torch.Generator().manual_seed(config.seed), pin_memory=str(device).startswith("cuda"),
    )

    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        advance = progress.task(f"augmented probe on {encoder.spec.name}: epoch {epoch + 1}/{config.epochs}", n)
        history["lr"].append(float(optimizer.param_groups[0]["lr"]))
        running, seen = 0.0, 0
        for pixels, labels, _, errors in loader:
            failed = [e for e in errors if e]
            if failed:
                raise ImageReadError(f"{failed[0]} {DATASET_FIX}")
            with torch.no_grad():
                features = encoder.encode(pixels.to(device, non_blocking=True), GLOBAL_ONLY).global_embedding
            if features is None or features.shape[-1] != dim:
                raise CxrbenchError(f"Encoder '{encoder.spec.name}' returned global embeddings of shape "
                                    f"{None if features is None else tuple(features.shape)}; expected [B, {dim}].")
            logits = layer((features.float() - mean_d) / std_d)
            loss = masked_bce(logits, labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item() * len(labels)
            seen += len(labels)
            advance(len(labels))
        history["train_loss"].append(running / seen)
        history["val_loss"].append(_val_loss(layer, mean_d, std_d, val_features, val_labels, device))

    layer = layer.cpu().eval().requires_grad_(False)
    chosen = {"epochs": config.epochs, "steps": total, "checkpoint": "last", "protocol": "augmented",
              "batch_size": batch, "num_workers": workers, "augmentation": policy.describe()}
    return AugmentedProbe(layer, mean, std, config, history, chosen)


@torch.no_grad()
def _val_loss(layer, mean, std, features: torch.Tensor | None, labels: torch.Tensor, device: str) -> float:
    if features is None or len(features) == 0:
        return float("nan")
    logits = layer((features.to(device) - mean) / std)
    return float(masked_bce(logits, labels.to(device)))
