"""DINOv2-family ViTs through transformers' `Dinov2Model`: RAD-DINO and DINOv2 S/B/L/g.

The global embedding is the CLS token after the final LayerNorm (what RAD-DINO and DINOv2 probe);
patch tokens come from the same normed output; layer i is block i's output (`hidden_states[i + 1]`)
passed through the final LayerNorm, as DINOv2's `get_intermediate_layers(norm=True)` does; the class token of
block i (`cls_layers`) is the class token of that same normed output, which is what DINOv2's linear evaluation
concatenates over the last n blocks.
"""

from __future__ import annotations

import torch
from transformers import Dinov2Config, Dinov2Model

from cxrbench.encoders.base import FeatureRequest, Features, grid_tokens
from cxrbench.encoders.hf_loading import HFVisionEncoder

_CONFIG_KEYS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size",
    "image_size", "layerscale_value", "use_swiglu_ffn", "layer_norm_eps",
)


class HFDinov2Encoder(HFVisionEncoder):
    model_class, config_class, config_keys = Dinov2Model, Dinov2Config, _CONFIG_KEYS
    serves_cls_layers = True

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = self.grid_size(pixels)
        output = self.model(pixel_values=pixels, output_hidden_states=bool(request.layers or request.cls_layers))
        last = output.last_hidden_state
        features = Features()
        if request.global_embedding:
            features.global_embedding = last[:, 0]
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(last[:, 1:], height, width)
        for index in request.layers:
            normed = self.model.layernorm(output.hidden_states[index + 1])
            features.layers[index] = grid_tokens(normed[:, 1:], height, width)
        for index in request.cls_layers:
            features.cls_layers[index] = self.model.layernorm(output.hidden_states[index + 1][:, 0])
        return features
