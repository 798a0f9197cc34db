"""Recipes: what to run for a paper's table, declared in `results/recipes/TABLE.yaml`.

A recipe names its table layout (`cxrbench table --layout TABLE`) and lists the runs behind its rows: benchmark x
encoders x head x protocol (head parameters, dataset options, weights) x label budgets. `cxrbench reproduce TABLE`
expands it into run folders, runs the ones not stored yet through the one pipeline (`cxrbench.runs.pipeline.evaluate`,
resuming: a run stored with the same settings is kept, one stored with other settings is refused) and writes the
table. Nothing here knows a benchmark or a paper: the YAML does.

Every recipe also declares, in a required `deviations:` list, how its runs differ from the paper's protocol and why
(a detail the paper does not publish, data that is not available, a deliberate choice): the tables, the report and
`cxrbench reproduce --plan` print that list beside the numbers, so that no difference hides behind a number laid
next to a published one. `deviations: []` says the runs follow the paper as published.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrbench.errors import CxrbenchError, SpecError
from cxrbench.resources import project_root
from cxrbench.specs import load_yaml, parse_spec

if TYPE_CHECKING:  # reading a recipe (`cxrbench list tables`, name checks) imports no pandas; planning does
    from cxrbench.data.splits import LabelBudget


@dataclass(frozen=True)
class RecipeRun:
    """One group of runs: every encoder listed, on one benchmark with one head and protocol."""

    benchmark: str
    encoders: tuple[str, ...]
    head: str | None = None  # None: the benchmark's default head
    head_params: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)  # fields of the benchmark's `split:` replaced (as --split)
    weights: str | None = None  # 'random' for a paper's random-init row; None: the released weights
    tag: str | None = None  # names the variant's folder (HEAD_TAG/), e.g. random-init
    train_fractions: tuple[float, ...] = ()  # label budgets (1.0: the whole training split); none: full data only
    shots: tuple[int, ...] = ()

    @property
    def budgets(self) -> list[LabelBudget | None]:
        from cxrbench.data.splits import LabelBudget

        budgets = [None if f == 1.0 else LabelBudget(train_fraction=f) for f in self.train_fractions]
        budgets += [LabelBudget(shots=n) for n in self.shots]
        return list(dict.fromkeys(budgets)) or [None]


@dataclass(frozen=True)
class Deviation:
    """One way a recipe's runs differ from the paper's protocol (`what`), and the reason, citing the paper's section
    (`why`): one typed form, so that every table can print both halves and a test can find them in its output."""

    what: str
    why: str

    def __post_init__(self) -> None:
        wanted = {"what": "what differs from the paper", "why": "why, citing the paper and its section"}
        for name, text in wanted.items():
            if not getattr(self, name).strip():
                raise SpecError(f"`{name}` is empty: say {text}.")


@dataclass(frozen=True)
class Recipe:
    table: str  # the layout this recipe's runs fill (cxrbench.results.paper_tables.LAYOUTS)
    source: str  # the paper and table, for people
    runs: tuple[RecipeRun, ...]
    deviations: tuple[Deviation, ...]  # required; () when the runs follow the paper as published
    notes: str = ""

    @property
    def benchmarks(self) -> list[str]:
        return list(dict.fromkeys(run.benchmark for run in self.runs))


@dataclass(frozen=True)
class PlannedRun:
    """One run folder a recipe asks for, and whether a run is stored there."""

    entry: RecipeRun
    encoder: str
    head: str
    budget: LabelBudget | None
    folder: Path

    @property
    def stored(self) -> bool:
        from cxrbench.results.store import read_metrics

        return read_metrics(self.folder) is not None

    @property
    def unit(self) -> str:
        """'benchmark · encoder · head[_tag]': the runs of one recipe entry and encoder, which one job makes."""
        from cxrbench.results.store import run_name

        return f"{self.entry.benchmark} · {self.encoder} · {run_name(self.head, self.entry.tag)}"

    @property
    def label(self) -> str:
        return self.unit + (f" ({self.budget.suffix})" if self.budget else "")


def recipes_dir() -> Path:
    return project_root() / "results" / "recipes"


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def load_recipe(name: str) -> Recipe:
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        names = recipe_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CxrbenchError(f"No recipe '{name}' in {recipes_dir()}.{hint} Recipes: {', '.join(names)}.")
    data = load_yaml(path)
    if "deviations" not in data:
        raise SpecError(f"{path}: the `deviations:` key is missing. List how these runs differ from the paper and why, "
                        "one `{what: ..., why: ...}` mapping per difference (citing the paper's section), or write "
                        "`deviations: []` when they follow the paper as published.")
    recipe = parse_spec(Recipe, data, str(path))
    if recipe.table != name:
        raise SpecError(f"{path}: `table: {recipe.table}` must be the file's name ({name}).")
    return recipe


def recipe_deviations(name: str) -> tuple[Deviation, ...] | None:
    """The deviations declared by the recipe of table `name`; None when no recipe makes that table."""
    return load_recipe(name).deviations if (recipes_dir() / f"{name}.yaml").is_file() else None


def plan_runs(recipe: Recipe, out: Path, encoders: list[str] | None = None) -> list[PlannedRun]:
    """Every run folder the recipe asks for (only `encoders` when given), in recipe order."""
    from cxrbench.registry import registry
    from cxrbench.results.store import run_folder, run_name

    unknown = sorted(set(encoders or ()) - {e for run in recipe.runs for e in run.encoders})
    if unknown:
        raise CxrbenchError(f"--encoder {', '.join(unknown)}: recipe '{recipe.table}' has no such row (its encoders: "
                            f"{', '.join(dict.fromkeys(e for run in recipe.runs for e in run.encoders))}).")
    planned = []
    for entry in recipe.runs:
        head = entry.head or registry().get("benchmarks", entry.benchmark).spec.default_head
        for encoder in entry.encoders:
            if encoders and encoder not in encoders:
                continue
            for budget in entry.budgets:
                folder = run_folder(out, entry.benchmark, encoder, run_name(head, entry.tag, budget))
                planned.append(PlannedRun(entry, encoder, head, budget, folder))
    return planned
