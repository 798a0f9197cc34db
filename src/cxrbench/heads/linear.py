"""Linear probe on global embeddings: one logit per task, masked BCE, AdamW + cosine, last epoch kept."""

from __future__ import annotations

import math

import numpy as np
import torch

from cxrbench.heads.base import FeatureSet, FitReport, Head
from cxrbench.heads.losses import masked_bce
from cxrbench.heads.standardise import Standardiser
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
    }

    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress()) -> FitReport:
        p = self.params
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        x = torch.from_numpy(np.ascontiguousarray(train.global_, dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(train.labels, dtype=np.float32))
        if p["standardize"]:
            scale = Standardiser((train.standardise_on or train).global_)
            self._mean, self._std = scale.mean, scale.std
        else:
            self._mean, self._std = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
        x = (x - self._mean) / self._std
        self.layer = torch.nn.Linear(x.shape[1], y.shape[1])
        # DINOv2's linear-head init: a near-zero start, so that on small datasets (few optimiser steps) the
        # learned direction is not swamped by PyTorch's default uniform(+-1/sqrt(D)) initial weights.
        torch.nn.init.normal_(self.layer.weight, std=0.01)
        torch.nn.init.zeros_(self.layer.bias)
        pos_weight = None
        if p["class_balanced_loss"]:
            positives = torch.nansum(y, 0)
            known = (~torch.isnan(y)).sum(0)
            pos_weight = ((known - positives) / positives.clamp(min=1)).clamp(min=1)
        optimizer = torch.optim.AdamW(self.layer.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        batch = min(int(p["batch_size"]), len(x))
        steps_per_epoch = math.ceil(len(x) / batch)
        # at least `min_steps` optimiser steps: 100 epochs of a small dataset are too few for AdamW to converge
        epochs = max(int(p["epochs"]), math.ceil(int(p["min_steps"]) / steps_per_epoch))
        total = epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
        history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        advance = progress.task(f"{self.spec.name} head, seed {seed}: epochs", epochs, transient=True)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            running = 0.0
            for start in range(0, len(x), batch):
                index = order[start : start + batch]
                loss = masked_bce(self.layer(x[index]), y[index], pos_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                running += loss.item() * len(index)
            history["train_loss"].append(running / len(x))
            history["val_loss"].append(self._loss(val) if len(val.labels) else float("nan"))
            advance(1)
        return FitReport(chosen={"epochs": epochs, "steps": total, "checkpoint": "last"}, history=history)

    @torch.no_grad()
    def _logits(self, features: FeatureSet) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(features.global_, dtype=np.float32))
        return self.layer((x - self._mean) / self._std)

    def _loss(self, features: FeatureSet) -> float:
        return float(masked_bce(self._logits(features), torch.from_numpy(features.labels.astype(np.float32))))

    def predict(self, features: FeatureSet) -> np.ndarray:
        return torch.sigmoid(self._logits(features)).numpy().astype(np.float64)
