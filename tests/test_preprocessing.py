"""Pin `cxrbench.encoders.preprocessing.Preprocessor` on known pixel values, with the real adapter specs.

Units: one 8-bit level after normalisation is 1 / 255 / std, i.e. 0.0152 for RAD-DINO (std 0.2583) and
up to 0.0175 for the ImageNet statistics (std 0.224 on the green channel).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.errors import SpecError
from cxrbench.registry import encoder_spec

RAD_DINO_MEAN, RAD_DINO_STD = 0.5307, 0.2583
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def spec(name: str):
    return encoder_spec(name).preprocessing


def quantised(v: float) -> float:
    """What an 8-bit pipeline sees for intensity v (half-way values are unambiguous in the cases used)."""
    return round(v * 255) / 255


def smooth_test_image(height: int, width: int) -> np.ndarray:
    """uint8: a diagonal gradient plus a bright disc (sharp edges expose any misplaced pixel)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = 30 + 90 * xx / (width - 1) + 60 * yy / (height - 1)
    disc = (yy - 0.45 * height) ** 2 + (xx - 0.55 * width) ** 2 <= (0.25 * min(height, width)) ** 2
    image[disc] += 60
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ the specs themselves


def test_adapter_specs_declare_the_released_preprocessing():
    rad = spec("rad-dino")
    assert (rad.size, rad.resize, rad.interpolation, rad.crop, rad.quantize_bits, rad.channels) == (
        518,
        "shortest_edge",
        "bicubic",
        518,
        8,
        3,
    )
    assert rad.mean == (RAD_DINO_MEAN,) * 3 and rad.std == (RAD_DINO_STD,) * 3
    dino = spec("dinov2-small")
    assert (dino.size, dino.crop, dino.quantize_bits, dino.channels) == (518, 518, 8, 3)
    assert dino.mean == IMAGENET_MEAN and dino.std == IMAGENET_STD
    pixels = spec("pixels")
    assert (pixels.size, pixels.resize, pixels.interpolation, pixels.crop, pixels.channels) == (32, "square", "area", None, 1)
    assert pixels.quantize_bits is None and pixels.mean == (0.5,) and pixels.std == (0.25,)


# ------------------------------------------------------------------------------------------ constants


