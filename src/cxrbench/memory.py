"""This process's peak memory, reported when extraction and training end.

Patch-grid caches are meant to be larger than RAM (VinDr's 518 px grids take 38 GB) and are read a batch at a
time; the peak resident set size is how a user sees that a run stayed within the machine, and what to ask of a
cluster scheduler for the next one.
"""

from __future__ import annotations

import sys

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None

_UNITS = ("bytes", "kB", "MB", "GB", "TB")


def peak_rss_bytes() -> int | None:
    """The largest resident set size this process has had, or None where the platform does not say (Windows).

    getrusage's ru_maxrss counts kilobytes on Linux and bytes on macOS."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def human_bytes(count: float) -> str:
    """'1.2 GB': decimal units, one decimal, as disk and scheduler tools print sizes."""
    unit = 0
    while abs(count) >= 1000 and unit < len(_UNITS) - 1:
        count /= 1000
        unit += 1
    return f"{count:.0f} bytes" if unit == 0 else f"{count:.1f} {_UNITS[unit]}"


def peak_memory() -> str:
    """The phrase the progress notes end with, e.g. 'peak memory 1.2 GB (RSS)'."""
    peak = peak_rss_bytes()
    return "peak memory not measured on this platform" if peak is None else f"peak memory {human_bytes(peak)} (RSS)"
