"""A stored run's label budget: the whole training split, a fraction of it, a number of patients per class (shots), or
one patient group (the bias protocol). Read from metrics.json's `label_budget`, never from a folder's name, by the
paper tables (which show full-data runs only), the label-efficiency curve and the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cxrbench.errors import CxrbenchError
from cxrbench.results.store import METRICS, StoredRun

FRACTION = "fraction"
SHOTS = "shots"
GROUP = "group"  # a bias-protocol run on one patient group (`cxrbench bias`): not on a label-efficiency curve

@dataclass(frozen=True, order=True)
class Budget:
    """How much labelled training data a run had. Sorts fractions before shots, then by value."""

    kind: str  # "fraction" or "shots"
    value: float
    full: bool = False

    @property
    def on_curve(self) -> bool:
        """A label budget (a fraction or shots); a group run is another protocol's."""
        return self.kind in (FRACTION, SHOTS)

    @property
    def label(self) -> str:
        if self.kind == GROUP:
            return "one patient group"
        if self.kind == SHOTS:
            return f"{int(self.value)} shot" + ("" if self.value == 1 else "s")
        return "100%" if self.full else f"{100 * self.value:g}%"

    @property
    def sort_key(self) -> tuple:
        return (0 if self.kind == FRACTION else 1, self.value, not self.full)


FULL = Budget(FRACTION, 1.0, full=True)


def _parse_budget(value, where: str) -> Budget:
    if value is None:
        return FULL
    if isinstance(value, dict) and set(value) == {"train_group"}:
        return Budget(GROUP, 0.0)
    if not isinstance(value, dict) or len(value) != 1 or not set(value) <= {"train_fraction", "shots"}:
        raise CxrbenchError(f"{where}: label_budget must be null, {{\"train_fraction\": F}} or {{\"shots\": N}}; found {value!r}.")
    if "train_fraction" in value:
        fraction = value["train_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise CxrbenchError(f"{where}: label_budget.train_fraction must be a number in (0, 1]; found {fraction!r}.")
        return FULL if fraction == 1 else Budget(FRACTION, float(fraction))
    shots = value["shots"]
    if isinstance(shots, bool) or not isinstance(shots, (int, float)) or not float(shots).is_integer() or shots < 1:
        raise CxrbenchError(f"{where}: label_budget.shots must be a whole number >= 1; found {shots!r}.")
    return Budget(SHOTS, float(shots))


def run_budget(run: StoredRun) -> Budget:
    """The run's label budget (metrics.json `label_budget`; a run without one trained on the whole split)."""
    return _parse_budget(run.metrics.get("label_budget"), str(run.folder / METRICS))


def full_data_runs(runs: Sequence[StoredRun]) -> list[StoredRun]:
    """The runs trained on the whole training split (what the papers' tables report)."""
    return [run for run in runs if run_budget(run).full]
