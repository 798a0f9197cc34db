"""DINOv2-family weights come in two released layouts; both give the same features at native resolution.

- A Hugging Face folder (config.json + model.safetensors), from the Hub cache or --weights DIR:
  transformers' Dinov2Model.
- A DINOv2-repository state dict (.pth from torch.hub, RayDINO's chunked .pth, RAD-DINO's
  backbone_compatible.safetensors): timm's VisionTransformer.
"""

from __future__ import annotations

from cxrbench.encoders.base import Encoder
from cxrbench.encoders.hf_dinov2 import HFDinov2Encoder
from cxrbench.encoders.timm_vit import TimmViTEncoder
from cxrbench.encoders.weights import WeightsSource
from cxrbench.specs import AdapterSpec, PreprocessSpec


def dinov2_encoder(spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None) -> Encoder:
    if weights.kind == "local" and weights.path is not None and weights.path.is_file():
        return TimmViTEncoder(spec, weights, preprocessing)
    return HFDinov2Encoder(spec, weights, preprocessing)
