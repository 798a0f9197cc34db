"""DINOv2-family ViTs through transformers' `Dinov2Model`: RAD-DINO and DINOv2 S/B/L/g.

The global embedding is the CLS token after the final LayerNorm (what RAD-DINO and DINOv2 probe);
patch tokens come from the same normed output; layer i is block i's output (`hidden_states[i + 1]`)
passed through the final LayerNorm, as DINOv2's `get_intermediate_layers(norm=True)` does.
"""

from __future__ import annotations

import torch
from transformers import Dinov2Config, Dinov2Model

from cxrbench.encoders.base import Encoder, FeatureRequest, Features, grid_tokens
from cxrbench.encoders.hf_loading import load_hf_model
from cxrbench.encoders.weights import WeightsSource
from cxrbench.specs import AdapterSpec, PreprocessSpec

_CONFIG_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size",
    "image_size", "layerscale_value", "use_swiglu_ffn", "layer_norm_eps",
)


class HFDinov2Encoder(Encoder):
    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        super().__init__(spec, weights, preprocessing)
        self._arch = {k: spec.architecture[k] for k in _CONFIG_KEYS}
        self._patch = int(self._arch["patch_size"])

    def _construct(self) -> Dinov2Model:
        return Dinov2Model(Dinov2Config(**self._arch))

    def _load_released(self) -> Dinov2Model:
        return load_hf_model(Dinov2Model, self.weights.path, self._arch, self.spec.name)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def patch_stride(self) -> int:
        return self._patch

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = pixels.shape[-2] // self._patch, pixels.shape[-1] // self._patch
        output = self.model(pixel_values=pixels, output_hidden_states=bool(request.layers))
        last = output.last_hidden_state
        features = Features()
        if request.global_embedding:
            features.global_embedding = last[:, 0]
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(last[:, 1:], height, width)
        for index in request.layers:
            normed = self.model.layernorm(output.hidden_states[index + 1])
            features.layers[index] = grid_tokens(normed[:, 1:], height, width)
        return features
