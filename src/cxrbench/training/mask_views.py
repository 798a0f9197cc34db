"""Augmented views of an image and its masks together, for segmentation decoders trained online.

RAD-DINO (Table 3) trains its decoders under augmentation applied to image and mask alike: horizontal flip only
where laterality allows (never for left/right lungs, lung zones or ribs), affine, elastic, brightness / contrast
and gamma. The strengths are not published; the defaults below are cxrbench's choice, every one a head parameter
(`augmentation:` of a segmentation head spec):

| parameter           | default      | MONAI transform (image and masks with the same random draw)                      |
|---------------------|--------------|-----------------------------------------------------------------------------------|
| `hflip_p`           | 0            | RandFlipd; refused for targets whose structures have a side (`TargetSpec.lateral`)|
| `affine_p`          | 0.5          | RandAffined: rotation `rotate_degrees` (10), translation `translate` (0.05 of the  |
|                     |              | side), scale 1 +- `scale` (0.1), shear `shear` (0.05); bilinear image, nearest mask |
| `elastic_p`         | 0.2          | Rand2DElasticd: control points every `elastic_spacing` (1/8 of the side), shifts  |
|                     |              | of `elastic_magnitude` (1-2) control-point spacings... in pixels of that grid      |
| `intensity_p`       | 0.5          | RandScaleIntensityd (contrast +- `contrast`, 0.1), RandShiftIntensityd           |
|                     |              | (brightness +- `brightness`, 0.1)                                                 |
| `gamma_p`           | 0.3          | RandAdjustContrastd, gamma in `gamma` (0.7, 1.5)                                  |

Views are made at the encoder's working side (the largest side its preprocessing keeps, as for the classification
probe's online views): the image is resized so that its shorter edge has that side, the masks to the same grid
(area average, then > 0.5). After the random draw the image goes through the encoder's own `Preprocessor` and the
masks through the same geometry to the decoder's loss grid (`encoders.geometry.training_targets`). Every view is
drawn from its own seed (run seed, epoch, image), so a run is reproducible whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cxrbench.data.common.images import read_image
from cxrbench.encoders.geometry import training_targets
from cxrbench.encoders.geometry import InputGeometry
from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.errors import CxrbenchError, SpecError
from cxrbench.training.augment import encoder_work_side, view_seed


@dataclass(frozen=True)
class MaskAugmentation:
    """Strengths of the joint image + mask augmentation (module docstring); a probability of 0 switches a step off."""

    hflip_p: float = 0.0
    affine_p: float = 0.5
    rotate_degrees: float = 10.0
    translate: float = 0.05
    scale: float = 0.1
    shear: float = 0.05
    elastic_p: float = 0.2
    elastic_spacing: float = 0.125
    elastic_magnitude: tuple[float, float] = (1.0, 2.0)
    intensity_p: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    gamma_p: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for name in ("hflip_p", "affine_p", "elastic_p", "intensity_p", "gamma_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SpecError(f"augmentation {name} must be a probability in [0, 1], got {getattr(self, name)}.")
        for name in ("rotate_degrees", "translate", "scale", "shear", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise SpecError(f"augmentation {name} must be >= 0, got {getattr(self, name)}.")
        if not 0 < self.elastic_spacing <= 1:
            raise SpecError(f"augmentation elastic_spacing is a fraction of the side in (0, 1], got {self.elastic_spacing}.")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None, lateral: Sequence[str] = (), where: str = "") -> "MaskAugmentation":
        """From a head's `augmentation:` mapping (unknown keys refused); `lateral`: targets a flip would corrupt."""
        params = dict(params or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SpecError(f"{where}: unknown augmentation parameter(s) {unknown}; known: {sorted(known)}.")
        policy = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
        if policy.hflip_p and lateral:
            raise SpecError(f"{where}: augmentation hflip_p={policy.hflip_p}, but the structures of {', '.join(lateral)} "
                            "have a side (a flip turns a left lung into a right one); set hflip_p=0.")
        return policy

    def transforms(self, side: int):
        """MONAI's dictionary transforms on {"image": [1, H, W], "mask": [S, H, W]} for views of about `side` pixels."""
        from monai.transforms import (Compose, Rand2DElasticd, RandAdjustContrastd, RandAffined, RandFlipd,
                                      RandScaleIntensityd, RandShiftIntensityd)

        both, modes = ["image", "mask"], ("bilinear", "nearest")
        steps = []
        if self.hflip_p:
            steps.append(RandFlipd(both, prob=self.hflip_p, spatial_axis=1))
        if self.affine_p:
            steps.append(RandAffined(both, prob=self.affine_p, rotate_range=np.deg2rad(self.rotate_degrees),
                                     translate_range=(self.translate * side, self.translate * side),
                                     scale_range=(self.scale, self.scale), shear_range=(self.shear, self.shear),
                                     mode=modes, padding_mode="zeros"))
        if self.elastic_p:
            spacing = max(2, int(round(self.elastic_spacing * side)))
            steps.append(Rand2DElasticd(both, spacing=(spacing, spacing), magnitude_range=self.elastic_magnitude,
                                        prob=self.elastic_p, mode=modes, padding_mode="zeros"))
        if self.intensity_p:
            steps.append(RandScaleIntensityd("image", factors=self.contrast, prob=self.intensity_p))
            steps.append(RandShiftIntensityd("image", offsets=self.brightness, prob=self.intensity_p))
        if self.gamma_p:
            steps.append(RandAdjustContrastd("image", prob=self.gamma_p, gamma=self.gamma))
        return Compose(steps)


class MaskViews(Dataset):
    """Item (epoch, index) -> {"pixels": the encoder input of the view, "targets": [S, rows, cols] mask coverage of
    the decoder's loss grid, "index", "error"}: an `ImageViews` for `training.online.OnlineBatches`."""

    def __init__(self, paths: Sequence[str], read_masks: Callable[[int], np.ndarray], structures: int,
                 policy: MaskAugmentation, preprocessor: Preprocessor, covered: tuple[int, int], cells: tuple[int, int],
                 seed: int):
        """`read_masks(index)`: bool [S, H, W] of the `structures` mask structures of image `index` (in the order of the
        decoder's outputs); `covered`: input pixels the patch grid covers; `cells`: the loss grid."""
        self.paths, self.read_masks, self.policy, self.preprocessor = list(paths), read_masks, policy, preprocessor
        self.structures = structures
        self.covered, self.cells, self.seed = covered, cells, seed
        self.side = encoder_work_side(preprocessor.spec)
        self._transforms = policy.transforms(self.side)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        epoch, index = item
        try:
            image, masks = self._working_grid(read_image(self.paths[index]), self.read_masks(index))
            self._transforms.set_random_state(seed=view_seed(self.seed, epoch, index) % (2**32))
            view = self._transforms({"image": image[None], "mask": masks.astype(np.float32)})
            image = np.clip(np.asarray(view["image"], dtype=np.float32)[0], 0.0, 1.0)
            masks = np.asarray(view["mask"]) > 0.5
            geometry = InputGeometry.from_spec(self.preprocessor.spec, *image.shape)
            targets = training_targets(masks, geometry, self.covered, self.cells)
            return {"pixels": self.preprocessor(image), "targets": torch.from_numpy(targets), "index": index, "error": ""}
        except CxrbenchError as exc:  # carried to the main process as text: worker exceptions lose their type
            return {"pixels": torch.zeros(self.preprocessor.spec.channels, *self.preprocessor.output_size),
                    "targets": torch.zeros(self.structures, *self.cells), "index": index, "error": str(exc)}

    def _working_grid(self, image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The image with its shorter edge at the working side (never enlarged) and the masks on the same grid."""
        height, width = image.shape
        ratio = min(1.0, self.side / min(height, width))
        size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
        if size != (height, width):
            image = F.interpolate(torch.from_numpy(image)[None, None], size=size, mode="bilinear", antialias=True,
                                  align_corners=False)[0, 0].numpy()
        grid = F.interpolate(torch.from_numpy(masks.astype(np.float32))[None], size=size, mode="area")[0].numpy() > 0.5
        return image, grid

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.policy), "resolved_work_side": self.side,
                "order": ["resize to work side", "flip", "affine", "elastic", "brightness / contrast", "gamma"]}
