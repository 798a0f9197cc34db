"""Paper tables: each one YAML in `results/recipes/` (found by scanning that folder), holding all of the table.

- `runs:` what to run (the recipe proper): benchmark x encoders x head x protocol (head parameters, dataset options,
  weights) x label budgets. `cxrbench reproduce TABLE` expands it into run folders, runs the ones not stored yet
  through the one pipeline (resuming) and writes the table.
- `layout:` its columns (`cxrbench.tables.layout.TableLayout`), and `published:` the paper's CSV in
  `results/published/` that the layout reads where a benchmark's own `published:` block does not cover a column.
- `deviations:` (required) how its runs differ from the paper's protocol and why; the tables, the report and
  `cxrbench reproduce --plan` print that list beside the numbers, so that no difference hides behind a number laid
  next to a published one. `deviations: []` says the runs follow the paper as published.

Adding a paper table is one YAML here and one CSV in `results/published/`. `CXRBENCH_TABLES_DIR` points the scan at
another folder (its CSVs then sit in the `published/` folder beside it). Nothing here knows a benchmark or a paper.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrbench.errors import CxrbenchError, SpecError
from cxrbench.resources import project_root
from cxrbench.typed_yaml import load_yaml, parse_spec
from cxrbench.tables.layout import PaperCsv, TableLayout, with_name

if TYPE_CHECKING:  # reading a table's YAML (`cxrbench list tables`, name checks) imports no pandas; planning does
    from cxrbench.data.splits import LabelBudget

TABLES_DIR_VARIABLE = "CXRBENCH_TABLES_DIR"
SET_WHEN_LOADED = ("name", "published")  # TableLayout fields that come from the file, not from its `layout:` block


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
    # registered metrics scored beside the benchmark's own (as `run --metric`), e.g. `fnr` for a paper's threshold
    # table; several tables that share a benchmark's runs list the same ones, so that whichever runs first stores all
    metrics: tuple[str, ...] = ()

    @property
    def budgets(self) -> list[LabelBudget | None]:
        from cxrbench.data.splits import LabelBudget

        budgets = [None if f == 1.0 else LabelBudget(train_fraction=f) for f in self.train_fractions]
        budgets += [LabelBudget(shots=n) for n in self.shots]
        return list(dict.fromkeys(budgets)) or [None]


@dataclass(frozen=True)
class Deviation:
    """One way a table's runs differ from the paper's protocol (`what`), and the reason, citing the paper's section
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
    """A paper table's YAML: its runs, layout, published CSV and deviations."""

    table: str  # the file's name
    source: str  # the paper and table, for people
    runs: tuple[RecipeRun, ...]
    deviations: tuple[Deviation, ...]  # required; () when the runs follow the paper as published
    layout: TableLayout
    published: PaperCsv | None = None  # the paper's CSV the layout reads (results/published/FILE)
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
    """The folder scanned for paper tables: `results/recipes/`, or the folder `CXRBENCH_TABLES_DIR` names."""
    chosen = os.environ.get(TABLES_DIR_VARIABLE)
    return Path(chosen) if chosen else project_root() / "results" / "recipes"


def recipe_names() -> list[str]:
    return sorted(path.stem for path in recipes_dir().glob("*.yaml"))


def load_recipe(name: str) -> Recipe:
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        names = recipe_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CxrbenchError(f"No paper table '{name}' in {recipes_dir()}.{hint} Tables: {', '.join(names)}.")
    data = load_yaml(path)
    if "deviations" not in data:
        raise SpecError(f"{path}: the `deviations:` key is missing. List how these runs differ from the paper and why, "
                        "one `{what: ..., why: ...}` mapping per difference (citing the paper's section), or write "
                        "`deviations: []` when they follow the paper as published.")
    written = [key for key in SET_WHEN_LOADED if key in (data.get("layout") or {})]
    if written:
        raise SpecError(f"{path}: layout.{written[0]}: set by the file (its name; the top-level `published:` block), "
                        f"not in `layout:`; remove it.")
    recipe = parse_spec(Recipe, data, str(path))
    if recipe.table != name:
        raise SpecError(f"{path}: `table: {recipe.table}` must be the file's name ({name}).")
    published = _published_beside(recipe.published, path)
    try:
        layout = with_name(recipe.layout, name, published)
    except SpecError as exc:
        raise SpecError(f"{path}: layout: {exc}") from None
    return Recipe(recipe.table, recipe.source, recipe.runs, recipe.deviations, layout, published, recipe.notes)


def _published_beside(published: PaperCsv | None, path: Path) -> PaperCsv | None:
    """The table's CSV as an absolute path in the `published/` folder beside the tables folder (checked here, so
    that a wrong name fails when the table is listed, not when it is first rendered)."""
    if published is None:
        return None
    csv = path.parent.parent / "published" / published.file
    if not csv.is_file():
        raise SpecError(f"{path}: published.file: {csv} does not exist; put the paper's CSV there or fix the name.")
    return PaperCsv(str(csv), published.source, published.model_column, published.scale, published.encoders,
                    published.heads)


def recipe_deviations(name: str) -> tuple[Deviation, ...] | None:
    """The deviations declared by the paper table `name`; None when no table of that name is declared."""
    return load_recipe(name).deviations if (recipes_dir() / f"{name}.yaml").is_file() else None


def layouts() -> dict[str, TableLayout]:
    """Every paper table's layout, by name (the YAML files of the scanned folder, sorted)."""
    return {name: load_recipe(name).layout for name in recipe_names()}


def get_layout(name: str) -> TableLayout:
    """The layout of the paper table `name` (its YAML's), with did-you-mean on an unknown name."""
    names = recipe_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CxrbenchError(f"Unknown table layout '{name}'.{hint} Choose one of {', '.join(names)} "
                            f"(the YAML files of {recipes_dir()}).")
    return load_recipe(name).layout


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
