"""CLIP image towers through open_clip, loaded from a released full-CLIP state dict (CheXzero).

The checkpoint holds the whole CLIP (image and text towers, logit scale) in OpenAI's key layout; it is
loaded strictly into open_clip's model of the declared name (e.g. ViT-B-32-quickgelu) and the text tower
is then simply unused.

- global embedding `cls`: the class token after ln_post, before the projection (768-d for ViT-B/32);
  `projected`: the CLIP image embedding (512-d), what zero-shot classification uses.
- patch tokens: the ln_post-normed patch tokens (7x7 at 224 px for /32).
- layers: block outputs through ln_post.
"""

from __future__ import annotations

import logging

import torch

from cxrbench.encoders.base import Encoder, FeatureRequest, Features, grid_tokens
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import SpecError, WeightsError
from cxrbench.specs import AdapterSpec, PreprocessSpec


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise WeightsError("This encoder needs open_clip: pip install 'cxrbench[clip]'.") from exc
    return open_clip


def _create(model_name: str) -> torch.nn.Module:
    open_clip = _open_clip()
    root = logging.getLogger()
    previous, root.disabled = root.disabled, True  # open_clip warns on the root logger that no weights were loaded
    try:
        return open_clip.create_model(model_name, pretrained=None)
    finally:
        root.disabled = previous


class OpenClipEncoder(Encoder):
    resizable = False  # open_clip's ViT keeps the position embeddings of its native input size

    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        super().__init__(spec, weights, preprocessing)
        arch = spec.architecture
        self.global_pool = arch.get("global_pool", "cls")
        if self.global_pool not in ("cls", "projected"):
            raise SpecError(f"{spec.name}: architecture.global_pool must be 'cls' or 'projected'.")
        self._patch = int(arch["patch_size"])
        native = _open_clip().get_model_config(arch["open_clip_model"])["vision_cfg"]["image_size"]
        if self.preprocessor.output_size[0] != native:
            raise SpecError(
                f"'{spec.name}' runs at its native {native} px: open_clip's ViT does not interpolate its position "
                "embeddings. Drop --image-size."
            )

    def _construct(self) -> torch.nn.Module:
        return _create(self.spec.architecture["open_clip_model"])


    @property
    def visual(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def embed_dim(self) -> int:
        return int(self.visual.output_dim) if self.global_pool == "projected" else int(self.visual.ln_post.normalized_shape[0])

    @property
    def patch_stride(self) -> int:
        return self._patch

    @property
    def num_layers(self) -> int:
        return len(self.visual.transformer.resblocks)

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = pixels.shape[-2] // self._patch, pixels.shape[-1] // self._patch
        last = self.num_layers - 1
        indices = sorted(set(request.layers) | {last})
        out = self.visual.forward_intermediates(
            pixels, indices=indices, normalize_intermediates=True, output_fmt="NLC", output_extra_tokens=True
        )
        tokens = dict(zip(indices, out["image_intermediates"]))
        prefix = dict(zip(indices, out["image_intermediates_prefix"]))
        features = Features()
        if request.global_embedding:
            features.global_embedding = out["image_features"] if self.global_pool == "projected" else prefix[last][:, 0]
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(tokens[last], height, width)
        for index in request.layers:
            features.layers[index] = grid_tokens(tokens[index], height, width)
        return features
