"""The class tokens of chosen blocks (`FeatureRequest.cls_layers`) and the grid's `blocks` axis built on them:
DINOv2's linear evaluation, which concatenates the normed CLS tokens of the last 1 or 4 blocks (DINOv2-radiology
Table 4 through the authors' public code)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.encoders.hf_clip import HFClipVisionEncoder
from cxrbench.encoders.hf_dinov2 import HFDinov2Encoder
from cxrbench.encoders.timm_vit import TimmViTEncoder
from cxrbench.encoders.weights import resolve_weights
from cxrbench.errors import CxrbenchError, SpecError
from cxrbench.features.cache import FeatureStore
from cxrbench.features.extract import extract_features, store_identity
from cxrbench.heads.base import FeatureSet
from cxrbench.heads.grid import GridHead
from cxrbench.registry import encoder_spec, registry

SIZE = 56  # 4 x 4 patches of 14 px


def tiny(name: str, encoder_class, **architecture):
    """A registered encoder's adapter with a few narrow blocks, random weights and every norm made non-trivial (so a
    missing or wrong final norm shows)."""
    spec = encoder_spec(name)
    spec = dataclasses.replace(spec, architecture={**spec.architecture, "image_size": SIZE, **architecture})
    encoder = encoder_class(spec, resolve_weights(spec, "random"), spec.sized(SIZE))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for module in encoder.model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=generator))
    return encoder


@pytest.fixture(scope="module")
def paths(vindr_root) -> list[str]:
    return sorted(str(p) for p in (vindr_root / "train").glob("*.dicom"))[:3]


def pixels_of(encoder, paths: list[str]) -> torch.Tensor:
    return torch.stack([encoder.preprocessor(read_image(p)) for p in paths])


def test_hf_dinov2_cls_layers_are_the_normed_class_tokens_of_those_blocks(paths):
    encoder = tiny("dinov2-large", HFDinov2Encoder, hidden_size=32, num_hidden_layers=5, num_attention_heads=2)
    pixels = pixels_of(encoder, paths)
    features = encoder.encode(pixels, FeatureRequest(layers=(2,), cls_layers=(1, 3, 4)))
    model = encoder.model
    with torch.no_grad():
        output = model(pixel_values=pixels, output_hidden_states=True)
    norm = model.layernorm
    for block in (1, 3, 4):
        expected = F.layer_norm(output.hidden_states[block + 1][:, 0], (32,), norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(features.cls_layers[block], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(features.cls_layers[4], output.last_hidden_state[:, 0], atol=1e-5, rtol=0)
    assert set(features.cls_layers) == {1, 3, 4} and features.layers[2].shape == (3, 4, 4, 32)
    assert set(features.arrays()) == {"global", "layer_2", "cls_layer_1", "cls_layer_3", "cls_layer_4"}


def test_hf_clip_cls_layers_are_the_post_layernormed_class_tokens_of_those_blocks(paths):
    encoder = tiny("clip-l14", HFClipVisionEncoder, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                   intermediate_size=64)
    pixels = pixels_of(encoder, paths)
    features = encoder.encode(pixels, FeatureRequest(cls_layers=(0, 2, 3)))
    model = encoder.model
    with torch.no_grad():
        output = model(pixel_values=pixels, output_hidden_states=True)
    norm = getattr(model, "vision_model", model).post_layernorm
    for block in (0, 2, 3):
        expected = F.layer_norm(output.hidden_states[block + 1][:, 0], (32,), norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(features.cls_layers[block], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(features.cls_layers[3], output.pooler_output, atol=1e-5, rtol=0)


def test_timm_vit_cls_layers_are_the_normed_class_tokens_of_those_blocks(paths):
    """DINOv2 weights given as a `.pth` file (torch.hub, RayDINO) are read onto timm's ViT: the blocks run by hand here."""
    encoder = tiny("dinov2-large", TimmViTEncoder, hidden_size=32, num_hidden_layers=5, num_attention_heads=2)
    pixels = pixels_of(encoder, paths)
    features = encoder.encode(pixels, FeatureRequest(layers=(3,), cls_layers=(0, 3, 4)))
    model = encoder.model
    with torch.no_grad():
        x = model.norm_pre(model._pos_embed(model.patch_embed(pixels)))
        expected = {}
        for block, module in enumerate(model.blocks):
            x = module(x)
            expected[block] = F.layer_norm(x[:, 0], (32,), model.norm.weight, model.norm.bias, model.norm.eps)
    for block in (0, 3, 4):
        torch.testing.assert_close(features.cls_layers[block], expected[block], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.cls_layers[4], features.global_embedding, atol=1e-5, rtol=0)
    assert features.layers[3].shape == (3, 4, 4, 32)


