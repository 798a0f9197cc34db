"""Selective prediction: the AUROC left when the most uncertain predictions are referred to an expert.

The domain pre-training paper (appendix A.7, Table 8; Fig. 2d) reports an "oracle AUC" at referral rates 0 to 25%:
the model hands the share of test images it is least sure about to an expert ("oracle", after Kivlichan et al.
2021 and PLEX, its references [29] and [48]) whose answers are right, and the AUROC is taken over all images, the
expert's answers included. The paper does not spell out the uncertainty; we use the one its references default to
for a binary probability, the closeness of p to the decision boundary 0.5: uncertainty = 0.5 - |p - 0.5| (so
confidence max(p, 1 - p)). Per target and rate r:

    1. order the n test images by uncertainty, most uncertain first (ties in row order: the images' sorted ids);
    2. refer the first floor(r * n) of them: their score becomes their label (1 for a positive, 0 for a negative);
    3. AUROC (scikit-learn's, ties counting 1/2) over all n images.

Referring images can only remove discordant pairs or leave them, so the curve rises from the plain AUROC at r = 0.
Under a bootstrap resample an image drawn k times is k rows; the rows of one image sit together in that order, so a
budget may refer some of an image's copies and not the others, in the weighted form as in the loop form.
"""

from __future__ import annotations

import numpy as np

from cxrbench.metrics.classification import AUROC, both_classes, running_sums, weighted_curve
from cxrbench.metrics.points import PointMetric

RATES = ("0", "0.05", "0.1", "0.15", "0.2", "0.25")
_ROUNDING = 1e-9  # floor(r * n) with r * n computed in floating point: 0.15 * 100 is 15.000000000000002


def referred_count(rate: float, rows: float | np.ndarray) -> np.ndarray:
    """How many of `rows` images a referral rate sends to the expert: floor(rate * rows)."""
    return np.floor(rate * np.asarray(rows, dtype=np.float64) + _ROUNDING).astype(np.int64)


def referral_order(scores: np.ndarray) -> np.ndarray:
    """Row indices, most uncertain first (|p - 0.5| ascending; ties in row order)."""
    return np.argsort(np.abs(np.asarray(scores, dtype=np.float64) - 0.5), kind="stable")


class SelectiveAUROC(PointMetric):
    title = "Selective AUROC"
    kinds = ("binary",)
    points = RATES
    description = ("AUROC after the most uncertain predictions (|p - 0.5| smallest) at referral rates 0-25% are "
                   "referred to an oracle that answers with the label (domain pre-training paper, Table 8)")

    @property
    def rate(self) -> float:
        return float(self.point or 0.0)

    def score(self, labels, scores):
        if not both_classes(labels):
            return float("nan")
        answered = np.asarray(scores, dtype=np.float64).copy()
        referred = referral_order(scores)[: int(referred_count(self.rate, len(labels)))]
        answered[referred] = labels[referred]
        return AUROC().score(labels, answered)

    def weighted(self, labels, scores, weights):
        """Each row split in two: its copies the budget refers (scored with their label) and the rest (scored as the
        model scored them), the AUROC of both weighted by `weighted_curve`. Images-major ([n, R], as the bootstrap
        lays the weights out): rows are gathered and summed a contiguous row at a time."""
        order = referral_order(scores)
        counts = np.ascontiguousarray(np.atleast_2d(weights).T[order], dtype=np.int32)  # [n, R] in referral order
        before = running_sums(counts) - counts  # copies ranked ahead of each row's first copy
        budget = referred_count(self.rate, counts.sum(axis=0, dtype=np.int64))
        referred = np.clip(budget - before, 0, counts).astype(np.int32)
        ranked_labels = labels[order].astype(np.float64)
        rows = np.concatenate([ranked_labels, ranked_labels])
        answers = np.concatenate([np.asarray(scores, dtype=np.float64)[order], ranked_labels])
        return weighted_curve("auroc", rows, answers, np.concatenate([counts - referred, referred]).T)
