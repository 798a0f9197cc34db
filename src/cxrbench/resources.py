"""Where the project's data files (registry, specs, published numbers) live.

In a source checkout they sit at the repository root; in a wheel they are copied under
`cxrbench/_project/`. Both layouts are searched so that editable and regular installs agree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def project_root() -> Path:
    """The folder holding `registry.yaml`, `adapters/`, `heads/`, `benchmarks/` and `results/published/`."""
    for candidate in (_PACKAGE_DIR / "_project", _PACKAGE_DIR.parents[1]):
        if (candidate / "registry.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"cxrbench's registry.yaml was found neither in {_PACKAGE_DIR / '_project'} nor in the source checkout; "
        "reinstall the package (pip install cxrbench) or run from a clone."
    )


def published_dir() -> Path:
    return project_root() / "results" / "published"
