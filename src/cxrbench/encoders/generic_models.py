"""The encoders behind generic names (`cxrbench.encoders.generic`): each library's own model class, built from the
model's own config, loaded strictly from safetensors.

- `hf:`  transformers Dinov2Model / Dinov2WithRegistersModel / ViTModel / CLIPVisionModel. Global embedding: the CLS
         token after the final norm (CLIP: its pooler_output, the class token after post_layernorm); patch tokens and
         layers: tokens through that same norm, as the existing DINOv2 and CLIP adapters define them.
- `timm:` a timm VisionTransformer; global embedding: timm's own pre-logits pooled output (`forward_head(pre_logits=
         True)`: the class token or the patch mean, then fc_norm), so a model pooled by averaging is pooled as timm does.
- `open_clip:` open_clip's VisionTransformer, as the CheXzero adapter (class token after ln_post, pre-projection).
"""

from __future__ import annotations

import contextlib
import logging

import torch

from cxrbench.encoders.base import Encoder, FeatureRequest, Features, grid_tokens
from cxrbench.encoders.checkpoints import LoadReport, load_strict, read_checkpoint
from cxrbench.encoders.hf_loading import HFVisionEncoder, load_hf_model
from cxrbench.encoders.open_clip_vit import OpenClipEncoder, _open_clip
from cxrbench.encoders.timm_vit import TimmViTEncoder
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import SpecError, WeightsError
from cxrbench.specs import AdapterSpec, PreprocessSpec

#: config values a released folder must agree with (the rest of config.json is read as published)
_CORE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size")
#: keys a released folder may hold besides the image tower (a classifier fine-tune, CLIP's text tower)
_EXTRA_KEYS = ("classifier.", "pooler.", "text_model.", "text_projection", "visual_projection", "logit_scale")


def _hf_classes(model_type: str) -> tuple[type, type]:
    """(config class, model class) of a supported transformers model type."""
    import transformers

    names = {"dinov2": ("Dinov2Config", "Dinov2Model"),
             "dinov2_with_registers": ("Dinov2WithRegistersConfig", "Dinov2WithRegistersModel"),
             "vit": ("ViTConfig", "ViTModel"), "clip": ("CLIPVisionConfig", "CLIPVisionModel"),
             "clip_vision_model": ("CLIPVisionConfig", "CLIPVisionModel")}[model_type]
    return getattr(transformers, names[0]), getattr(transformers, names[1])


class HFGenericEncoder(HFVisionEncoder):
    """A transformers vision model whose architecture is its own config.json (see the module docstring)."""

    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        arch = spec.architecture
        self.config_class, self.model_class = _hf_classes(arch["model_type"])
        self.config_keys = tuple(k for k in _CORE if k in arch["config"])
        self.family = arch["family"]
        Encoder.__init__(self, spec, weights, preprocessing)  # the architecture is the config, not declared keys
        self._arch = {k: arch["config"][k] for k in self.config_keys}
        self._patch = int(arch["patch_size"])

    def _construct(self):
        config = self.config_class(**self.spec.architecture["config"])
        return self.model_class(config, add_pooling_layer=False) if self.family == "vit" else self.model_class(config)

    def _load_released(self):
        extra = {"add_pooling_layer": False} if self.family == "vit" else {}
        return load_hf_model(self.model_class, self.weights.path, self._arch, self.spec.name, other_tower=_EXTRA_KEYS,
                             **extra)

    @property
    def _prefix(self) -> int:
        """Tokens before the patch grid: the class token and any register tokens."""
        return 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)

    def _norm(self) -> torch.nn.Module:
        if self.family == "clip":
            return getattr(self.model, "vision_model", self.model).post_layernorm  # transformers 4 nests, 5 flattens
        return self.model.layernorm

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = self.grid_size(pixels)
        extra = {} if self.family.startswith("dinov2") else {"interpolate_pos_encoding": True}
        out = self.model(pixel_values=pixels, output_hidden_states=bool(request.layers), **extra)
        norm = self._norm()
        last = norm(out.last_hidden_state) if self.family == "clip" else out.last_hidden_state  # the others are normed
        features = Features()
        if request.global_embedding:
            features.global_embedding = last[:, 0]
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(last[:, self._prefix:], height, width)
        for index in request.layers:
            features.layers[index] = grid_tokens(norm(out.hidden_states[index + 1])[:, self._prefix:], height, width)
        return features


