"""Generic encoders (`hf:`, `timm:`, `open_clip:`): tiny models with random weights written in each library's own
on-disk format into a private Hugging Face cache or folder, then read back: preprocessing from their configs,
features equal to the library's own forward, an end-to-end `cxrbench run`, cache keys that follow revisions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_released_formats import write_hf_cache
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import CxrbenchError, SpecError, WeightsError
from cxrbench.features.extract import store_identity
from cxrbench.registry import registry

runner = CliRunner()
REV_A, REV_B = "a" * 40, "b" * 40
PROCESSOR = {"image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 32},
             "resample": 2, "do_center_crop": True, "crop_size": {"height": 28, "width": 28}, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.4, 0.45, 0.5], "image_std": [0.2, 0.25, 0.3]}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty private Hugging Face cache, offline, that huggingface_hub reads from."""
    import huggingface_hub.constants as constants

    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    registry()._generic.clear()  # names resolved against another test's cache
    yield folder
    registry()._generic.clear()


def dinov2_folder(folder, seed: int = 0, processor: dict = PROCESSOR):
    """A 2-block, 32-wide DINOv2 saved by transformers (config.json + model.safetensors) with its processor config."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
                                     image_size=28, mlp_ratio=2)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return model


def cache_dinov2(tmp_path, hub, repo="org/tiny-dinov2", revision=REV_A, seed=0):
    export = tmp_path / f"export-{revision[:4]}"
    model = dinov2_folder(export, seed)
    names = ("config.json", "model.safetensors", "preprocessor_config.json")
    write_hf_cache(hub, repo, revision, {n: export / n for n in names})
    return model


def test_hf_dinov2_reads_its_processor_and_matches_transformers(tmp_path, hub):
    model = cache_dinov2(tmp_path, hub)
    encoder = build_encoder("hf:org/tiny-dinov2")
    p = encoder.preprocessing
    assert (p.size, p.resize, p.crop, p.interpolation) == (32, "shortest_edge", 28, "bilinear")
    assert p.mean == tuple(PROCESSOR["image_mean"]) and p.std == tuple(PROCESSOR["image_std"])
    assert encoder.weights.identity == f"hf:org/tiny-dinov2@{REV_A}"
    assert encoder.spec.weights.revision == REV_A
    pixels = torch.randn(2, 3, 28, 28)
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True, layers=(0,)))
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    torch.testing.assert_close(features.global_embedding, out.pooler_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_tokens.reshape(2, 4, 32), out.last_hidden_state[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.layers[0].reshape(2, 4, 32), model.layernorm(out.hidden_states[1])[:, 1:],
                               atol=1e-5, rtol=0)
    assert (encoder.embed_dim, encoder.patch_stride, encoder.num_layers) == (32, 14, 2)


def test_hf_clip_full_folder_loads_the_image_tower(tmp_path, hub):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=16,
                  image_size=32)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=99)
    clip = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)).eval()
    clip.save_pretrained(tmp_path / "clip", safe_serialization=True)
    processor = {**PROCESSOR, "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "resample": 3}
    (tmp_path / "clip" / "preprocessor_config.json").write_text(json.dumps(processor))
    encoder = build_encoder(f"hf:{tmp_path / 'clip'}")  # a local folder, not the cache
    assert encoder.weights.identity.startswith("sha256:") and encoder.preprocessing.interpolation == "bicubic"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = clip.vision_model(pixel_values=pixels).pooler_output
    torch.testing.assert_close(encoder.encode(pixels, FeatureRequest()).global_embedding, pooled, atol=1e-5, rtol=0)


def timm_folder(folder, global_pool: str = "avg"):
    """A 2-block, 32-wide timm ViT saved by timm (`save_for_hf`: config.json with its pretrained_cfg + safetensors)."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(2)
    args = dict(img_size=32, embed_dim=32, depth=2, num_heads=2, global_pool=global_pool)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, **args).eval()
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 32, 32), "crop_pct": 0.8, "interpolation": "bilinear",
                            "mean": (0.3, 0.3, 0.3), "std": (0.2, 0.2, 0.2), "crop_mode": "center"}
    save_for_hf(model, folder, model_args=args, safe_serialization=True)
    return model


