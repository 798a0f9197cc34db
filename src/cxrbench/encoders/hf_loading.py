"""Loading a transformers model from a local Hugging Face folder, strictly and against the declared architecture."""

from __future__ import annotations

from pathlib import Path

import torch

from cxrbench.errors import WeightsError


def load_hf_model(model_class, path: Path, arch: dict, name: str, other_tower: tuple[str, ...] = ()):
    """`model_class.from_pretrained(path)` offline in float32; refuse missing, unexpected (except keys of
    `other_tower`, e.g. CLIP's text tower) or mismatched keys, and config values that differ from `arch`."""
    if not (path / "config.json").is_file():
        raise WeightsError(f"'{name}' expects a Hugging Face model folder (config.json + model.safetensors); {path} is not one.")
    try:
        model, info = model_class.from_pretrained(path, local_files_only=True, output_loading_info=True, dtype=torch.float32)
    except Exception as exc:
        raise WeightsError(f"Cannot load '{name}' weights from {path}: {exc}") from exc
    problems = {
        "missing_keys": info.get("missing_keys"),
        "unexpected_keys": [k for k in info.get("unexpected_keys", []) if not k.startswith(other_tower or ("\0",))],
        "mismatched_keys": info.get("mismatched_keys"),
    }
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise WeightsError(f"{path} does not match the {name} architecture: {problems}")
    mismatched = {k: (getattr(model.config, k), v) for k, v in arch.items() if getattr(model.config, k) != v}
    if mismatched:
        details = ", ".join(f"{k}={got} (expected {want})" for k, (got, want) in mismatched.items())
        raise WeightsError(f"{path}/config.json is not {name}: {details}.")
    return model
