"""Segmentation decoders trained on frozen features: linear, ViTDet and UPerNet (`heads.decoders`), one trainer.

The decoder reads the encoder's last patch grid (`layers: last`), its last four blocks (`last4`, DINOv2's
"linear4"), the adapter's four default intermediate blocks (`default`, ViT-B [3, 5, 7, 11]) or listed blocks. It
predicts one logit per structure (structures may overlap, so sigmoids, not a softmax), upsampled bilinearly to
a loss grid of one cell per `loss_stride` input pixels, where the masks' coverage of each cell is the target
(`encoders.geometry.training_targets`). The loss is MONAI's Dice (`dice`) or Dice + BCE (`dicece`), per image and
structure, on sigmoid outputs. With `auxiliary_weight` > 0 a pyramid decoder also trains an auxiliary FCN head
(`heads.decoders.auxiliary_head`), whose loss is added with that weight during training only: validation losses
and predictions are the UPerNet head's alone.

With `features: online` the decoder trains on the frozen encoder's features of a fresh augmented view of every
training image, its masks augmented with it (`training.mask_views`); validation and test use the cached features.

Every learning rate of `lr` (a list is a grid, RayDINO's nine values) trains its own decoder on the same batches:
each batch of features is read once for the whole grid. Schedules: cosine decay (RAD-DINO) or linear warm-up then
linear decay (`warmup_linear`, RayDINO). After every epoch each decoder's validation loss is measured; the decoder
and epoch with the smallest validation loss is kept (RAD-DINO selects the minimum validation loss).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cxrbench.errors import SpecError
from cxrbench.heads.base import LAYER_PREFIX, BatchSource, FeatureSet, FitReport, Head, train_epochs
from cxrbench.heads.decoders import build_decoder
from cxrbench.progress import Progress, SilentProgress

LAYER_CHOICES = ("last", "last4", "default")
SCHEDULES = ("cosine", "warmup_linear")
LOSSES = ("dice", "dicece")


class SegmentationHead(Head):
    kinds = ("mask",)
    needs = ("patches",)  # until `select_inputs` knows the encoder
    work = "heavy"
    sweeps = ("lr",)
    defaults = {
        "architecture": "linear",  # linear | vitdet | upernet (heads.decoders)
        "layers": "last",          # last | last4 | default | a list of 0-based block indices
        "channels": 512,           # UPerNet head width (heads.decoders)
        "pool_scales": [1, 2, 3, 6],
        "dropout": 0.1,
        "pyramid_channels": 256,   # ViTDet's pyramid width
        "loss": "dice",
        "lr": 5e-4,
        "weight_decay": 0.0,
        "epochs": 100,
        "iterations": 0,           # > 0: train this many steps instead of `epochs` (RayDINO: 5000)
        "batch_size": 80,
        "schedule": "cosine",
        "warmup_steps": 0,
        "loss_stride": 4,          # input pixels per loss-grid cell
        "threshold": 0.5,          # probability above which a pixel belongs to the structure
        "auxiliary_weight": 0.0,   # > 0: an auxiliary FCN head trains beside a pyramid decoder (RayDINO: 0.4)
        "auxiliary_channels": 256, # its width (mmsegmentation's FCNHead)
        "score_grid": None,        # None: score on each mask's own grid; N: on an N x N grid (RayDINO: 512)
        "device": "cpu",
        # cached: the features computed once; online: the frozen encoder on augmented image + mask views
        # (training.mask_views, whose parameters `augmentation` sets)
        "features": "cached",
        "augmentation": {},
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        p, where = self.params, f"Head '{self.spec.name}'"
        for key, allowed in (("schedule", SCHEDULES), ("loss", LOSSES)):
            if p[key] not in allowed:
                raise SpecError(f"{where}: {key}={p[key]!r}; choose one of {', '.join(allowed)}.")
        layers = p["layers"]
        if isinstance(layers, str) and layers not in LAYER_CHOICES:
            raise SpecError(f"{where}: layers={layers!r}; choose {', '.join(LAYER_CHOICES)} or a list of block indices.")
        if p["features"] not in ("cached", "online"):
            raise SpecError(f"{where}: features must be cached or online, not {p['features']!r}.")
        if not 0 < p["threshold"] < 1:
            raise SpecError(f"{where}: threshold={p['threshold']!r} must lie between 0 and 1.")
        grid = p["score_grid"]
        if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or grid < 1):
            raise SpecError(f"{where}: score_grid={grid!r}; give a side in pixels (e.g. 512) or null for each mask's grid.")
        self.learning_rates = [float(v) for v in (p["lr"] if isinstance(p["lr"], list) else [p["lr"]])]

    def select_inputs(self, default_layers: Sequence[int], num_layers: int) -> tuple[str, ...]:
        """Fix (as `needs`) and return the cached arrays the decoder reads, for an encoder with these default layers
        and this many blocks."""
        layers = self.params["layers"]
        if layers == "last":
            self.needs = ("patches",)
            return self.needs
        if layers == "last4":
            chosen = list(range(num_layers - 4, num_layers))
        elif layers == "default":
            chosen = list(default_layers)
        else:
            chosen = [int(v) for v in layers]
        if len(chosen) != 4 or min(chosen) < 0:
            raise SpecError(f"Head '{self.spec.name}': layers={layers!r} gives blocks {chosen} of an encoder with "
                            f"{num_layers} blocks; four blocks are needed (layers: last for a single grid).")
        self.needs = tuple(f"{LAYER_PREFIX}{i}" for i in chosen)
        return self.needs

    # -- training ------------------------------------------------------------------------------------------------
    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress(),
            source: BatchSource | None = None) -> FitReport:
        p = self.params
        source = train if source is None else source
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.device = torch.device(p["device"])
        self.cells = tuple(train.labels.shape[2:])
        first = train.patches if self.needs[0] == "patches" else train.layers[int(self.needs[0][len(LAYER_PREFIX):])]
        dim, structures = first.shape[-1], train.labels.shape[1]
        self.decoders = [build_decoder(str(p["architecture"]), dim, len(self.needs), structures, p).to(self.device)
                         for _ in self.learning_rates]
        optimizers = [torch.optim.Adam(d.parameters(), lr=lr, weight_decay=p["weight_decay"])
                      for d, lr in zip(self.decoders, self.learning_rates)]
        n = len(train)
        batch = min(int(p["batch_size"]), n)
        per_epoch = math.ceil(n / batch)
        epochs = math.ceil(p["iterations"] / per_epoch) if p["iterations"] else int(p["epochs"])
        total = p["iterations"] or epochs * per_epoch
        schedules = [torch.optim.lr_scheduler.LambdaLR(o, self._schedule(total)) for o in optimizers]
        labels = train.labels
        steps = [0]

        def batches() -> list[np.ndarray]:
            order = torch.randperm(n, generator=generator).numpy()
            chunks = [order[start : start + batch] for start in range(0, n, batch)]
            if len(chunks) > 1 and len(chunks[-1]) == 1:  # BatchNorm (the pyramid heads) cannot train on one image
                chunks[-2:] = [np.concatenate(chunks[-2:])]
            return chunks[: max(0, total - steps[0])]

        def step(inputs: dict[str, torch.Tensor], rows: np.ndarray) -> float:
            grids = self._grids(inputs)
            if "targets" in inputs:  # an online view's masks, augmented with its image
                target = inputs["targets"].float().to(self.device)
            else:
                target = torch.from_numpy(np.ascontiguousarray(labels[rows], dtype=np.float32)).to(self.device)
            summed = 0.0
            for decoder, optimizer, schedule in zip(self.decoders, optimizers, schedules):
                decoder.train()
                loss = self._training_loss(decoder, grids, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                summed += loss.item()
            steps[0] += 1
            return summed / len(self.decoders) * len(rows)

        table: list[dict] = []
        best = {"loss": math.inf}

        def after_epoch() -> None:
            losses = self._validation_losses(val)
            epoch = len(table) // len(self.decoders) + 1
            for lr, decoder, loss in zip(self.learning_rates, self.decoders, losses):
                table.append({"lr": lr, "epoch": epoch, "val_loss": loss})
                if loss < best["loss"]:
                    best.update(loss=loss, lr=lr, epoch=epoch, state=copy.deepcopy(decoder.state_dict()), decoder=decoder)

        train_losses = train_epochs(source, self.needs, epochs, batches, step, progress,
                                    f"{self.spec.name} decoder, seed {seed}: epochs", after_epoch=after_epoch)
        if "state" not in best:  # no validation images: keep the last epoch of the first learning rate
            best.update(lr=self.learning_rates[0], epoch=epochs, decoder=self.decoders[0], state=self.decoders[0].state_dict())
        self.decoder = best["decoder"]
        self.decoder.load_state_dict(best["state"])
        self.decoder.eval()
        self.decoders = [self.decoder]
        chosen = {"lr": best["lr"], "epoch": best["epoch"], "steps": steps[0], "epochs": epochs,
                  "checkpoint": "minimum validation loss", "trainable_parameters": trainable_parameters(self.decoder)}
        return FitReport(chosen=chosen, history={"train_loss": train_losses, "val_loss": [row["val_loss"] for row in table
                                                                                           if row["lr"] == best["lr"]]},
                         table=table if len(self.learning_rates) > 1 else [])

    def _schedule(self, total: int):
        warmup = int(self.params["warmup_steps"])
        if self.params["schedule"] == "cosine":
            return lambda step: min(1.0, (step + 1) / warmup) if step < warmup else 0.5 * (1 + math.cos(math.pi * step / total))
        return lambda step: (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

    def _grids(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Cached [B, h, w, D] arrays -> the decoder's channels-first [B, D, h, w] grids."""
        return [inputs[name].float().to(self.device).permute(0, 3, 1, 2).contiguous() for name in self.needs]

    def _upsampled(self, logits: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=self.cells, mode="bilinear", align_corners=False)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from monai.losses import DiceCELoss, DiceLoss

        if not hasattr(self, "_loss_fn"):
            self._loss_fn = DiceLoss(sigmoid=True) if self.params["loss"] == "dice" else DiceCELoss(sigmoid=True)
        return self._loss_fn(self._upsampled(logits), target)

    def _training_loss(self, decoder: torch.nn.Module, grids: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """The decoder's loss, plus `auxiliary_weight` times its auxiliary FCN head's where it has one."""
        if getattr(decoder, "auxiliary", None) is None:
            return self._loss(decoder(grids), target)
        logits, auxiliary = decoder.forward_with_auxiliary(grids)
        return self._loss(logits, target) + float(self.params["auxiliary_weight"]) * self._loss(auxiliary, target)

    @torch.no_grad()
    def _validation_losses(self, val: FeatureSet) -> list[float]:
        if len(val) == 0:
            return [math.nan] * len(self.decoders)
        for decoder in self.decoders:
            decoder.eval()
        totals = np.zeros(len(self.decoders))
        for index, inputs in self._in_batches(val):
            grids = self._grids(inputs)
            target = torch.from_numpy(np.ascontiguousarray(val.labels[index], dtype=np.float32)).to(self.device)
            for k, decoder in enumerate(self.decoders):
                totals[k] += self._loss(decoder(grids), target).item() * len(index)
        return (totals / len(val)).tolist()

    def _in_batches(self, features: FeatureSet):
        batch = int(self.params["batch_size"])
        order = [np.arange(start, min(start + batch, len(features))) for start in range(0, len(features), batch)]
        return zip(order, features.epoch(order, 0, self.needs))

    # -- prediction ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, features: FeatureSet) -> np.ndarray:
        """Logits [N, S, h', w'] at the decoder's own output resolution (the evaluation resamples them onto each
        mask's grid through the encoder's geometry)."""
        parts = [self.decoder(self._grids(inputs)).cpu().numpy() for _, inputs in self._in_batches(features)]
        return np.concatenate(parts) if parts else np.zeros((0,), dtype=np.float32)


def trainable_parameters(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
