"""`cxrbench bias`: the bias protocol's folds as one RunSpec per encoder (its group budgets), through the fan-out;
then the bias tables and figure from the stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app
from cxrbench.cli.common import check_request, names, user_errors
from cxrbench.console import print_table, say
from cxrbench.errors import CxrbenchError

#: the bias protocol's head: RayDINO (methods, "Bias analysis") trains its usual classification protocol, the grid
BIAS_HEAD = "raydino-grid"


@app.command(short_help="Bias protocol (RayDINO Fig. 4c/4d): heads per patient group, scored across groups.",
             epilog=o.more("--group-patients N (training patients per group and fold; default: 80% of the "
                                   "smallest group's)", "--metric NAME (per test group; default: auroc where scored)"))
@user_errors
@o.machine_options
def bias(
    benchmark: str = typer.Argument(..., help="Benchmark name (one whose spec declares `groups:`)."),
    attribute: str = typer.Option(..., metavar="NAME", help="An attribute of the spec's `groups:`, e.g. sex."),
    encoder: str = o.Encoders,
    head: str = typer.Option(BIAS_HEAD, help="Head name (RayDINO's grid, tuned per group)."),
    folds: int = typer.Option(20, metavar="N", help="Folds: new draws of training patients (default: 20).", show_default=False),
    group_patients: Optional[int] = typer.Option(None, help="Training patients per group and fold (default: 80% of the smallest group's).", hidden=True),
    metric: Optional[str] = typer.Option(None, help="Metric per test group (default: auroc where scored, else the primary metric).", hidden=True),
    data_root: Optional[Path] = o.DataRoot,
    dataset_option: list[str] = o.DatasetOptions,
    weights: Optional[str] = o.Weights,
    revision: Optional[str] = o.Revision,
    image_size: Optional[int] = o.ImageSize,
    precision: str = o.Precision,
    head_param: list[str] = o.HeadParams,
    tag: Optional[str] = typer.Option(None, help="Variant name (results in HEAD_TAG_group-.../)."),
    overwrite: bool = o.Overwrite,
    bootstrap: Optional[int] = o.Bootstrap,
    out: Path = o.Out,
    context=None, machine=None, machine_given=(),
) -> None:
    """Bias protocol (RayDINO Fig. 4c/4d): per fold, a head trained on an equal number of patients of each group of
    ATTRIBUTE and one on their union (All), each scored on every test group; Mann-Whitney U between same-group and
    cross-group folds, and between models. Runs resume; writes OUT/BENCHMARK/bias_ATTRIBUTE{_folds.csv,_tests.csv,
    _models.csv,.md,.png}."""
    check_request(benchmark, names(encoder), head, [metric] if metric else [], image_size, out)
    from cxrbench.cli.show import run_and_show
    from cxrbench.registry import benchmark_spec
    from cxrbench.analyses.bias import write_bias
    from cxrbench.console import warn
    from cxrbench.runs.fanout import Storage
    from cxrbench.recording import typed_command
    from cxrbench.runs.config import build_request

    spec = benchmark_spec(benchmark)
    group_names = _group_names(spec, attribute, folds)
    chosen = metric or ("auroc" if "auroc" in spec.metrics else spec.primary_metric)
    groups = {"attribute": attribute, "names": list(group_names), "patients": group_patients}
    request = build_request({**o.run_keys(context, leave_out=("metric",)), "seeds": folds, "groups": groups})
    run_and_show(list(request.specs), Storage(out, overwrite, resume=True), machine, typed_command(),
                 show=lambda spec, results: None)
    title = f"{spec.title}: heads trained on one {attribute} group, scored on each"
    _, _, table, paths = write_bias(out, benchmark, attribute, chosen, group_names, title, overwrite, warn)
    print_table(table, f"{title}\nmean ± std over folds", "model · training group")
    say(f"bias: {paths['md']}, {paths['png']}")


def _group_names(spec, attribute: str, folds: int) -> tuple[str, ...]:
    """The named groups of `attribute`, with --folds checked against the protocol and the benchmark's own folds."""
    group = spec.groups.get(attribute)
    if group is None:
        raise CxrbenchError(f"--attribute {attribute}: benchmark '{spec.name}' declares no such group (it has: "
                            f"{', '.join(spec.groups) or 'none'}; see `groups:` in benchmarks/{spec.name}.yaml).")
    if not group.names:
        raise CxrbenchError(f"--attribute {attribute}: its groups are not named in benchmarks/{spec.name}.yaml; list "
                            "them under `labels:` so that every fold trains the same groups.")
    if folds < 2:
        raise CxrbenchError(f"--folds {folds}: the Mann-Whitney test needs at least 2 folds (the protocol uses 20).")
    if spec.split.scheme == "kfold" and folds > spec.split.folds:
        raise CxrbenchError(f"--folds {folds}: '{spec.name}' cross-validates over {spec.split.folds} folds of its "
                            f"patients, so a bias run has at most {spec.split.folds} (--folds {spec.split.folds}); each "
                            "then tests on its own fold instead of one shared test split.")
    return tuple(group.names)
