"""Training losses over labels with NaN for unknown, and the matching output activations.

Every loss accepts logits with leading dimensions (e.g. [heads, batch, tasks] for a grid of heads trained
together) against labels [batch, tasks] and returns one mean per leading index, so the heads of a grid stay
independent: the gradient of their summed losses with respect to one head's weights is that head's own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cxrbench.errors import SpecError


def _masked_mean(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    return (values * known).sum(dim=(-2, -1)) / known.sum().clamp(min=1)


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy per task (multi-label / binary), averaged over the known labels."""
    known = ~torch.isnan(labels)
    targets = torch.nan_to_num(labels).expand_as(logits)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none", pos_weight=pos_weight)
    return _masked_mean(loss, known)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy for one-of-T classes; labels are one-hot rows, rows with NaN are left out."""
    known = ~torch.isnan(labels).any(dim=-1)
    target = torch.nan_to_num(labels).argmax(dim=-1)
    loss = -torch.log_softmax(logits, dim=-1).gather(-1, target.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    return (loss * known).sum(dim=-1) / known.sum().clamp(min=1)


def masked_smape(predictions: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Symmetric mean absolute percentage error, |p - y| / ((|p| + |y|) / 2), in [0, 2] (RayDINO's scoliosis loss)."""
    known = ~torch.isnan(targets)
    y = torch.nan_to_num(targets)
    error = (predictions - y).abs() / ((predictions.abs() + y.abs()) / 2 + eps)
    return _masked_mean(error, known)


def masked_mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known values."""
    known = ~torch.isnan(targets)
    return _masked_mean((predictions - torch.nan_to_num(targets)) ** 2, known)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "bce": masked_bce,
    "ce": masked_cross_entropy,
    "smape": masked_smape,
    "mse": masked_mse,
}
OUTPUTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "bce": torch.sigmoid,
    "ce": lambda logits: torch.softmax(logits, dim=-1),
    "smape": lambda values: values,
    "mse": lambda values: values,
}
#: the loss `auto` gives each target kind (RayDINO: BCE multi-label, CE multi-class, SMAPE for the Cobb angles)
LOSS_FOR_KIND = {"binary": "bce", "multiclass": "ce", "regression": "smape"}
LOSSES_OF_KIND = {"binary": ("bce",), "multiclass": ("ce",), "regression": ("smape", "mse")}


def resolve_loss(name: str, kind: str, where: str = "") -> str:
    """`auto` picks the loss of the target kind; anything else must be a loss for that kind."""
    loss = LOSS_FOR_KIND[kind] if name == "auto" else name
    if loss not in LOSSES_OF_KIND[kind]:
        raise SpecError(f"{where + ': ' if where else ''}loss '{name}' does not train {kind} targets; choose auto or one of "
                        f"{', '.join(LOSSES_OF_KIND[kind])}.")
    return loss
