"""transformers vision models: strict loading from a local Hugging Face folder against the declared architecture,
and the encoder base the transformers-backed encoders share (build, load, dimensions)."""

from __future__ import annotations

from pathlib import Path

import torch

from cxrbench.encoders.base import Encoder
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import WeightsError
from cxrbench.specs import AdapterSpec, PreprocessSpec


def load_hf_model(model_class, path: Path, arch: dict, name: str, other_tower: tuple[str, ...] = (), **model_kwargs):
    """`model_class.from_pretrained(path, **model_kwargs)` offline in float32; refuse missing, unexpected (except keys
    of `other_tower`, e.g. CLIP's text tower) or mismatched keys, and config values that differ from `arch`."""
    if not (path / "config.json").is_file():
        raise WeightsError(f"'{name}' expects a Hugging Face model folder (config.json + model.safetensors); {path} is not one.")
    try:
        model, info = model_class.from_pretrained(path, local_files_only=True, output_loading_info=True, dtype=torch.float32,
                                                  use_safetensors=True, **model_kwargs)
    except Exception as exc:
        raise WeightsError(f"Cannot load '{name}' weights from {path}: {exc}") from exc
    problems = {
        "missing_keys": info.get("missing_keys"),
        "unexpected_keys": [k for k in info.get("unexpected_keys", []) if not k.startswith(other_tower or ("\0",))],
        "mismatched_keys": info.get("mismatched_keys"),
    }
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise WeightsError(f"{path} does not match the {name} architecture: {problems}")
    mismatched = {k: (getattr(model.config, k), v) for k, v in arch.items() if getattr(model.config, k) != v}
    if mismatched:
        details = ", ".join(f"{k}={got} (expected {want})" for k, (got, want) in mismatched.items())
        raise WeightsError(f"{path}/config.json is not {name}: {details}.")
    return model


class HFVisionEncoder(Encoder):
    """An encoder around a transformers vision model whose config is the adapter's `architecture[config_keys]`."""

    model_class: type
    config_class: type
    config_keys: tuple[str, ...]
    #: key prefixes a released folder may hold besides the vision model (e.g. CLIP's text tower)
    other_tower: tuple[str, ...] = ()

    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        super().__init__(spec, weights, preprocessing)
        self._arch = {k: spec.architecture[k] for k in self.config_keys}
        self._patch = int(self._arch["patch_size"])

    def _construct(self):
        return self.model_class(self.config_class(**self._arch))

    def _load_released(self):
        return load_hf_model(self.model_class, self.weights.path, self._arch, self.spec.name, other_tower=self.other_tower)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def patch_stride(self) -> int:
        return self._patch

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def grid_size(self, pixels: torch.Tensor) -> tuple[int, int]:
        """Patch-grid rows and columns of an input batch."""
        return pixels.shape[-2] // self._patch, pixels.shape[-1] // self._patch