@contextlib.contextmanager
def _building(meta: bool):
    """Build on the meta device (no memory, no initialisation) when only the shapes and configs are read."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        yield


def timm_model(model_id: str, meta: bool = False, where: str = ""):
    """timm's own model for `model_id` (a registry name or `local-dir:PATH`), without weights and without a classifier,
    accepting any input size; only VisionTransformer models are encoders here."""
    import timm
    from timm.models.vision_transformer import VisionTransformer

    def create(**kwargs):
        with _building(meta):
            return timm.create_model(model_id, pretrained=False, num_classes=0, **kwargs)

    try:
        try:
            model = create(dynamic_img_size=True)
        except TypeError as exc:  # a model without that option is no ViT: built plainly, then refused by its type
            if "dynamic_img_size" not in str(exc):
                raise
            model = create()
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise SpecError(f"Encoder '{where}': timm cannot build '{model_id}': {exc}") from None
    if not isinstance(model, VisionTransformer):
        raise SpecError(f"Encoder '{where}': '{model_id}' is a timm {type(model).__name__}; timm: loads VisionTransformer "
                        "models (vit_*, deit_*, DINOv2 and CLIP ViTs in timm).")
    return model


class TimmGenericEncoder(TimmViTEncoder):
    """A timm VisionTransformer built by timm from its own name or config; weights: its model.safetensors."""

    serves_cls_layers = False  # its models need not have a class token

    def _construct(self):
        return timm_model(self.spec.architecture["model"], where=self.spec.name)

    def _load_released(self):
        path = self.checkpoint_file()
        if path.suffix != ".safetensors":
            raise WeightsError(f"'{self.spec.name}' loads safetensors files only; {path} is not one.")
        state = read_checkpoint(path)
        classifier = f"{self.spec.architecture['classifier']}."
        dropped = sorted(k for k in state if k.startswith(classifier))  # an encoder has no classifier (num_classes=0)
        model = self._construct()
        load_strict(model, {k: v for k, v in state.items() if k not in dropped}, path)
        self._load_report = LoadReport(used=len(state) - len(dropped), dropped=dropped)
        return model

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        height, width = pixels.shape[-2] // self._patch, pixels.shape[-1] // self._patch
        indices = list(request.layers) or [self.num_layers - 1]
        tokens, intermediates = self.model.forward_intermediates(pixels, indices=indices, norm=True, output_fmt="NLC")
        features = Features()
        if request.global_embedding:
            features.global_embedding = self.model.forward_head(tokens, pre_logits=True)
        if request.patch_tokens:
            features.patch_tokens = grid_tokens(tokens[:, self.model.num_prefix_tokens:], height, width)
        for index, layer in zip(request.layers, intermediates):
            features.layers[index] = grid_tokens(layer, height, width)
        return features


def open_clip_model(model_id: str, meta: bool = False, where: str = ""):
    """open_clip's own model for `model_id` (a model name or `local-dir:PATH`), without weights; its image tower must
    be open_clip's VisionTransformer."""
    open_clip = _open_clip()
    from open_clip.transformer import VisionTransformer

    root = logging.getLogger()
    previous, root.disabled = root.disabled, True  # open_clip warns on the root logger that no weights were loaded
    try:
        with _building(meta):
            model = open_clip.create_model(model_id, pretrained=None, load_weights=False, device="meta" if meta else "cpu")
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise SpecError(f"Encoder '{where}': open_clip cannot build '{model_id}': {exc}") from None
    finally:
        root.disabled = previous
    if not isinstance(getattr(model, "visual", None), VisionTransformer):
        raise SpecError(f"Encoder '{where}': the image tower of '{model_id}' is a {type(model.visual).__name__}; "
                        "open_clip: loads open_clip VisionTransformer towers.")
    return model


class OpenClipGenericEncoder(OpenClipEncoder):
    """An open_clip CLIP built from its own config; weights: its open_clip_model.safetensors, loaded strictly."""

    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        Encoder.__init__(self, spec, weights, preprocessing)  # the native size is the config's, not a model name's
        self.global_pool = "cls"
        self._patch = int(spec.architecture["patch_size"])
        native = int(spec.architecture["image_size"])
        if self.preprocessor.output_size[0] != native:
            raise SpecError(f"'{spec.name}' runs at its native {native} px: open_clip's ViT does not interpolate its "
                            "position embeddings. Drop --image-size.")

    def _construct(self):
        return open_clip_model(self.spec.architecture["open_clip_model"], where=self.spec.name)

    def _load_released(self):
        path = self.checkpoint_file()
        if path.suffix != ".safetensors":
            raise WeightsError(f"'{self.spec.name}' loads safetensors files only; {path} is not one.")
        return super()._load_released()
