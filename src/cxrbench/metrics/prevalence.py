"""Macro AUPRC per prevalence bin: how a probe fares on common, uncommon and rare findings (the long tail).

MIMIC-CXR-LT (Holste et al., CXR-LT challenge) and RayDINO (Fig. 3a) split the findings by how often they occur in
the TRAINING data: common above 10%, uncommon from 1% to 10%, rare below 1%, and report the macro AUPRC of each bin.
The bins are fixed by the training split, never by the test split (whose rare classes may have a handful of
positives), so the summary is given each target's training prevalence (`MetricContext.train_prevalence`): the
positives among the labelled training images of every seed, pooled (`metrics.points.train_prevalence`; equal to
each seed's own where the split is fixed, as CXR-LT's official split is).

`auprc_bins@common`, `@uncommon` and `@rare` each hold the AUPRC of their member targets and their macro; the run's
metrics.json also keeps the edges, every target's training prevalence and each bin's members, an empty bin included
(`metric_points.auprc_bins`). The edges are the metric's option (`edges`): a subclass registered under another name
may set others, its bin names staying rare < first edge <= uncommon <= second edge < common.
"""

from __future__ import annotations

from collections.abc import Sequence

from cxrbench.metrics.classification import AUPRC
from cxrbench.metrics.points import MetricContext, PointMetric
from cxrbench.specs import TargetSpec

BINS = ("common", "uncommon", "rare")


class PrevalenceBinAUPRC(PointMetric, AUPRC):
    title = "AUPRC"
    points = BINS
    edges: tuple[float, float] = (0.01, 0.10)
    description = ("macro AUPRC of the targets in each training-prevalence bin: common > 10%, uncommon 1-10%, "
                   "rare < 1% (MIMIC-CXR-LT; RayDINO Fig. 3a)")

    def available(self, point, context):
        return context is not None and context.train_prevalence is not None

    def members(self, targets, context):
        return [t for t in targets if self.bin_of(context.train_prevalence.get(t.name)) == self.point]

    def bin_of(self, prevalence: float | None) -> str | None:
        """The bin of a training prevalence (None: the target has none)."""
        if prevalence is None:
            return None
        low, high = self.edges
        return "rare" if prevalence < low else "common" if prevalence > high else "uncommon"

    def stored(self, targets: Sequence[TargetSpec], context: MetricContext | None) -> dict | None:
        """The bins as metrics.json keeps them: edges, each target's training prevalence, each bin's members."""
        if not self.available(BINS[0], context):
            return None
        prevalence = context.train_prevalence
        scored = [t.name for t in targets if t.name in prevalence]
        return {"split": "train", "edges": list(self.edges), "prevalence": {name: prevalence[name] for name in scored},
                "bins": {name: [t for t in scored if self.bin_of(prevalence[t]) == name] for name in BINS}}

