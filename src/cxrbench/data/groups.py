"""Patient groups: which group of each declared attribute an image belongs to, and what the groups hold.

A benchmark's `groups:` block (`cxrbench.specs.GroupSpec`) names attributes over the loader's demographic columns
(`sex`, `age_years`, `race`, ...): categorical values, or left-closed bins of a number. Stratified reports, the bias
protocol and `cxrbench data check` all read group membership from here, so an image is in the same group everywhere.
An image whose value is unknown, or in no declared group, is in none (and counted as such).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from cxrbench.data.common.samples import BenchmarkData
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec, GroupSpec

#: the prefix of the group columns written beside predictions (one per attribute)
GROUP_PREFIX = "group:"


def group_column(attribute: str) -> str:
    """The predictions column holding each row's group of `attribute`."""
    return f"{GROUP_PREFIX}{attribute}"


def group_labels(samples: pd.DataFrame, attribute: str, group: GroupSpec, benchmark: str = "") -> pd.Series:
    """Each image's group name of one attribute (None where the value is unknown or in no group)."""
    if group.column not in samples:
        raise DataError(f"benchmark '{benchmark}': group '{attribute}' reads column '{group.column}', which its loader "
                        f"does not supply (it has: {', '.join(c for c in samples.columns if c not in ('path',))}). Fix "
                        "`groups:` in the benchmark spec.")
    column = samples[group.column]
    if group.bins:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        edges = np.asarray(group.bins, dtype=np.float64)
        index = np.searchsorted(edges, values, side="right") - 1  # left-closed: an edge value opens its bin
        inside = np.isfinite(values) & (index >= 0) & (index < len(edges) - 1)
        names = np.asarray(group.names, dtype=object)
        out = np.full(len(values), None, dtype=object)
        out[inside] = names[index[inside]]
        return pd.Series(out, index=samples.index, name=attribute, dtype=object)
    text = column.astype("string").str.strip()
    known = text.notna() & text.ne("")
    allowed = set(group.labels) if group.labels else set(text[known])
    keep = known & text.isin(allowed)
    return pd.Series(np.where(keep.to_numpy(dtype=bool), text.fillna("").to_numpy(dtype=object), None),
                     index=samples.index, name=attribute, dtype=object)


def group_order(labels: pd.Series, group: GroupSpec) -> list[str]:
    """The groups in display order: the spec's, else the values present, sorted."""
    return list(group.names) or sorted(labels.dropna().unique().tolist())


def group_frame(samples: pd.DataFrame, groups: Mapping[str, GroupSpec], benchmark: str = "") -> pd.DataFrame:
    """`image_id` and one `group:<attribute>` column per attribute whose column the loader supplies (a loader may
    supply demographics only where a linked release is present, e.g. MIMIC-IV beside MIMIC-CXR)."""
    frame = pd.DataFrame({"image_id": samples["image_id"].to_numpy()})
    for attribute, group in groups.items():
        if group.column not in samples:
            continue
        frame[group_column(attribute)] = group_labels(samples, attribute, group, benchmark).to_numpy()
    return frame


def group_summary(data: BenchmarkData, spec: BenchmarkSpec, split: np.ndarray | None = None) -> pd.DataFrame:
    """Per attribute, split and group (and `(unknown)`): images, patients, share female, age mean and std, share of
    images with a finding (1 - the dataset's No Finding label), the statistics of RayDINO's table S2 and
    RAD-DINO's Table E.1 counts. `split`: one split name per image (default the loader's `split` column). An attribute
    whose column the loader did not supply is left out."""
    samples = data.samples
    splits = samples["split"].astype(str).to_numpy() if split is None else np.asarray(split)
    rows = []
    for attribute, group in spec.groups.items():
        if group.column not in samples:  # not supplied by this copy (e.g. MIMIC-CXR without MIMIC-IV beside it)
            continue
        labels = group_labels(samples, attribute, group, spec.name)
        names = [*group_order(labels, group), None]
        for split_name in dict.fromkeys(splits):
            in_split = splits == split_name
            for name in names:
                member = in_split & (labels.isna().to_numpy() if name is None else labels.eq(name).to_numpy())
                rows.append({"attribute": attribute, "split": split_name, "group": "(unknown)" if name is None else name,
                             **_group_statistics(samples[member])})
    return pd.DataFrame(rows)


def _group_statistics(frame: pd.DataFrame) -> dict:
    sex = frame["sex"].astype(str).str.strip() if "sex" in frame else pd.Series(dtype=str)
    known_sex = sex.isin(["F", "M"])
    age = pd.to_numeric(frame["age_years"], errors="coerce") if "age_years" in frame else pd.Series(dtype=float)
    finding = 1.0 - pd.to_numeric(frame["no_finding"], errors="coerce") if "no_finding" in frame else pd.Series(dtype=float)
    return {
        "images": len(frame),
        "patients": int(frame["patient_id"].nunique()),
        "female_share": float((sex[known_sex] == "F").mean()) if known_sex.any() else float("nan"),
        "age_mean": float(age.mean()) if age.notna().any() else float("nan"),
        "age_std": float(age.std(ddof=1)) if age.notna().sum() > 1 else float("nan"),
        "finding_share": float(finding.mean()) if finding.notna().any() else float("nan"),
    }
