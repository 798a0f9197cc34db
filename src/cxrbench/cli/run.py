"""`cxrbench run`: RunSpecs (one per encoder) from flags and `--config FILE` (defaults < file < flags), shown with
`--print-config` or handed to the one fan-out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app
from cxrbench.cli.common import check_request, user_errors
from cxrbench.runs.config import RUN_KEYS

@app.command(short_help="Run a benchmark with one or more encoders (results in OUT/BENCHMARK/ENCODER/HEAD/).", epilog=o.MORE)
@user_errors
@o.machine_options
def run(
    benchmark: Optional[str] = typer.Argument(None, help="Benchmark name (`cxrbench list benchmarks`; may come from --config)."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", metavar="NAMES", help="Encoder name(s), comma-separated: one run each."),
    head: Optional[str] = typer.Option(None, help=RUN_KEYS["head"]),
    seeds: Optional[int] = o.Seeds,
    data_root: Optional[Path] = o.DataRoot,
    dataset_option: list[str] = o.DatasetOptions,
    split: list[str] = o.SplitOptions,
    weights: Optional[str] = o.Weights,
    revision: Optional[str] = o.Revision,
    image_size: Optional[int] = o.ImageSize,
    precision: str = o.Precision,
    tag: Optional[str] = typer.Option(None, help=RUN_KEYS["tag"]),
    overwrite: bool = o.Overwrite,
    head_param: list[str] = o.HeadParams,
    metric: list[str] = typer.Option([], "--metric", hidden=True, help="Also score this registered metric (`cxrbench list metrics`); repeatable."),
    train_fraction: Optional[str] = typer.Option(None, help="Label efficiency: fractions of the training patients, e.g. 0.01,0.1,1 (one run each).", hidden=True),
    shots: Optional[str] = typer.Option(None, help="Few-shot: N patients per class, e.g. 1,2,4,8 (one run each).", hidden=True),
    bootstrap: Optional[int] = o.Bootstrap,
    out: Path = o.Out,
    config: Optional[Path] = typer.Option(None, "--config", exists=True, dir_okay=False, help="A run file (YAML, as --print-config writes it); flags override it."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved run file (YAML) and exit."),
    context=None, machine=None, machine_given=(),
) -> None:
    """Run BENCHMARK with one or more encoders and write results under OUT/BENCHMARK/ENCODER/HEAD/."""
    from cxrbench.runs.config import build_request, read_config, resolved, to_yaml

    flags = o.run_keys(context, typed_only=True)
    flags["machine"] = {key: value for key, value in machine.as_dict().items() if key in machine_given}
    file = read_config(config) if config else None
    request = build_request(flags, file, str(config) if config else "the command line")
    first = request.specs[0]
    check_request(first.benchmark, [s.encoder for s in request.specs], first.head, first.metrics, first.image_size,
                  Path(request.out), split=first.split)
    if print_config:
        typer.echo(to_yaml(resolved(request)), nl=False)
        return
    from cxrbench.cli.show import run_and_show
    from cxrbench.runs.fanout import Storage
    from cxrbench.recording import typed_command

    run_and_show(list(request.specs), Storage(Path(request.out), request.overwrite), request.machine, typed_command())
