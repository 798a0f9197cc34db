"""The `cxrbench` command: run | demo | list | data check | cache ls/clear | table.

The only module that prints. Errors the user can fix (`CxrbenchError`) become one message and exit code 2.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichBar, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cxrbench.errors import CxrbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark frozen chest X-ray encoders.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets on disk.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the feature cache.")
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")
console = Console()
if not console.is_terminal:  # piped or captured output: wide enough for a benchmark table
    console = Console(width=200)
errors = Console(stderr=True)

DEFAULT_OUT = Path("results")
DEFAULT_DEMO_DIR = Path("cxrbench-demo")


def user_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CxrbenchError as exc:
            errors.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


class RichProgress:
    """`cxrbench.progress.Progress` on a rich live display."""

    def __init__(self, bar: RichBar):
        self.bar = bar

    def task(self, description: str, total: int) -> Callable[[int], None]:
        task_id = self.bar.add_task(description, total=total)
        return lambda n: self.bar.advance(task_id, n)

    def note(self, message: str) -> None:
        self.bar.console.print(f"[dim]•[/dim] {message}", highlight=False)


def _bar() -> RichBar:
    return RichBar(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    )


def _cache_root(cache_dir: Optional[Path]) -> Path:
    from cxrbench.features.cache import default_cache_root

    return cache_dir.expanduser() if cache_dir else default_cache_root()


def _print_frame(frame, title: str, index_title: str = "") -> None:
    table = Table(title=title, show_lines=False, title_justify="left")
    table.add_column(index_title, style="bold", no_wrap=True)
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for index, row in frame.iterrows():
        table.add_row(str(index), *map(str, row.tolist()))
    console.print(table)


CacheDir = typer.Option(None, "--cache-dir", help="Feature cache folder (default $CXRBENCH_CACHE or ~/.cache/cxrbench).")


@app.command()
@user_errors
def run(
    benchmark: str = typer.Argument(..., help="Benchmark name (see `cxrbench list benchmarks`)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Encoder name(s), comma-separated."),
    head: Optional[str] = typer.Option(None, help="Head name (default: the benchmark's)."),
    seeds: Optional[int] = typer.Option(None, help="Number of seeds (default: the benchmark's, 5 for the papers)."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder in its official layout."),
    weights: Optional[str] = typer.Option(None, help="Local weights file/folder, or 'random[:SEED]' (default: the adapter's hub source)."),
    revision: Optional[str] = typer.Option(None, help="Hugging Face revision overriding the adapter's pinned one."),
    image_size: Optional[int] = typer.Option(None, help="Override the encoder's input resolution (resize and crop)."),
    label_rule: Optional[str] = typer.Option(None, help="How several readers' labels combine: majority or any (VinDr-CXR)."),
    bootstrap: Optional[int] = typer.Option(None, help="Bootstrap resamples (default: the benchmark's, 1000)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder."),
    cache_dir: Optional[Path] = CacheDir,
    batch_size: int = typer.Option(32, help="Images per encoder forward pass."),
    shard_size: int = typer.Option(512, help="Images per feature-cache shard: an interrupted run resumes from the last complete shard."),
    workers: Optional[int] = typer.Option(None, help="Image-decoding worker processes (default: 0 on CPU, up to 8 with a GPU)."),
    device: str = typer.Option("cpu", help="Torch device for the encoder, e.g. cuda."),
) -> None:
    """Run BENCHMARK with one or more encoders and write results under OUT/BENCHMARK/ENCODER/HEAD/."""
    from cxrbench.pipeline import RunOptions

    options = RunOptions(
        benchmark=benchmark, encoders=[e.strip() for e in encoder.split(",") if e.strip()], out=out,
        cache_root=_cache_root(cache_dir), head=head, seeds=seeds, data_root=data_root, weights=weights,
        revision=revision, image_size=image_size, dataset_options={"label_rule": label_rule} if label_rule else {},
        bootstrap_resamples=bootstrap, batch_size=batch_size, shard_size=shard_size, num_workers=workers, device=device,
    )
    _run_and_show(options)


def _run_and_show(options) -> list:
    from cxrbench.pipeline import run as run_pipeline
    from cxrbench.results.tables import run_display_table

    with _bar() as bar:
        results = run_pipeline(options, RichProgress(bar))
    for result in results:
        _print_frame(run_display_table(result.metrics, result.tasks),
                     f"{options.benchmark} · {result.encoder} · {result.head}  (%, mean ± std over seeds [95% bootstrap CI])", "metric")
        console.print(f"results: {result.folder}")
    return results


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(DEFAULT_DEMO_DIR, help="Where the synthetic dataset, cache and results go."),
    patients: int = typer.Option(300, help="Synthetic patients (about 1.6 images each)."),
    seeds: int = typer.Option(5, help="Seeds per encoder."),
) -> None:
    """Generate a synthetic VinDr-CXR-layout dataset and benchmark `pixels` and a random-init `dinov2-small` on it."""
    from cxrbench.data.synthetic import SyntheticConfig, write_synthetic_vindr
    from cxrbench.pipeline import RunOptions

    config = SyntheticConfig(patients=patients)
    data_root = workdir / "data"
    marker = data_root / "synthetic.json"
    wanted = json.dumps(asdict(config), sort_keys=True)
    if not marker.is_file() or marker.read_text() != wanted:
        console.print(f"writing a synthetic VinDr-CXR dataset ({patients} patients) to {data_root} ...")
        write_synthetic_vindr(data_root, config)
        marker.write_text(wanted)
    common = dict(benchmark="vindr", out=workdir / "results", cache_root=workdir / "cache", seeds=seeds, data_root=data_root)
    _run_and_show(RunOptions(encoders=["pixels"], **common))
    _run_and_show(RunOptions(encoders=["dinov2-small"], weights="random", image_size=112, **common))
    _show_comparison("vindr", workdir / "results", None)


@app.command()
@user_errors
def embed(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Encoder name."),
    out: Path = typer.Option(..., help="Output .safetensors or .npz file."),
    weights: Optional[str] = typer.Option(None, help="Local weights file/folder, or 'random[:SEED]'."),
    revision: Optional[str] = typer.Option(None, help="Hugging Face revision overriding the adapter's pinned one."),
    image_size: Optional[int] = typer.Option(None, help="Override the encoder's input resolution."),
    patches: bool = typer.Option(False, "--patches", help="Also export the patch-token grid [N, H, W, D]."),
    layers: Optional[str] = typer.Option(None, help="Also export these 0-based layers, e.g. 3,5,7,11 ('default' for the adapter's)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
    batch_size: int = typer.Option(16, help="Images per forward pass."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cuda."),
) -> None:
    """Export global embeddings (and optionally patch tokens and layers) with image ids."""
    from cxrbench.encoders.base import FeatureRequest
    from cxrbench.encoders.factory import build_encoder
    from cxrbench.features.export import export_embeddings

    model = build_encoder(encoder, weights, revision, image_size)
    if layers == "default":
        chosen = tuple(model.spec.default_layers)
    else:
        try:
            chosen = tuple(int(v) for v in layers.split(",")) if layers else ()
        except ValueError:
            raise CxrbenchError(f"--layers {layers}: give comma-separated whole numbers, e.g. 3,5,7,11.") from None
    request = FeatureRequest(global_embedding=True, patch_tokens=patches, layers=chosen)
    with _bar() as bar:
        path, count = export_embeddings(model, request, images, out, overwrite, batch_size, device, RichProgress(bar))
    console.print(f"wrote {count} images' features ({model.spec.name}, {model.embed_dim}-d, patch stride "
                  f"{model.patch_stride}) to {path}")


@app.command("list")
@user_errors
def list_(kind: str = typer.Argument(..., help="encoders | heads | benchmarks")) -> None:
    """Show the registered encoders, heads or benchmarks and where each comes from."""
    from cxrbench.registry import KINDS, registry

    if kind not in KINDS:
        raise typer.BadParameter(f"choose one of {', '.join(KINDS)}")
    table = Table(title=f"cxrbench {kind}", title_justify="left")
    entries = registry().entries(kind)  # type: ignore[arg-type]
    if kind == "encoders":
        for column in ("name", "weights", "licence", "input px", "dim", "stride", "origin"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            spec = entry.spec
            source = f"{spec.weights.hub_repo}@{spec.weights.revision[:7]}" if spec.weights.hub_repo and spec.weights.revision else (spec.weights.distributed_at or "none needed")
            table.add_row(entry.name, source, spec.weights.licence, str(spec.preprocessing.crop or spec.preprocessing.size),
                          str(spec.embedding_dim), str(spec.patch_stride), entry.origin)
    else:
        for column in ("name", "description", "origin"):
            table.add_column(column)
        for entry in entries:
            spec = entry.spec
            text = getattr(spec, "title", "") or getattr(spec, "description", "")
            table.add_row(entry.name, " ".join(text.split())[:90], entry.origin)
    console.print(table)


@data_app.command("check")
@user_errors
def data_check(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder in its official layout."),
    label_rule: Optional[str] = typer.Option(None, help="majority or any (VinDr-CXR)."),
) -> None:
    """Validate a dataset folder (files, columns, ids) and print positives/negatives per split and task."""
    from cxrbench.pipeline import load_benchmark

    spec, data = load_benchmark(benchmark, data_root, {"label_rule": label_rule} if label_rule else {})
    console.print(f"[green]ok[/green]: {spec.title} at {data.root}: {len(data.samples)} images, "
                  f"{data.samples['patient_id'].nunique()} patients")
    for note in data.notes:
        console.print(f"[dim]•[/dim] {note}")
    counts = data.label_counts().set_index(["split", "task"])
    table = Table(title="labels per split", title_justify="left")
    for column in ("split", "task", "positive", "negative", "unknown", "images", "patients"):
        table.add_column(column, justify="right" if column not in ("split", "task") else "left")
    for (split, task), row in counts.iterrows():
        table.add_row(split, task, *(str(row[c]) for c in ("positive", "negative", "unknown", "images", "patients")))
    console.print(table)


@cache_app.command("ls")
@user_errors
def cache_ls(cache_dir: Optional[Path] = CacheDir) -> None:
    """List cached feature stores."""
    from cxrbench.features.cache import list_stores

    root = _cache_root(cache_dir)
    table = Table(title=f"feature cache at {root}", title_justify="left")
    for column in ("encoder", "weights", "input px", "arrays", "images", "MB", "folder"):
        table.add_column(column)
    for store in list_stores(root):
        table.add_row(store["encoder"], store["weights"], str(store["size"]), store["arrays"], str(store["images"]),
                      f"{store['bytes'] / 1e6:.1f}", store["folder"].name)
    console.print(table)


@cache_app.command("clear")
@user_errors
def cache_clear(
    encoder: Optional[str] = typer.Option(None, help="Only this encoder's stores."),
    cache_dir: Optional[Path] = CacheDir,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete cached features (all, or one encoder's)."""
    from cxrbench.features.cache import clear_stores

    root = _cache_root(cache_dir)
    what = f"{encoder}'s cached features" if encoder else "every cached feature store"
    if not yes and not typer.confirm(f"Delete {what} under {root}?"):
        raise typer.Exit(1)
    console.print(f"removed {clear_stores(root, encoder)} store(s) from {root}")


