"""Referral curves of a run scored with `selective_auroc`: the AUROC left as the most uncertain predictions go to
an expert (`cxrbench.metrics.selective`), read from metrics.json's `selective_auroc@RATE` entries, one per rate:
the curve is stored as those entries, so the report redraws it without the predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrbench.stats.summary import MACRO

METRIC = "selective_auroc"


@dataclass
class ReferralCurve:
    target: str  # a target's name, or MACRO
    rates: np.ndarray  # referral rates, ascending
    mean: np.ndarray  # seed-mean AUROC at each rate (NaN where undefined)
    low: np.ndarray  # bootstrap interval of that mean
    high: np.ndarray


def referral_curves(metrics: dict) -> list[ReferralCurve]:
    """One curve per target scored at two or more referral rates, the macro average last; [] for a run without."""
    summaries = metrics.get("metrics") or {}
    points = sorted((float(key.partition("@")[2]), entries) for key, entries in summaries.items()
                    if key.partition("@")[0] == METRIC and key.partition("@")[2])
    if len(points) < 2:
        return []
    targets = [t for t in dict.fromkeys(t for _, entries in points for t in entries) if t != MACRO] + [MACRO]
    curves = []
    for target in targets:
        rows = [(rate, entries[target]) for rate, entries in points if target in entries]
        values = {key: np.array([np.nan if entry.get(key) is None else entry[key] for _, entry in rows], dtype=float)
                  for key in ("mean", "ci_low", "ci_high")}
        curves.append(ReferralCurve(target, np.array([rate for rate, _ in rows]), values["mean"], values["ci_low"],
                                    values["ci_high"]))
    return curves
