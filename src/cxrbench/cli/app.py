"""The `cxrbench` Typer application and its sub-groups; each command module registers its commands on them."""

from __future__ import annotations

import typer

from cxrbench.console import say

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark frozen chest X-ray encoders.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets on disk.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the feature cache.")
results_app = typer.Typer(no_args_is_help=True, help="Check stored run folders.")
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")
app.add_typer(results_app, name="results")


def _version(value: bool) -> None:
    if value:
        import cxrbench

        say(f"cxrbench {cxrbench.__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Benchmark frozen chest X-ray encoders."""
