"""OpenAI CLIP image towers through transformers' `CLIPVisionModel` (the clip-l14 baselines).

The released Hugging Face folders hold the whole CLIP; only the vision tower's keys are loaded and every
one of them must be present (the text tower and projections are the only keys allowed to be left over).

- global embedding: `pooler_output`, the class token after post_layernorm (pre-projection, 1024-d)
- patch tokens and layers: tokens after post_layernorm, as open_clip normalises every token with ln_post
- class tokens of chosen blocks (`cls_layers`): block i's class token after post_layernorm (the last block's is the
  global embedding), for DINOv2's "last n blocks" linear evaluation that DINOv2-radiology also runs on CLIP
"""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from cxrbench.encoders.base import FeatureRequest, Features, grid_tokens
from cxrbench.encoders.hf_loading import HFVisionEncoder

_VISION_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size",
                "image_size", "hidden_act", "layer_norm_eps")
_OTHER_TOWER = ("text_model.", "text_projection", "visual_projection", "logit_scale")


class HFClipVisionEncoder(HFVisionEncoder):
    model_class, config_class, config_keys, other_tower = CLIPVisionModel, CLIPVisionConfig, _VISION_KEYS, _OTHER_TOWER
    serves_cls_layers = True

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = self.grid_size(pixels)
        out = self.model(pixel_values=pixels, output_hidden_states=bool(request.layers or request.cls_layers),
                         interpolate_pos_encoding=True)
        norm = getattr(self.model, "vision_model", self.model).post_layernorm  # transformers 4 nests, 5 flattens
        features = Features()
        if request.global_embedding:
            features.global_embedding = out.pooler_output
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(norm(out.last_hidden_state[:, 1:]), height, width)
        for index in request.layers:
            features.layers[index] = grid_tokens(norm(out.hidden_states[index + 1][:, 1:]), height, width)
        for index in request.cls_layers:
            features.cls_layers[index] = norm(out.hidden_states[index + 1][:, 0])
        return features
