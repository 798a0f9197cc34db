"""Split schemes and label budgets: patient-disjoint, seeded, nested budgets, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrbench.specs import TargetSpec
from cxrbench.data.splits import POOL, LabelBudget, apply_label_budget, check_patient_disjoint, seed_splits
from cxrbench.errors import DataError
from cxrbench.specs import SplitSpec


def samples(patients: int = 100, split: str = POOL, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    per_patient = rng.integers(1, 4, size=patients)
    patient_ids = np.repeat([f"p{i:03d}" for i in range(patients)], per_patient)
    frame = pd.DataFrame({"image_id": [f"i{i}" for i in range(len(patient_ids))], "patient_id": patient_ids, "split": split})
    labels = (rng.random((len(frame), 2)) < 0.3).astype(np.float32)
    labels[rng.random(len(frame)) < 0.1, 1] = np.nan
    return frame, labels


def test_random_split_shares_and_test_policy():
    frame, _ = samples()
    spec = SplitSpec(scheme="random", fractions=(0.6, 0.2, 0.2), test="fixed")
    manifests = [seed_splits(frame, "b", s, spec) for s in range(3)]
    for manifest in manifests:
        check_patient_disjoint(manifest)
        counts = manifest.groupby("split")["patient_id"].nunique()
        assert (counts["train"], counts["val"], counts["test"]) == (60, 20, 20)
    tests = [set(m.loc[m["split"] == "test", "patient_id"]) for m in manifests]
    vals = [set(m.loc[m["split"] == "val", "patient_id"]) for m in manifests]
    assert tests[0] == tests[1] == tests[2] and vals[0] != vals[1]
    per_seed = [seed_splits(frame, "b", s, SplitSpec(scheme="random", test="per_seed")) for s in range(2)]
    assert set(per_seed[0].loc[per_seed[0]["split"] == "test", "patient_id"]) != set(per_seed[1].loc[per_seed[1]["split"] == "test", "patient_id"])
    assert seed_splits(frame, "b", 1, spec).equals(manifests[1])  # reproducible
    with pytest.raises(DataError, match="summing to 1"):
        seed_splits(frame, "b", 0, SplitSpec(scheme="random", fractions=(0.6, 0.3, 0.2)))
    with pytest.raises(DataError, match="scheme: random"):
        seed_splits(frame, "b", 0, SplitSpec(scheme="official"))


def test_fraction_budgets_are_nested_and_shots_cover_every_class():
    frame, labels = samples(200)
    manifest = seed_splits(frame, "b", 0, SplitSpec(scheme="random", fractions=(0.8, 0.1, 0.1)))
    kept = {}
    for fraction in (0.1, 0.3, 0.7):
        budgeted = apply_label_budget(manifest, labels, LabelBudget(train_fraction=fraction), "b", [TargetSpec("A"), TargetSpec("B")])
        check_patient_disjoint(budgeted)
        kept[fraction] = set(budgeted.loc[budgeted["split"] == "train", "patient_id"])
        assert len(kept[fraction]) == int(np.ceil(fraction * 160))
        assert (budgeted["split"] == "test").equals(manifest["split"] == "test")
    assert kept[0.1] < kept[0.3] < kept[0.7]
    few = {n: apply_label_budget(manifest, labels, LabelBudget(shots=n), "b", [TargetSpec("A"), TargetSpec("B")]) for n in (1, 2, 4)}
    for n, budgeted in few.items():
        train = budgeted["split"].eq("train").to_numpy()
        per_patient = pd.DataFrame(labels[train], index=budgeted.loc[train, "patient_id"]).groupby(level=0).max()
        assert ((per_patient == 1).sum() >= n).all() and ((per_patient == 0).sum() >= n).all()
        assert len(per_patient) <= 4 * n
    trains = {n: set(b.loc[b["split"] == "train", "patient_id"]) for n, b in few.items()}
    assert trains[1] <= trains[2] <= trains[4]
    with pytest.raises(DataError, match="--shots 500 .* task 'A'"):
        apply_label_budget(manifest, labels, LabelBudget(shots=500), "b", [TargetSpec("A"), TargetSpec("B")])
    with pytest.raises(DataError):
        LabelBudget(train_fraction=0.0)


def test_kfold_tests_each_patient_once_and_refuses_more_seeds_than_folds():
    samples = pd.DataFrame({"image_id": [f"i{k}" for k in range(60)], "patient_id": [f"p{k // 3}" for k in range(60)],
                            "split": "pool"})
    spec = SplitSpec(scheme="kfold", folds=4, val_fraction=0.25)
    manifests = [seed_splits(samples, "cv", fold, spec) for fold in range(4)]
    tested = [set(m.loc[m["split"] == "test", "patient_id"]) for m in manifests]
    assert sorted(p for part in tested for p in part) == sorted(samples["patient_id"].unique())  # once each
    assert {len(part) for part in tested} == {5}
    for manifest, test in zip(manifests, tested):
        val = set(manifest.loc[manifest["split"] == "val", "patient_id"])
        assert len(val) == 4 and not val & test  # 25% of the 15 training patients, never a test patient
    assert seed_splits(samples, "cv", 1, spec)["split"].tolist() == manifests[1]["split"].tolist()  # drawn once
    with pytest.raises(DataError, match="at most --seeds 4"):
        seed_splits(samples, "cv", 4, spec)
