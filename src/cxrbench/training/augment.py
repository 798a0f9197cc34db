"""The training-time augmentation policy of RAD-DINO's classification probes, on decoded X-rays.

RAD-DINO (Pérez-García et al., appendix E.3.1) lists the augmentations but not their strengths: "random
horizontal flip, random cropping, random affine transform, random colour jittering, and random Gaussian
noise". The defaults below come from the closest published source, the chest X-ray linear-head augmentation
config of the same Microsoft Health Futures group (InnerEye-DeepLearning,
`InnerEye/ML/configs/ssl/cxr_linear_head_augmentations.yaml`, and its pipeline
`create_cxr_transform_pipeline_from_config`, which fixes the order affine -> crop -> flip -> colour -> noise):

| parameter                   | default        | source                                                                  |
|-----------------------------|----------------|-------------------------------------------------------------------------|
| `hflip_p`                   | 0.5            | InnerEye CXR linear-head config (`random_horizontal_flip.prob`)         |
| `affine_degrees`            | 30             | same (`random_affine.max_angle`)                                        |
| `affine_translate`          | (0, 0)         | same (`max_horizontal_shift`, `max_vertical_shift`)                     |
| `affine_shear`              | 15 (x only)    | same (`max_shear`, passed to torchvision as a scalar)                   |
| `affine_scale`              | None (no zoom) | same (not set there)                                                    |
| `crop_scale`                | (0.8, 1.0)     | same (`random_crop.scale`, torchvision RandomResizedCrop)               |
| `crop_ratio`                | (3/4, 4/3)     | torchvision's default, which InnerEye used                              |
| `brightness`, `contrast`    | 0.2, 0.2       | same (`random_color`); saturation is meaningless for grey images        |
| `noise_std`, `noise_p`      | 0.01, 0.5      | InnerEye's default `gaussian_noise` config (std 0.01, p_apply 0.5); the |
|                             |                | linear-head config switches noise off, RAD-DINO switches it on          |
| `interpolation`             | bilinear       | cxrbench's choice (torchvision's affine default is nearest neighbour)   |
| `work_side`                 | "encoder"      | cxrbench's choice, see below                                            |

Where the policy runs: on the decoded float image in [0, 1] (`cxrbench.data.common.images.read_image`), BEFORE the
encoder's own `Preprocessor`, so every encoder still receives its released resize / crop / quantisation /
normalisation. The geometric steps keep the image's shape (the random crop is resized back to the size it was
cropped from), and the noise is clipped to [0, 1].

`work_side`: a real radiograph is ~3000 px, the encoders see 224-518 px. Noise added at 3000 px is averaged away
by the encoder's antialiased downsampling (std 0.01 becomes ~0.002, below one 8-bit grey level), and warping
3000x3000 floats costs more than it needs to. With `work_side="encoder"` (the default) the decoded image is
first resized (bilinear, antialiased, never enlarged) so that its shorter edge equals the largest side the
encoder's preprocessing keeps (max of size, crop, letterbox): at most what the encoder would keep anyway, so the
encoder's own resize afterwards is (nearly) the identity and the noise has the strength it was specified with.
`work_side=None` augments at the native resolution; an int sets the shorter edge explicitly.

Reproducibility: every view is drawn from its own seed, derived from (run seed, epoch, image index), so the
same run gives the same views whatever the number of DataLoader workers or the batch composition, and
different epochs give different views. torchvision's v2 transforms draw from the global torch RNG; the policy
forks it for each view (`torch.random.fork_rng`), so the caller's RNG state is left untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from cxrbench.errors import SpecError
from cxrbench.specs import PreprocessSpec

_INTERPOLATION = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}


@dataclass(frozen=True)
class AugmentationParams:
    """Strengths of the RAD-DINO probe augmentations (see the module docstring for where each comes from).
    Setting a probability or strength to 0 (crop_scale to (1, 1)) switches that augmentation off; `enabled: false`
    switches all of them off (an online probe on un-augmented images, for ablations)."""

    enabled: bool = True
    hflip_p: float = 0.5
    affine_degrees: float = 30.0
    affine_translate: tuple[float, float] = (0.0, 0.0)
    affine_scale: tuple[float, float] | None = None
    affine_shear: float = 15.0
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    brightness: float = 0.2
    contrast: float = 0.2
    noise_std: float = 0.01
    noise_p: float = 0.5
    interpolation: str = "bilinear"
    work_side: int | str | None = "encoder"

    def __post_init__(self) -> None:
        for name in ("hflip_p", "noise_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SpecError(f"augmentation {name} must be a probability in [0, 1], got {getattr(self, name)}.")
        for name in ("affine_degrees", "affine_shear", "brightness", "contrast", "noise_std"):
            if getattr(self, name) < 0:
                raise SpecError(f"augmentation {name} must be >= 0, got {getattr(self, name)}.")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise SpecError(f"augmentation crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if self.interpolation not in _INTERPOLATION:
            raise SpecError(f"augmentation interpolation must be one of {sorted(_INTERPOLATION)}, got '{self.interpolation}'.")
        if not (self.work_side is None or self.work_side == "encoder" or (isinstance(self.work_side, int) and self.work_side > 1)):
            raise SpecError(f"augmentation work_side must be 'encoder', null or an integer > 1, got {self.work_side!r}.")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> "AugmentationParams":
        """From a params dict (YAML / CLI overrides): unknown keys are refused, lists become tuples."""
        params = dict(params or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise SpecError(f"Unknown augmentation parameter(s) {unknown}; known: {sorted(known)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def view_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one (run seed, epoch, image) view; independent streams for neighbouring inputs."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) + 1, int(index) + 1]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def encoder_work_side(spec: PreprocessSpec) -> int:
    """The largest side the encoder's preprocessing keeps: augmenting at this shorter edge loses nothing it uses."""
    return max(spec.size, spec.crop or 0, spec.letterbox or 0)


