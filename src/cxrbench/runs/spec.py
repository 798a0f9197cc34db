"""`RunSpec`: one run described as data, and `MachineSpec`: where and how it is computed.

A RunSpec names everything that decides a run's numbers (benchmark and its data options, encoder and its weights,
size and precision, head and parameters, evaluation, label or group budgets, seeds, bootstrap, metrics, tag) plus
where the data lies. It is built from flags, from a `--config` file (`cxrbench.runs.config`) or from a recipe entry
(`cxrbench.runs.recipes`), printed back by `--print-config`, handed to the one fan-out (`cxrbench.runs.fanout`) and
recorded in every run's config.yaml. A MachineSpec (cache, device, batch size, workers, threads, launcher) changes
where and how fast a run is made, never its numbers, so it is kept apart from the run's identity.

This module imports no torch or pandas: the command line builds and checks specs before the heavy modules load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from cxrbench.specs import DEFAULT_PRECISION

#: `RunSpec.evaluation`: the benchmark's own evaluation (heads on its targets; decoders where they are masks) or
#: RayDINO's box localisation of attention maps (`cxrbench explain`)
EVALUATIONS = ("probe", "localisation")


@dataclass(frozen=True)
class GroupBudgets:
    """The bias protocol's budgets: one run per group of `attribute` (and one on their union), each trained on
    `patients` patients drawn from every group (None: a share of the smallest group's)."""

    attribute: str
    names: tuple[str, ...]
    patients: int | None = None


@dataclass(frozen=True)
class RunSpec:
    """One (benchmark, encoder, head) unit of runs: one run folder per budget (see the module's doc)."""

    benchmark: str
    encoder: str
    data_root: str | None = None  # None: the benchmark's environment variable
    dataset_options: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)  # fields of the benchmark's `split:` replaced
    weights: str | None = None  # a local file or folder, 'random[:SEED]', or None: the adapter's hub source
    revision: str | None = None
    image_size: int | None = None
    precision: str = DEFAULT_PRECISION
    head: str | None = None  # None: the benchmark's default head
    head_params: dict[str, Any] = field(default_factory=dict)
    evaluation: str = "probe"
    evaluation_params: dict[str, Any] = field(default_factory=dict)  # e.g. localisation's findings, min_overlap
    train_fractions: tuple[float, ...] = ()
    shots: tuple[int, ...] = ()
    groups: GroupBudgets | None = None
    seeds: int | None = None  # None: the benchmark's
    bootstrap: int | None = None  # resamples; None: the benchmark's
    metrics: tuple[str, ...] = ()  # scored besides the benchmark's own
    tag: str | None = None

    def __post_init__(self) -> None:
        from cxrbench.errors import SpecError

        if self.evaluation not in EVALUATIONS:
            raise SpecError(f"evaluation '{self.evaluation}': choose one of {', '.join(EVALUATIONS)}.")
        if self.groups is not None and (self.train_fractions or self.shots):
            raise SpecError("groups and train_fractions/shots together: a run trains on a label budget or on patient "
                            "groups, not both.")

    def as_dict(self) -> dict[str, Any]:
        """Plain, YAML- and JSON-safe values (tuples as lists): the form printed, stored and read back."""
        return json.loads(json.dumps(asdict(self), default=str))

    def canonical(self) -> str:
        """One string per spec, keys sorted: two specs are the same run request when these are equal."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    def resolved(self) -> RunSpec:
        """Defaults made explicit from the benchmark's YAML (head, seeds, bootstrap resamples): what `--print-config`
        shows, so that the file keeps its meaning if a default changes. The same run either way."""
        from cxrbench.registry import registry

        bench = registry().get("benchmarks", self.benchmark).spec
        head = self.head or (bench.default_head if self.evaluation == "probe" else None)
        return replace(self, head=head, seeds=self.seeds if self.seeds is not None else bench.seeds,
                       bootstrap=self.bootstrap if self.bootstrap is not None else bench.bootstrap.resamples)

    def budgets(self) -> list:
        """The budgets of this unit, each one run (`data.splits`; imported here, it loads pandas)."""
        from cxrbench.data.splits import ALL_GROUPS, GroupBudget, LabelBudget

        if self.groups is not None:
            return [GroupBudget(self.groups.attribute, name, self.groups.patients)
                    for name in (*self.groups.names, ALL_GROUPS)]
        budgets: list = [None if f == 1.0 else LabelBudget(train_fraction=f) for f in self.train_fractions]
        budgets += [LabelBudget(shots=n) for n in self.shots]
        return list(dict.fromkeys(budgets)) or [None]


@dataclass(frozen=True)
class MachineSpec:
    """Where features are cached, how images are encoded and where jobs run: never part of a run's identity."""

    cache_dir: str | None = None  # None: $CXRBENCH_CACHE or ~/.cache/cxrbench
    device: str = "auto"
    batch_size: int | str = 32  # or 'auto'
    shard_size: int = 512
    workers: int | None = None
    threads: int | None = None
    pixel_cache: bool = False
    launcher: str = "local"
    launcher_params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def spec_keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]
