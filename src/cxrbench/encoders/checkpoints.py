"""Reading released checkpoint files safely and mapping their key layouts.

`torch.load(weights_only=True)` refuses arbitrary pickled objects; checkpoints that carry an
`argparse.Namespace` of training arguments (MAE-style, e.g. MRM.pth) are allowed exactly that class.
Safetensors files are read with safetensors. Nothing is ever unpickled beyond that.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from cxrbench.errors import WeightsError

_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")


@dataclass
class LoadReport:
    """How many checkpoint keys were used and which were dropped on purpose (reported when a run loads them)."""

    used: int = 0
    dropped: list[str] = field(default_factory=list)


def read_checkpoint(path: Path, entry: str | None = None) -> dict[str, torch.Tensor]:
    """A flat tensor state dict from a .safetensors/.pth/.pt/.bin file, optionally its `entry` (e.g. 'model')."""
    try:
        if path.suffix == ".safetensors":
            data = load_file(str(path))
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"Cannot read {path} as a weights-only checkpoint: {type(exc).__name__}: {exc}. If you trust the file, "
            "re-save just its tensors (torch.save(state_dict, 'clean.pth')) and pass that."
        ) from exc
    if entry is not None:
        if not isinstance(data, dict) or entry not in data:
            found = list(data)[:8] if isinstance(data, dict) else type(data).__name__
            raise WeightsError(f"{path} has no '{entry}' entry (found {found}); is it the released file?")
        data = data[entry]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors.")
    return data


def map_keys(
    state: dict[str, torch.Tensor], rename: Callable[[str], str | None]
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Apply `rename` to every key; None drops the key (recorded in the report)."""
    mapped, report = {}, LoadReport()
    for key, value in state.items():
        new = rename(key)
        if new is None:
            report.dropped.append(key)
        else:
            mapped[new] = value
    report.used = len(mapped)
    return mapped, report


def dinov2_to_timm(key: str) -> str | None:
    """DINOv2 repository layout -> timm VisionTransformer: chunked blocks flattened, SwiGLU w12/w3 -> fc1/fc2."""
    if key == "mask_token":  # the iBOT mask token is only used in pre-training
        return None
    key = _CHUNKED_BLOCK.sub(r"blocks.\1.", key)
    key = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
    return "reg_token" if key == "register_tokens" else key


def timm_layout(key_prefix: str = "", drop_prefixes: Iterable[str] = ()) -> Callable[[str], str | None]:
    """Checkpoints already in timm's layout (MAE/MRM encoders, open_clip's timm trunks): keys under
    `key_prefix` lose it, keys outside it and keys starting with `drop_prefixes` are dropped."""
    prefixes = tuple(drop_prefixes)

    def rename(key: str) -> str | None:
        if not key.startswith(key_prefix) or (prefixes and key.startswith(prefixes)):
            return None
        return key[len(key_prefix):]

    return rename


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load with every expected key present and every given key used; name what does not fit."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                details.append(f"{label}: {keys[:6]}{' ...' if len(keys) > 6 else ''} ({len(keys)})")
        raise WeightsError(f"{source} does not fit the declared architecture; " + "; ".join(details))
    module.load_state_dict(state, strict=True)