def test_cls_layers_are_cached_under_their_own_key_and_other_keys_are_unchanged(paths, tmp_path):
    # stores without cls_layers keep the keys main computed before the field existed (pinned from main, 59f421d)
    for name, before in (("dinov2-small", "dinov2-small-32b8a83f39d2aaa6"), ("clip-l14", "clip-l14-cdbf292f067bbbc5")):
        encoder = build_encoder(name, weights="random", image_size=SIZE)
        assert FeatureStore.open(tmp_path / "keys", store_identity(encoder, FeatureRequest())).folder.name == before
    encoder = tiny("dinov2-large", HFDinov2Encoder, hidden_size=32, num_hidden_layers=5, num_attention_heads=2)
    request = FeatureRequest(cls_layers=(3, 4))
    result = extract_features(encoder, request, paths, tmp_path, num_workers=0)
    plain = extract_features(encoder, FeatureRequest(), paths, tmp_path, num_workers=0)
    assert result.store.folder != plain.store.folder
    direct = encoder.encode(pixels_of(encoder, paths), request)
    for block in (3, 4):  # the store keeps float16
        np.testing.assert_allclose(result.store.load(result.keys, f"cls_layer_{block}"), direct.cls_layers[block].numpy(),
                                   atol=2e-3, rtol=1e-3)


def test_an_encoder_without_intermediate_class_tokens_refuses_the_request(tmp_path):
    from cxrbench.data.nih.synthetic import write_synthetic_nih_cxr14

    encoder = build_encoder("pixels")
    with pytest.raises(CxrbenchError, match="'pixels' does not provide the class tokens of intermediate blocks"):
        encoder.check_request(FeatureRequest(cls_layers=(0,)))
    root = write_synthetic_nih_cxr14(tmp_path / "nih", size=32)
    result = CliRunner().invoke(app, ["run", "nih-cxr14-15", "--encoder", "pixels", "--head", "linear-dinov2",
                                      "--data-root", str(root), "--out", str(tmp_path / "out"), "--cache-dir",
                                      str(tmp_path / "cache"), "--seeds", "1"])
    assert result.exit_code != 0
    assert "does not provide the class tokens" in result.output and "blocks: 1" in result.output


def test_the_online_source_feeds_the_class_tokens_of_the_asked_blocks(paths):
    """A grid trained on augmented views (`features: online`) gets the same inputs as from the cache."""
    from cxrbench.training.augment import AugmentationParams, AugmentationPolicy, view_seed
    from cxrbench.training.online import ImageViews, OnlineBatches

    encoder = tiny("dinov2-large", HFDinov2Encoder, hidden_size=32, num_hidden_layers=5, num_attention_heads=2)
    policy = AugmentationPolicy(AugmentationParams(), encoder.preprocessing)
    source = OnlineBatches(encoder, ImageViews(paths, policy, encoder.preprocessor, seed=3))
    (inputs,) = list(source.epoch([np.array([2, 0])], 1, ("global", "cls_layer_1", "cls_layer_4")))
    views = torch.stack([encoder.preprocessor(policy(read_image(paths[i]), view_seed(3, 1, i))) for i in (2, 0)])
    expected = encoder.encode(views, FeatureRequest(cls_layers=(1, 4)))
    for block in (1, 4):
        torch.testing.assert_close(inputs[f"cls_layer_{block}"], expected.cls_layers[block])
    pixels = build_encoder("pixels")
    refusing = OnlineBatches(pixels, ImageViews(paths, policy, pixels.preprocessor, seed=3))
    with pytest.raises(CxrbenchError, match="does not provide the class tokens"):
        next(refusing.epoch([np.array([0])], 0, ("global", "cls_layer_0")))


def _head(**overrides) -> GridHead:
    return GridHead(registry().get("heads", "linear-dinov2").spec, overrides, "binary", "auroc")


