"""The head contract: fit on training features and labels (validation for monitoring or selection), then score.

A head trains for one kind of target (`Head.kinds`), on the label matrix of a group of targets of that kind:
binary targets [N, T] (1 / 0 / NaN), one multiclass target as a one-hot [N, K] (a NaN row when unknown),
regression targets [N, T] (NaN unknown). It predicts [N, T] probabilities, [N, K] class probabilities or [N, T]
values.

Gradient heads share one training loop (`train_epochs`) and read their inputs from a `BatchSource`: the cached
features (`FeatureSet` is one), or the frozen encoder on a fresh augmented view of every image
(`cxrbench.training.online.OnlineBatches`). The head decides the batches (its own seeded order) and the step; the
source only says what the inputs of those rows are, so the optimiser and schedule exist once for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from cxrbench.errors import SpecError
from cxrbench.heads.params import check_params
from cxrbench.heads.standardise import rows_tensor
from cxrbench.progress import Progress, SilentProgress
from cxrbench.specs import HeadSpec
from cxrbench.threads import Work


#: cached arrays of intermediate blocks are named LAYER_PREFIX + block index (`encoders.base.Features.arrays`)
LAYER_PREFIX = "layer_"
#: cached class tokens of intermediate blocks ([N, D] each) are named CLS_LAYER_PREFIX + block index
CLS_LAYER_PREFIX = "cls_layer_"


class BatchSource(Protocol):
    """Training inputs by row index."""

    def __len__(self) -> int: ...

    def epoch(self, batches: Sequence[np.ndarray], epoch: int, needs: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
        """The inputs of each batch of rows, in order: {"global": [B, D], "patches": [B, H, W, D], "layer_I" and
        "cls_layer_I" if needed}."""


@dataclass
class FeatureSet:
    """Features of one split: `global_` [N, D], optional `patches` [N, H, W, D]; labels as the head sees them.

    `patches` and the intermediate `layers` ({block index: [N, H, W, D]}) may be cached rows read lazily
    (`CachedRows`): heads index them a batch at a time. Segmentation heads' labels are the masks' coverage of
    their loss grid, [N, S, rows, cols].
    `standardise_on`: the features whose statistics standardise the inputs, when not these (a label budget trains
    on a few images but takes statistics over the whole training split, labelled or not).
    `cls_layers`: the class tokens of chosen blocks ({block index: [N, D]}, in memory like `global_`).
    """

    global_: np.ndarray
    labels: np.ndarray
    patches: Any = None
    standardise_on: "FeatureSet | None" = None
    layers: dict[int, Any] = field(default_factory=dict)
    cls_layers: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def epoch(self, batches: Sequence[np.ndarray], epoch: int, needs: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
        """The cached features as a `BatchSource` (every epoch reads the same un-augmented rows)."""
        for index in batches:
            inputs = {"global": rows_tensor(self.global_, index)}
            if "patches" in needs:
                inputs["patches"] = rows_tensor(self.patches, index)
            for name in needs:
                if name.startswith(LAYER_PREFIX):
                    inputs[name] = rows_tensor(self.layers[int(name[len(LAYER_PREFIX):])], index)
                elif name.startswith(CLS_LAYER_PREFIX):
                    inputs[name] = rows_tensor(self.cls_layers[int(name[len(CLS_LAYER_PREFIX):])], index)
            yield inputs


@dataclass
class FitReport:
    """What a head chose and saw while training, stored with the results."""

    chosen: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    #: one row per configuration tried (e.g. a grid's validation scores), stored as the run's selection.csv
    table: list[dict[str, Any]] = field(default_factory=list)


def train_epochs(source: BatchSource, needs: Sequence[str], epochs: int, batches: Callable[[], list[np.ndarray]],
                 step: Callable[[dict[str, torch.Tensor], np.ndarray], float], progress: Progress, description: str,
                 after_epoch: Callable[[], None] | None = None) -> list[float]:
    """The training loop of every gradient head, whatever the source of its inputs.

    Each epoch asks `batches()` for its row batches, feeds each batch's inputs to `step(inputs, rows)` (which
    updates the head and returns the batch's summed loss) and records the mean training loss of the epoch.
    """
    advance = progress.task(description, epochs, transient=True)
    losses = []
    for epoch in range(epochs):
        order = batches()
        total = 0.0
        for rows, inputs in zip(order, source.epoch(order, epoch, needs)):
            total += step(inputs, rows)
        losses.append(total / len(source))
        if after_epoch is not None:
            after_epoch()
        advance(1)
    return losses


class Head(ABC):
    #: which cached arrays the head needs ("global", "patches", "cls_layer_I"); may depend on the parameters
    needs: tuple[str, ...] = ("global",)
    #: the target kinds the head trains
    kinds: tuple[str, ...] = ("binary", "multiclass", "regression")
    #: hyperparameters this head accepts, with their defaults (which also fix their types)
    defaults: dict[str, Any] = {}
    #: scalar parameters that may be given as a list, every value trained (a grid's axes)
    sweeps: tuple[str, ...] = ()
    #: how the head's steps use CPU threads (`cxrbench.threads`): "light" heads train on one thread
    work: Work = "light"

    def __init__(self, spec: HeadSpec, overrides: dict[str, Any] | None = None, kind: str = "binary",
                 selection: str | None = None):
        """`kind`: the kind of the targets it will train; `selection`: the metric that chooses among settings on
        the validation split when the head's `selection_metric` is `auto` (None: the validation loss)."""
        unknown = set(spec.params) - set(self.defaults) | set(overrides or {}) - set(self.defaults)
        if unknown:
            raise SpecError(f"Head '{spec.name}' has no parameter(s) {sorted(unknown)}; it accepts {sorted(self.defaults)}.")
        self.spec = spec
        if kind not in self.kinds:
            raise SpecError(f"Head '{spec.name}' trains {' / '.join(self.kinds)} targets, not {kind} ones; choose "
                            "another --head (e.g. linear or mlp).")
        given = {**spec.params, **(overrides or {})}
        self.params = {**self.defaults, **check_params(f"Head '{spec.name}'", self.defaults, given, self.sweeps)}
        self.kind = kind
        self.selection = self._selection_metric(selection)

    def _selection_metric(self, automatic: str | None):
        """The registered metric the head ranks its settings by (None: it has none to rank, or ranks by loss)."""
        from cxrbench.registry import metric, metric_spec

        name = self.params.get("selection_metric")
        if name is None:
            return None
        name = automatic if name == "auto" else str(name)
        if name is None:
            return None
        if self.kind not in metric_spec(name).kinds:
            raise SpecError(f"Head '{self.spec.name}': selection_metric '{name}' does not score {self.kind} targets; "
                            "use auto (the benchmark's metric) or one that does.")
        return metric(name)

    #: whether the head reads chosen blocks of the encoder, fixed by `select_blocks` before `needs` is asked
    reads_blocks: bool = False

    def select_blocks(self, num_layers: int) -> None:
        """Fix which blocks of an encoder with `num_layers` blocks the head reads (only when `reads_blocks`: knowing
        the depth builds the encoder's network, which a run on cached features otherwise never does)."""

    @abstractmethod
    def fit(self, train: FeatureSet, val: FeatureSet, seed: int, progress: Progress = SilentProgress(),
            source: BatchSource | None = None) -> FitReport:
        """Train on `train` (choosing among settings on `val` where the head has several); `progress` shows the
        epochs or fits as they go. `source`: where a gradient head reads its training inputs when not from the
        cached `train` features (the frozen encoder under augmentation); heads without gradient steps refuse it."""

    @abstractmethod
    def predict(self, features: FeatureSet) -> np.ndarray:
        """Scores [N, C]: probabilities for binary and multiclass targets, values for regression."""


def cached_only(head: Head, source: BatchSource | None) -> None:
    """For heads that fit in one pass over cached features (kNN, logistic regression): no online source."""
    if source is not None:
        raise SpecError(f"Head '{head.spec.name}' fits on cached features only; `features: online` needs a gradient "
                        "head (linear, mlp, avgpool, attentive, a grid).")
