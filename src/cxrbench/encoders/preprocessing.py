"""Apply a declared `PreprocessSpec` to a decoded image.

Why a single interpreter instead of per-model transforms: the spec is data, so it is hashed into the
cache key, shown by `cxrbench list`, and pinned by tests on known pixel values.

With `quantize_bits: 8` the image is rounded to 8 bits before and after resizing, as the released
Hugging Face processors do when they receive 8-bit images (resize in uint8, then rescale by 1/255).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from cxrbench.errors import SpecError
from cxrbench.specs import PreprocessSpec

_MODES = {
    "nearest": InterpolationMode.NEAREST_EXACT,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


# Bumped whenever the interpretation of a spec changes, so cached features of the old behaviour are not reused.
PIPELINE_VERSION = 1


def centre_crop(x: torch.Tensor, side: int, offset: str = "floor") -> torch.Tensor:
    """A square centre crop; `offset` decides odd margins: 'floor' (Hugging Face processors) or 'round'
    (torchvision's CenterCrop, half to even). Pads with black when the image is too small."""
    height, width = x.shape[-2:]
    if height < side or width < side:
        pad_h, pad_w = max(0, side - height), max(0, side - width)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        height, width = x.shape[-2:]
    if offset == "round":
        top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    else:
        top, left = (height - side) // 2, (width - side) // 2
    return x[..., top : top + side, left : left + side]


def letterbox(x: torch.Tensor, side: int) -> torch.Tensor:
    """Longest edge to `side` (sizes truncated), PIL Lanczos, pasted centred on black: CheXzero's stored images.
    Returns float in [0, 1] (the letterboxed 8-bit values are what the model was trained on)."""
    if x.dtype != torch.uint8:
        raise SpecError("preprocessing.letterbox needs quantize_bits: 8 (it reproduces an 8-bit PIL pipeline).")
    image = Image.fromarray(x[0].numpy())
    ratio = side / max(image.size)
    new_size = tuple(int(v * ratio) for v in image.size)
    canvas = Image.new("L", (side, side))
    canvas.paste(image.resize(new_size, Image.Resampling.LANCZOS), ((side - new_size[0]) // 2, (side - new_size[1]) // 2))
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)[None]


class Preprocessor:
    def __init__(self, spec: PreprocessSpec):
        channels = spec.channels
        for name, values in (("mean", spec.mean), ("std", spec.std)):
            if len(values) not in (1, channels):
                raise SpecError(f"preprocessing.{name} has {len(values)} values; give 1 or {channels} (one per channel).")
        if any(s <= 0 for s in spec.std):
            raise SpecError("preprocessing.std values must be positive.")
        self.spec = spec
        self._mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)

    @property
    def output_size(self) -> tuple[int, int]:
        side = self.spec.crop or self.spec.size
        return side, side

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """[H, W] float in [0, 1] -> [C, S, S] float32 network input."""
        spec = self.spec
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        levels = 2**spec.quantize_bits - 1 if spec.quantize_bits else None
        if levels == 255:
            x = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
        elif levels:
            x = (x * levels).round() / levels
        if spec.letterbox:
            x = letterbox(x, spec.letterbox)
        x = self._resize(x)
        if spec.crop is not None:
            x = centre_crop(x, spec.crop, spec.crop_offset)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x
        low, high = spec.value_range
        if (low, high) != (0.0, 1.0):
            x = low + x * (high - low)
        if spec.channels != 1:
            x = x.expand(spec.channels, -1, -1)
        return ((x - self._mean) / self._std).contiguous()

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        height, width = x.shape[-2:]
        if spec.resize == "shortest_edge":
            short, long = min(height, width), max(height, width)
            new_long = int(spec.size * long / short)
            size = [spec.size, new_long] if height <= width else [new_long, spec.size]
        else:
            size = [spec.size, spec.size]
        if spec.interpolation == "area":
            resized = F.interpolate(x[None].float(), size=size, mode="area")[0]
            resized = resized.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else resized
        else:
            resized = TF.resize(x, size, interpolation=_MODES[spec.interpolation], antialias=spec.antialias)
        return resized
