"""Patient-disjoint, seeded splits, saved beside results as versioned manifests.

Three schemes (see `SplitSpec`): the official train/test split with a validation split carved from the training
patients per seed, a random train/val/test split of the patients for datasets without an official one, or k-fold
cross-validation over the patients (a seed is a fold).
A label budget (a fraction of the training patients, or N patients per class) then thins the training split of
each seed; the images left out are marked `unused` in the manifest, so the manifest says exactly what trained.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from cxrbench.data.groups import group_labels, group_order
from cxrbench.errors import DataError
from cxrbench.specs import SplitSpec, TargetSpec

if TYPE_CHECKING:
    from cxrbench.data.common.samples import BenchmarkData
    from cxrbench.specs import BenchmarkSpec

SPLIT_MANIFEST_VERSION = 2
POOL = "pool"  # the loader's split value for datasets split by cxrbench (scheme random)


def _rng(benchmark: str, seed: int, purpose: str = "val") -> np.random.Generator:
    salt = int.from_bytes(hashlib.sha256(f"{benchmark}/{purpose}".encode()).digest()[:4], "little")
    return np.random.default_rng([seed, salt])


def _draw(patients: np.ndarray, count: int, rng: np.random.Generator) -> set[str]:
    return set(rng.choice(patients, size=count, replace=False).tolist())


def seed_splits(samples: pd.DataFrame, benchmark: str, seed: int, spec: SplitSpec) -> pd.DataFrame:
    """Manifest `image_id, patient_id, seed, split` with split in train / val / test for one seed."""
    patient = samples["patient_id"].astype(str)
    if spec.scheme == "official":
        split = _official(samples["split"].astype(str), patient, benchmark, seed, spec.val_fraction)
    elif spec.scheme == "kfold":
        split = _kfold(patient, benchmark, seed, spec)
    else:
        given = samples["split"].astype(str) if "split" in samples else pd.Series(POOL, index=samples.index)
        split = _random(given, patient, benchmark, seed, spec)
    manifest = pd.DataFrame({"image_id": samples["image_id"], "patient_id": samples["patient_id"], "seed": seed, "split": split})
    check_patient_disjoint(manifest)
    return manifest


def _official(split: pd.Series, patient: pd.Series, benchmark: str, seed: int, val_fraction: float) -> pd.Series:
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"benchmark '{benchmark}': split.val_fraction must be in [0, 1), got {val_fraction}.")
    if (split == POOL).any():
        raise DataError(f"benchmark '{benchmark}': the loader left images unsplit ('{POOL}'); set split.scheme: random in its spec.")
    train_patients = np.sort(patient[split == "train"].unique())
    n_val = int(round(val_fraction * len(train_patients)))
    if val_fraction > 0 and len(train_patients) > 1:
        n_val = min(max(n_val, 1), len(train_patients) - 1)
    val_patients = _draw(train_patients, n_val, _rng(benchmark, seed))
    split = split.copy()
    split[(split == "train") & patient.isin(val_patients)] = "val"
    return split


def _random(given: pd.Series, patient: pd.Series, benchmark: str, seed: int, spec: SplitSpec) -> pd.Series:
    """Seeded train / val / test shares of the patients; a test set the loader gives (`given` == test) is kept."""
    fractions = _fractions(benchmark, spec)
    released = set(patient[given == "test"].unique())
    patients = np.sort(patient.unique())
    pool = np.array([p for p in patients if p not in released])
    if released:  # the released test set; the other patients are split train / val in the ratio of the two shares
        test, n_val = released, int(round(fractions[1] / (fractions[0] + fractions[1]) * len(pool)))
    else:
        if len(patients) < 3:
            raise DataError(f"benchmark '{benchmark}': {len(patients)} patient(s) cannot be split three ways.")
        n_test = min(max(int(round(fractions[2] * len(patients))), 1), len(patients) - 2)
        test_rng = _rng(benchmark, 0, "test") if spec.test == "fixed" else _rng(benchmark, seed, "test")
        test, n_val = _draw(patients, n_test, test_rng), int(round(fractions[1] * len(patients)))
    rest = np.array([p for p in patients if p not in test])
    if fractions[1] > 0:  # at least one validation and one training patient
        n_val = min(max(n_val, 1), len(rest) - 1)
    val = _draw(rest, n_val, _rng(benchmark, seed))
    return pd.Series(np.where(patient.isin(test), "test", np.where(patient.isin(val), "val", "train")), index=patient.index)


def _fractions(benchmark: str, spec: SplitSpec) -> np.ndarray:
    """The three shares, checked: train and test positive, val positive unless heads validate on train."""
    fractions = np.asarray(spec.fractions, dtype=float)
    val_ok = fractions[1] > 0 or (fractions[1] == 0 and spec.validate_on == "train")
    if fractions[0] <= 0 or fractions[2] <= 0 or not val_ok or not math.isclose(fractions.sum(), 1.0, abs_tol=1e-6):
        raise DataError(f"benchmark '{benchmark}': split.fractions {list(spec.fractions)} must be three shares summing to "
                        "1, train and test positive, val positive unless split.validate_on is train.")
    return fractions


def _kfold(patient: pd.Series, benchmark: str, seed: int, spec: SplitSpec) -> pd.Series:
    """Seed k tests on part k of one seeded partition of the patients (the same for every seed and encoder), and
    validates on `val_fraction` of the other parts' patients (drawn per seed; none when 0)."""
    if spec.folds < 2:
        raise DataError(f"benchmark '{benchmark}': split.folds must be at least 2, got {spec.folds}.")
    if not 0 <= seed < spec.folds:
        raise DataError(f"benchmark '{benchmark}' cross-validates over {spec.folds} folds: seeds are folds, so at most "
                        f"--seeds {spec.folds} (asked for seed {seed}).")
    patients = np.sort(patient.unique())
    if len(patients) < spec.folds:
        raise DataError(f"benchmark '{benchmark}': {len(patients)} patient(s) cannot be split into {spec.folds} folds.")
    order = _rng(benchmark, 0, "kfold").permutation(patients)
    test = set(np.array_split(order, spec.folds)[seed].tolist())
    split = pd.Series(np.where(patient.isin(test), "test", "train"), index=patient.index)
    return _official(split, patient, benchmark, seed, spec.val_fraction) if spec.val_fraction > 0 else split


