"""`cxrbench extract`, `embed` and `cache ls|clear`: features computed, exported and kept."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cxrbench.cli import options as o
from cxrbench.cli.app import app, cache_app
from cxrbench.cli.common import check_request, key_values, names, user_errors
from cxrbench.console import console, note, progress_display, say, text_table, warn
from cxrbench.errors import CxrbenchError


def cache_root(cache_dir: Optional[Path]) -> Path:
    from cxrbench.features.cache import default_cache_root

    return cache_dir.expanduser() if cache_dir else default_cache_root()


def settle(device: str, threads: Optional[int]) -> str:
    """Apply --threads and resolve --device in this process; says which device was chosen. Returns the device."""
    from cxrbench.device import settle_here

    chosen, line = settle_here(device, threads)
    note(line)
    return chosen


@app.command(short_help="Fill the feature cache for every image of a benchmark (one rank or many).", epilog=o.MORE)
@user_errors
@o.machine_options
def extract(
    benchmark: str = typer.Argument(..., help="Benchmark name: every one of its images is encoded."),
    encoder: str = o.Encoders,
    patches: bool = typer.Option(False, "--patches", help="Also cache the patch-token grids (heads with patch pooling, explain)."),
    data_root: Optional[Path] = o.DataRoot,
    dataset_option: list[str] = o.DatasetOptions,
    weights: Optional[str] = o.Weights,
    revision: Optional[str] = o.Revision,
    image_size: Optional[int] = o.ImageSize,
    precision: str = o.Precision,
    machine=None, machine_given=(),
) -> None:
    """Fill the feature cache for every image of BENCHMARK with each encoder (a later `run` or `explain` finds the
    features there and runs no encoder). Under torchrun (`torchrun --nproc-per-node N -m cxrbench extract ...`) the
    ranks share the images, each on its own GPU (cuda:LOCAL_RANK) or CPU process; rank 0 reports."""
    check_request(benchmark, names(encoder), image_size=image_size)
    if machine.launcher != "local":
        raise CxrbenchError(f"--launcher {machine.launcher}: extract runs here; spread it over GPUs with torchrun "
                            "(`torchrun --nproc-per-node N -m cxrbench extract ...`).")
    from cxrbench.encoders.base import FeatureRequest
    from cxrbench.features.distributed import launched_ranks, rank_device
    from cxrbench.progress import SilentProgress
    from cxrbench.runs.pipeline import EncoderOptions, extract as extract_pipeline, machine_options

    device = settle(machine.device, machine.threads)
    ranks = launched_ranks(device)
    encoders = EncoderOptions(names(encoder), weights, revision, image_size)
    placed = machine_options(machine, precision, rank_device(device, ranks), ranks)
    request = FeatureRequest(patch_tokens=patches)
    options = key_values("--dataset-option", dataset_option)
    if ranks.rank:
        extract_pipeline(benchmark, encoders, placed, request, data_root, options, SilentProgress())
        return
    with progress_display() as progress:
        done = extract_pipeline(benchmark, encoders, placed, request, data_root, options, progress)
    for features in done:
        across = f" by {ranks.world} ranks" if ranks.distributed else ""
        say(f"{features.encoder.spec.name}: {len(features.extraction.keys)} images cached{across} at "
            f"{features.extraction.store.folder}")


@app.command()
@user_errors
def embed(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Encoder name."),
    out: Path = typer.Option(..., help="Output .safetensors or .npz file."),
    weights: Optional[str] = o.Weights,
    revision: Optional[str] = o.Revision,
    image_size: Optional[int] = o.ImageSize,
    patches: bool = typer.Option(False, "--patches", help="Also export the patch-token grid [N, H, W, D]."),
    layers: Optional[str] = typer.Option(None, help="Also export these 0-based layers, e.g. 3,5,7,11 ('default' for the adapter's)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
    batch_size: int = typer.Option(16, help="Images per forward pass."),
    device: str = o.Device,
    threads: Optional[int] = o.Threads,
) -> None:
    """Export global embeddings (and optionally patch tokens and layers) with image ids."""
    check_request(encoders=[encoder], image_size=image_size, out=out.parent)
    from cxrbench.encoders.base import FeatureRequest
    from cxrbench.encoders.factory import build_encoder
    from cxrbench.features.export import export_embeddings

    device = settle(device, threads)
    model = build_encoder(encoder, weights, revision, image_size)
    if layers == "default":
        if not model.spec.default_layers:
            raise CxrbenchError(f"--layers default: encoder '{encoder}' declares no default layers (adapters/{encoder}.yaml); "
                                "name them, e.g. --layers 3,5,7,11, or leave --layers out.")
        chosen = tuple(model.spec.default_layers)
    else:
        try:
            chosen = tuple(int(v) for v in layers.split(",")) if layers else ()
        except ValueError:
            raise CxrbenchError(f"--layers {layers}: give comma-separated whole numbers, e.g. 3,5,7,11.") from None
    request = FeatureRequest(global_embedding=True, patch_tokens=patches, layers=chosen)
    with progress_display() as progress:
        path, count = export_embeddings(model, request, images, out, overwrite, batch_size, device, progress)
    say(f"wrote {count} images' features ({model.spec.name}, {model.embed_dim}-d, patch stride "
                  f"{model.patch_stride}) to {path}")


@cache_app.command("ls")
@user_errors
def cache_ls(
    cache_dir: Optional[Path] = o.CacheDir,
    verify: bool = typer.Option(False, "--verify", help="Also check every shard against its checksums (reads the whole cache)."),
) -> None:
    """List cached feature stores, damaged ones included (their status says what is wrong), and the pixel cache."""
    from cxrbench.features.cache_admin import list_stores
    from cxrbench.features.pixel_cache import pixel_summary

    root = cache_root(cache_dir)
    stores = list_stores(root, verify=verify)
    rows = [[s.encoder, s.weights, s.size, s.arrays, s.images, f"{s.bytes / 1e6:.1f}", s.status, s.folder.name] for s in stores]
    console.print(text_table(f"feature cache at {root}", ["encoder", "weights", "input px", "arrays", "images", "MB", "status", "folder"],
                             rows, right=("images", "MB")))
    pixels = pixel_summary(root)
    if pixels is not None:
        unfinished = f", {pixels.leftovers} unfinished file(s) of running or killed runs" if pixels.leftovers else ""
        say(f"pixel cache (--pixel-cache) at {pixels.folder}: {pixels.images} decoded images, "
            f"{pixels.bytes / 1e6:.1f} MB{unfinished}")
    damaged = [s for s in stores if s.status != "ok"]
    if damaged:
        advice = "rerun (damaged shards are encoded again) or `cxrbench cache clear --encoder NAME`"
        if verify:  # asked to verify: damage is a failure a script must see
            raise CxrbenchError(f"{len(damaged)} of {len(stores)} store(s) under {root} are damaged (status above): {advice}.")
        warn(f"stores whose status is not ok: {advice}.")


@cache_app.command("clear")
@user_errors
def cache_clear(
    encoder: Optional[str] = typer.Option(None, help="Only this encoder's stores."),
    pixels: bool = typer.Option(False, "--pixels", help="Only the pixel cache (the decoded images of --pixel-cache)."),
    cache_dir: Optional[Path] = o.CacheDir,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete cached features and decoded images (all, one encoder's stores, or only the pixel cache)."""
    from cxrbench.features.cache_admin import clear_stores
    from cxrbench.features.pixel_cache import clear_pixels

    if encoder and pixels:
        raise CxrbenchError("--encoder and --pixels: choose one (the pixel cache is shared by every encoder).")
    root = cache_root(cache_dir)
    what = (f"{encoder}'s cached features" if encoder else "the pixel cache" if pixels
            else "every cached feature store and the pixel cache")
    if not yes and not typer.confirm(f"Delete {what} under {root}?"):
        raise typer.Exit(1)
    if not pixels:
        say(f"removed {clear_stores(root, encoder)} store(s) from {root}")
    if not encoder:
        say(f"removed the pixel cache's {clear_pixels(root)} decoded image(s) from {root}")