class AugmentationPolicy:
    """Decoded image [H, W] float in [0, 1] + seed -> augmented image, float32 in [0, 1]."""

    def __init__(self, params: AugmentationParams = AugmentationParams(), preprocessing: PreprocessSpec | None = None):
        self.params = params
        if not params.enabled:  # exactly the encoder's normal input: no working resize, no random step
            self.work_side = None
            params = dataclasses.replace(params, hflip_p=0.0, affine_degrees=0.0, affine_translate=(0.0, 0.0), affine_scale=None,
                                         affine_shear=0.0, crop_scale=(1.0, 1.0), brightness=0.0, contrast=0.0, noise_std=0.0)
        elif params.work_side == "encoder":
            self.work_side = None if preprocessing is None else encoder_work_side(preprocessing)
        else:
            self.work_side = params.work_side
        p = params
        self._interpolation = _INTERPOLATION[p.interpolation]
        self._affine = None
        if p.affine_degrees or p.affine_shear or any(p.affine_translate) or p.affine_scale is not None:
            self._affine = v2.RandomAffine(
                degrees=p.affine_degrees,
                translate=tuple(p.affine_translate) if any(p.affine_translate) else None,
                scale=p.affine_scale,
                shear=p.affine_shear or None,
                interpolation=self._interpolation,
                fill=0.0,
            )
        self._crop = tuple(p.crop_scale) != (1.0, 1.0)
        self._crop_scale, self._crop_ratio = tuple(p.crop_scale), tuple(p.crop_ratio)
        self._tail = v2.Compose(
            [v2.Identity()]
            + ([v2.RandomHorizontalFlip(p.hflip_p)] if p.hflip_p else [])
            + ([v2.ColorJitter(brightness=p.brightness or None, contrast=p.contrast or None)] if p.brightness or p.contrast else [])
            + ([v2.RandomApply([v2.GaussianNoise(mean=0.0, sigma=p.noise_std, clip=True)], p=p.noise_p)] if p.noise_std and p.noise_p else [])
        )

    def _working_image(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.work_side is None or min(height, width) <= self.work_side:
            return x
        return v2.functional.resize(x, self.work_side, interpolation=InterpolationMode.BILINEAR, antialias=True)

    def transform(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """One random view from the global torch RNG: [H, W] -> [1, H', W'] float32 in [0, 1]."""
        x = torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32) if isinstance(image, np.ndarray) else image)
        x = self._working_image(x.float().reshape(1, *x.shape[-2:]))
        if self._affine is not None:
            x = self._affine(x)
        if self._crop:
            size = list(x.shape[-2:])
            crop = v2.RandomResizedCrop(size, scale=self._crop_scale, ratio=self._crop_ratio,
                                        interpolation=self._interpolation, antialias=True)
            x = crop(x)
        return self._tail(x).clamp(0.0, 1.0)  # out of place: never writes into the caller's array

    def __call__(self, image: np.ndarray | torch.Tensor, seed: int) -> np.ndarray:
        """The view of `image` for `seed` (same seed, same view), as [H', W'] float32 ready for a `Preprocessor`."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            view = self.transform(image)
        return view[0].numpy()

    def describe(self) -> dict[str, Any]:
        """What was applied, for the run's resolved config."""
        return {**self.params.to_dict(), "resolved_work_side": self.work_side,
                "order": ["resize to work_side", "affine", "random resized crop", "horizontal flip", "colour jitter", "gaussian noise"]}