@dataclass(frozen=True)
class LabelBudget:
    """Train on part of the training split: a fraction of its patients, or `shots` patients per class."""

    train_fraction: float | None = None
    shots: int | None = None

    def __post_init__(self) -> None:
        if (self.train_fraction is None) == (self.shots is None):
            raise DataError("A label budget is either a training fraction or a number of shots, not both or neither.")
        if self.train_fraction is not None and not 0.0 < self.train_fraction <= 1.0:
            raise DataError(f"--train-fraction {self.train_fraction}: give a value in (0, 1].")
        if self.shots is not None and self.shots < 1:
            raise DataError(f"--shots {self.shots}: give a whole number of patients per class, at least 1.")

    @property
    def suffix(self) -> str:
        return f"train-{self.train_fraction:g}" if self.train_fraction is not None else f"shots-{self.shots}"

    def describe(self) -> dict:
        return {"train_fraction": self.train_fraction} if self.train_fraction is not None else {"shots": self.shots}

    #: what a user can change when the budget leaves a target unlearnable
    fix: ClassVar[str] = "Use a larger --train-fraction or --shots (or leave out this budget)"
    #: heads standardise features with the whole training split (labelled or not), not the few budgeted images
    standardise_on_unused: ClassVar[bool] = True

    def apply(self, manifest: pd.DataFrame, data: BenchmarkData, spec: BenchmarkSpec) -> pd.DataFrame:
        """One seed's manifest with the training images outside the budget marked `unused`."""
        return apply_label_budget(manifest, data.labels(), self, spec.name, data.targets)


def apply_label_budget(manifest: pd.DataFrame, labels: np.ndarray, budget: LabelBudget, benchmark: str,
                       targets: Sequence[TargetSpec]) -> pd.DataFrame:
    """Mark training images outside the budget `unused` (one seed's manifest, rows aligned with `labels`).

    Budgets are nested within a seed: every fraction takes the first patients of one seeded order of the training
    patients, so the 1% subset lies inside the 10% subset and a learning curve is not blurred by fresh draws.
    Shots: for every target, the first `shots` patients of a seeded order of those with each class (positive and
    negative for a binary target (positive if any of its training images is, negative if none is), each class of a
    multiclass one (every class one of its images has); their union trains. Regression targets have no classes: use a training fraction.
    """
    seed = int(manifest["seed"].iloc[0])
    train = manifest["split"].eq("train").to_numpy()
    patients = manifest["patient_id"].astype(str)
    train_patients = np.sort(patients[train].unique())
    if budget.train_fraction is not None:
        order = _rng(benchmark, seed, "budget/fraction").permutation(train_patients)
        keep = set(order[: max(1, math.ceil(budget.train_fraction * len(order) - 1e-9))].tolist())
    else:
        rng = _rng(benchmark, seed, "budget/shots")
        keep = set()
        frame = pd.DataFrame(labels[train], index=patients[train].to_numpy())
        for column, target in zip(frame.columns, targets):
            classes = target.target_kind.shot_classes(target, frame[column])
            if classes is None:
                raise DataError(f"benchmark '{benchmark}': --shots counts patients per class, and target '{target.name}' "
                                f"is {target.kind}; use --train-fraction.")
            for name, members in classes:
                candidates = rng.permutation(np.sort(members.to_numpy()))
                if len(candidates) < budget.shots:
                    raise DataError(
                        f"benchmark '{benchmark}': --shots {budget.shots} needs {budget.shots} training patients with "
                        f"{name} for task '{target.name}', the seed-{seed} training split has {len(candidates)}."
                    )
                keep |= set(candidates[: budget.shots].tolist())
    out = manifest.copy()
    out.loc[train & ~patients.isin(keep).to_numpy(), "split"] = "unused"
    return out


