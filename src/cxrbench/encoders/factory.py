"""Build an encoder by registry name: spec + resolved weights + optional resolution override."""

from __future__ import annotations

from cxrbench.encoders.base import Encoder
from cxrbench.encoders.weights import resolve_weights
from cxrbench.registry import registry


def build_encoder(name: str, weights: str | None = None, revision: str | None = None, image_size: int | None = None) -> Encoder:
    entry = registry().get("encoders", name)
    spec = entry.spec
    preprocessing = spec.sized(image_size)
    implementation = entry.load()
    return implementation(spec, resolve_weights(spec, weights, revision), preprocessing)
