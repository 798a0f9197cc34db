"""Shared fixtures: small datasets written in the official on-disk layouts, at test time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.vindr.synthetic import write_synthetic_vindr

SMALL_VINDR = SyntheticConfig(patients=200, size=64, seed=3)


@pytest.fixture(scope="session")
def vindr_root(tmp_path_factory) -> Path:
    """A VinDr-CXR-layout folder (DICOM + official CSVs) with ~330 images. Treat as read-only."""
    return write_synthetic_vindr(tmp_path_factory.mktemp("vindr") / "vindr-cxr", SMALL_VINDR)


@pytest.fixture
def vindr_copy(vindr_root, tmp_path) -> Path:
    """A private copy of the VinDr folder that a test may damage."""
    return Path(shutil.copytree(vindr_root, tmp_path / "vindr-copy"))
