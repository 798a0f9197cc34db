"""Segmentation decoders trained on frozen ViT patch grids: linear, ViTDet and UPerNet (RAD-DINO Table 3).

A plain ViT gives one resolution only (the patch grid, e.g. 37 x 37 for 518-pixel images and 14-pixel
patches), so the three decoders differ in how much spatial detail they can recover from it:

* ``linear`` (DINOv2's "linear"/"seg-linear-4"): BatchNorm + 1x1 conv per patch token; it measures how
  linearly separable the structures are in the patch embeddings and predicts at the patch grid.
* ``vitdet``: the ViTDet simple feature pyramid (Li et al. 2022) built from the LAST layer only, then the
  UPerNet head.
* ``upernet``: four intermediate layers rescaled to four strides (BEiT / mmsegmentation ``Feature2Pyramid``)
  then the UPerNet head (Xiao et al. 2018).

Every decoder takes ``list[Tensor]`` of channels-first grids ``[B, D, h, w]`` (non-square grids are fine) and
returns multi-label logits ``[B, classes, f*h, f*w]`` with ``f = output_stride_factor(architecture)``: the
decoder's native resolution. The trainer, not the decoder, upsamples them bilinearly to the mask size, so a
decoder never needs to know the image size. There is no background channel: one sigmoid logit per structure.

Both pyramid decoders use BatchNorm in the head (as in mmsegmentation): train them with batches of at least
two images, since the pool-scale-1 branch of the pyramid pooling module sees one value per channel and image.
The UPerNet head is transformers' maintained ``UperNetHead`` (a port of mmsegmentation's ``UPerHead``), so this
module only adds the necks and the dropout that ``UperNetHead`` lacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from timm.layers import LayerNorm2d
from torch import nn
from transformers import UperNetConfig
from transformers.models.upernet.modeling_upernet import UperNetFCNHead, UperNetHead

from cxrbench.errors import SpecError

DEFAULT_CHANNELS = 512
DEFAULT_PYRAMID_CHANNELS = 256
DEFAULT_POOL_SCALES = (1, 2, 3, 6)
DEFAULT_DROPOUT = 0.1
DEFAULT_AUXILIARY_CHANNELS = 256
#: the pyramid level the auxiliary FCN head reads (mmsegmentation's `in_index=2`: the third of four, at the grid's stride)
AUXILIARY_LEVEL = 2


def _check_grid_count(grids: Sequence[torch.Tensor], expected: int, name: str) -> None:
    """Fail loudly when the trainer passes the wrong number of layers (concatenation would silently misalign)."""
    if len(grids) != expected:
        raise ValueError(f"{name} decoder expects {expected} feature grid(s), got {len(grids)}.")


class LinearDecoder(nn.Module):
    """DINOv2's linear segmentation head: BatchNorm2d over the (concatenated) channels, then a 1x1 conv.

    With ``inputs=4`` the grids of four layers are concatenated along channels first ("seg-linear-4").
    Trainable parameters: the conv has ``inputs*D*classes + classes`` (769 for D=768, one input, one class, the
    number RAD-DINO Table 3 lists) and the BatchNorm adds its ``2*inputs*D`` affine parameters (1,536 more
    for D=768), which the paper does not count. BatchNorm is kept because frozen ViT features have very
    different scales per channel, which a single 1x1 conv trained with Adam handles poorly.
    """

    output_stride_factor = 1

    def __init__(self, in_channels: int, inputs: int, classes: int) -> None:
        super().__init__()
        self.inputs = inputs
        self.norm = nn.BatchNorm2d(in_channels * inputs)
        self.classifier = nn.Conv2d(in_channels * inputs, classes, kernel_size=1)

    def forward(self, grids: list[torch.Tensor]) -> torch.Tensor:
        _check_grid_count(grids, self.inputs, "linear")
        return self.classifier(self.norm(torch.cat(grids, dim=1)))


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid: four strides (4x, 2x, 1x, 0.5x the patch grid) from ONE grid.

    As in detectron2's ``SimpleFeaturePyramid`` (scale factors 4, 2, 1, 0.5, LayerNorm): the 4x level is
    ConvTranspose(D, D/2) -> LayerNorm -> GELU -> ConvTranspose(D/2, D/4), the 2x level ConvTranspose(D, D/2),
    the 1x level the grid itself and the 0.5x level a 2x2 max-pool; every level is then projected to a common
    width by a 1x1 conv and a 3x3 conv, each without bias and followed by a LayerNorm. ViTDet's point is that
    the last layer alone suffices once it is rescaled, which is what this decoder tests on frozen features.
    For D=768 and width 256 the pyramid has 5,560,000 parameters. D must be divisible by 4.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half, quarter = in_channels // 2, in_channels // 4
        rescales = [
            nn.Sequential(
                nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2),
                LayerNorm2d(half),
                nn.GELU(),
                nn.ConvTranspose2d(half, quarter, kernel_size=2, stride=2),
            ),
            nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        ]
        widths = [quarter, half, in_channels, in_channels]
        self.levels = nn.ModuleList(
            nn.Sequential(
                rescale,
                nn.Conv2d(width, out_channels, kernel_size=1, bias=False),
                LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                LayerNorm2d(out_channels),
            )
            for rescale, width in zip(rescales, widths)
        )

    def forward(self, grids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        (grid,) = grids
        return [level(grid) for level in self.levels]


class MultiLayerPyramid(nn.Module):
    """Four intermediate layers rescaled to strides 4x, 2x, 1x and 0.5x the patch grid, keeping all D channels.

    The BEiT / mmsegmentation ViT+UPerNet neck (``Feature2Pyramid``): the earliest layer goes through
    ConvTranspose(D, D) -> BatchNorm -> GELU -> ConvTranspose(D, D), the second through one ConvTranspose(D, D),
    the third is used as is and the last is max-pooled 2x2. Early layers keep more spatial detail, so they take
    the fine levels. ``3 * (4*D*D + D) + 2*D`` parameters: 7,081,728 for D=768.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2),
                    nn.BatchNorm2d(in_channels),
                    nn.GELU(),
                    nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2),
                ),
                nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2),
                nn.Identity(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            ]
        )

    def forward(self, grids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [level(grid) for level, grid in zip(self.levels, grids)]


def uper_head(
    in_channels: list[int], channels: int, pool_scales: Sequence[int], dropout: float, classes: int
) -> UperNetHead:
    """transformers' ``UperNetHead`` with mmsegmentation's Dropout2d before the 1x1 classifier.

    The head: a pyramid pooling module on the coarsest level (one 1x1 conv per pool scale, then a 3x3
    bottleneck), FPN laterals (1x1) and FPN convs (3x3) on the other levels, a 3x3 fusion conv over the
    four levels upsampled to the finest, then the classifier; every conv but the classifier is
    conv (no bias) + BatchNorm + ReLU. ``UperNetHead`` has no dropout, while mmsegmentation's ``UPerHead``
    (the configuration behind the published numbers) drops whole channels with p=0.1 before the classifier,
    so the classifier is wrapped; dropout has no parameters, so the counts are unchanged. The auxiliary FCN
    head is separate (``auxiliary_head``, RayDINO's recipe): RAD-DINO's published 39.3M leaves it out (see
    ``build_decoder``).
    """
    config = UperNetConfig(
        hidden_size=channels, pool_scales=list(pool_scales), num_labels=classes, use_auxiliary_head=False
    )
    head = UperNetHead(config, in_channels=in_channels)
    head.classifier = nn.Sequential(nn.Dropout2d(dropout), head.classifier)
    return head


def auxiliary_head(in_channels: int, channels: int, dropout: float, classes: int) -> UperNetFCNHead:
    """The auxiliary FCN head of the usual UPerNet recipe (mmsegmentation's ``FCNHead``: one 3x3 conv + BatchNorm +
    ReLU to ``channels``, no concatenated input, Dropout2d, 1x1 classifier) on the pyramid's third level, as
    transformers ports it (``UperNetFCNHead``), with mmsegmentation's dropout added as in ``uper_head``. It only adds
    a training signal to the neck: its logits are never predictions."""
    config = UperNetConfig(num_labels=classes, auxiliary_in_channels=in_channels, auxiliary_channels=channels,
                           auxiliary_num_convs=1, auxiliary_concat_input=False)
    head = UperNetFCNHead(config, in_channels=[in_channels] * 4, in_index=AUXILIARY_LEVEL)
    head.classifier = nn.Sequential(nn.Dropout2d(dropout), head.classifier)
    return head


class PyramidDecoder(nn.Module):
    """A neck that turns patch grids into a 4-level pyramid (finest level at 4x the grid), then a UPerNet head,
    and optionally an auxiliary FCN head trained beside it (``forward_with_auxiliary``).

    The head predicts at the finest level, so the logits have 4h x 4w cells: each covers patch/4 image
    pixels along each axis (3.5 pixels for 14-pixel patches). ``forward`` returns the UPerNet head's logits only,
    so prediction never sees the auxiliary head.
    """

    output_stride_factor = 4

    def __init__(self, name: str, neck: nn.Module, head: UperNetHead, inputs: int,
                 auxiliary: UperNetFCNHead | None = None) -> None:
        super().__init__()
        self.name = name
        self.inputs = inputs
        self.neck = neck
        self.head = head
        self.auxiliary = auxiliary

    def forward(self, grids: list[torch.Tensor]) -> torch.Tensor:
        _check_grid_count(grids, self.inputs, self.name)
        return self.head(self.neck(grids))

    def forward_with_auxiliary(self, grids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(UPerNet logits, auxiliary logits at the grid's own resolution, or None without an auxiliary head),
        from one pass through the neck: what training needs."""
        _check_grid_count(grids, self.inputs, self.name)
        levels = self.neck(grids)
        return self.head(levels), None if self.auxiliary is None else self.auxiliary(levels)


# architecture -> (decoder class, allowed numbers of input grids)
ARCHITECTURES: dict[str, tuple[type[LinearDecoder] | type[PyramidDecoder], tuple[int, ...]]] = {
    "linear": (LinearDecoder, (1, 4)),
    "vitdet": (PyramidDecoder, (1,)),
    "upernet": (PyramidDecoder, (4,)),
}


def _architecture(architecture: str) -> tuple[type[LinearDecoder] | type[PyramidDecoder], tuple[int, ...]]:
    if architecture not in ARCHITECTURES:
        raise SpecError(f"decoder architecture '{architecture}' is not one of {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[architecture]


def output_stride_factor(architecture: str) -> int:
    """How many logit cells a decoder produces per patch-grid cell along each axis (linear 1, others 4).

    A grid of h x w patches gives logits of ``factor*h`` x ``factor*w``; the trainer upsamples them to the mask.
    """
    decoder_class, _ = _architecture(architecture)
    return decoder_class.output_stride_factor


def _positive_int(architecture: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"decoder {architecture}: '{key}' must be a positive integer, got {value!r}.")
    return value


def _head_options(architecture: str, params: Mapping[str, Any]) -> tuple[int, list[int], float]:
    """The UPerNet head's width, pool scales and dropout from the spec, with mmsegmentation's defaults."""
    channels = _positive_int(architecture, "channels", params.get("channels", DEFAULT_CHANNELS))
    scales = params.get("pool_scales", list(DEFAULT_POOL_SCALES))
    if not isinstance(scales, (list, tuple)) or not scales:
        raise SpecError(
            f"decoder {architecture}: 'pool_scales' must be a non-empty list of positive integers, got {scales!r}."
        )
    pool_scales = [_positive_int(architecture, "pool_scales", scale) for scale in scales]
    dropout = params.get("dropout", DEFAULT_DROPOUT)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise SpecError(f"decoder {architecture}: 'dropout' must be a number in [0, 1), got {dropout!r}.")
    return channels, pool_scales, float(dropout)


def build_decoder(
    architecture: str, in_channels: int, inputs: int, classes: int, params: Mapping[str, Any]
) -> nn.Module:
    """A fresh, trainable decoder for ``inputs`` frozen grids of ``in_channels`` (D) channels and ``classes`` logits.

    ``params`` are the head spec's extra parameters; keys other than those below are ignored (they belong to
    the trainer):

    * ``linear`` (inputs 1 or 4): none.
    * ``upernet`` (inputs 4, e.g. ViT-B layers 3, 5, 7, 11): ``channels`` (512), ``pool_scales`` ([1, 2, 3, 6]),
      ``dropout`` (0.1), ``auxiliary_weight`` (0: none; > 0 adds the auxiliary FCN head, ``auxiliary_channels``
      256 wide, whose Dice loss the trainer adds with this weight; RayDINO's recipe). Parameter count for D=768, 512 channels and K classes: neck 7,081,728 (the three
      ConvTranspose2d(768, 768, 2, 2) with bias, 2,360,064 each, and one BatchNorm, 1,536) + head 32,256,000
      (pyramid pooling 1,576,960; PPM bottleneck 12,977,152; laterals 1,182,720; FPN convs 7,080,960; fusion
      9,438,208) + classifier 513*K = 39,338,241 for K=1, i.e. the paper's 39.3M for any K up to 23. An
      auxiliary FCN head (mmsegmentation's default, 768 -> 256, 3x3) would add 1.77M (41.1M) and ADE20K's
      150 classes 0.08M (39.4M), so the published number is this neck + head without either.
    * ``vitdet`` (inputs 1: the LAST layer): ``pyramid_channels`` (256, ViTDet's width), then the same head
      options as upernet. For D=768 and the defaults: pyramid 5,560,000 (rescaling 2,655,936; 1x1 + 3x3
      projections with LayerNorms 2,904,064) + head 28,061,696 + classifier 513*K = 33,622,209 for K=1
      (33.6M). The paper's 24.8M is not reproduced: no natural configuration was found that gives it. Among
      those tried with this pyramid: UPerNet head at 256 channels 13.1M, at 384 21.7M, at 512 33.6M, each with
      or without an auxiliary FCN head; Panoptic-FPN semantic head 7.2M; pyramid at width 768 plus a 1x1
      classifier 25.5M; detectron2's ViTDet Mask R-CNN heads (RPN + box + mask), counted by hand, about
      24.6M for 1 class. The head is kept at UPerNet's 512 channels so that ``vitdet`` and ``upernet``
      differ only in what the paper varies: one last layer through ViTDet's pyramid versus four layers
      through the full-width neck. (Table 3 lists "4x768" features for ViTDet too; the protocol followed
      here takes the last layer, as ViTDet does. Feeding the four levels from four layers instead would not
      change the count.)

    Raises ``SpecError`` for an unknown architecture, a number of inputs it does not take, or bad parameters.
    """
    _, allowed_inputs = _architecture(architecture)
    if inputs not in allowed_inputs:
        raise SpecError(
            f"decoder {architecture}: inputs={inputs!r} feature grids is not allowed; "
            f"inputs must be one of {', '.join(map(str, allowed_inputs))}."
        )
    _positive_int(architecture, "in_channels", in_channels)
    _positive_int(architecture, "classes", classes)
    weight = auxiliary_weight(architecture, params)
    if architecture == "linear":
        return LinearDecoder(in_channels, inputs, classes)
    channels, pool_scales, dropout = _head_options(architecture, params)
    if architecture == "upernet":
        neck: nn.Module = MultiLayerPyramid(in_channels)
        widths = [in_channels] * 4
    else:
        if in_channels % 4:
            raise SpecError(
                f"decoder vitdet: in_channels={in_channels} must be divisible by 4 "
                "(the pyramid's finest level has D/4 channels)."
            )
        pyramid_channels = params.get("pyramid_channels", DEFAULT_PYRAMID_CHANNELS)
        width = _positive_int(architecture, "pyramid_channels", pyramid_channels)
        neck = SimpleFeaturePyramid(in_channels, width)
        widths = [width] * 4
    head = uper_head(widths, channels, pool_scales, dropout, classes)
    auxiliary = None
    if weight > 0:
        width = _positive_int(architecture, "auxiliary_channels", params.get("auxiliary_channels", DEFAULT_AUXILIARY_CHANNELS))
        auxiliary = auxiliary_head(widths[AUXILIARY_LEVEL], width, dropout, classes)
    return PyramidDecoder(architecture, neck, head, inputs, auxiliary)


def auxiliary_weight(architecture: str, params: Mapping[str, Any]) -> float:
    """The auxiliary FCN head's loss weight (0: no auxiliary head); only the pyramid decoders can have one."""
    weight = params.get("auxiliary_weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise SpecError(f"decoder {architecture}: 'auxiliary_weight' must be a number >= 0, got {weight!r}.")
    if weight > 0 and architecture == "linear":
        raise SpecError("decoder linear: 'auxiliary_weight' needs a feature pyramid (architecture upernet or vitdet); "
                        "set it to 0 for the linear decoder.")
    return float(weight)
