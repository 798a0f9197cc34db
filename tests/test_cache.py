"""Feature cache: keys cover every input, reruns do no forward pass, interrupted extraction resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cxrbench.data.common.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import CacheError
from cxrbench.features.cache import FeatureStore
from cxrbench.features.cache_admin import list_stores
from cxrbench.features.extract import extract_features


class CountingEncoder:
    """Wraps an encoder, counts forward passes, and can fail after a number of batches (a 'kill')."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after, self.calls = inner, fail_after, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, pixels, request):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        return self.inner.encode(pixels, request)


@pytest.fixture(scope="module")
def paths(vindr_root):
    return sorted(str(p) for p in (vindr_root / "train").glob("*.dicom"))[:40]


def test_second_extraction_does_no_forward_pass(paths, tmp_path):
    encoder = CountingEncoder(build_encoder("dinov2-small", weights="random", image_size=56))
    first = extract_features(encoder, FeatureRequest(), paths, tmp_path, batch_size=8, num_workers=0)
    assert first.encoded == len(paths) and encoder.calls == 5
    again = extract_features(encoder, FeatureRequest(), paths, tmp_path, batch_size=8, num_workers=0)
    assert again.encoded == 0 and encoder.calls == 5
    fresh = build_encoder("dinov2-small", weights="random", image_size=56)
    assert extract_features(fresh, FeatureRequest(), paths, tmp_path, num_workers=0).encoded == 0
    assert fresh._model is None  # all cached: the network was never built
    np.testing.assert_array_equal(first.store.load(first.keys), again.store.load(again.keys))


def test_interrupted_extraction_resumes_with_identical_features(paths, tmp_path):
    request = FeatureRequest(patch_tokens=True)
    clean = extract_features(build_encoder("dinov2-small", weights="random", image_size=56), request, paths,
                             tmp_path / "clean", batch_size=8, num_workers=0)
    killed = CountingEncoder(build_encoder("dinov2-small", weights="random", image_size=56), fail_after=3)
    with pytest.raises(KeyboardInterrupt):
        extract_features(killed, request, paths, tmp_path / "resumed", batch_size=8, shard_size=8, num_workers=0)
    resumed_encoder = CountingEncoder(build_encoder("dinov2-small", weights="random", image_size=56))
    resumed = extract_features(resumed_encoder, request, paths, tmp_path / "resumed", batch_size=8, shard_size=8, num_workers=0)
    assert resumed.encoded == len(paths) - 24 and resumed_encoder.calls == 2
    for array in ("global", "patches"):
        np.testing.assert_array_equal(clean.store.load(clean.keys, array), resumed.store.load(resumed.keys, array))
    assert not list((resumed.store.folder / "shards").glob(".tmp-*"))


def test_features_are_float16_of_the_encoder_output(paths, tmp_path):
    encoder = build_encoder("dinov2-small", weights="random", image_size=56)
    result = extract_features(encoder, FeatureRequest(patch_tokens=True, layers=(1, 11)), paths[:3], tmp_path, num_workers=0)
    pixels = torch.stack([encoder.preprocessor(read_image(p)) for p in paths[:3]])
    direct = encoder.encode(pixels, FeatureRequest(patch_tokens=True, layers=(1, 11)))
    np.testing.assert_allclose(result.store.load(result.keys, "global"), direct.global_embedding.numpy(), atol=2e-3, rtol=1e-3)
    assert result.store.load(result.keys, "patches").shape == (3, 4, 4, 384)
    assert result.store.load(result.keys, "layer_1").shape == (3, 4, 4, 384)
    assert json.loads((result.store.folder / "manifest.json").read_text())["dtype"] == "float16"


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 112},  # preprocessing
        {"weights": "random:1"},  # weights identity
        {"request": FeatureRequest(layers=(3,))},  # requested outputs
        {"name": "dinov2-base"},  # encoder
    ],
)
def test_cache_key_changes_with_every_input(paths, tmp_path, change):
    base = dict(name="dinov2-small", weights="random", image_size=56, request=FeatureRequest())
    varied = {**base, **change}
    stores = []
    for options in (base, varied):
        encoder = build_encoder(options["name"], weights=options["weights"], image_size=options["image_size"])
        stores.append(extract_features(encoder, options["request"], paths[:2], tmp_path, num_workers=0).store.folder)
    assert stores[0] != stores[1]
    assert len(list_stores(tmp_path)) == 2


def test_image_change_invalidates_its_features(paths, tmp_path):
    import os
    import shutil

    copy = tmp_path / "image.dicom"
    shutil.copy(paths[0], copy)
    encoder = build_encoder("pixels")
    extract_features(encoder, FeatureRequest(), [copy], tmp_path / "cache", num_workers=0)
    os.utime(copy, ns=(1, 1))
    again = extract_features(encoder, FeatureRequest(), [copy], tmp_path / "cache", num_workers=0)
    assert again.encoded == 1


def test_store_with_another_identity_is_refused(paths, tmp_path):
    encoder = build_encoder("pixels")
    result = extract_features(encoder, FeatureRequest(), paths[:2], tmp_path, num_workers=0)
    manifest_path = result.store.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["key"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="refusing to overwrite"):
        FeatureStore.open(tmp_path, encoder.identity(FeatureRequest()))
