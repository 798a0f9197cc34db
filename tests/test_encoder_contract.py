"""The feature contract for every registered encoder, and `cxrbench embed`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.common.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.encoders.preprocessing import Preprocessor
from cxrbench.registry import encoder_spec, registry

ENCODERS = registry().names("encoders")
# small inputs keep CPU tests fast; multiples of each patch size
SMALL = {"pixels": None, "biovil-t": 224, "chexzero": None, "raydino": 64, "mrm": 64, "biomedclip": 64}


def small_size(name: str) -> int | None:
    return SMALL.get(name, 56)


def test_every_paper_encoder_is_registered():
    expected = {"rad-dino", "raydino", "dinov2-small", "dinov2-base", "dinov2-large", "dinov2-giant", "biovil-t",
                "chexzero", "mrm", "biomedclip", "clip-l14", "clip-l14-336", "pixels"}
    assert expected <= set(ENCODERS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "dinov2-giant" else n for n in ENCODERS])
def test_feature_contract(name):  # dinov2-giant (1.1B parameters, 45 s to build) runs with `-m slow`
    spec = encoder_spec(name)
    encoder = build_encoder(name, weights="random", image_size=small_size(name))
    assert (encoder.embed_dim, encoder.patch_stride) == (spec.embedding_dim, spec.patch_stride)
    assert all(0 <= i < encoder.num_layers for i in spec.default_layers)
    side = encoder.preprocessor.output_size[0]
    pixels = torch.rand(2, spec.preprocessing.channels, side, side)
    request = FeatureRequest(patch_tokens=True, layers=tuple(spec.default_layers))
    features = encoder.encode(pixels, request)
    assert features.global_embedding.shape == (2, spec.embedding_dim)
    grid = side // spec.patch_stride
    assert features.patch_tokens.shape[:3] == (2, grid, grid)
    assert sorted(features.layers) == sorted(spec.default_layers)
    assert torch.isfinite(features.global_embedding).all()


@pytest.mark.parametrize("name", ENCODERS)
def test_constant_image_maps_to_declared_normalisation(name):
    """A constant grey image: every output value is (quantised value x range - mean) / std, at the declared size."""
    pre = encoder_spec(name).preprocessing
    value = 0.6
    image = np.full((300, 260), value, dtype=np.float32)
    out = Preprocessor(pre)(image)
    side = pre.crop or pre.size
    assert out.shape == (pre.channels, side, side)
    level = round(value * 255) / 255 if pre.quantize_bits == 8 else value
    low, high = pre.value_range
    mean = torch.tensor(pre.mean * (pre.channels if len(pre.mean) == 1 else 1)).view(-1, 1, 1)
    std = torch.tensor(pre.std * (pre.channels if len(pre.std) == 1 else 1)).view(-1, 1, 1)
    expected = ((low + level * (high - low)) - mean) / std
    if pre.letterbox:  # CheXzero: the letterbox pads the short side with black
        centre = out[:, side // 2 - 2 : side // 2 + 2, side // 2 - 2 : side // 2 + 2]
        torch.testing.assert_close(centre, expected.expand_as(centre), atol=1e-4, rtol=0)
        black = (low - mean) / std
        torch.testing.assert_close(out[:, side // 2, :2], black.view(-1, 1).expand(-1, 2), atol=1e-3, rtol=0)
    else:
        torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=0)


# Runs through the whole pipeline are encoder-agnostic past the feature contract above; those of the ViT-L/g-sized
# encoders and of the slowest others (30 s to four minutes each on 2 cores, mostly building the random network and
# encoding) run with `-m slow`; dinov2-small keeps the default suite's coverage (dinov2-base and biomedclip, 40 s each,
# moved to `-m slow` to keep the default suite inside CI's budget).
LARGE = ("dinov2-large", "dinov2-giant", "clip-l14", "clip-l14-336", "raydino", "chexzero", "biovil-t", "rad-dino", "mrm",
         "dinov2-base", "biomedclip")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
                                  for n in ENCODERS if n not in ("pixels",)])
def test_run_vindr_with_random_weights(name, vindr_root, tmp_path):
    size = small_size(name)
    args = ["run", "vindr", "--encoder", name, "--weights", "random", "--data-root", str(vindr_root), "--seeds", "1",
            "--bootstrap", "50", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, args + (["--image-size", str(size)] if size else []))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "vindr" / name / "linear" / "metrics.json").read_text())
    assert metrics["metrics"]["auprc"]["macro"]["mean"] is not None


def test_embed_exports_exact_features_with_ids(vindr_root, tmp_path):
    folder = vindr_root / "test"
    runner = CliRunner()
    out = tmp_path / "features.safetensors"
    args = ["embed", str(folder), "--encoder", "dinov2-small", "--weights", "random", "--image-size", "56",
            "--patches", "--layers", "3,11", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with safe_open(str(out), "np") as handle:
        ids = json.loads(handle.metadata()["image_ids"])
        exported = {k: handle.get_tensor(k) for k in handle.keys()}
    files = sorted(folder.glob("*.dicom"))
    assert ids == [p.stem for p in files]
    encoder = build_encoder("dinov2-small", weights="random", image_size=56)
    pixels = torch.stack([encoder.preprocessor(read_image(p)) for p in files[:3]])
    direct = encoder.encode(pixels, FeatureRequest(patch_tokens=True, layers=(3, 11)))
    np.testing.assert_allclose(exported["global"][:3], direct.global_embedding.numpy(), atol=1e-5)
    np.testing.assert_allclose(exported["layer_3"][:3], direct.layers[3].numpy(), atol=1e-5)
    assert exported["patches"].shape == (len(files), 4, 4, 384)

    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    npz = tmp_path / "features.npz"
    result = runner.invoke(app, ["embed", str(files[0]), str(files[1]), "--encoder", "pixels", "--out", str(npz)])
    assert result.exit_code == 0, result.output
    data = np.load(npz)
    assert list(data["image_ids"]) == [files[0].stem, files[1].stem] and data["global"].shape == (2, 1024)
