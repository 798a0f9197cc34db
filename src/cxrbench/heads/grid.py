"""Decoders on frozen features, trained as a grid from one pass over the cached features (RayDINO's protocol).

Any of `lr`, `weight_decay`, `depth`, `pooling` and `blocks` in a head spec may be a list; the head trains the Cartesian
product together: every batch of cached features is read once and fed to every configuration, each with its
own weights and optimiser state (`stacked.py`). After the last epoch each configuration is scored on the
validation split and the best one (the selection metric, by default the benchmark's primary one, macro over the
targets defined there; the validation loss when none is; ties to the earlier configuration in grid order) makes
the test predictions. Losses follow the target kind: BCE (binary), softmax CE (multiclass), SMAPE or MSE
(regression). The whole table of validation scores is returned
with the fit report and stored with the results. A spec with only single values is one ordinary head.

`blocks` n > 1 replaces the global embedding by the class tokens of the encoder's last n blocks (each after the
final norm, each standardised), concatenated in block order, with the mean patch token appended for `cls+avg`:
the features of DINOv2's linear evaluation (Oquab et al. 2023; its public `dinov2/eval/linear.py` trains a classifier
on the last 1 and on the last 4 blocks, each with and without average pooling, and keeps the best on validation).
n = 1 is the global embedding, as before the axis existed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from cxrbench.errors import DataError, SpecError
from cxrbench.heads.base import CLS_LAYER_PREFIX, BatchSource, FeatureSet, FitReport, Head, train_epochs
from cxrbench.heads.losses import LOSSES, OUTPUTS, resolve_loss
from cxrbench.heads.selection import ranking, validation_score
from cxrbench.heads.stacked import POOLINGS, StackedDecoders, StackedSGD
from cxrbench.heads.standardise import Standardiser
from cxrbench.progress import Progress, SilentProgress

GRID_KEYS = ("pooling", "blocks", "depth", "lr", "weight_decay")
#: poolings that can read the class tokens of several blocks (`blocks` > 1)
BLOCK_POOLINGS = ("cls", "cls+avg")


@dataclass(frozen=True)
class HeadConfig:
    pooling: str
    blocks: int
    depth: int
    lr: float
    weight_decay: float

    @property
    def name(self) -> str:
        """One block (the global embedding) keeps the names configurations had before the blocks axis."""
        blocks = f"-last{self.blocks}" if self.blocks > 1 else ""
        return f"{self.pooling}{blocks}-d{self.depth}-lr{self.lr:g}-wd{self.weight_decay:g}"

    @property
    def source(self) -> str:
        """The name of the (standardised) input this configuration decodes (`GridHead._scaled`)."""
        return self.pooling if self.blocks == 1 else f"{self.pooling}:last{self.blocks}"


def expand_grid(params: dict[str, Any], where: str) -> list[HeadConfig]:
    """Every combination of the grid keys' values (a scalar is a one-value list); numbers were checked by the Head.
    `blocks` may be absent (it is left out of the parameters at its default 1, `GridHead`)."""
    params = {"blocks": 1, **params}
    values = {key: params[key] if isinstance(params[key], list) else [params[key]] for key in GRID_KEYS}
    for pooling in values["pooling"]:
        if pooling not in POOLINGS:
            raise SpecError(f"{where}: pooling '{pooling}' is not one of {', '.join(POOLINGS)}.")
    for depth in values["depth"]:
        if depth not in (1, 2):
            raise SpecError(f"{where}: depth {depth!r} must be 1 (linear) or 2 (MLP).")
    other = [p for p in values["pooling"] if p not in BLOCK_POOLINGS]
    if max(values["blocks"]) > 1 and other:
        raise SpecError(f"{where}: blocks {values['blocks']} reads the class tokens of several blocks, which pooling "
                        f"{', '.join(other)} does not use; use pooling {' or '.join(BLOCK_POOLINGS)} with blocks > 1, "
                        "or blocks: 1.")
    return [HeadConfig(p, int(b), int(d), float(lr), float(wd))
            for p, b, d, lr, wd in itertools.product(*(values[k] for k in GRID_KEYS))]


class GridHead(Head):
    sweeps = GRID_KEYS
    defaults = {
        "pooling": "cls",
        # the last n blocks' class tokens (DINOv2's linear evaluation); 1: the global embedding
        "blocks": 1,
        "depth": 1,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "momentum": 0.9,
        "epochs": 20,
        "min_steps": 500,
        "batch_size": 128,
        "hidden_dim": 512,
        "loss": "auto",
        "selection_metric": "auto",
        "device": "cpu",
        # cached: the features computed once; online: the frozen encoder on augmented views (see training.online)
        "features": "cached",
        "augmentation": {},
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.params["blocks"] == 1:  # the default is left out, so runs stored before the axis keep their identity
            del self.params["blocks"]
        self.configs = expand_grid(self.params, f"heads/{self.spec.name}.yaml")
        self._blocks: tuple[int, ...] | None = None  # the encoder's last max(blocks) block indices (`select_blocks`)
        self.loss = resolve_loss(str(self.params["loss"]), self.kind, f"Head '{self.spec.name}'")
        self.device = torch.device(self.params["device"])

    @property
    def reads_blocks(self) -> bool:  # type: ignore[override]
        return any(c.blocks > 1 for c in self.configs)

    def select_blocks(self, num_layers: int) -> None:
        wanted = max(c.blocks for c in self.configs)
        if wanted > num_layers:
            raise SpecError(f"Head '{self.spec.name}': blocks {wanted} asks for more blocks than the encoder's "
                            f"{num_layers}; choose blocks up to {num_layers}.")
        self._blocks = tuple(range(num_layers - wanted, num_layers))

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        needs = ("global", "patches") if any(c.pooling != "cls" for c in self.configs) else ("global",)
        if not self.reads_blocks:
            return needs
        if self._blocks is None:
            raise RuntimeError(f"Head '{self.spec.name}' reads several blocks: call select_blocks(num_layers) first.")
        return needs + tuple(f"{CLS_LAYER_PREFIX}{i}" for i in self._blocks)

    @property
    def work(self) -> str:  # type: ignore[override]
        """Pooling patch grids is heavy (batch x tokens x dim per step); decoders of the global embedding are light."""
        return "heavy" if "patches" in self.needs else "light"

    # -- training -------------------------------------------------------------------------------------------
    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress(),
            source: BatchSource | None = None) -> FitReport:
        p = self.params
        source = train if source is None else source
        if "patches" in self.needs and train.patches is None:
            raise DataError(f"Head '{self.spec.name}' pools patch tokens, but the features given have no patch grid.")
        missing = [i for i in self._blocks or () if i not in train.cls_layers]
        if missing:
            raise DataError(f"Head '{self.spec.name}' reads the class tokens of blocks {list(self._blocks)}, but the "
                            f"features given lack block(s) {missing}.")
        generator = torch.Generator().manual_seed(seed)
        statistics = train.standardise_on or train
        self._scale_global = Standardiser(statistics.global_)
        self._scale_tokens = Standardiser(statistics.patches) if "patches" in self.needs else None
        self._scale_blocks = {i: Standardiser(statistics.cls_layers[i]) for i in self._blocks or ()}
        self._grid_shape = None if train.patches is None else tuple(train.patches.shape[1:3])
        dim_global, tasks = train.global_.shape[1], train.labels.shape[1]
        dim_tokens = train.patches.shape[-1] if train.patches is not None else dim_global
        dim_block = train.cls_layers[self._blocks[0]].shape[1] if self._blocks else dim_global
        self.families: dict[tuple[str, int, int], tuple[StackedDecoders, list[int]]] = {}
        for key in dict.fromkeys((c.pooling, c.depth, c.blocks) for c in self.configs):
            pooling, depth, blocks = key
            members = [i for i, c in enumerate(self.configs) if (c.pooling, c.depth, c.blocks) == key]
            dim_cls = dim_global if blocks == 1 else blocks * dim_block
            dim = {"cls": dim_cls, "cls+avg": dim_cls + dim_tokens}.get(pooling, dim_tokens)
            module = StackedDecoders(pooling, depth, len(members), dim, tasks, int(p["hidden_dim"]), generator,
                                     self.configs[members[0]].source).to(self.device)
            self.families[key] = (module, members)
        modules = [module for module, _ in self.families.values()]
        if self.loss == "smape":  # regression starts from the mean training target, not from zero
            start = torch.from_numpy(np.nanmean(train.labels, axis=0).astype(np.float32)).to(self.device)
            for module in modules:
                with torch.no_grad():
                    module.out_b.copy_(start.expand_as(module.out_b))
        order = [i for _, members in self.families.values() for i in members]
        optimizers = [
            StackedSGD(module, self._values("lr", members), self._values("weight_decay", members), float(p["momentum"]))
            for module, members in self.families.values()
        ]
        batch = min(int(p["batch_size"]), len(train.labels))
        steps_per_epoch = math.ceil(len(train.labels) / batch)
        epochs = max(int(p["epochs"]), math.ceil(int(p["min_steps"]) / steps_per_epoch))
        total, step_count = epochs * steps_per_epoch, 0
        labels = torch.from_numpy(np.ascontiguousarray(train.labels, dtype=np.float32))
        loss_fn = LOSSES[self.loss]
        per_config = torch.zeros(len(self.configs), dtype=torch.float64)

        def batches() -> list[np.ndarray]:
            per_config.zero_()
            permutation = torch.randperm(len(labels), generator=generator).numpy()
            return [np.sort(permutation[start : start + batch]) for start in range(0, len(labels), batch)]

        def step(inputs: dict[str, torch.Tensor], rows: np.ndarray) -> float:
            nonlocal step_count
            y = labels[rows].to(self.device)
            per_head = torch.cat([loss_fn(module(self._scaled(inputs)), y) for module in modules])  # in `order`
            for optimizer in optimizers:
                optimizer.zero_grad()
            per_head.sum().backward()
            for optimizer in optimizers:
                optimizer.step(0.5 * (1 + math.cos(math.pi * step_count / total)))
            step_count += 1
            per_config[order] += per_head.detach().double().cpu() * len(rows)
            return float(per_head.detach().sum()) * len(rows)

        train_epochs(source, self.needs, epochs, batches, step, progress,
                     f"{self.spec.name} head ({len(self.configs)} configurations), seed {seed}: epochs")
        train_loss = per_config / len(labels)  # of the last epoch
        return self._select(val, train_loss, epochs, total)

    def _values(self, key: str, members: list[int]) -> torch.Tensor:
        return torch.tensor([getattr(self.configs[i], key) for i in members], dtype=torch.float32, device=self.device)

    def _inputs(self, features: FeatureSet, index: np.ndarray) -> dict[str, torch.Tensor]:
        """The standardised inputs of these cached rows (prediction and selection read features a chunk at a time)."""
        return self._scaled(next(features.epoch([index], 0, self.needs)))

    def _scaled(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A batch's standardised inputs, computed once and shared by every head of the grid."""
        scaled = {"cls": self._scale_global(inputs["global"].float()).to(self.device)}
        if self._scale_tokens is not None:
            tokens = self._scale_tokens(inputs["patches"].float()).to(self.device)
            scaled["tokens"] = tokens.reshape(len(tokens), -1, tokens.shape[-1])
            scaled["avg"] = scaled["tokens"].mean(dim=1)
            scaled["cls+avg"] = torch.cat([scaled["cls"], scaled["avg"]], dim=1)
        for n in sorted({c.blocks for c in self.configs if c.blocks > 1}):  # the last n blocks, in block order
            tokens = [self._scale_blocks[i](inputs[f"{CLS_LAYER_PREFIX}{i}"].float()) for i in self._blocks[-n:]]
            scaled[f"cls:last{n}"] = torch.cat(tokens, dim=1).to(self.device)
            if "avg" in scaled:
                scaled[f"cls+avg:last{n}"] = torch.cat([scaled[f"cls:last{n}"], scaled["avg"]], dim=1)
        return scaled

    # -- selection and prediction ---------------------------------------------------------------------------
    def _select(self, val: FeatureSet, train_loss: torch.Tensor, epochs: int, steps: int) -> FitReport:
        rows = [{"config": c.name, **asdict(c), "train_loss": float(train_loss[i])} for i, c in enumerate(self.configs)]
        self.chosen, selected_by = 0, "only configuration"
        labelled = bool((~np.isnan(val.labels)).any())
        if len(self.configs) > 1 and not labelled:
            raise DataError(f"Head '{self.spec.name}' chooses among {len(self.configs)} configurations on the validation "
                            "split, which has no labelled image; give the benchmark a validation split (split.val_fraction).")
        if labelled:
            logits = self._logits(val, range(len(self.configs)))  # [configs, N, T]
            y = torch.from_numpy(np.ascontiguousarray(val.labels, dtype=np.float32))
            metric = self.selection
            name = getattr(metric, "name", "loss")
            for i, row in enumerate(rows):
                row["val_loss"] = float(LOSSES[self.loss](logits[i], y))
                if metric is not None:
                    row[f"val_{name}"] = validation_score(metric, self.kind, val.labels, OUTPUTS[self.loss](logits[i]).numpy())
            # rank by the metric; by the validation loss where no target is defined in validation (or without a metric)
            by_metric = metric is not None and any(np.isfinite(row[f"val_{name}"]) for row in rows)
            ranked = [ranking(metric, row[f"val_{name}"]) if by_metric else (-row["val_loss"] if np.isfinite(row["val_loss"]) else -np.inf)
                      for row in rows]
            self.chosen = max(range(len(rows)), key=lambda i: (ranked[i], -i))
            if len(rows) > 1:
                selected_by = f"validation {name}" if by_metric else "validation loss"
        config = self.configs[self.chosen]
        chosen = {**asdict(config), "config": config.name, "grid_size": len(self.configs), "selected_by": selected_by,
                  "epochs": epochs, "steps": steps, "checkpoint": "last"}
        return FitReport(chosen=chosen, history={"train_loss": [rows[self.chosen]["train_loss"]],
                                                 "val_loss": [rows[self.chosen].get("val_loss", float("nan"))]}, table=rows)

    def _place(self, config: int) -> tuple[StackedDecoders, slice]:
        """The family holding configuration `config`, and its slot there."""
        c = self.configs[config]
        module, members = self.families[(c.pooling, c.depth, c.blocks)]
        position = members.index(config)
        return module, slice(position, position + 1)

    @torch.no_grad()
    def _logits(self, features: FeatureSet, configs, chunk: int = 256) -> torch.Tensor:
        """Logits [len(configs), N, T] of the given configurations."""
        places = [self._place(c) for c in configs]
        out = torch.empty(len(places), len(features.labels), features.labels.shape[1])
        for start in range(0, len(features.labels), chunk):
            index = np.arange(start, min(start + chunk, len(features.labels)))
            inputs = self._inputs(features, index)
            for slot, (module, position) in enumerate(places):
                out[slot, index] = module(inputs, position)[0].float().cpu()
        return out

    def predict(self, features: FeatureSet) -> np.ndarray:
        return OUTPUTS[self.loss](self._logits(features, [self.chosen])[0]).numpy().astype(np.float64)

    @torch.no_grad()
    def attention_maps(self, features: FeatureSet, chunk: int = 256) -> np.ndarray:
        """The chosen head's attention of each task's query over the patch grid: [N, T, H, W], each map sums to 1."""
        config = self.configs[self.chosen]
        if config.pooling != "attentive":
            raise SpecError(f"Head '{self.spec.name}' chose {config.pooling} pooling; attention maps need pooling: attentive.")
        module, position = self._place(self.chosen)
        maps = []
        for start in range(0, len(features.labels), chunk):
            index = np.arange(start, min(start + chunk, len(features.labels)))
            weights = module.attention(self._inputs(features, index)["tokens"], position)[0]
            maps.append(weights.cpu().numpy())
        height, width = self._grid_shape
        return np.concatenate(maps).reshape(len(features.labels), -1, height, width)
