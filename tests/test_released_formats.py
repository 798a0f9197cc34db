"""Each encoder loaded from random weights saved in its release's exact file format and key layout,
compared with a reference built independently of the adapter on the same input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Dinov2Config, Dinov2Model

from cxrbench.data.common.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.encoders.timm_vit import TimmViTEncoder
from cxrbench.encoders.weights import resolve_weights
from cxrbench.errors import WeightsError
from cxrbench.registry import encoder_spec

HF_CONFIG_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size",
                  "image_size", "layerscale_value", "use_swiglu_ffn", "layer_norm_eps")


def random_hf_dinov2(arch: dict, seed: int = 3) -> Dinov2Model:
    torch.manual_seed(seed)
    model = Dinov2Model(Dinov2Config(**{k: arch[k] for k in HF_CONFIG_KEYS})).eval()
    with torch.no_grad():  # non-trivial LayerScale and norms, so a dropped or swapped key shows
        for name, parameter in model.named_parameters():
            if "lambda1" in name or "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def hf_to_dinov2_repository(model: Dinov2Model, block_chunks: int = 0) -> dict[str, torch.Tensor]:
    """Written independently of cxrbench: transformers' Dinov2Model -> the facebookresearch/dinov2 key layout."""
    state = model.state_dict()
    out = {
        "cls_token": state["embeddings.cls_token"],
        "mask_token": state["embeddings.mask_token"],
        "pos_embed": state["embeddings.position_embeddings"],
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": state["layernorm.weight"],
        "norm.bias": state["layernorm.bias"],
    }
    depth = model.config.num_hidden_layers
    per_chunk = depth // block_chunks if block_chunks else depth
    for i in range(depth):
        src = f"encoder.layer.{i}."
        dst = f"blocks.{i // per_chunk}.{i}." if block_chunks else f"blocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.qkv.{kind}"] = torch.cat([state[src + f"attention.{p}_proj.{kind}"] for p in "qkv"])
            out[dst + f"attn.proj.{kind}"] = state[src + f"attention.o_proj.{kind}"]
            out[dst + f"norm1.{kind}"] = state[src + f"norm1.{kind}"]
            out[dst + f"norm2.{kind}"] = state[src + f"norm2.{kind}"]
            if model.config.use_swiglu_ffn:
                out[dst + f"mlp.w12.{kind}"] = torch.cat([state[src + f"mlp.gate_proj.{kind}"], state[src + f"mlp.up_proj.{kind}"]])
                out[dst + f"mlp.w3.{kind}"] = state[src + f"mlp.down_proj.{kind}"]
            else:
                out[dst + f"mlp.fc1.{kind}"] = state[src + f"mlp.fc1.{kind}"]
                out[dst + f"mlp.fc2.{kind}"] = state[src + f"mlp.fc2.{kind}"]
        out[dst + "ls1.gamma"] = state[src + "layer_scale1.lambda1"]
        out[dst + "ls2.gamma"] = state[src + "layer_scale2.lambda1"]
    return {k: v.clone() for k, v in out.items()}


def hf_reference(model: Dinov2Model, pixels: torch.Tensor, layer: int):
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    normed_layer = model.layernorm(out.hidden_states[layer + 1])[:, 1:]
    return out.last_hidden_state[:, 0], out.last_hidden_state[:, 1:], normed_layer