@pytest.mark.parametrize("family", ["vit", "dinov2_with_registers"])
def test_hf_vit_classifier_and_dinov2_registers_match_transformers(tmp_path, hub, family):
    """A ViT image-classification fine-tune (its classifier is left out) and a DINOv2 with register tokens (they are
    not patches): the CLS token and the patch grid equal the library's own base model."""
    import transformers

    torch.manual_seed(4)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32)
    if family == "vit":
        saved = transformers.ViTForImageClassification(transformers.ViTConfig(patch_size=16, num_labels=3, **common))
    else:
        saved = transformers.Dinov2WithRegistersModel(
            transformers.Dinov2WithRegistersConfig(patch_size=16, num_register_tokens=4, **common))
    saved.eval().save_pretrained(tmp_path / "m", safe_serialization=True)
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    encoder = build_encoder(f"hf:{tmp_path / 'm'}")
    pixels = torch.randn(2, 3, 32, 32)
    base = saved.vit if family == "vit" else saved
    with torch.no_grad():
        last = base(pixel_values=pixels).last_hidden_state
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True))
    torch.testing.assert_close(features.global_embedding, last[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_tokens.reshape(2, 4, 32), last[:, -4:], atol=1e-5, rtol=0)


def test_timm_hub_model_matches_timm_forward(tmp_path, hub):
    model = timm_folder(tmp_path / "timm")
    write_hf_cache(hub, "org/tiny-vit", REV_A, {n: tmp_path / "timm" / n for n in ("config.json", "model.safetensors")})
    encoder = build_encoder("timm:hf-hub:org/tiny-vit")
    p = encoder.preprocessing
    assert (p.size, p.crop, p.resize, p.interpolation) == (int(32 / 0.8), 32, "shortest_edge", "bilinear")
    assert (p.mean, p.std) == ((0.3,) * 3, (0.2,) * 3)
    assert encoder.weights.identity == f"hf:org/tiny-vit@{REV_A}"
    assert encoder.load_report.dropped == ["head.bias", "head.weight"]
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(pixels), pre_logits=True)  # mean patch, then fc_norm
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True))
    torch.testing.assert_close(features.global_embedding, pooled, atol=1e-5, rtol=0)
    assert features.patch_tokens.shape == (2, 2, 2, 32)


def xray_like(height: int = 45, width: int = 61) -> np.ndarray:
    """A smooth 8-bit image, not square (so resizing the shortest edge and centre-cropping both matter)."""
    y, x = np.mgrid[0:height, 0:width]
    return (127 + 90 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint8)


def assert_same_pixels(ours: torch.Tensor, theirs: torch.Tensor, std: float) -> None:
    """Equal up to one 8-bit level, where the libraries' resampling (PIL / torchvision) rounds differently."""
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1 / 255 / std + 1e-5


def test_preprocessing_equals_each_librarys_own_eval_transform(tmp_path, hub):
    """What was read from the configs reproduces each library's own pipeline on the same 8-bit image."""
    import open_clip
    import timm
    from PIL import Image
    from transformers import AutoImageProcessor

    image = xray_like()
    rgb = Image.fromarray(image).convert("RGB")
    dinov2_folder(tmp_path / "hf")
    hf = build_encoder(f"hf:{tmp_path / 'hf'}")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "hf")
    assert_same_pixels(hf.preprocessor(image / 255.0), processor(rgb, return_tensors="pt")["pixel_values"][0], 0.2)
    timm_model = timm_folder(tmp_path / "timm")
    ours = build_encoder(f"timm:local-dir:{tmp_path / 'timm'}")
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=timm_model))
    assert_same_pixels(ours.preprocessor(image / 255.0), transform(rgb), 0.2)
    open_clip_folder(tmp_path / "oc")
    ours = build_encoder(f"open_clip:local-dir:{tmp_path / 'oc'}")
    _, _, transform = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'oc'}", load_weights=False)
    assert_same_pixels(ours.preprocessor(image / 255.0), transform(rgb), 0.3)


