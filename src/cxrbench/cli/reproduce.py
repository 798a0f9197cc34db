"""`cxrbench reproduce TABLE`: a paper table's recipe as RunSpecs (`runs.reproduce`) through the one fan-out, then
the table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app
from cxrbench.cli.common import check_request, names, user_errors
from cxrbench.cli.show_tables import show_deviations, show_layout
from cxrbench.console import console, error, progress_display, say, text_table, warn
from cxrbench.errors import CxrbenchError


@app.command(short_help="Run what a paper table needs and is not stored yet, then write the table.", epilog=o.MORE)
@user_errors
@o.machine_options
def reproduce(
    table_name: str = typer.Argument(..., metavar="TABLE", help="A paper table with a recipe (`cxrbench list tables`)."),
    data_root: list[str] = typer.Option([], "--data-root", metavar="BENCH=DIR", help="A benchmark's folder (DIR alone for one; default: its $VAR); repeatable."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", metavar="NAMES", help="Only these rows' encoders, comma-separated."),
    weights: list[str] = typer.Option([], "--weights", metavar="random|ENC=PATH", help="random (random init), or a local release per encoder; repeatable."),
    random_init: bool = typer.Option(False, "--random-init", hidden=True, help="Deprecated: --weights random."),
    image_size: Optional[int] = typer.Option(None, min=1, metavar="PX", help="Every encoder's input size, rounded to its patch size."),
    precision: str = o.Precision,
    seeds: Optional[int] = o.Seeds,
    bootstrap: Optional[int] = o.Bootstrap,
    plan: bool = typer.Option(False, "--plan", help="Only print which runs are stored and which remain."),
    overwrite: bool = typer.Option(False, help="Replace stored runs made with other settings.", show_default=False),
    out: Path = o.Out,
    machine=None, machine_given=(),
) -> None:
    """Run what a paper table needs and is not stored yet (resumable: stored runs of the same settings are kept),
    then write the table to OUT/tables/TABLE.{md,csv,tex}."""
    from cxrbench.tables.recipes import load_recipe

    recipe = load_recipe(table_name)
    random, files = _reproduce_weights(weights, random_init)
    roots = _data_roots(data_root, recipe.benchmarks)
    if not plan:
        check_request(out=out)
    from cxrbench.launchers import make_launcher
    from cxrbench.tables.recipes import plan_runs
    from cxrbench.recording import typed_command
    from cxrbench.runs.reproduce import ReproduceOptions, reproduce as run_recipe, stored_status

    options = ReproduceOptions(out, roots, names(encoder) if encoder else None, random, image_size, seeds, bootstrap,
                               overwrite, files, precision)
    planned = plan_runs(recipe, out, options.encoders)
    statuses = [stored_status(p, options) for p in planned]
    console.print(text_table(f"{recipe.source}: {len(planned)} runs", ["run", "folder", "status"],
                             [[p.label, str(p.folder), status] for p, (status, _) in zip(planned, statuses)]))
    for _, why in statuses:
        if why:
            warn(why)
    show_deviations(recipe.deviations, recipe.table)
    if plan:
        return
    make_launcher(machine.launcher, machine.launcher_params)  # a missing engine or bad parameter, before any work
    with progress_display() as progress:
        outcome = run_recipe(recipe, options, machine, progress, typed_command())
    say(f"{len(outcome.ran)} run(s) trained, {len(outcome.kept)} kept as stored, {len(outcome.remaining)} remaining")
    if any(p.stored for p in planned):
        show_layout(recipe.table, out, diff=False)
    if outcome.remaining:
        for run, why in outcome.remaining:
            error(f"not run: {run.label}: {why}")
        raise CxrbenchError(f"{len(outcome.remaining)} run(s) of {recipe.table} remain; fix what is said above and run "
                            "the same command again (finished runs are kept).")


def _reproduce_weights(values: list[str], random_init: bool) -> tuple[bool, dict[str, Path]]:
    """`reproduce --weights random` (the name `run` uses; `--random-init` is its deprecated alias), or
    `--weights ENCODER=PATH` per encoder whose released weights are a local file or folder."""
    if random_init:
        warn("--random-init is deprecated: write --weights random (the same option as `cxrbench run`).")
    random, files = random_init, {}
    for value in values:
        name, sep, path = value.partition("=")
        if value == "random":
            random = True
        elif sep and name.strip() and path.strip():
            check_request(encoders=[name.strip()])
            files[name.strip()] = Path(path.strip()).expanduser()
        else:
            raise CxrbenchError(f"--weights {value}: a table's rows each have their own encoder; give --weights random "
                                "(every row randomly initialised) or --weights ENCODER=PATH (e.g. raydino=/models/"
                                "xray_dino_vitl16.pth), once per encoder whose weights are a local file.")
    if random and files:
        raise CxrbenchError("--weights random and --weights ENCODER=PATH together: choose random weights for every row, "
                            "or released weights from the files given.")
    return random, files


def _data_roots(values: list[str], benchmarks: list[str]) -> dict[str, Path]:
    """--data-root BENCHMARK=DIR (or DIR alone for a one-benchmark table)."""
    roots = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            if len(benchmarks) != 1:
                raise CxrbenchError(f"--data-root {value}: this table has several benchmarks ({', '.join(benchmarks)}); "
                                    "write BENCHMARK=DIR.")
            name, folder = benchmarks[0], value
        if name not in benchmarks:
            raise CxrbenchError(f"--data-root {value}: '{name}' is not a benchmark of this table ({', '.join(benchmarks)}).")
        roots[name] = Path(folder)
    return roots
