"""ViTs loaded from released `.pth` state dicts onto timm's VisionTransformer (strict key check).

- DINOv2-format checkpoints (`checkpoint_format: dinov2`): RayDINO's file with chunked blocks
  (`blocks.{chunk}.{i}.*`) and a `mask_token`, and the torch.hub DINOv2 files.
- timm-layout checkpoints (`checkpoint_format: timm`): MRM.pth's `model` entry with its decoder, mask-token
  and BERT keys dropped and reported; BiomedCLIP's open_clip file, whose image trunk sits under `visual.trunk.`.

Global embedding: `cls` (the normed class token) or `mean_patch` (the mean of the normed patch tokens).
Layers are block outputs passed through the final norm, and so are the class tokens of chosen blocks (`cls_layers`,
what DINOv2's linear evaluation reads from a DINOv2 `.pth`). Inputs at other resolutions interpolate the
position embeddings with timm's bicubic resampling (DINOv2's own adds a 0.1 offset; identical at the
native resolution).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer

from cxrbench.encoders.base import Encoder, FeatureRequest, Features, grid_tokens
from cxrbench.encoders.checkpoints import dinov2_to_timm, load_strict, map_keys, read_checkpoint, timm_layout
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import SpecError
from cxrbench.specs import AdapterSpec, PreprocessSpec


def build_vit(arch: dict) -> VisionTransformer:
    width = int(arch["hidden_size"])
    kwargs: dict = dict(
        img_size=int(arch["image_size"]), patch_size=int(arch["patch_size"]), embed_dim=width,
        depth=int(arch["num_hidden_layers"]), num_heads=int(arch["num_attention_heads"]),
        mlp_ratio=float(arch["mlp_ratio"]), qkv_bias=True, init_values=arch.get("layerscale_value"),
        num_classes=0, global_pool="token", dynamic_img_size=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=float(arch["layer_norm_eps"])),
        reg_tokens=int(arch.get("register_tokens", 0)),
    )
    if arch.get("use_swiglu_ffn"):
        hidden = (int(width * arch["mlp_ratio"] * 2 / 3) + 7) // 8 * 8  # DINOv2's SwiGLU width
        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU, mlp_ratio=2 * hidden / width)
    return VisionTransformer(**kwargs)


class TimmViTEncoder(Encoder):
    serves_cls_layers = True  # `build_vit` always gives the class token, first of the prefix tokens
    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        super().__init__(spec, weights, preprocessing)
        arch = spec.architecture
        self.global_pool = arch.get("global_pool", "cls")
        if self.global_pool not in ("cls", "mean_patch"):
            raise SpecError(f"{spec.name}: architecture.global_pool must be 'cls' or 'mean_patch'.")
        self._patch = int(arch["patch_size"])

    def _construct(self) -> VisionTransformer:
        return build_vit(self.spec.architecture)

    def _load_released(self) -> VisionTransformer:
        arch, path = self.spec.architecture, self.checkpoint_file()
        checkpoint_format = arch.get("checkpoint_format", "dinov2")
        if checkpoint_format == "dinov2":
            state, report = map_keys(read_checkpoint(path), dinov2_to_timm)
        elif checkpoint_format == "timm":
            raw = read_checkpoint(path, entry=arch.get("checkpoint_entry"))
            state, report = map_keys(raw, timm_layout(arch.get("key_prefix", ""), arch.get("drop_prefixes", [])))
        else:
            raise SpecError(f"{self.spec.name}: unknown checkpoint_format '{checkpoint_format}' (dinov2 or timm).")
        model = build_vit(arch)
        load_strict(model, state, path)
        self._load_report = report
        return model

    @property
    def embed_dim(self) -> int:
        return int(self.model.embed_dim)

    @property
    def patch_stride(self) -> int:
        return self._patch

    @property
    def num_layers(self) -> int:
        return len(self.model.blocks)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = pixels.shape[-2] // self._patch, pixels.shape[-1] // self._patch
        indices = sorted({*request.layers, *request.cls_layers}) or [self.num_layers - 1]
        tokens, intermediates = self.model.forward_intermediates(pixels, indices=indices, norm=True, output_fmt="NLC",
                                                                 return_prefix_tokens=True)
        by_block = dict(zip(indices, intermediates))  # block -> (patch tokens, prefix tokens), given in block order
        patches = tokens[:, self.model.num_prefix_tokens :]
        features = Features()
        if request.global_embedding:
            features.global_embedding = tokens[:, 0] if self.global_pool == "cls" else patches.mean(dim=1)
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(patches, height, width)
        for index in request.layers:
            features.layers[index] = grid_tokens(by_block[index][0], height, width)
        for index in request.cls_layers:
            features.cls_layers[index] = by_block[index][1][:, 0]
        return features
