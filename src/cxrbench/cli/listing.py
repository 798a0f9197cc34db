"""`cxrbench list`: the registered encoders, heads, benchmarks and metrics, and the paper tables with a recipe."""

from __future__ import annotations

from typing import Optional

import typer

from cxrbench.cli.app import app
from cxrbench.cli.common import user_errors
from cxrbench.console import console, text_table
from cxrbench.errors import CxrbenchError


@app.command("list", short_help="Registered encoders, heads, benchmarks, metrics and paper tables.")
@user_errors
def list_(kind: Optional[str] = typer.Argument(None, help="encoders | heads | benchmarks | metrics | tables (default: all)")) -> None:
    """Show the registered encoders, heads, benchmarks and metrics and where each comes from, and the paper tables
    `cxrbench reproduce` can rebuild."""
    import difflib

    from cxrbench.registry import KINDS, registry

    kinds = (*KINDS, "tables")
    if kind is not None and kind not in kinds:
        close = difflib.get_close_matches(kind, kinds, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CxrbenchError(f"`cxrbench list {kind}`:{hint} Choose one of {', '.join(kinds)}, or give none for all.")
    for chosen in [kind] if kind else kinds:
        if chosen == "tables":
            console.print(_tables_listing())
            continue
        entries = registry().entries(chosen)  # type: ignore[arg-type]
        if chosen == "encoders":
            rows = []
            for entry in entries:
                spec = entry.spec
                source = (f"{spec.weights.hub_repo}@{spec.weights.revision[:7]}" if spec.weights.hub_repo and spec.weights.revision
                          else (spec.weights.distributed_at or "none needed"))
                rows.append([entry.name, source, spec.weights.licence, spec.preprocessing.crop or spec.preprocessing.size,
                             spec.embedding_dim, spec.patch_stride, entry.origin])
            table = text_table("cxrbench encoders", ["name", "weights", "licence", "input px", "dim", "stride", "origin"], rows,
                               right=("input px", "dim", "stride"))
        elif chosen == "metrics":
            rows = [[e.name, ", ".join(e.spec.kinds), "higher" if e.spec.higher_is_better else "lower",
                     e.spec.heading, e.spec.description, e.origin] for e in entries]
            table = text_table("cxrbench metrics", ["name", "targets", "better", "shown as", "what it is", "origin"], rows)
        else:
            rows = [[entry.name, " ".join((getattr(entry.spec, "title", "") or getattr(entry.spec, "description", "")).split()),
                     entry.origin] for entry in entries]
            table = text_table(f"cxrbench {chosen}", ["name", "description", "origin"], rows)
        console.print(table)
        if chosen == "encoders":
            from cxrbench.encoders.generic import FORMS

            console.print(text_table("any other model, by name (no adapter needed)", ["name form", "what it loads"],
                                     [list(form) for form in FORMS]))


def _tables_listing():
    """The paper tables with a recipe (results/recipes/TABLE.yaml): what `cxrbench reproduce TABLE` runs."""
    from cxrbench.tables.recipes import load_recipe, recipe_names

    rows = []
    for name in recipe_names():
        recipe = load_recipe(name)
        encoders = {encoder for run in recipe.runs for encoder in run.encoders}
        rows.append([name, " ".join(recipe.source.split()), ", ".join(recipe.benchmarks), len(encoders)])
    return text_table("cxrbench tables (cxrbench reproduce TABLE; cxrbench table --layout TABLE)",
                      ["name", "source", "benchmarks", "encoders"], rows, right=("encoders",))
