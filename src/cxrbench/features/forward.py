"""One encoder forward pass at the chosen precision, its outputs as float32 arrays for the feature cache.

`--precision bf16|fp16` runs the forward under `torch.autocast` (matrix products and convolutions in half precision,
normalisations and reductions kept in float32 by torch's autocast lists): about 2x the throughput of fp32 on recent
GPUs. Every adapter allows it: none of the released codes forces float32 (open_clip's and OpenAI CLIP's LayerNorms
cast to float32 themselves, Hugging Face models load in float32 and follow autocast), and each one's features under
bf16 / fp16 autocast stay within about 1% / 0.1% of fp32 (checked on CPU with random weights). The CPU's autocast
(torch >= 2.x) accepts both half types too, but without bf16/fp16 units it is rarely faster there. The outputs are
cast back to float32 before they are cached (as float16, whatever the precision); the store's identity records
a precision other than fp32, so features of different precisions never share a store.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.errors import CxrbenchError
from cxrbench.specs import DEFAULT_PRECISION

#: --precision choices: the autocast dtype of each (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> None:
    """Refuse an unknown precision before any data is read."""
    if precision not in PRECISIONS:
        raise CxrbenchError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)} (fp32 is the default; bf16 "
                            "is the safe half precision on GPUs, fp16 overflows beyond 65504 in some large ViTs).")


def precision_context(precision: str, device: str):
    """Autocast to `precision` on `device`'s type, or nothing for fp32."""
    check_precision(precision)
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def forward_arrays(encoder: Encoder, pixels: torch.Tensor, request: FeatureRequest, device: str,
                   precision: str = DEFAULT_PRECISION) -> dict[str, np.ndarray]:
    """`encoder.encode` of a preprocessed batch on `device` at `precision`, as float32 arrays on the host. The
    device's outputs are released before this returns, so a batch size that fits here fits in extraction too."""
    with precision_context(precision, device):
        features = encoder.encode(pixels.to(device, non_blocking=True), request).arrays()
    return {name: tensor.float().cpu().numpy() for name, tensor in features.items()}
