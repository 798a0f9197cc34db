"""Patient-disjoint, seeded splits, saved beside results as versioned manifests.

The official train/test split of a dataset is kept; a validation split is carved from the training
patients anew for every seed, so seeds vary both the head's initialisation and its training subset.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from cxrbench.errors import DataError

SPLIT_MANIFEST_VERSION = 1


def _rng(benchmark: str, seed: int) -> np.random.Generator:
    salt = int.from_bytes(hashlib.sha256(benchmark.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, salt])


def seed_splits(samples: pd.DataFrame, benchmark: str, seed: int, val_fraction: float) -> pd.DataFrame:
    """Manifest `image_id, patient_id, seed, split` with split in train / val / test for one seed."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"Validation fraction must be in [0, 1), got {val_fraction}.")
    train_patients = np.sort(samples.loc[samples["split"] == "train", "patient_id"].astype(str).unique())
    n_val = int(round(val_fraction * len(train_patients)))
    if val_fraction > 0 and len(train_patients) > 1:
        n_val = min(max(n_val, 1), len(train_patients) - 1)
    val_patients = set(_rng(benchmark, seed).choice(train_patients, size=n_val, replace=False).tolist())
    split = samples["split"].astype(str).copy()
    split[(split == "train") & samples["patient_id"].astype(str).isin(val_patients)] = "val"
    manifest = pd.DataFrame(
        {"image_id": samples["image_id"], "patient_id": samples["patient_id"], "seed": seed, "split": split}
    )
    check_patient_disjoint(manifest)
    return manifest


def check_patient_disjoint(manifest: pd.DataFrame) -> None:
    """Raise if any patient has images in two splits of the same seed."""
    per_patient = manifest.groupby(["seed", "patient_id"])["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if not leaking.empty:
        seed, patient = leaking.index[0]
        splits = sorted(manifest.loc[(manifest["seed"] == seed) & (manifest["patient_id"] == patient), "split"].unique())
        raise DataError(
            f"Patient '{patient}' has images in splits {splits} (seed {seed}); {len(leaking)} patient(s) leak across "
            "splits. Results would be optimistic: fix the official split files or the patient ids before running."
        )