def standardised(array: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores over every row (and token), population std: written here, not the head's Standardiser."""
    flat = array.reshape(-1, array.shape[-1]).astype(np.float64)
    return (array - flat.mean(axis=0)) / flat.std(axis=0)


def test_last_four_blocks_are_the_concatenated_standardised_class_tokens():
    rng = np.random.default_rng(7)
    n, blocks, dim = 80, 6, 5
    cls_layers = {i: (rng.normal(size=(n, dim)) * (i + 1) + i).astype(np.float32) for i in range(blocks)}
    patches = rng.normal(size=(n, 3, 3, 4)).astype(np.float32)
    labels = (cls_layers[5][:, :1] > 5).astype(np.float32)
    train = FeatureSet(cls_layers[5], labels, patches, cls_layers=cls_layers)
    head = _head(lr=[1e-2], pooling=["cls", "cls+avg"], blocks=[4], epochs=2, min_steps=0)
    head.select_blocks(blocks)
    assert head.needs == ("global", "patches", "cls_layer_2", "cls_layer_3", "cls_layer_4", "cls_layer_5")
    head.fit(train, train, seed=0)
    last4 = np.concatenate([standardised(cls_layers[i]) for i in (2, 3, 4, 5)], axis=1)  # block order, DINOv2's
    mean_token = standardised(patches).reshape(n, -1, 4).mean(axis=1)
    for pooling, inputs in (("cls", last4), ("cls+avg", np.concatenate([last4, mean_token], axis=1))):
        module, _ = head.families[(pooling, 1, 4)]
        assert module.dim == inputs.shape[1]
        logits = inputs @ module.out_w[0].detach().numpy().astype(np.float64) + module.out_b[0].detach().numpy()
        head.chosen = head.configs.index(next(c for c in head.configs if c.pooling == pooling))
        np.testing.assert_allclose(head.predict(train), 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_blocks_axis_in_the_grid_and_its_errors():
    full = _head()  # linear-dinov2: 13 learning rates x blocks {1, 4} x pooling {cls, cls+avg}
    assert len(full.configs) == 52 and {c.blocks for c in full.configs} == {1, 4} and full.reads_blocks
    with pytest.raises(RuntimeError, match="select_blocks"):
        _ = full.needs
    with pytest.raises(SpecError, match="blocks 4 asks for more blocks than the encoder's 3"):
        full.select_blocks(3)
    with pytest.raises(SpecError, match="pooling attentive does not use"):
        _head(pooling=["cls", "attentive"], blocks=[1, 4])
    one = _head(blocks=1, pooling="cls", lr=1e-3)  # the default: left out of the parameters, names as before
    assert "blocks" not in one.params and not one.reads_blocks and one.needs == ("global",)
    assert one.configs[0].name == "cls-d1-lr0.001-wd0"
    assert "blocks" not in GridHead(registry().get("heads", "raydino-grid").spec, {}, "binary", "auroc").params


def test_run_with_the_last_four_blocks_of_a_registered_dinov2(tmp_path):
    """The whole path: the probe asks the encoder for its last four blocks' class tokens, the store keeps them, the
    grid trains on them and reports which configuration won."""
    from cxrbench.data.nih.synthetic import write_synthetic_nih_cxr14

    root = write_synthetic_nih_cxr14(tmp_path / "nih", size=32)
    params = ["pooling=[cls]", "blocks=[1,4]", "lr=[0.01]", "epochs=1", "min_steps=2"]
    result = CliRunner().invoke(app, [
        "run", "nih-cxr14-15", "--encoder", "dinov2-small", "--weights", "random", "--image-size", str(SIZE),
        "--head", "linear-dinov2", "--data-root", str(root), "--out", str(tmp_path / "out"), "--cache-dir",
        str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "20", *[x for p in params for x in ("--head-param", p)]])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / "nih-cxr14-15" / "dinov2-small" / "linear-dinov2"
    (reports,) = json.loads((folder / "metrics.json").read_text())["heads"].values()  # one seed
    assert {report["chosen"]["grid_size"] for report in reports.values()} == {2}
    assert set(pd.read_csv(folder / "selection.csv")["blocks"]) == {1, 4}
    manifests = [json.loads(p.read_text()) for p in Path(tmp_path / "cache").glob("features/*/manifest.json")]
    assert any("cls_layer_11" in json.dumps(m) and "cls_layer_8" in json.dumps(m) for m in manifests)