def open_clip_folder(folder):
    """A tiny CLIP in open_clip's Hub format: open_clip_config.json (model_cfg + preprocess_cfg) + safetensors."""
    import open_clip

    folder.mkdir()
    config = {"model_cfg": {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 16,
                                                              "head_width": 16},
                            "text_cfg": {"context_length": 8, "vocab_size": 99, "width": 32, "heads": 2, "layers": 1}},
              "preprocess_cfg": {"mean": [0.4, 0.4, 0.4], "std": [0.3, 0.3, 0.3], "interpolation": "bilinear",
                                 "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(3)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    return model


def test_open_clip_hub_model_matches_encode_image(tmp_path, hub):
    model = open_clip_folder(tmp_path / "oc")
    write_hf_cache(hub, "org/tiny-clip", REV_A,
                   {n: tmp_path / "oc" / n for n in ("open_clip_config.json", "open_clip_model.safetensors")})
    encoder = build_encoder(f"open_clip:hf-hub:org/tiny-clip@{REV_A}")
    p = encoder.preprocessing
    assert (p.size, p.crop, p.interpolation, p.mean, p.std) == (32, 32, "bilinear", (0.4,) * 3, (0.3,) * 3)
    pixels = torch.randn(2, 3, 32, 32)
    cls = encoder.encode(pixels, FeatureRequest()).global_embedding
    with torch.no_grad():
        projected = model.encode_image(pixels)
        torch.testing.assert_close(cls @ model.visual.proj, projected, atol=1e-5, rtol=0)


def test_a_new_revision_or_changed_file_is_a_new_cache_key(tmp_path, hub):
    cache_dinov2(tmp_path, hub, revision=REV_A, seed=0)
    cache_dinov2(tmp_path, hub, repo="org/other", revision=REV_B, seed=1)
    shutil.copytree(hub / "models--org--other/snapshots" / REV_B, hub / "models--org--tiny-dinov2/snapshots" / REV_B)
    request = FeatureRequest()
    key_a = store_identity(build_encoder(f"hf:org/tiny-dinov2@{REV_A}"), request)
    key_b = store_identity(build_encoder(f"hf:org/tiny-dinov2@{REV_B}"), request)
    assert key_a["weights"] != key_b["weights"] and key_a != key_b
    folder = tmp_path / "local"
    dinov2_folder(folder, seed=0)
    before = store_identity(build_encoder(f"hf:{folder}"), request)
    registry()._generic.clear()
    dinov2_folder(folder, seed=5)  # the same folder, other weights
    assert store_identity(build_encoder(f"hf:{folder}"), request)["weights"] != before["weights"]


def test_random_weights_build_from_the_config_alone(tmp_path, hub):
    export = tmp_path / "export"
    dinov2_folder(export)
    write_hf_cache(hub, "org/config-only", REV_A, {n: export / n for n in ("config.json", "preprocessor_config.json")})
    encoder = build_encoder("hf:org/config-only", weights="random:4")
    assert encoder.weights.identity == "random:seed=4" and encoder.embed_dim == 32
    with pytest.raises(WeightsError, match="lacks"):
        build_encoder("hf:org/config-only")


def test_library_model_names_need_no_files_for_random_weights(hub):
    """timm's and open_clip's own model names carry their configs: random weights need nothing on disk, and the
    released weights are looked for in the Hub repository the library names."""
    import open_clip
    import timm

    encoder = build_encoder("timm:vit_tiny_patch16_224.augreg_in21k", weights="random")
    cfg = timm.models.get_pretrained_cfg("vit_tiny_patch16_224.augreg_in21k")
    assert (encoder.preprocessing.crop, encoder.preprocessing.size) == (224, int(224 / cfg.crop_pct))
    assert encoder.spec.weights.hub_repo == cfg.hf_hub_id and encoder.embed_dim == 192
    spec = registry().get("encoders", "open_clip:ViT-B-32/openai").spec
    assert spec.preprocessing.mean == open_clip.get_pretrained_cfg("ViT-B-32", "openai")["mean"]
    assert (spec.embedding_dim, spec.patch_stride, spec.preprocessing.crop) == (768, 32, 224)
    with pytest.raises(WeightsError, match="hf download timm/vit_base_patch32_clip_224.openai"):
        build_encoder("open_clip:ViT-B-32/openai")


def test_unsupported_type_missing_cache_and_bad_names_say_what_to_do(tmp_path, hub):
    with pytest.raises(WeightsError, match="not in the Hugging Face cache.*hf download org/absent.*random, too"):
        registry().get("encoders", "hf:org/absent")
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    with pytest.raises(SpecError, match="model_type 'bert'.*dinov2, dinov2_with_registers, vit, clip"):
        registry().get("encoders", f"hf:{folder}")
    with pytest.raises(SpecError, match="is a timm ResNet; timm: loads VisionTransformer"):
        registry().get("encoders", "timm:resnet50")  # builds on the meta device; not a VisionTransformer
    with pytest.raises(SpecError, match="timm knows no model"):
        registry().get("encoders", "timm:no_such_model_x")
    with pytest.raises(SpecError, match="open_clip has no model"):
        registry().get("encoders", "open_clip:NoSuchModel/openai")
    with pytest.raises(CxrbenchError, match="hf:ORG/NAME"):
        registry().get("encoders", "rad-dinoo")
    with pytest.raises(SpecError, match="revision in the name"):
        build_encoder("hf:org/absent", revision="main")


def test_list_encoders_explains_the_three_forms():
    result = runner.invoke(app, ["list", "encoders"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for form in ("hf:ORG/NAME[@REV]", "timm:NAME", "open_clip:NAME"):
        assert form in text


def _run(vindr_root, tmp_path, encoder):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "vindr", "--data-root", str(vindr_root), "--out", str(out), "--cache-dir",
                                 str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "50", "--encoder", encoder])
    assert result.exit_code == 0, result.output
    [metrics] = list((out / "vindr").glob("*/linear/metrics.json"))
    return metrics, json.loads(metrics.read_text())


def test_run_end_to_end_hf(tmp_path, hub, vindr_root):
    cache_dinov2(tmp_path, hub)
    path, metrics = _run(vindr_root, tmp_path, f"hf:org/tiny-dinov2@{REV_A}")
    assert metrics["encoder"] == f"hf:org/tiny-dinov2@{REV_A}"
    assert metrics["run_identity"]["weights"] == f"hf:org/tiny-dinov2@{REV_A}"
    assert path.parent.parent.name == f"hf--org--tiny-dinov2@{REV_A}"  # one folder, not hf:org/...


@pytest.mark.parametrize("form", ["timm", "open_clip"])
def test_run_end_to_end_timm_and_open_clip(tmp_path, hub, vindr_root, form):
    folder = tmp_path / form
    timm_folder(folder, "token") if form == "timm" else open_clip_folder(folder)
    path, metrics = _run(vindr_root, tmp_path, f"{form}:local-dir:{folder}")
    assert metrics["encoder"] == f"{form}:local-dir:{folder}"
    assert metrics["run_identity"]["weights"].startswith("sha256:")
