"""The feature API every encoder implements.

An encoder turns a batch of preprocessed images into `Features`: a global embedding [B, D], the
patch-token grid [B, H, W, D], intermediate layers {index: [B, H, W, D]} (0-based blocks) and, from encoders
that can (`Encoder.serves_cls_layers`), the class tokens of chosen blocks {index: [B, D]}.
Preprocessing is declared as data in the encoder's adapter spec and applied by `Preprocessor`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cxrbench.encoders.checkpoints import LoadReport, load_strict, read_checkpoint
from cxrbench.encoders.preprocessing import PIPELINE_VERSION, Preprocessor
from cxrbench.encoders.weights import WeightsSource
from cxrbench.errors import CxrbenchError, WeightsError
from cxrbench.specs import AdapterSpec, PreprocessSpec


@dataclass(frozen=True)
class FeatureRequest:
    """What to extract: the cache key covers it, so asking for more never returns stale features."""

    global_embedding: bool = True
    patch_tokens: bool = False
    layers: tuple[int, ...] = ()
    #: blocks whose class token (after the final norm) is wanted, for DINOv2's "last n blocks" linear probe
    cls_layers: tuple[int, ...] = ()

    def describe(self) -> dict:
        """The request as the cache key sees it. `cls_layers` only when asked for: requests without it keep the
        store keys they had before it existed (and so the stores and stored results that name them)."""
        described = asdict(self)
        if not self.cls_layers:
            del described["cls_layers"]
        return described


@dataclass
class Features:
    global_embedding: torch.Tensor | None = None
    patch_tokens: torch.Tensor | None = None
    layers: dict[int, torch.Tensor] = field(default_factory=dict)
    cls_layers: dict[int, torch.Tensor] = field(default_factory=dict)  # block index -> [B, D]

    def arrays(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor view, as stored in the cache."""
        out: dict[str, torch.Tensor] = {}
        if self.global_embedding is not None:
            out["global"] = self.global_embedding
        if self.patch_tokens is not None:
            out["patches"] = self.patch_tokens
        for index, tensor in self.layers.items():
            out[f"layer_{index}"] = tensor
        for index, tensor in self.cls_layers.items():
            out[f"cls_layer_{index}"] = tensor
        return out


class Encoder(ABC):
    """Base class: holds the spec, the resolved weights and the preprocessing of one encoder.

    The network is built on first use (`model`), so a run whose features are all cached never constructs
    it or reads its weights. Subclasses say how to construct the architecture and how to load the release.
    """

    #: whether another input size than the adapter's can be asked for (--image-size)
    resizable: bool = True
    #: whether `encode` returns the class tokens of intermediate blocks (`FeatureRequest.cls_layers`)
    serves_cls_layers: bool = False

    def __init__(self, spec: AdapterSpec, weights: WeightsSource, preprocessing: PreprocessSpec | None = None):
        self.spec = spec
        self.weights = weights
        self.preprocessing = preprocessing or spec.preprocessing
        self.preprocessor = Preprocessor(self.preprocessing)
        self._model: torch.nn.Module | None = None
        self._load_report = LoadReport()

    def _construct(self) -> torch.nn.Module | None:
        """The architecture with fresh weights (torch is seeded first). None for encoders without weights."""
        return None

    def _load_released(self) -> torch.nn.Module:
        """The architecture with the released weights: by default a plain state-dict file loaded strictly.
        Encoders whose release has another layout (HF folders, renamed keys) override this."""
        model = self._construct()
        if model is None:
            raise WeightsError(f"Encoder '{self.spec.name}' has no weights; drop --weights.")
        path = self.checkpoint_file()
        load_strict(model, read_checkpoint(path), path)
        return model

    @property
    def model(self) -> torch.nn.Module | None:
        if self._model is None:
            if self.weights.kind in ("random", "none"):
                if self.weights.kind == "random":
                    torch.manual_seed(self.weights.seed)
                model = self._construct()
            else:
                model = self._load_released()
            self._model = None if model is None else model.eval().requires_grad_(False)
        return self._model

    @property
    def load_report(self) -> LoadReport:
        """Checkpoint keys used and deliberately dropped (loads the model if needed)."""
        _ = self.model  # loading the checkpoint fills the report
        return self._load_report

    def checkpoint_file(self) -> Path:
        """The released weights file: --weights FILE, or the spec's first file inside a folder (a hub snapshot)."""
        path = self.weights.path
        if path is not None and path.is_dir() and self.spec.weights.files:
            path = path / self.spec.weights.files[0]
        if path is None or not path.is_file():
            expected = self.spec.weights.files[0] if self.spec.weights.files else "a checkpoint file"
            raise WeightsError(f"'{self.spec.name}' loads {expected}; {path} is not such a file. Pass --weights FILE.")
        return path

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

    def to(self, device: torch.device | str) -> "Encoder":
        if self.model is not None:
            self.model.to(device)
        return self

    def check_cls_layers(self) -> None:
        """Refuse, with the fix, a request for intermediate class tokens from an encoder that does not serve them."""
        if not self.serves_cls_layers:
            raise CxrbenchError(
                f"Encoder '{self.spec.name}' does not provide the class tokens of intermediate blocks (cls_layers, asked "
                "for by a grid head with blocks > 1). Use blocks: 1 with this encoder, or an encoder that does "
                "(dinov2-*, rad-dino, raydino, clip-l14 and clip-l14-336, from Hugging Face folders, the hub cache or "
                "DINOv2-format .pth files)."
            )

    def check_request(self, request: FeatureRequest) -> None:
        if request.cls_layers:
            self.check_cls_layers()
        bad = [i for i in (*request.layers, *request.cls_layers) if not 0 <= i < self.num_layers]
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

