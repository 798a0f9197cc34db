"""The feature API every encoder implements.

An encoder turns a batch of preprocessed images into `Features`: a global embedding [B, D], the
patch-token grid [B, H, W, D] and intermediate layers {index: [B, H, W, D]} (0-based blocks).
Preprocessing is declared as data in the encoder's adapter spec and applied by `Preprocessor`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from cxrbench.encoders.preprocessing import PIPELINE_VERSION, Preprocessor
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import CxrbenchError
from cxrbench.specs import AdapterSpec, PreprocessSpec


@dataclass(frozen=True)
class FeatureRequest:
    """What to extract: the cache key covers it, so asking for more never returns stale features."""

    global_embedding: bool = True
    patch_tokens: bool = False
    layers: tuple[int, ...] = ()

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class Features:
    global_embedding: torch.Tensor | None = None
    patch_tokens: torch.Tensor | None = None
    layers: dict[int, torch.Tensor] = field(default_factory=dict)

    def arrays(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor view, as stored in the cache."""
        out: dict[str, torch.Tensor] = {}
        if self.global_embedding is not None:
            out["global"] = self.global_embedding
        if self.patch_tokens is not None:
            out["patches"] = self.patch_tokens
        for index, tensor in self.layers.items():
            out[f"layer_{index}"] = tensor
        return out


class Encoder(ABC):
    """Base class: holds the spec, the resolved weights and the preprocessing of one encoder."""

    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        self.spec = spec
        self.weights = weights
        self.preprocessing = preprocessing or spec.preprocessing
        self.preprocessor = Preprocessor(self.preprocessing)

    @property
    @abstractmethod
    def embed_dim(self) -> int: ...

    @property
    @abstractmethod
    def patch_stride(self) -> int:
        """Input pixels per patch-grid cell."""

    @property
    @abstractmethod
    def num_layers(self) -> int: ...

    @abstractmethod
    def encode(self, pixels: torch.Tensor, request: FeatureRequest) -> Features:
        """Features of a batch already run through `self.preprocessor` ([B, C, H, W])."""

    #: the torch module holding the weights, when the encoder has one
    model: torch.nn.Module | None = None

    def to(self, device: torch.device | str) -> "Encoder":
        if self.model is not None:
            self.model.to(device)
        return self

    def check_request(self, request: FeatureRequest) -> None:
        bad = [i for i in request.layers if not 0 <= i < self.num_layers]
        if bad:
            raise CxrbenchError(
                f"Encoder '{self.spec.name}' has {self.num_layers} layers (0-{self.num_layers - 1}); layer(s) {bad} "
                "do not exist. Choose 0-based block indices in that range."
            )

    def identity(self, request: FeatureRequest) -> dict:
        """Everything that determines the features: hashed into the cache key."""
        return {
            "encoder": self.spec.name,
            "architecture": self.spec.architecture,
            "weights": self.weights.identity,
            "preprocessing": asdict(self.preprocessing),
            "preprocessing_pipeline": PIPELINE_VERSION,
            "request": request.describe(),
            "implementation": f"{type(self).__module__}.{type(self).__qualname__}",
        }

    def identity_json(self, request: FeatureRequest) -> str:
        return json.dumps(self.identity(request), sort_keys=True, default=list)


def grid_tokens(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, H*W, D] -> [B, H, W, D]."""
    return tokens.reshape(tokens.shape[0], height, width, tokens.shape[-1])


def layer_list(layers: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(set(int(i) for i in layers)))
