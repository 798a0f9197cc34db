"""Encoders named by where they come from instead of by a YAML: `hf:ORG/NAME[@REV]`, `timm:NAME`, `open_clip:NAME`.

Such a name builds its adapter spec on the fly from the model's own published files: the architecture from its
config, the preprocessing from its processor / data config (`preprocessor_config.json`, timm's `pretrained_cfg`,
open_clip's `preprocess_cfg`), the weights from the Hugging Face cache at a revision (or a local folder). The spec is
then the same data a YAML adapter declares, so caching, provenance and tables treat these encoders like any other;
the weights' identity (hub commit or file digest) keys the feature cache, so a new revision is a new key.

This module imports neither torch nor the model libraries at import time: the registry resolves names through it,
and `cxrbench list` and name checks must stay fast. timm and open_clip are imported only to read their own configs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrbench.errors import SpecError, WeightsError

#: how `cxrbench list encoders` explains the forms (name form, what it loads)
FORMS: tuple[tuple[str, str], ...] = (
    ("hf:ORG/NAME[@REV]", "a transformers vision model from the Hugging Face cache (or hf:PATH, a local folder): "
                          "DINOv2 (with registers), ViT, CLIP; config.json + preprocessor_config.json + model.safetensors"),
    ("timm:NAME", "a timm VisionTransformer: a timm model name (weights from its Hub repo in the cache), "
                  "timm:hf-hub:ORG/NAME[@REV] or timm:local-dir:PATH; preprocessing from its pretrained_cfg"),
    ("open_clip:NAME", "an open_clip image tower: MODEL/TAG (e.g. ViT-B-32/openai), open_clip:hf-hub:ORG/NAME[@REV] or "
                       "open_clip:local-dir:PATH; preprocessing from its preprocess_cfg"),
)
PREFIXES = ("hf:", "timm:", "open_clip:")

#: transformers model types an `hf:` name may hold -> whether their config nests the image tower under `vision_config`
HF_MODEL_TYPES: dict[str, bool] = {"dinov2": False, "dinov2_with_registers": False, "vit": False, "clip": True,
                                   "clip_vision_model": False}
_HF_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's resampling codes, as processors store them
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
_GENERIC_IMPL = "cxrbench.encoders.generic_models"


@dataclass(frozen=True)
class GenericEncoder:
    """What a generic name resolves to: its spec as data, its implementation and where it came from."""

    spec: dict[str, Any]
    impl: str
    origin: str


def is_generic(name: str) -> bool:
    return name.startswith(PREFIXES)


def resolve_generic(name: str) -> GenericEncoder | None:
    """The spec of a generic encoder name, read from the model's own files (see the module docstring); None for a name
    of no generic form (the registry's `encoder_resolver`: it asks about every name no spec file has)."""
    if not is_generic(name):
        return None
    prefix, _, rest = name.partition(":")
    if not rest:
        raise SpecError(f"Encoder '{name}' names no model after '{prefix}:'. {forms_text()}")
    builders: dict[str, Callable[[str, str], GenericEncoder]] = {"hf": _hf_encoder, "timm": _timm_encoder,
                                                                 "open_clip": _open_clip_encoder}
    return builders[prefix](name, rest)


def forms_text() -> str:
    return "Generic encoder names: " + "; ".join(f"{form}: {what}" for form, what in FORMS) + "."


# -- where the files are ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A model's folder, and the weights section of its spec (a hub repo at a revision, or the folder itself)."""

    folder: Path
    weights: dict[str, Any]
    shown_as: str  # for messages and the spec's description


def _locate(name: str, text: str, config_files: tuple[str, ...], weight_file: str) -> Location:
    """`ORG/NAME[@REV]` in the Hugging Face cache (config files only: the weights are resolved when the model is
    built, so --weights random needs none), or a local folder (`local-dir:PATH`, or a path starting with / . ~). The spec's
    weight files list the weights first (what `Encoder.checkpoint_file` opens), then the configs."""
    weight_files = (weight_file, *config_files)
    local = text.removeprefix("local-dir:")
    if text.startswith("local-dir:") or local.startswith(("/", ".", "~")):
        folder = Path(local).expanduser().resolve()
        if not folder.is_dir():
            raise WeightsError(f"Encoder '{name}': {folder} is not a folder. Give the folder holding "
                               f"{', '.join(config_files)}.")
        return Location(folder, {"files": list(weight_files), "local": str(folder)}, str(folder))
    repo, _, revision = text.removeprefix("hf-hub:").partition("@")
    if not _REPO.match(repo):
        raise SpecError(f"Encoder '{name}': '{repo}' is neither a Hugging Face repository (ORG/NAME) nor a local "
                        "folder (start a path with /, ./ or ~). " + forms_text())
    from cxrbench.encoders.weights import hub_snapshot
    from cxrbench.specs import WeightsSpec

    weights = {"hub_repo": repo, "revision": revision or None, "files": list(weight_files),
               "distributed_at": f"https://huggingface.co/{repo}"}
    hub = WeightsSpec(hub_repo=repo, revision=revision or None, files=tuple(weight_files),
                      distributed_at=weights["distributed_at"])
    try:
        folder = hub_snapshot(name, hub, revision or None, config_files)
    except WeightsError as exc:  # the model's configs are needed to know what it is, even for random weights
        raise WeightsError(f"{exc} (--weights random, too, needs its {', '.join(config_files)}.)") from None
    weights["revision"] = folder.name  # the commit the cache resolved: the spec names exactly what was read
    return Location(folder, weights, f"{repo}@{folder.name[:12]}")


def _read_json(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        raise WeightsError(f"Encoder '{name}': {path} does not exist; the model must publish it (it declares the "
                           "model's architecture or preprocessing).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"Encoder '{name}': {path} is not readable JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise WeightsError(f"Encoder '{name}': {path} must hold a JSON object.")
    return data


def _square(value: Any, what: str, where: str) -> int:
    """A size given as an int, [h, w] / (c, h, w) or {"height", "width"}: only square inputs are supported."""
    if isinstance(value, dict):
        value = [value.get("height"), value.get("width")]
    if isinstance(value, (list, tuple)):
        sides = list(value)[-2:]
        if len(set(sides)) != 1:
            raise SpecError(f"{where}: {what} {value} is not square; cxrbench encodes square inputs only.")
        value = sides[0]
    if not isinstance(value, int) or value <= 0:
        raise SpecError(f"{where}: {what} must be a positive size, found {value!r}.")
    return value


def _spec(name: str, description: str, architecture: dict, preprocessing: dict, weights: dict, dim: int, patch: int,
          layers: int, global_embedding: str) -> dict[str, Any]:
    """The adapter spec as data (what adapters/*.yaml hold), with four layers spread over the depth as defaults."""
    quarters = sorted({max(0, layers * k // 4 - 1) for k in (1, 2, 3, 4)})
    return {"name": name, "description": description, "architecture": architecture, "preprocessing": preprocessing,
            "weights": weights, "embedding_dim": dim, "patch_stride": patch, "global_embedding": global_embedding,
            "default_layers": quarters}


# -- hf: transformers -------------------------------------------------------------------------------------------------


def _hf_encoder(name: str, text: str) -> GenericEncoder:
    where = _locate(name, text, ("config.json", "preprocessor_config.json"), "model.safetensors")
    config = _read_json(where.folder / "config.json", name)
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise SpecError(f"Encoder '{name}': model_type '{model_type}' in {where.folder / 'config.json'} is not supported; "
                        f"hf: loads {', '.join(HF_MODEL_TYPES)}. Write an adapter (see `cxrbench list encoders`) for "
                        "other models.")
    vision = dict(config["vision_config"]) if HF_MODEL_TYPES[model_type] else dict(config)
    for key in ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype", "id2label", "label2id"):
        vision.pop(key, None)
    family = "clip" if model_type.startswith("clip") else model_type
    patch = int(vision.get("patch_size", 14 if family.startswith("dinov2") else 16 if family == "vit" else 32))
    dim, depth = int(vision.get("hidden_size", 768)), int(vision.get("num_hidden_layers", 12))
    processor = _read_json(where.folder / "preprocessor_config.json", name)
    pooled = ("class token after post_layernorm (CLIP's pooler_output, before the projection)" if family == "clip"
              else "CLS token after the final LayerNorm (last_hidden_state[:, 0])")
    architecture = {"library": "transformers", "model_type": model_type, "family": family, "patch_size": patch,
                    "hidden_size": dim, "num_hidden_layers": depth, "config": vision}
    spec = _spec(name, f"{model_type} from {where.shown_as} (config.json and preprocessor_config.json)", architecture,
                 hf_preprocessing(processor, f"{where.folder / 'preprocessor_config.json'}"), where.weights, dim, patch,
                 depth, pooled)
    return GenericEncoder(spec, f"{_GENERIC_IMPL}:HFGenericEncoder", "hf (generic)")


def hf_preprocessing(processor: dict[str, Any], where: str) -> dict[str, Any]:
    """A transformers image processor's settings as a PreprocessSpec mapping: resize (shortest edge or square),
    optional centre crop, rescale of 8-bit values to [0, 1], normalisation."""
    size = processor.get("size", 224)
    if processor.get("do_resize", True) is False:
        raise SpecError(f"{where}: do_resize is false; cxrbench needs a fixed input size.")
    if isinstance(size, dict) and "shortest_edge" in size:
        resize, side = "shortest_edge", _square(size["shortest_edge"], "size.shortest_edge", where)
    else:
        resize, side = "square", _square(size, "size", where)
    resample = processor.get("resample", 3)
    if resample not in _HF_RESAMPLE:
        raise SpecError(f"{where}: resample {resample!r} is not one of {_HF_RESAMPLE} (PIL codes cxrbench reproduces).")
    rescale = float(processor.get("rescale_factor", 1 / 255)) if processor.get("do_rescale", True) else 1.0
    if abs(rescale - 1 / 255) > 1e-9:
        raise SpecError(f"{where}: rescale_factor {rescale} is not 1/255; cxrbench feeds 8-bit images scaled to [0, 1].")
    crop = _square(processor.get("crop_size", side), "crop_size", where) if processor.get("do_center_crop") else None
    normalize = processor.get("do_normalize", True)
    mean = list(processor.get("image_mean", [0.5] * 3)) if normalize else [0.0] * 3
    std = list(processor.get("image_std", [0.5] * 3)) if normalize else [1.0] * 3
    return {"size": side, "resize": resize, "interpolation": _HF_RESAMPLE[resample], "crop": crop, "quantize_bits": 8,
            "channels": 3, "mean": mean, "std": std}


# -- timm: ------------------------------------------------------------------------------------------------------------


def _timm_encoder(name: str, text: str) -> GenericEncoder:
    import timm

    if text.startswith(("hf-hub:", "local-dir:")) or text.startswith(("/", ".", "~")):
        where = _locate(name, text, ("config.json",), "model.safetensors")
        model_id = f"local-dir:{where.folder}"
    else:
        pretrained = timm.models.get_pretrained_cfg(text)
        if pretrained is None:
            raise SpecError(f"Encoder '{name}': timm knows no model '{text}' (with a tag: MODEL.TAG, as "
                            "`timm.list_pretrained()` names them). " + forms_text())
        repo = (pretrained.hf_hub_id or "").rstrip("/")
        weights = {"hub_repo": repo, "files": ["model.safetensors"], "distributed_at": f"https://huggingface.co/{repo}",
                   "licence": pretrained.license or ""} if repo else {"how_to_get": "timm publishes no Hub copy"}
        where, model_id = Location(Path("."), weights, text), text
    from cxrbench.encoders.generic_models import timm_model

    model = timm_model(model_id, meta=True, where=name)
    data = timm.data.resolve_data_config({}, model=model)
    patch = int(model.patch_embed.patch_size[0])
    dim, depth = int(model.embed_dim), len(model.blocks)
    architecture = {"library": "timm", "model": model_id, "patch_size": patch, "hidden_size": dim,
                    "num_hidden_layers": depth, "num_prefix_tokens": int(model.num_prefix_tokens),
                    "pool": str(model.global_pool), "classifier": str(model.pretrained_cfg.get("classifier") or "head")}
    pooled = f"timm's pre-logits pooled output (global_pool '{model.global_pool}' then fc_norm)"
    spec = _spec(name, f"timm {model.pretrained_cfg.get('architecture', text)} from {where.shown_as}", architecture,
                 timm_preprocessing(data, f"timm pretrained_cfg of {text}"), where.weights, dim, patch, depth, pooled)
    return GenericEncoder(spec, f"{_GENERIC_IMPL}:TimmGenericEncoder", "timm (generic)")


def timm_preprocessing(data: dict[str, Any], where: str) -> dict[str, Any]:
    """timm's eval transform (`transforms_imagenet_eval`): resize to floor(size / crop_pct) (shortest edge for
    crop_mode 'center', both sides for 'squash'), centre crop to the input size, normalise."""
    side = _square(tuple(data["input_size"]), "input_size", where)
    mode = data.get("crop_mode", "center")
    if mode not in ("center", "squash"):
        raise SpecError(f"{where}: crop_mode '{mode}' is not reproduced (center or squash).")
    interpolation = data.get("interpolation", "bicubic")
    if interpolation not in ("nearest", "bilinear", "bicubic"):
        raise SpecError(f"{where}: interpolation '{interpolation}' is not one of nearest, bilinear, bicubic.")
    scale = int(side / float(data.get("crop_pct") or 1.0))
    return {"size": scale, "resize": "shortest_edge" if mode == "center" else "square", "interpolation": interpolation,
            "crop": side, "crop_offset": "round", "quantize_bits": 8, "channels": int(data["input_size"][0]),
            "mean": list(data["mean"]), "std": list(data["std"])}


# -- open_clip: -------------------------------------------------------------------------------------------------------


def _open_clip_encoder(name: str, text: str) -> GenericEncoder:
    files = ("open_clip_model.safetensors",)
    if text.startswith(("hf-hub:", "local-dir:")) or text.startswith(("/", ".", "~")):
        where = _locate(name, text, ("open_clip_config.json",), files[0])
        model_id = f"local-dir:{where.folder}"
    else:
        where, model_id = _open_clip_builtin(name, text, files)
    from cxrbench.encoders.generic_models import open_clip_model

    visual = open_clip_model(model_id, meta=True, where=name).visual
    patch = int(visual.conv1.kernel_size[0])
    dim, depth = int(visual.ln_post.normalized_shape[0]), len(visual.transformer.resblocks)
    architecture = {"library": "open_clip", "open_clip_model": model_id, "patch_size": patch, "hidden_size": dim,
                    "num_hidden_layers": depth, "image_size": _square(visual.image_size, "image_size", name)}
    spec = _spec(name, f"open_clip {text} from {where.shown_as}", architecture,
                 open_clip_preprocessing(dict(visual.preprocess_cfg), f"open_clip preprocess_cfg of {text}"),
                 where.weights, dim, patch, depth, "class token after ln_post, before the projection")
    return GenericEncoder(spec, f"{_GENERIC_IMPL}:OpenClipGenericEncoder", "open_clip (generic)")


def _open_clip_builtin(name: str, text: str, files: tuple[str, ...]) -> tuple[Location, str]:
    """`MODEL[/TAG]`: open_clip's own model config; the weights of TAG from its Hub repository in the cache."""
    import open_clip

    model, _, tag = text.partition("/")
    if open_clip.get_model_config(model) is None:
        close = [m for m in open_clip.list_models() if m.lower() == model.lower()]
        raise SpecError(f"Encoder '{name}': open_clip has no model '{model}'"
                        f"{f' (did you mean {close[0]}?)' if close else ''}; `open_clip.list_pretrained()` lists MODEL/TAG "
                        "pairs. " + forms_text())
    pretrained = open_clip.get_pretrained_cfg(model, tag) if tag else {}
    if tag and not pretrained:
        raise SpecError(f"Encoder '{name}': open_clip has no pretrained tag '{tag}' for {model}; "
                        f"it has {', '.join(open_clip.list_pretrained_tags_by_model(model))}.")
    repo = str(pretrained.get("hf_hub", "")).rstrip("/")
    weights = ({"hub_repo": repo, "files": list(files), "distributed_at": f"https://huggingface.co/{repo}"} if repo
               else {"how_to_get": f"open_clip publishes no Hub copy of {text}; pass --weights FILE"})
    return Location(Path("."), weights, text), model


def open_clip_preprocessing(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """open_clip's eval transform (`image_transform_v2`): resize the shortest edge and centre crop ('shortest'),
    or resize both sides ('squash'); normalise."""
    side = _square(cfg.get("size", 224), "size", where)
    mode = cfg.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise SpecError(f"{where}: resize_mode '{mode}' is not reproduced (shortest or squash).")
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in ("bilinear", "bicubic"):
        raise SpecError(f"{where}: interpolation '{interpolation}' is not one of bilinear, bicubic.")
    return {"size": side, "resize": "shortest_edge" if mode == "shortest" else "square", "interpolation": interpolation,
            "crop": side if mode == "shortest" else None, "crop_offset": "round", "quantize_bits": 8, "channels": 3,
            "mean": list(cfg["mean"]), "std": list(cfg["std"])}
