"""`--batch-size auto`: the largest batch whose forward pass fits the GPU.

A fixed 32 leaves most of a large GPU idle at 224 px and does not fit a ViT-g at 518 px on a small one. On CUDA,
`auto` tries powers of two from `AUTO_CAP` down (capped by the number of images to encode) with a dummy batch
through the very forward pass extraction runs (same request, same precision) and keeps the first that fits; the
device's cache is emptied after each failure so that the next try starts clean. The cap of 256 is a choice, not a
measurement (no GPU was at hand when this was written): give `--batch-size N` for larger batches. On the CPU and MPS
(whose memory is the host's), `auto` means `CPU_BATCH`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cxrbench.errors import CxrbenchError

if TYPE_CHECKING:  # the command line parses --batch-size with this module before torch is imported
    from cxrbench.encoders.base import Encoder, FeatureRequest

AUTO = "auto"
AUTO_CAP = 256
CPU_BATCH = 32


def parse_batch_size(text: str) -> int | None:
    """--batch-size: a positive whole number, or 'auto' (None). The CLI says which option the message is about."""
    if text.strip().lower() == AUTO:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CxrbenchError(f"'{text}' is neither a positive whole number of images (e.g. 32) nor 'auto' (the largest "
                            f"power of two up to {AUTO_CAP} that fits the GPU).")
    return value


def choose_batch_size(encoder: Encoder, request: FeatureRequest, device: str, precision: str, images: int) -> int:
    """The batch size of `--batch-size auto` for `images` images on `device`."""
    import torch

    if torch.device(device).type != "cuda":
        return CPU_BATCH
    return largest_fitting(encoder, request, device, precision, min(AUTO_CAP, max(images, 1)))


def largest_fitting(encoder: Encoder, request: FeatureRequest, device: str, precision: str, limit: int) -> int:
    """The largest power of two <= `limit` whose forward pass of a dummy batch does not run out of device memory."""
    import torch

    from cxrbench.features.forward import forward_arrays

    channels, size = encoder.preprocessing.channels, encoder.preprocessor.output_size
    encoder.to(device)

    def forward(batch: int) -> None:
        forward_arrays(encoder, torch.zeros(batch, channels, *size), request, device, precision)

    return _largest_power_of_two(forward, limit, f"{encoder.spec.name} at {size[0]} px, {precision}, on {device}")


def _largest_power_of_two(forward: Callable[[int], None], limit: int, what: str) -> int:
    import torch

    batch = 1 << (limit.bit_length() - 1)
    while batch >= 1:
        try:
            forward(batch)
            return batch
        except torch.cuda.OutOfMemoryError:
            pass  # out of the except block first: the exception's frames hold the failed try's tensors
        torch.cuda.empty_cache()
        batch //= 2
    raise CxrbenchError(f"{what}: not even one image fits in the device's memory. Try --precision bf16, a smaller "
                        "--image-size, a device with more free memory, or --device cpu.")
