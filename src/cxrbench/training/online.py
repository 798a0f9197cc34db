"""Training inputs computed online: the frozen encoder on a fresh augmented view of every image at every step.

RAD-DINO (appendix E.3.1) trains its classification probes this way: every training image is decoded, augmented
(`cxrbench.training.augment`: flip, crop, affine, colour jitter, noise) and encoded again at every epoch, the
encoder frozen. `OnlineBatches` is a `cxrbench.heads.base.BatchSource`: a gradient head trains on it with exactly
the loop, optimiser and schedule it uses on cached features; only its inputs differ. Validation and test images
are scored from the cached, un-augmented features like every other head's.

Cost: ~`epochs` encoder passes over the training set instead of one. RAD-DINO's ViT-B/14 at 518 px took ~2.8 s
per image on this project's 2-core CPU: the 15,000 VinDr training images x 100 epochs are ~1.5 M forward passes,
about 48 days of CPU, against ~14 h for the one cached pass. The paper used 8 V100s: plan on a GPU (decoding
workers start by default there) for anything but small subsets.

Determinism: every augmented view derives from (seed, epoch, image index) (`augment.view_seed`), and the head
fixes the batches; a CPU run is reproducible bit for bit whatever the number of decoding workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cxrbench.data.common.images import DATASET_FIX, read_image
from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.errors import CxrbenchError, ImageReadError, SpecError
from cxrbench.features.extract import default_workers
from cxrbench.heads.base import CLS_LAYER_PREFIX, LAYER_PREFIX
from cxrbench.progress import Progress, SilentProgress
from cxrbench.training.augment import AugmentationParams, AugmentationPolicy, view_seed


def augmentation_policy(params: Mapping[str, Any], encoder: Encoder, where: str) -> AugmentationPolicy:
    """The policy of a head's `augmentation:` parameters (unknown keys and bad values refused, naming the head)."""
    try:
        return AugmentationPolicy(AugmentationParams.from_dict(dict(params)), encoder.preprocessing)
    except (SpecError, TypeError, ValueError) as exc:
        raise SpecError(f"{where}: augmentation: {exc}") from None


class ImageViews(Dataset):
    """Item (epoch, index) -> {"pixels": the encoder input of that epoch's augmented view, "index", "error": text}.

    The views an `OnlineBatches` encodes; a view set may add entries that depend on the augmentation (a
    segmentation view adds its mask's "targets", `training.mask_views`), which reach the head with the features.
    """

    def __init__(self, paths: Sequence[str], policy: AugmentationPolicy, preprocessor: Preprocessor, seed: int):
        self.paths, self.policy, self.preprocessor, self.seed = list(paths), policy, preprocessor, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        try:
            view = self.policy(read_image(self.paths[index]), view_seed(self.seed, epoch, index))
            return {"pixels": self.preprocessor(view), "index": index, "error": ""}
        except CxrbenchError as exc:  # carried to the main process as text: worker exceptions lose their type
            return {"pixels": torch.zeros(self.preprocessor.spec.channels, *self.preprocessor.output_size), "index": index,
                    "error": str(exc)}

    def describe(self) -> dict[str, Any]:
        return self.policy.describe()


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


class OnlineBatches:
    """The frozen `encoder`'s features of augmented `views` (`ImageViews`; rows in the order of the head's labels)."""

    def __init__(self, encoder: Encoder, views: Dataset, device: str = "cpu", num_workers: int | None = None,
                 progress: Progress = SilentProgress()):
        self.encoder, self.views, self.device = encoder, views, device
        self.workers = default_workers(device) if num_workers is None else num_workers
        self.progress = progress
        model = encoder.model
        if model is not None:  # frozen whatever the caller did to it: eval mode (no dropout, fixed norms), no gradients
            model.eval().requires_grad_(False)
        encoder.to(device)
        progress.note(f"online features of {encoder.spec.name}: every epoch encodes an augmented view of each of the "
                      f"{len(views)} training images again (the cached features are computed once).")

    def __len__(self) -> int:
        return len(self.views)

    def describe(self) -> dict[str, Any]:
        return {"features": "online", "num_workers": self.workers, "augmentation": self.views.describe()}

    def epoch(self, batches: Sequence[np.ndarray], epoch: int, needs: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
        layers = tuple(int(n[len(LAYER_PREFIX):]) for n in needs if n.startswith(LAYER_PREFIX))
        cls_layers = tuple(int(n[len(CLS_LAYER_PREFIX):]) for n in needs if n.startswith(CLS_LAYER_PREFIX))
        request = FeatureRequest(global_embedding=True, patch_tokens="patches" in needs, layers=layers,
                                 cls_layers=cls_layers)
        self.encoder.check_request(request)
        loader = DataLoader(
            self.views, batch_sampler=[[(epoch, int(i)) for i in batch] for batch in batches], num_workers=self.workers,
            worker_init_fn=_single_thread_worker if self.workers else None, pin_memory=str(self.device).startswith("cuda"),
        )
        advance = self.progress.task(f"online features of {self.encoder.spec.name}, epoch {epoch + 1}", len(self.views),
                                     transient=True)
        for batch in loader:
            failed = [e for e in batch["error"] if e]
            if failed:
                raise ImageReadError(f"{failed[0]} {DATASET_FIX}")
            with torch.no_grad():
                features = self.encoder.encode(batch["pixels"].to(self.device, non_blocking=True), request)
            # encoders run under inference mode; a head's autograd may keep its inputs, so they become ordinary tensors
            inputs = {"global": features.global_embedding.clone()}
            if "patches" in needs:
                inputs["patches"] = features.patch_tokens.clone()
            inputs.update({f"{LAYER_PREFIX}{i}": features.layers[i].clone() for i in layers})
            inputs.update({f"{CLS_LAYER_PREFIX}{i}": features.cls_layers[i].clone() for i in cls_layers})
            inputs.update({k: v for k, v in batch.items() if k not in ("pixels", "index", "error")})
            advance(len(batch["pixels"]))
            yield inputs
