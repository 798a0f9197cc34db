"""Linear probe on global embeddings: one output per class, AdamW + cosine, last epoch kept.

The loss follows the target kind: masked BCE for binary targets, softmax cross-entropy for a multiclass one,
SMAPE (or MSE) for regression. The same probe trains on cached features (the fast default) or, with
`features: online` (`heads/linear-augmented.yaml`, RAD-DINO's own protocol), on a fresh augmented view of every
training image through the frozen encoder: only the source of its inputs differs (`BatchSource`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cxrbench.heads.base import BatchSource, FeatureSet, FitReport, Head, train_epochs
from cxrbench.heads.losses import LOSSES, OUTPUTS, masked_bce, resolve_loss
from cxrbench.heads.standardise import Standardiser, rows_tensor
from cxrbench.progress import Progress, SilentProgress


class LinearProbe(Head):
    defaults = {
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "epochs": 100,
        "min_steps": 4000,
        "batch_size": 256,
        "standardize": True,
        "class_balanced_loss": False,
        "loss": "auto",
        # cached: the features computed once; online: the frozen encoder on augmented views (see training.online)
        "features": "cached",
        "augmentation": {},
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss = resolve_loss(str(self.params["loss"]), self.kind, f"Head '{self.spec.name}'")

    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress(),
            source: BatchSource | None = None) -> FitReport:
        p = self.params
        source = train if source is None else source
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        y = torch.from_numpy(np.ascontiguousarray(train.labels, dtype=np.float32))
        dim = train.global_.shape[1]
        if p["standardize"]:
            self._scale = Standardiser((train.standardise_on or train).global_)
        else:
            self._scale = None
        self.layer = torch.nn.Linear(dim, y.shape[1])
        # DINOv2's linear-head init: a near-zero start, so that on small datasets (few optimiser steps) the
        # learned direction is not swamped by PyTorch's default uniform(+-1/sqrt(D)) initial weights.
        torch.nn.init.normal_(self.layer.weight, std=0.01)
        torch.nn.init.zeros_(self.layer.bias)
        if self.loss == "smape":  # regression starts from the mean training target, not from zero
            with torch.no_grad():
                self.layer.bias.copy_(torch.from_numpy(np.nanmean(train.labels, axis=0).astype(np.float32)))
        pos_weight = None
        if p["class_balanced_loss"] and self.loss == "bce":
            positives = torch.nansum(y, 0)
            known = (~torch.isnan(y)).sum(0)
            pos_weight = ((known - positives) / positives.clamp(min=1)).clamp(min=1)
        loss_fn = (lambda logits, labels: masked_bce(logits, labels, pos_weight)) if self.loss == "bce" else LOSSES[self.loss]
        optimizer = torch.optim.AdamW(self.layer.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        n = len(y)
        batch = min(int(p["batch_size"]), n)
        steps_per_epoch = math.ceil(n / batch)
        # at least `min_steps` optimiser steps: 100 epochs of a small dataset are too few for AdamW to converge
        epochs = max(int(p["epochs"]), math.ceil(int(p["min_steps"]) / steps_per_epoch))
        total = epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))

        def batches() -> list[np.ndarray]:
            order = torch.randperm(n, generator=generator).numpy()
            return [order[start : start + batch] for start in range(0, n, batch)]

        def step(inputs: dict[str, torch.Tensor], rows: np.ndarray) -> float:
            loss = loss_fn(self.layer(self._standardised(inputs["global"].float().cpu())), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            return loss.item() * len(rows)

        val_losses: list[float] = []
        train_losses = train_epochs(
            source, ("global",), epochs, batches, step, progress, f"{self.spec.name} head, seed {seed}: epochs",
            after_epoch=lambda: val_losses.append(self._loss(val) if len(val.labels) else float("nan")),
        )
        return FitReport(chosen={"epochs": epochs, "steps": total, "checkpoint": "last"},
                         history={"train_loss": train_losses, "val_loss": val_losses})

    def _standardised(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._scale is None else self._scale(x)

    @torch.no_grad()
    def _logits(self, features: FeatureSet) -> torch.Tensor:
        return self.layer(self._standardised(rows_tensor(features.global_, np.arange(len(features.global_)))))

    def _loss(self, features: FeatureSet) -> float:
        labels = torch.from_numpy(features.labels.astype(np.float32))
        return float(LOSSES[self.loss](self._logits(features), labels))

    def predict(self, features: FeatureSet) -> np.ndarray:
        return OUTPUTS[self.loss](self._logits(features)).numpy().astype(np.float64)
