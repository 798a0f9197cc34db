"""`cxrbench explain`: RayDINO's explainability as RunSpecs with the localisation evaluation, through the fan-out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app
from cxrbench.cli.common import check_request, names, user_errors
from cxrbench.console import print_table, say


@app.command(short_help="RayDINO's explainability: is the most-attended patch on the radiologist's box?",
             epilog=o.more("--shared-head", "--images-per-finding N (4)", "--min-overlap F (0.5)"))
@user_errors
@o.machine_options
def explain(
    benchmark: str = typer.Argument("vindr", help="Benchmark with test boxes (VinDr-CXR)."),
    encoder: str = o.Encoders,
    findings: str = typer.Option("all", help="all (default), benchmark (its tasks) or names.", show_default=False),
    head: str = typer.Option("attentive", help="A head with attention maps."),
    head_param: list[str] = o.HeadParams,
    shared_head: bool = typer.Option(False, "--shared-head", help="One head with a query per finding, not one head each.", hidden=True),
    seeds: Optional[int] = o.Seeds,
    images_per_finding: int = typer.Option(4, help="Attention overlays (PNG) per finding, first seed.", hidden=True),
    min_overlap: float = typer.Option(0.5, help="A box is hit when the argmax patch overlaps it by this fraction.", hidden=True),
    data_root: Optional[Path] = o.DataRoot,
    weights: Optional[str] = o.Weights,
    revision: Optional[str] = o.Revision,
    image_size: Optional[int] = o.ImageSize,
    precision: str = o.Precision,
    dataset_option: list[str] = o.DatasetOptions,
    bootstrap: Optional[int] = o.Bootstrap,
    overwrite: bool = o.Overwrite,
    out: Path = o.Out,
    context=None, machine=None, machine_given=(),
) -> None:
    """RayDINO's explainability: attentive probes per finding; is the most-attended patch on the radiologist's box?
    Writes OUT/BENCHMARK/ENCODER/explain/ (metrics.json, explain.csv, heatmaps/); resumes like `run`."""
    check_request(benchmark, names(encoder), head, image_size=image_size, out=out)
    from cxrbench.cli.show import run_and_show
    from cxrbench.runs.fanout import Storage
    from cxrbench.recording import typed_command
    from cxrbench.runs.config import build_request

    settings = {"findings": findings, "images_per_finding": images_per_finding, "min_overlap": min_overlap,
                "one_head_per_finding": not shared_head}
    request = build_request({**o.run_keys(context), "evaluation": "localisation", "evaluation_params": settings})
    run_and_show(list(request.specs), Storage(out, overwrite), machine, typed_command(), show=_show)


def _show(spec, results: list) -> None:
    from cxrbench.results.labels import run_label, variant_notes
    from cxrbench.results.store import load_metrics

    for result in results:
        identity = load_metrics(result.folder).get("run_identity")
        label = run_label(result.encoder, result.head, variant_notes(result.encoder, identity))
        print_table(result.display, f"{spec.benchmark} explainability · {label}\n"
                    "% of boxes hit by the argmax patch, mean ± std over seeds", "finding")
        say(result.headline)
        say(f"results: {result.folder}")
