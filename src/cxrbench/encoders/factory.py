"""Build an encoder by registry name: spec + resolved weights + optional resolution override."""

from __future__ import annotations

from cxrbench.encoders.base import Encoder
from cxrbench.encoders.generic import is_generic
from cxrbench.encoders.weights import resolve_weights
from cxrbench.errors import SpecError
from cxrbench.registry import registry


def build_encoder(name: str, weights: str | None = None, revision: str | None = None, image_size: int | None = None) -> Encoder:
    if revision and is_generic(name):
        raise SpecError(f"--revision {revision}: encoder '{name}' names its model; put the revision in the name "
                        f"({name.split('@')[0]}@{revision}) so its config and weights are read at the same revision.")
    entry = registry().get("encoders", name)
    spec = entry.spec
    preprocessing = spec.sized(image_size)
    implementation = entry.load()
    return implementation(spec, resolve_weights(spec, weights, revision), preprocessing)
