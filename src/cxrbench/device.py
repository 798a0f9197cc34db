"""Which torch device a command runs on: `--device auto` (the default) takes CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

from cxrbench.errors import CxrbenchError


def settle_here(requested: str, threads: int | None) -> tuple[str, str]:
    """Apply the thread cap (`--threads`) and resolve the device in this process: the terminal's command or a
    launcher's job (`--device auto` on a login node without a GPU must not send a GPU job to the CPU). Returns the
    device and the line that tells the user which, and why."""
    from cxrbench.threads import set_thread_cap, thread_cap

    set_thread_cap(threads)
    device, why = resolve_device(requested)
    return device, f"{why}; up to {thread_cap()} CPU threads (--threads)"


def resolve_device(requested: str) -> tuple[str, str]:
    """The device to use and a line saying why (shown to the user). Anything but 'auto' is checked, not changed."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda", f"device: cuda ({torch.cuda.get_device_name(0)})"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps", "device: mps (Apple GPU)"
        return "cpu", "device: cpu (no CUDA or MPS device found; --device cuda to insist)"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise CxrbenchError(f"--device {requested}: not a torch device; use auto, cpu, cuda, cuda:1 or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CxrbenchError(f"--device {requested}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CxrbenchError(f"--device {requested}: no Apple MPS device is available; use --device cpu.")
    return requested, f"device: {requested}"
