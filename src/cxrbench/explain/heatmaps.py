"""PNG overlays: a finding's attention map on the preprocessed image, the radiologist boxes and the argmax patch.

The image is the encoder's input as the encoder saw it (same letterbox, resize and crop), shown in grey; the
attention map is upsampled bilinearly from the patch grid to the input pixels it covers and blended in with a
jet-like colour scale spanning the map's minimum to maximum, whose opacity follows the attention (low attention
leaves the grey image visible; a nearly uniform map still shows its ranking, so read the caption's peak value). Boxes are
outlined in green, the argmax patch in yellow when it hits a box and in red when it misses. Small inputs are
enlarged by an integer factor (nearest neighbour) so that the drawing stays legible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.specs import PreprocessSpec

BOX_COLOUR = (0, 230, 64)
HIT_COLOUR = (255, 220, 0)
MISS_COLOUR = (255, 40, 40)
_JET = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])


def display_image(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The encoder input of `image` ([H, W] float in [0, 1]) as one grey channel in [0, 1]: the spec's geometry and
    quantisation, without its channel replication, value range and normalisation."""
    grey = dataclasses.replace(spec, channels=1, mean=(0.0,), std=(1.0,), value_range=(0.0, 1.0))
    return Preprocessor(grey)(image)[0].clamp(0.0, 1.0).numpy()


def upsample_attention(attention: np.ndarray, stride: int, input_size: tuple[int, int]) -> np.ndarray:
    """[H, W] attention -> [input_h, input_w]: bilinear over the H*s x W*s pixels the grid covers, 0 outside."""
    h, w = attention.shape
    grid = torch.as_tensor(np.asarray(attention, dtype=np.float32))[None, None]
    up = F.interpolate(grid, size=(h * stride, w * stride), mode="bilinear", align_corners=False)[0, 0].numpy()
    out = np.zeros(input_size, dtype=np.float32)
    out[: h * stride, : w * stride] = up
    return out


def colormap(values: np.ndarray) -> np.ndarray:
    """[...] in [0, 1] -> [..., 3] RGB in [0, 1] (a jet-like scale)."""
    positions = np.linspace(0.0, 1.0, len(_JET))
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, positions, _JET[:, c]) for c in range(3)], axis=-1)


def render_overlay(
    image: np.ndarray,
    attention: np.ndarray,
    stride: int,
    boxes: Sequence[Sequence[float]],
    argmax: tuple[int, int] | None = None,
    hit: bool | None = None,
    caption: str = "",
    min_side: int = 256,
) -> Image.Image:
    """An RGB picture: `image` [S, S] grey in [0, 1] (encoder-input pixels) with `attention` [H, W] blended in,
    `boxes` (input px) outlined and the `argmax` cell (row, col) outlined; `caption` written in a strip below."""
    input_size = image.shape
    h, w = attention.shape
    heat = upsample_attention(attention, stride, input_size)
    covered = np.zeros(input_size, dtype=bool)
    covered[: h * stride, : w * stride] = True
    low, high = float(np.min(attention)), float(np.max(attention))
    level = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    alpha = (0.1 + 0.55 * np.clip(level, 0, 1))[..., None] * covered[..., None]
    rgb = (1.0 - alpha) * np.repeat(image[..., None], 3, axis=-1) + alpha * colormap(level)
    picture = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    scale = max(1, int(np.ceil(min_side / max(input_size))))
    if scale > 1:
        picture = picture.resize((input_size[1] * scale, input_size[0] * scale), Image.Resampling.NEAREST)
    line = max(1, scale // 2, max(picture.size) // 256)
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=BOX_COLOUR, width=line)
    if argmax is not None:
        row, col = argmax
        s = stride * scale
        colour = MISS_COLOUR if hit is False else HIT_COLOUR
        draw.rectangle([col * s, row * s, (col + 1) * s - 1, (row + 1) * s - 1], outline=colour, width=line)
    if caption:
        strip = Image.new("RGB", (picture.width, 16 * (caption.count("\n") + 1) + 6), (0, 0, 0))
        ImageDraw.Draw(strip).multiline_text((4, 3), caption, fill=(255, 255, 255))
        framed = Image.new("RGB", (picture.width, picture.height + strip.height))
        framed.paste(picture, (0, 0))
        framed.paste(strip, (0, picture.height))
        picture = framed
    return picture


def write_overlay(path: Path, picture: Image.Image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