#: the group name of a `GroupBudget` that trains on every group's subset together (the bias protocol's topline)
ALL_GROUPS = "All"


@dataclass(frozen=True)
class GroupBudget:
    """Train on one patient group (the bias protocol, after Larrazabal et al. 2020 and RayDINO Fig. 4c/4d): per seed
    (a fold), `patients` training patients drawn from each group of `attribute`, the same number for every group so
    that no group trains on more data; `group` names the group trained on, or `ALL_GROUPS` for the union of every
    group's draw (the topline). `patients` None: `share` of the smallest group's training patients, so that every
    fold draws a different subset even of the smallest group."""

    attribute: str
    group: str
    patients: int | None = None
    share: float = 0.8

    def __post_init__(self) -> None:
        if self.patients is not None and self.patients < 1:
            raise DataError(f"--group-patients {self.patients}: give a whole number of patients per group, at least 1.")
        if not 0.0 < self.share <= 1.0:
            raise DataError(f"group share {self.share}: give a value in (0, 1].")

    @property
    def suffix(self) -> str:
        return f"group-{self.attribute}-{re.sub(r'[^A-Za-z0-9.-]+', '-', self.group).strip('-')}"

    def describe(self) -> dict:
        return {"train_group": {"attribute": self.attribute, "group": self.group, "patients": self.patients,
                                "share": self.share}}

    fix: ClassVar[str] = "Draw more patients per group (--group-patients)"
    #: the other groups' images are what a group run must not see, not even to standardise its features
    standardise_on_unused: ClassVar[bool] = False

    def apply(self, manifest: pd.DataFrame, data: BenchmarkData, spec: BenchmarkSpec) -> pd.DataFrame:
        """One seed's manifest with every training image outside this group's draw marked `unused`."""
        group = spec.groups.get(self.attribute)
        if group is None:
            raise DataError(f"benchmark '{spec.name}' declares no group '{self.attribute}' (it has: "
                            f"{', '.join(spec.groups) or 'none'}; see `groups:` in benchmarks/{spec.name}.yaml).")
        labels = group_labels(data.samples, self.attribute, group, spec.name)
        order = group_order(labels, group)
        if self.group not in (*order, ALL_GROUPS):
            raise DataError(f"benchmark '{spec.name}': group '{self.attribute}' has no group '{self.group}' (it has: "
                            f"{', '.join(order)}).")
        return apply_group_budget(manifest, labels, order, self, spec.name)


def apply_group_budget(manifest: pd.DataFrame, groups: pd.Series, order: Sequence[str], budget: GroupBudget,
                       benchmark: str) -> pd.DataFrame:
    """Mark every training image outside the budget's group draw `unused` (one seed's manifest; `groups`: each image's
    group of the budget's attribute, aligned with the manifest's rows; `order`: the attribute's groups).

    A patient is drawn for a group when one of its training images is in that group, and only those images train;
    each group's draw is seeded by (benchmark, seed, attribute, group), so the `All` run of a fold trains on exactly
    the union of that fold's group runs. Validation images outside the trained group(s) are marked `unused` too, so
    that a head trained on one group chooses its configuration on that group's validation images only (the `All`
    run validates on every group's). Test images are kept whatever their group: results are broken down by test
    group afterwards (`cxrbench bias`)."""
    seed = int(manifest["seed"].iloc[0])
    train = manifest["split"].eq("train").to_numpy()
    patients = manifest["patient_id"].astype(str).to_numpy()
    labels = groups.to_numpy(dtype=object)
    members = {name: np.sort(np.unique(patients[train & (labels == name)])) for name in order}
    smallest = min(members, key=lambda name: len(members[name]))
    wanted = budget.patients if budget.patients is not None else int(math.floor(budget.share * len(members[smallest])))
    short = {name: len(found) for name, found in members.items() if len(found) < max(wanted, 1)}
    if short:
        name = next(iter(short))
        raise DataError(
            f"benchmark '{benchmark}', seed {seed}: group '{name}' of '{budget.attribute}' has {short[name]} training "
            f"patient(s), fewer than the {max(wanted, 1)} drawn from every group (training patients per group: "
            f"{', '.join(f'{k} {len(v)}' for k, v in members.items())}). Pass --group-patients N with N at most "
            f"{min(len(v) for v in members.values())}, or add data."
        )
    chosen = [budget.group] if budget.group != ALL_GROUPS else list(order)
    keep = np.zeros(len(manifest), dtype=bool)
    for name in chosen:
        drawn = _rng(benchmark, seed, f"group/{budget.attribute}/{name}").choice(members[name], size=wanted, replace=False)
        keep |= train & (labels == name) & np.isin(patients, drawn)
    validate = manifest["split"].eq("val").to_numpy() & np.isin(labels, chosen)
    out = manifest.copy()
    out.loc[train & ~keep, "split"] = "unused"
    out.loc[manifest["split"].eq("val").to_numpy() & ~validate, "split"] = "unused"
    return out


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