def test_constant_image_rad_dino():
    v = 0.4  # 102 / 255 exactly after quantisation
    out = Preprocessor(spec("rad-dino"))(np.full((600, 700), v, dtype=np.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (3, 518, 518)
    expected = (quantised(v) - RAD_DINO_MEAN) / RAD_DINO_STD
    assert abs(expected - (0.4 - RAD_DINO_MEAN) / RAD_DINO_STD) < 1e-6  # 0.4 is an exact 8-bit level
    assert torch.allclose(out, torch.full_like(out, expected), rtol=0, atol=1e-6)


def test_constant_image_off_level_is_quantised():
    v = 0.301  # 76.755 levels -> 77
    out = Preprocessor(spec("rad-dino"))(np.full((600, 700), v, dtype=np.float32))
    expected = (77 / 255 - RAD_DINO_MEAN) / RAD_DINO_STD
    assert torch.allclose(out, torch.full_like(out, expected), rtol=0, atol=1e-6)
    # and not the unquantised value, which is a quarter of a level (0.0037) away
    assert abs(out[0, 0, 0].item() - (v - RAD_DINO_MEAN) / RAD_DINO_STD) > 0.003


def test_constant_image_dinov2_small_per_channel_statistics():
    v = 0.6  # 153 / 255
    out = Preprocessor(spec("dinov2-small"))(np.full((520, 400), v, dtype=np.float32))
    assert tuple(out.shape) == (3, 518, 518)
    for channel in range(3):
        expected = (quantised(v) - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(out[channel], torch.full_like(out[channel], expected), rtol=0, atol=1e-6)
    assert not torch.allclose(out[0], out[2])  # channels really use their own mean/std


@pytest.mark.parametrize("value, level", [(0.5, 128), (0.5 - 0.4 / 255, 127), (0.5 + 0.4 / 255, 128), (0.0, 0), (1.0, 255)])
def test_quantisation_to_8_bits(value, level):
    # 0.5 * 255 = 127.5 rounds to 128 (not truncated to 127); values within 0.5 level snap to it.
    pre = Preprocessor(spec("rad-dino").with_size(28))
    out = pre(np.full((40, 40), value, dtype=np.float32))
    expected = (level / 255 - RAD_DINO_MEAN) / RAD_DINO_STD
    assert torch.allclose(out, torch.full_like(out, expected), rtol=0, atol=1e-6)


def test_out_of_range_input_is_clamped_by_quantisation():
    pre = Preprocessor(spec("rad-dino").with_size(28))
    low = pre(np.full((40, 40), -0.2, dtype=np.float32))
    high = pre(np.full((40, 40), 1.3, dtype=np.float32))
    assert torch.allclose(low, torch.full_like(low, (0 - RAD_DINO_MEAN) / RAD_DINO_STD), atol=1e-6)
    assert torch.allclose(high, torch.full_like(high, (1 - RAD_DINO_MEAN) / RAD_DINO_STD), atol=1e-6)


# ------------------------------------------------------------------------------------------- geometry


BLACK = (0.0 - RAD_DINO_MEAN) / RAD_DINO_STD
WHITE = (1.0 - RAD_DINO_MEAN) / RAD_DINO_STD


def _half_black_half_white(rows: int, cols: int) -> np.ndarray:
    image = np.zeros((rows, cols), dtype=np.float32)
    image[:, cols // 2 :] = 1.0
    return image


def test_shortest_edge_resize_then_centre_crop_landscape():
    # 300 x 600 -> shortest edge 518 -> 518 x 1036 (edge at column 518) -> centre crop 518 from column 259.
    pre = Preprocessor(spec("rad-dino"))
    image = _half_black_half_white(300, 600)
    out = pre(image)

    assert tuple(out.shape) == (3, 518, 518)
    assert torch.equal(out, out[:, :1, :].expand_as(out))  # every row identical
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    row = out[0, 0]
    assert abs(row[10].item() - BLACK) < 1e-6
    assert abs(row[500].item() - WHITE) < 1e-6
    assert torch.allclose(row[:251], torch.full_like(row[:251], BLACK), rtol=0, atol=1e-6)
    assert torch.allclose(row[268:], torch.full_like(row[268:], WHITE), rtol=0, atol=1e-6)
    # The edge sits between columns 258 and 259 (the centre of the crop), symmetrically.
    intensity = row * RAD_DINO_STD + RAD_DINO_MEAN
    assert intensity[258].item() < 0.5 < intensity[259].item()
    assert abs(intensity[258].item() + intensity[259].item() - 1.0) < 1e-5
    assert torch.all(intensity[1:] >= intensity[:-1] - 1e-6)  # monotone: no ringing survives 8-bit clamping

    # Flipping the input left/right flips the output.
    flipped = pre(np.ascontiguousarray(image[:, ::-1]))
    assert torch.allclose(flipped, out.flip(-1), rtol=0, atol=1e-6)
    # and the flipped image is the negative of the original here, so black and white swap.
    assert torch.allclose(flipped, pre(1.0 - image), rtol=0, atol=1e-6)


def test_shortest_edge_resize_then_centre_crop_portrait():
    # The transposed case: 600 x 300 -> 1036 x 518 -> crop rows 259..776.
    pre = Preprocessor(spec("rad-dino"))
    image = np.ascontiguousarray(_half_black_half_white(300, 600).T)
    out = pre(image)
    landscape = pre(_half_black_half_white(300, 600))
    assert tuple(out.shape) == (3, 518, 518)
    assert torch.allclose(out, landscape.transpose(1, 2), rtol=0, atol=1e-6)
    assert abs(out[0, 10, 100].item() - BLACK) < 1e-6 and abs(out[0, 500, 100].item() - WHITE) < 1e-6


def test_crop_keeps_the_centre_and_drops_the_sides():
    # Marks in the outer sixth of a 300 x 600 image fall outside the 518 crop of the 518 x 1036 resize.
    image = np.full((300, 600), 0.5, dtype=np.float32)
    image[:, :40] = 0.0
    image[:, -40:] = 1.0
    out = Preprocessor(spec("rad-dino"))(image)
    expected = (quantised(0.5) - RAD_DINO_MEAN) / RAD_DINO_STD
    assert torch.allclose(out, torch.full_like(out, expected), rtol=0, atol=1e-6)


def test_with_size_override():
    base = spec("rad-dino")
    small = base.with_size(224)
    assert (small.size, small.crop) == (224, 224)
    assert dataclasses.replace(small, size=518, crop=518) == base  # nothing else changes
    pre = Preprocessor(small)
    assert pre.output_size == (224, 224)
    out = pre(np.full((300, 450), 0.4, dtype=np.float32))
    assert tuple(out.shape) == (3, 224, 224)
    assert torch.allclose(out, torch.full_like(out, (quantised(0.4) - RAD_DINO_MEAN) / RAD_DINO_STD), atol=1e-6)
    assert Preprocessor(base).output_size == (518, 518)
    # Geometry scales too: the half/half edge is still at the centre of a 224 crop.
    edge = pre(_half_black_half_white(300, 600))[0, 0] * RAD_DINO_STD + RAD_DINO_MEAN
    assert edge[:100].max().item() < 1e-6 and edge[124:].min().item() > 1 - 1e-6
    assert edge[111].item() < 0.5 < edge[112].item()


# ----------------------------------------------------------------------------------------- pixels spec


def test_pixels_spec_is_2x2_block_mean():
    rng = np.random.default_rng(0)
    image = rng.random((64, 64)).astype(np.float32)
    pre = Preprocessor(spec("pixels"))
    assert pre.output_size == (32, 32)

    out = pre(image)

    assert tuple(out.shape) == (1, 32, 32) and out.dtype == torch.float32
    blocks = image.astype(np.float64).reshape(32, 2, 32, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out[0].numpy(), (blocks - 0.5) / 0.25, rtol=0, atol=1e-5)
    # no 8-bit quantisation for this spec: values off the 8-bit grid survive
    assert not np.allclose(np.round(blocks * 255) / 255, blocks, atol=1e-4)


def test_pixels_spec_known_pattern():
    # 2x2 blocks of (0, 1 / 1, 0) average to exactly 0.5 -> 0; a block of 1s in the corner -> (1 - 0.5) / 0.25 = 2.
    image = np.tile(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32), (32, 32))
    image[:2, :2] = 1.0
    image[-2:, -2:] = 0.0
    out = Preprocessor(spec("pixels"))(image)[0]
    expected = torch.zeros(32, 32)
    expected[0, 0] = 2.0
    expected[-1, -1] = -2.0
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


def test_pixels_spec_square_resize_of_non_square_image():
    # 64 x 128 -> 32 x 32 by area: 2 x 4 block means (aspect ratio not kept, nothing cropped).
    rng = np.random.default_rng(1)
    image = rng.random((64, 128)).astype(np.float32)
    out = Preprocessor(spec("pixels"))(image)
    blocks = image.astype(np.float64).reshape(32, 2, 32, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(out[0].numpy(), (blocks - 0.5) / 0.25, rtol=0, atol=1e-5)


def test_pixels_spec_with_size():
    small = spec("pixels").with_size(16)
    assert small.crop is None
    image = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    out = Preprocessor(small)(image)
    blocks = image.astype(np.float64).reshape(16, 4, 16, 4).mean(axis=(1, 3))
    assert tuple(out.shape) == (1, 16, 16)
    np.testing.assert_allclose(out[0].numpy(), (blocks - 0.5) / 0.25, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------- spec checking


def test_preprocessor_rejects_bad_statistics():
    base = spec("rad-dino")
    with pytest.raises(SpecError, match="mean"):
        Preprocessor(dataclasses.replace(base, mean=(0.5, 0.5)))
    with pytest.raises(SpecError, match="std"):
        Preprocessor(dataclasses.replace(base, std=(0.2, 0.0, 0.2)))
    Preprocessor(dataclasses.replace(base, mean=(0.5,), std=(0.25,)))  # one value broadcasts


# ------------------------------------------------------------------ faithfulness to the released processor

transformers = pytest.importorskip("transformers")

PROCESSOR_CLASSES = [
    # transformers 5: BitImageProcessor is the torchvision backend; BitImageProcessorPil resizes with PIL,
    # as transformers 4.x's BitImageProcessor did when microsoft/rad-dino's processor was released (2024).
    "BitImageProcessor",
    "BitImageProcessorPil",
]
STATISTICS = {"rad-dino": ([RAD_DINO_MEAN] * 3, [RAD_DINO_STD] * 3), "dinov2-small": (list(IMAGENET_MEAN), list(IMAGENET_STD))}


def released_processor(class_name: str, encoder: str):
    cls = getattr(transformers, class_name, None)
    if cls is None:
        pytest.skip(f"transformers {transformers.__version__} has no {class_name}")
    mean, std = STATISTICS[encoder]
    return cls(
        do_resize=True,
        size={"shortest_edge": 518},
        resample=3,  # PIL bicubic
        do_center_crop=True,
        crop_size={"height": 518, "width": 518},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=mean,
        image_std=std,
        do_convert_rgb=True,
    )


def compare_with_released(class_name: str, encoder: str, u8: np.ndarray) -> tuple[float, float]:
    """(max, mean) |ours - released| in units of one 8-bit level."""
    processor = released_processor(class_name, encoder)
    reference = processor(images=Image.fromarray(u8, mode="L").convert("RGB"), return_tensors="pt")["pixel_values"][0]
    ours = Preprocessor(spec(encoder))(u8.astype(np.float32) / 255)
    assert ours.shape == reference.shape == (3, 518, 518)
    level = torch.tensor(STATISTICS[encoder][1], dtype=torch.float32).view(3, 1, 1).reciprocal() / 255
    diff_levels = (ours - reference.float()).abs() / level
    return diff_levels.max().item(), diff_levels.mean().item()


# Shapes whose (resized long edge - 518) is even, so the centre crop offset is unambiguous:
#   400 x 530 -> 518 x 686 (left 84); 530 x 400 -> 686 x 518 (top 84); 700 x 900 -> 518 x 666 (downscale, left 74);
#   400 x 400 -> 518 x 518 (no crop).
UNAMBIGUOUS_SHAPES = [(400, 530), (530, 400), (700, 900), (400, 400)]


@pytest.mark.parametrize("class_name", PROCESSOR_CLASSES)
@pytest.mark.parametrize("encoder", ["rad-dino", "dinov2-small"])
@pytest.mark.parametrize("shape", UNAMBIGUOUS_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_matches_released_processor(shape, encoder, class_name):
    # Both pipelines read the same 8-bit pixels, resize in uint8 with an antialiased Keys bicubic (a = -0.5)
    # and round to uint8, so they can differ only where an interpolated value lands within float error of a
    # rounding boundary: by at most one level, at a small fraction of pixels. Observed (torch 2.14,
    # torchvision 0.29, Pillow 13, transformers 5.23): 0 against BitImageProcessor, <= 1 level at ~1e-4 of
    # the values against BitImageProcessorPil.
    max_levels, mean_levels = compare_with_released(class_name, encoder, smooth_test_image(*shape))
    assert max_levels <= 1.0 + 1e-4, f"max |diff| = {max_levels:.2f} 8-bit levels"
    assert mean_levels < 0.01, f"mean |diff| = {mean_levels:.4f} 8-bit levels"


def test_centre_crop_offset_matches_released_processor():
    # When the resized long edge minus the crop is odd the two halves of the margin differ by one pixel.
    # Hugging Face (both backends) puts the smaller half first: top/left = (H - crop) // 2. 400 x 520 resizes
    # to 518 x 673, margin 155, so HF crops columns 77..594. torchvision's center_crop uses
    # int(round(155 / 2)) = round(77.5) = 78 (round-half-to-even), i.e. one column to the right.
    u8 = smooth_test_image(400, 520)
    rad = spec("rad-dino")
    ours = Preprocessor(rad)(u8.astype(np.float32) / 255)
    uncropped = Preprocessor(dataclasses.replace(rad, crop=None))(u8.astype(np.float32) / 255)
    assert tuple(uncropped.shape) == (3, 518, 673)
    offsets = [left for left in range(673 - 518 + 1) if torch.equal(uncropped[..., left : left + 518], ours)]
    max_levels, mean_levels = compare_with_released("BitImageProcessor", "rad-dino", u8)
    assert offsets == [(673 - 518) // 2] and max_levels <= 1.0 + 1e-4, (
        f"Preprocessor crops 400x520 (resized 518x673) at column offset {offsets}, the released processor at "
        f"{(673 - 518) // 2}; max |diff| vs BitImageProcessor = {max_levels:.1f} 8-bit levels, mean {mean_levels:.3f}. "
        "Bug in src/cxrbench/encoders/preprocessing.py: TF.center_crop rounds half the margin to even; "
        "crop at ((H - crop) // 2, (W - crop) // 2) as transformers does."
    )