def assert_matches_reference(encoder, model, pixels, layer, atol=1e-5):
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True, layers=(layer,)))
    cls, patches, normed_layer = hf_reference(model, pixels, layer)
    batch, dim = cls.shape
    torch.testing.assert_close(features.global_embedding, cls, atol=atol, rtol=0)
    torch.testing.assert_close(features.patch_tokens.reshape(batch, -1, dim), patches, atol=atol, rtol=0)
    torch.testing.assert_close(features.layers[layer].reshape(batch, -1, dim), normed_layer, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def xray_png(tmp_path_factory, vindr_root):
    """An 8-bit PNG chest X-ray (non-square), the same file for adapter and reference."""
    image = read_image(sorted((vindr_root / "test").glob("*.dicom"))[0])
    path = tmp_path_factory.mktemp("png") / "cxr.png"
    Image.fromarray(np.round(image[:, 6:] * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.slow  # about a minute on 2 cores
def test_raydino_chunked_checkpoint_with_hash_in_name(tmp_path, xray_png):
    spec = encoder_spec("raydino")
    model = random_hf_dinov2(spec.architecture)
    state = hf_to_dinov2_repository(model, block_chunks=4)
    assert "blocks.3.23.attn.qkv.weight" in state and "blocks.0.5.ls2.gamma" in state
    plain = tmp_path / "xray_dino_vitl16.pth"
    torch.save(state, plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    released = tmp_path / f"xray_dino_vitl16-{digest[:8]}.pth"
    shutil.move(plain, released)

    encoder = build_encoder("raydino", weights=str(released))
    assert isinstance(encoder, TimmViTEncoder)
    assert encoder.load_report.dropped == ["mask_token"] and encoder.load_report.used == len(state) - 1
    pixels = encoder.preprocessor(read_image(xray_png))[None]
    assert pixels.shape == (1, 3, 512, 512)
    assert_matches_reference(encoder, model, pixels, layer=7)

    corrupt = released.rename(tmp_path / f"xray_dino_vitl16-{'0' * 8}.pth")
    with pytest.raises(WeightsError, match="SHA-256 starting with 00000000"):
        build_encoder("raydino", weights=str(corrupt))


def test_raydino_without_weights_points_to_the_request_form():
    with pytest.raises(WeightsError, match="request form.*non-commercial"):
        build_encoder("raydino")


def test_raydino_checkpoint_missing_a_block_is_refused(tmp_path):
    spec = encoder_spec("raydino")
    small = dict(spec.architecture, num_hidden_layers=4)
    state = hf_to_dinov2_repository(random_hf_dinov2(small), block_chunks=2)
    del state["blocks.1.3.attn.qkv.weight"]
    torch.save(state, tmp_path / "broken.pth")
    small_spec = dataclasses.replace(spec, architecture=small)
    with pytest.raises(WeightsError, match=r"missing: \['blocks.3.attn.qkv.weight'\]"):
        TimmViTEncoder(small_spec, resolve_weights(small_spec, str(tmp_path / "broken.pth"))).model


def test_dinov2_torch_hub_file_matches_hf_folder(tmp_path, xray_png):
    spec = encoder_spec("dinov2-small")
    model = random_hf_dinov2(spec.architecture)
    torch.save(hf_to_dinov2_repository(model), tmp_path / "dinov2_vits14_pretrain.pth")
    model.save_pretrained(tmp_path / "hf")
    from_pth = build_encoder("dinov2-small", weights=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    from_hf = build_encoder("dinov2-small", weights=str(tmp_path / "hf"))
    pixels = from_pth.preprocessor(read_image(xray_png))[None]
    assert pixels.shape == (1, 3, 518, 518)
    assert_matches_reference(from_pth, model, pixels, layer=5)
    assert_matches_reference(from_hf, model, pixels, layer=5)


def test_dinov2_giant_swiglu_layout(tmp_path):
    """w12/w3 of DINOv2's fused SwiGLU map onto timm's packed SwiGLU (two blocks of the giant's width)."""
    spec = encoder_spec("dinov2-giant")
    arch = dict(spec.architecture, num_hidden_layers=2, image_size=70)
    model = random_hf_dinov2(arch)
    state = hf_to_dinov2_repository(model)
    assert state["blocks.0.mlp.w12.weight"].shape == (8192, 1536) and state["blocks.0.mlp.w3.weight"].shape == (1536, 4096)
    torch.save(state, tmp_path / "dinov2_vitg14_pretrain.pth")
    reduced = dataclasses.replace(spec, architecture=arch, preprocessing=spec.preprocessing.with_size(70))
    encoder = TimmViTEncoder(reduced, resolve_weights(reduced, str(tmp_path / "dinov2_vitg14_pretrain.pth")))
    torch.manual_seed(0)
    assert_matches_reference(encoder, model, torch.randn(2, 3, 70, 70), layer=0, atol=5e-5)


def write_hf_cache(hub_cache, repo: str, revision: str, files: dict) -> None:
    """The Hugging Face cache layout: models--org--name/snapshots/<revision>/ and refs/main (files are moved in)."""
    folder = hub_cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.move(source, snapshot / name)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)


RAD_DINO_PROCESSOR = {  # microsoft/rad-dino preprocessor_config.json
    "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 518}, "resample": 3,
    "do_center_crop": True, "crop_size": {"height": 518, "width": 518}, "do_rescale": True,
    "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5307] * 3, "image_std": [0.2583] * 3,
    "do_convert_rgb": True,
}


def test_rad_dino_from_hub_cache_equals_official_package(tmp_path, monkeypatch, xray_png):
    """The official `rad-dino` package (RadDino) and cxrbench read the same offline HF cache."""
    spec = encoder_spec("rad-dino")
    model = random_hf_dinov2(spec.architecture)
    model.save_pretrained(tmp_path / "export")
    (tmp_path / "export" / "preprocessor_config.json").write_text(json.dumps(RAD_DINO_PROCESSOR))
    hub = tmp_path / "hub"
    write_hf_cache(hub, "microsoft/rad-dino", spec.weights.revision,
                   {n: tmp_path / "export" / n for n in ("config.json", "model.safetensors", "preprocessor_config.json")})
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from rad_dino import RadDino

    official = RadDino()
    encoder = build_encoder("rad-dino")
    assert encoder.weights.identity == f"hf:microsoft/rad-dino@{spec.weights.revision}"
    image = Image.open(xray_png).convert("RGB")
    official_pixels = official.preprocess(image)["pixel_values"]
    ours = encoder.preprocessor(read_image(xray_png))[None]
    level = 1 / 255 / 0.2583
    assert (ours - official_pixels).abs().max() <= level + 1e-5
    # RadDino asks for the PIL backend; PIL's and torchvision's antialiased bicubic on uint8 round a few
    # pixels differently (0.4% here), never by more than one 8-bit level
    assert (ours - official_pixels).abs().gt(1e-5).float().mean() < 1e-2
    cls, patches = official.extract_features(image)
    features = encoder.encode(official_pixels, FeatureRequest(patch_tokens=True))
    torch.testing.assert_close(features.global_embedding, cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_tokens.permute(0, 3, 1, 2), patches, atol=1e-5, rtol=0)
    end_to_end = encoder.encode(ours, FeatureRequest()).global_embedding
    assert (end_to_end - cls).abs().max() < 0.05  # only the rare one-level resize differences remain


@pytest.mark.slow  # about 20 s on 2 cores (CI budget); the Hub folder format of the same weights stays in the default suite
def test_rad_dino_backbone_compatible_safetensors(tmp_path, xray_png):
    """microsoft/rad-dino also ships backbone_compatible.safetensors in the DINOv2 repository layout."""
    from safetensors.torch import save_file

    spec = encoder_spec("rad-dino")
    model = random_hf_dinov2(spec.architecture)
    save_file(hf_to_dinov2_repository(model), tmp_path / "random_backbone.safetensors")
    encoder = build_encoder("rad-dino", weights=str(tmp_path / "random_backbone.safetensors"))
    pixels = encoder.preprocessor(read_image(xray_png))[None]
    assert_matches_reference(encoder, model, pixels, layer=3)


def test_biovil_t_state_dict_equals_hi_ml_reference(tmp_path, xray_png):
    from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference
    from health_multimodal.image.model.model import ImageModel
    from health_multimodal.image.model.types import ImageEncoderType

    torch.manual_seed(5)
    reference = ImageModel(img_encoder_type=ImageEncoderType.RESNET50_MULTI_IMAGE, joint_feature_size=128)
    with torch.no_grad():
        reference.encoder.missing_previous_emb.normal_()
    torch.save(reference.state_dict(), tmp_path / "biovil_t_random.pt")
    reference.eval()
    encoder = build_encoder("biovil-t", weights=str(tmp_path / "biovil_t_random.pt"))

    transform = create_chest_xray_transform_for_inference(resize=512, center_crop_size=448)
    reference_pixels = transform(Image.open(xray_png).convert("L"))[None]
    ours = encoder.preprocessor(read_image(xray_png))[None]
    assert ours.shape == reference_pixels.shape == (1, 3, 448, 448)
    assert (ours - reference_pixels).abs().max() <= 1 / 255 + 1e-6
    with torch.no_grad():
        expected = reference(reference_pixels)
    features = encoder.encode(reference_pixels, FeatureRequest(patch_tokens=True, layers=(0, 1, 2, 3)))
    torch.testing.assert_close(features.global_embedding, expected.img_embedding, atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_tokens, expected.patch_embeddings.permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    assert features.patch_tokens.shape == (1, 14, 14, 512)
    assert [features.layers[i].shape[1:3] for i in range(4)] == [(112, 112), (56, 56), (28, 28), (14, 14)]
    assert [features.layers[i].shape[-1] for i in range(4)] == [256, 512, 1024, 2048]


def test_mrm_checkpoint_drops_decoder_and_report_branch(tmp_path, xray_png):
    """MRM.pth: {'model', 'optimizer', 'epoch', 'scaler', 'args'}; a plain timm ViT-B/16 is the reference."""
    import argparse

    import timm

    torch.manual_seed(11)
    reference = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model = dict(reference.state_dict())
    extra = {
        "mask_token": torch.zeros(1, 1, 768),
        "decoder_embed.weight": torch.randn(768, 768),
        "decoder_pos_embed": torch.zeros(1, 197, 768),
        "decoder_blocks.0.attn.qkv.weight": torch.randn(2304, 768),
        "decoder_norm.weight": torch.ones(768),
        "decoder_pred.weight": torch.randn(3072, 768),
        "bert_mlp.weight": torch.randn(384, 768),
        "bert_encoder.model.bert.embeddings.word_embeddings.weight": torch.randn(30000, 384),
        "bert_encoder.model.cls.predictions.bias": torch.zeros(30000),
    }
    checkpoint = {"model": {**model, **extra}, "optimizer": {"state": {}, "param_groups": [{"lr": 1.5e-4}]},
                  "epoch": 199, "scaler": {"scale": 65536.0}, "args": argparse.Namespace(model="mrm", input_size=448)}
    torch.save(checkpoint, tmp_path / "MRM.pth")
    encoder = build_encoder("mrm", weights=str(tmp_path / "MRM.pth"))
    assert sorted(encoder.load_report.dropped) == sorted(extra)
    pixels = encoder.preprocessor(read_image(xray_png))[None]
    assert pixels.shape == (1, 3, 224, 224)
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True, layers=(5,)))
    with torch.no_grad():
        tokens = reference.forward_features(pixels)
        layer5 = reference.norm(reference.forward_intermediates(pixels, indices=[5], intermediates_only=True, output_fmt="NLC")[0])
    torch.testing.assert_close(features.global_embedding, tokens[:, 1:].mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_tokens.reshape(1, -1, 768), tokens[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.layers[5].reshape(1, -1, 768), layer5, atol=1e-5, rtol=0)
    del checkpoint["model"]["blocks.11.mlp.fc2.bias"]
    torch.save(checkpoint, tmp_path / "MRM-broken.pth")
    with pytest.raises(WeightsError, match="missing: \\['blocks.11.mlp.fc2.bias'\\]"):
        build_encoder("mrm", weights=str(tmp_path / "MRM-broken.pth")).model


def test_mrm_preprocessing_equals_its_torchvision_pipeline(xray_png):
    from torchvision import transforms

    encoder = build_encoder("mrm", weights="random")
    reference = transforms.Compose([transforms.Resize(224), transforms.CenterCrop(224), transforms.Grayscale(3),
                                    transforms.ToTensor(), transforms.Normalize([0.4978], [0.2449])])
    expected = reference(Image.open(xray_png).convert("RGB"))
    ours = encoder.preprocessor(read_image(xray_png))
    assert (ours - expected).abs().max() <= 1 / 255 / 0.2449 + 1e-5


def test_biomedclip_open_clip_file_equals_open_clip_visual_tower(tmp_path, xray_png):
    from open_clip.timm_model import TimmModel

    torch.manual_seed(12)
    visual = TimmModel("vit_base_patch16_224", embed_dim=512, image_size=224, pool="", proj="linear").eval()
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state.update({"text.transformer.embeddings.word_embeddings.weight": torch.randn(100, 768),
                  "text.proj.0.weight": torch.randn(640, 768), "logit_scale": torch.tensor(4.6)})
    torch.save(state, tmp_path / "open_clip_pytorch_model.bin")
    encoder = build_encoder("biomedclip", weights=str(tmp_path / "open_clip_pytorch_model.bin"))
    assert "visual.head.proj.weight" in encoder.load_report.dropped and "logit_scale" in encoder.load_report.dropped
    pixels = encoder.preprocessor(read_image(xray_png))[None]
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True))
    with torch.no_grad():
        tokens = visual.trunk.forward_features(pixels)
        projected = visual(pixels)
    torch.testing.assert_close(features.global_embedding, tokens[:, 0], atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(features.global_embedding @ visual.head.proj.weight.T, projected, atol=1e-4, rtol=0)
    assert features.patch_tokens.shape == (1, 14, 14, 768)


def chexzero_reference_pixels(path) -> torch.Tensor:
    """CheXzero's own steps, written from its data_process.py / zero_shot.py: cv2-style 8-bit read, letterbox 320
    with PIL Lanczos, repeat to 3 channels on the 0-255 scale, Normalize, Resize(224, bicubic, no antialias)."""
    from torchvision.transforms import InterpolationMode, Normalize, Resize

    image = Image.open(path).convert("RGB")
    ratio = 320 / max(image.size)
    size = tuple(int(x * ratio) for x in image.size)
    canvas = Image.new("L", (320, 320))
    canvas.paste(image.resize(size, Image.Resampling.LANCZOS), ((320 - size[0]) // 2, (320 - size[1]) // 2))
    stored = torch.from_numpy(np.asarray(canvas, dtype=np.float32))[None].repeat(3, 1, 1)
    normalised = Normalize((101.48761,) * 3, (83.43944,) * 3)(stored)
    return Resize(224, interpolation=InterpolationMode.BICUBIC, antialias=False)(normalised)[None]


def test_chexzero_state_dict_equals_open_clip_model(tmp_path, xray_png):
    import open_clip

    torch.manual_seed(13)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    state = model.state_dict()
    assert len(state) == 302  # as in the released CheXzero files
    released = {k: (v.half() if v.ndim == 2 and "embedding" not in k else v) for k, v in state.items()}  # fp16 mix
    torch.save(released, tmp_path / "best_64_5e-05_original_22000_0.864.pt")
    model.load_state_dict(released)
    encoder = build_encoder("chexzero", weights=str(tmp_path / "best_64_5e-05_original_22000_0.864.pt"))

    reference_pixels = chexzero_reference_pixels(xray_png)
    ours = encoder.preprocessor(read_image(xray_png))[None]
    torch.testing.assert_close(ours, reference_pixels, atol=1e-4, rtol=0)
    features = encoder.encode(reference_pixels, FeatureRequest(patch_tokens=True))
    with torch.no_grad():
        projected = model.encode_image(reference_pixels)
    assert features.global_embedding.shape == (1, 768) and features.patch_tokens.shape == (1, 7, 7, 768)
    with torch.no_grad():
        torch.testing.assert_close(features.global_embedding @ model.visual.proj, projected, atol=1e-4, rtol=0)
    projected_spec = dataclasses.replace(encoder_spec("chexzero"), architecture={**encoder_spec("chexzero").architecture, "global_pool": "projected"})
    from cxrbench.encoders.open_clip_vit import OpenClipEncoder

    as_clip = OpenClipEncoder(projected_spec, resolve_weights(projected_spec, str(tmp_path / "best_64_5e-05_original_22000_0.864.pt")))
    torch.testing.assert_close(as_clip.encode(reference_pixels, FeatureRequest()).global_embedding, projected, atol=1e-5, rtol=0)


def test_clip_l14_hf_folder_loads_vision_tower(tmp_path, xray_png):
    from transformers import CLIPConfig, CLIPModel

    spec = encoder_spec("clip-l14")
    vision = {k: spec.architecture[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                                 "patch_size", "image_size", "hidden_act", "layer_norm_eps")}
    torch.manual_seed(14)
    config = CLIPConfig(vision_config=vision, text_config={"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                                                            "intermediate_size": 128}, projection_dim=768)
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path / "clip")
    encoder = build_encoder("clip-l14", weights=str(tmp_path / "clip"))
    pixels = encoder.preprocessor(read_image(xray_png))[None]
    assert pixels.shape == (1, 3, 224, 224)
    features = encoder.encode(pixels, FeatureRequest(patch_tokens=True))
    with torch.no_grad():
        expected = model.vision_model(pixel_values=pixels).pooler_output
    torch.testing.assert_close(features.global_embedding, expected, atol=1e-5, rtol=0)
    assert features.patch_tokens.shape == (1, 16, 16, 1024)


def test_file_with_a_released_name_must_match_the_published_checksum(tmp_path):
    """BioViL-T's MD5 is published in hi-ml-multimodal; a different file under that name is refused."""
    impostor = tmp_path / "biovil_t_image_model_proj_size_128.pt"
    torch.save({"not": torch.zeros(1)}, impostor)
    with pytest.raises(WeightsError, match="a83080e2f23aa584a4f2b24c39b1bb64"):
        build_encoder("biovil-t", weights=str(impostor))
    folder = tmp_path / "snapshot"
    folder.mkdir()
    shutil.copy(impostor, folder / impostor.name)
    with pytest.raises(WeightsError, match="is not the released biovil_t_image_model_proj_size_128.pt"):
        build_encoder("biovil-t", weights=str(folder))
