"""The GPU path on the CPU: `--precision bf16` features in a store of their own, `--batch-size auto`'s search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import CacheError, CxrbenchError
from cxrbench.features.batch_size import CPU_BATCH, choose_batch_size, largest_fitting, parse_batch_size
from cxrbench.features.cache import FeatureStore
from cxrbench.features.extract import extract_features, store_identity
from cxrbench.runs.pipeline import MachineOptions
from cxrbench.results.schema import validate_run


@pytest.fixture(scope="module")
def paths(vindr_root) -> list[str]:
    return sorted(str(p) for p in (vindr_root / "train").glob("*.dicom"))[:16]


def _vit():
    return build_encoder("dinov2-small", weights="random", image_size=56)


def test_bf16_features_are_close_to_fp32_in_a_store_of_their_own_and_reused(paths, tmp_path):
    fp32 = extract_features(_vit(), FeatureRequest(), paths, tmp_path, batch_size=8, num_workers=0)
    bf16 = extract_features(_vit(), FeatureRequest(), paths, tmp_path, batch_size=8, num_workers=0, precision="bf16")
    assert bf16.store.folder != fp32.store.folder and bf16.store.manifest["identity"]["precision"] == "bf16"
    a, b = fp32.store.load(fp32.keys), bf16.store.load(bf16.keys)
    relative = np.linalg.norm(b - a) / np.linalg.norm(a)
    assert 0 < relative < 0.03, relative
    again = _vit()
    assert extract_features(again, FeatureRequest(), paths, tmp_path, num_workers=0, precision="bf16").encoded == 0
    assert again._model is None  # reused: the network was never built
    assert "precision" not in fp32.store.manifest["identity"]  # fp32 stores keep their keys
    assert store_identity(again, FeatureRequest(), "fp32") == again.identity(FeatureRequest())


def test_an_unknown_precision_is_refused_before_any_work():
    with pytest.raises(CxrbenchError, match="--precision fp8: choose one of fp32, bf16, fp16"):
        MachineOptions(cache_root=None, precision="fp8")


class _FakeGpu:
    """The pixels encoder on a pretend GPU that runs out of memory above `fits` images per batch."""

    def __init__(self, fits: int):
        self.inner, self.fits, self.tried = build_encoder("pixels"), fits, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, pixels, request):
        self.tried.append(len(pixels))
        if len(pixels) > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.encode(pixels, request)


@pytest.mark.parametrize("fits, limit, chosen, tried", [
    (40, 256, 32, [256, 128, 64, 32]),
    (1000, 256, 256, [256]),
    (1000, 100, 64, [64]),  # at most the number of images
    (1, 256, 1, [256, 128, 64, 32, 16, 8, 4, 2, 1]),
])
def test_auto_batch_size_is_the_largest_power_of_two_that_fits(fits, limit, chosen, tried):
    encoder = _FakeGpu(fits)
    assert largest_fitting(encoder, FeatureRequest(), "cpu", "bf16", limit) == chosen
    assert encoder.tried == tried


def test_auto_batch_size_says_so_when_not_one_image_fits():
    with pytest.raises(CxrbenchError, match="not even one image fits.*--precision bf16"):
        largest_fitting(_FakeGpu(0), FeatureRequest(), "cpu", "fp32", 256)


def test_auto_batch_size_on_the_cpu_probes_nothing():
    encoder = _FakeGpu(0)
    assert choose_batch_size(encoder, FeatureRequest(), "cpu", "fp32", 1000) == CPU_BATCH and not encoder.tried


def test_batch_size_option():
    assert parse_batch_size("auto") is None and parse_batch_size("16") == 16
    for bad in ("0", "-3", "many", "1.5"):
        with pytest.raises(CxrbenchError, match="positive whole number"):
            parse_batch_size(bad)
    refused = CliRunner().invoke(app, ["extract", "vindr", "-e", "pixels", "--batch-size", "many"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "--batch-size" in refused.output and "'many'" in refused.output


def test_non_finite_fp16_features_name_the_precision(tmp_path):
    store = FeatureStore.open(tmp_path, store_identity(_vit(), FeatureRequest(), "fp16"))
    with pytest.raises(CacheError, match="--precision fp16 overflows.*use --precision bf16"):
        store.write_shard(["a"], {"global": np.array([[np.inf, 1.0]], dtype=np.float32)})


def test_a_bf16_run_never_silently_replaces_an_fp32_run_of_the_same_head(vindr_root, tmp_path):
    """The run folder is the same (the head, not the numerics, names it); the run identity records the precision, so
    the second run is refused as other settings instead of overwriting the first."""
    args = ["run", "vindr", "--encoder", "pixels", "--head", "logistic", "--seeds", "1", "--bootstrap", "20",
            "--data-root", str(vindr_root), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--device", "cpu"]
    runner = CliRunner()
    first = runner.invoke(app, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    stored = (tmp_path / "out/vindr/pixels/logistic/metrics.json").read_text()
    assert '"features"' not in stored  # fp32 from the originals: the identity every stored run already has
    second = runner.invoke(app, [*args, "--precision", "bf16"], catch_exceptions=False)
    assert second.exit_code == 2, second.output
    assert "other settings (features differ)" in " ".join(second.output.split())
    assert (tmp_path / "out/vindr/pixels/logistic/metrics.json").read_text() == stored
    tagged = runner.invoke(app, [*args, "--precision", "bf16", "--pixel-cache", "--tag", "bf16"], catch_exceptions=False)
    assert tagged.exit_code == 0, tagged.output
    identity = json.loads((tmp_path / "out/vindr/pixels/logistic_bf16/metrics.json").read_text())["run_identity"]
    assert identity["features"] == {"precision": "bf16", "pixel_cache": "uint16"}
    assert validate_run(tmp_path / "out/vindr/pixels/logistic_bf16") == []  # the schema documents it
