"""What every dataset loader starts from: its data root, checked, and its settings (loader defaults, then the
benchmark spec's `dataset:` block, then the run's options), with named choices checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec


def data_folder(root: str | Path, dataset: str, holding: str) -> Path:
    """`root` as a Path; an error naming what the folder should hold when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{dataset} data root {root} is not a folder. Pass --data-root DIR (the folder holding {holding}).")
    return root


def dataset_settings(spec: BenchmarkSpec, options: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The loader's defaults, overridden by the spec's `dataset:` block, overridden by the options given (not None)."""
    return {**(defaults or {}), **spec.dataset, **{k: v for k, v in options.items() if v is not None}}


def require_masks(spec: BenchmarkSpec, dataset: str) -> None:
    """Refuse a spec that asks a mask-only dataset for other kinds of targets."""
    others = [t.name for t in spec.targets if t.kind != "mask"]
    if others:
        raise DataError(f"benchmark '{spec.name}': target(s) {others} are not masks; {dataset} provides masks only.")


def require_labels(spec: BenchmarkSpec, labels: Sequence[str], what: str) -> None:
    """Refuse a spec whose targets are not among the labels its dataset releases (`what`: e.g. 'CheXpert label')."""
    unknown = [t for t in spec.tasks if t not in labels]
    if unknown:
        raise DataError(f"benchmark '{spec.name}': target '{unknown[0]}' is not a {what}; the targets must be among "
                        f"{', '.join(labels)}.")


def check_choice(spec: BenchmarkSpec, key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise DataError(f"benchmark '{spec.name}': {key} must be one of {tuple(allowed)}, got '{value}'.")
    return value