@app.command()
@user_errors
def table(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
) -> None:
    """Compare every stored run of BENCHMARK (rows encoders, columns tasks) with the paper's numbers."""
    _show_comparison(benchmark, out, metric)


def _show_comparison(benchmark: str, out: Path, metric: Optional[str]) -> None:
    from cxrbench.registry import benchmark_spec
    from cxrbench.results.store import atomic_text, stored_runs
    from cxrbench.results.tables import comparison_long_table, comparison_table, to_markdown
    from cxrbench.stats.metrics import METRIC_TITLES

    spec = benchmark_spec(benchmark)
    metric = metric or spec.primary_metric
    if metric not in spec.metrics:
        raise CxrbenchError(f"Benchmark '{benchmark}' reports {', '.join(spec.metrics)}; --metric {metric} is not among them.")
    runs = stored_runs(out, benchmark)
    if not runs:
        raise CxrbenchError(f"No stored runs of '{benchmark}' under {out}. Run `cxrbench run {benchmark} --encoder NAME --out {out}` first.")
    frame = comparison_table(spec, runs, metric)
    title = f"{spec.title}: {METRIC_TITLES.get(metric, metric)} (%, mean ± std over seeds [95% bootstrap CI])"
    _print_frame(frame, title, "model")
    stem = out / benchmark / f"table_{metric}"
    atomic_text(stem.with_suffix(".md"), f"# {title}\n\n" + to_markdown(frame, "model"))
    atomic_text(stem.with_suffix(".csv"), comparison_long_table(spec, runs, metric).to_csv(index=False))
    console.print(f"tables: {stem}.md, {stem}.csv")


def main() -> None:
    app()
