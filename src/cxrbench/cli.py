"""The `cxrbench` command: run | demo | list | data check | cache ls/clear | table | curve.

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
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichBar, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cxrbench.errors import CxrbenchError
from cxrbench.specs import safe_load

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
# Options several commands share, defined once so that their names and help stay the same everywhere.
Encoders = typer.Option(..., "--encoder", "-e", help="Encoder name(s), comma-separated.")
Seeds = typer.Option(None, help="Number of seeds (default: the benchmark's, 5 for the papers).")
DataRoot = typer.Option(None, help="Dataset folder in its official layout (default: the benchmark's environment variable).")
Weights = typer.Option(None, help="Local weights file/folder, or 'random[:SEED]' (default: the adapter's hub source).")
Revision = typer.Option(None, help="Hugging Face revision overriding the adapter's pinned one.")
ImageSize = typer.Option(None, help="Override the encoder's input resolution (resize and crop).")
LabelRule = typer.Option(None, help="How several readers' labels combine: majority or any (VinDr-CXR).")
HeadParams = typer.Option([], "--head-param", help="Override a head parameter, KEY=VALUE (VALUE read as YAML, e.g. epochs=5 or 'lr=[1e-2, 1e-1]'); repeatable.")
Out = typer.Option(DEFAULT_OUT, help="Results folder.")
BatchSize = typer.Option(32, help="Images per encoder forward pass.")
ShardSize = typer.Option(512, help="Images per feature-cache shard: an interrupted run resumes from the last complete shard.")
Workers = typer.Option(None, help="Image-decoding worker processes (default: 0 on CPU, up to 8 with a GPU).")
Device = typer.Option("cpu", help="Torch device, e.g. cuda.")


@app.command()
@user_errors
def run(
    benchmark: str = typer.Argument(..., help="Benchmark name (see `cxrbench list benchmarks`)."),
    encoder: str = Encoders,
    head: Optional[str] = typer.Option(None, help="Head name (default: the benchmark's)."),
    seeds: Optional[int] = Seeds,
    data_root: Optional[Path] = DataRoot,
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    label_rule: Optional[str] = LabelRule,
    tag: Optional[str] = typer.Option(None, help="Name this run's variant (results in HEAD_TAG/), e.g. for other weights, sizes or head parameters."),
    overwrite: bool = typer.Option(False, help="Replace a stored run of the same head that was made with other settings."),
    protocol: str = typer.Option("cached", help="cached: heads on cached features (fast default); augmented: RAD-DINO's linear probe trained through the frozen encoder under augmentation (AdamW 5e-5, batch 96, 100 epochs)."),
    head_param: list[str] = HeadParams,
    train_fraction: Optional[str] = typer.Option(None, help="Label efficiency: train on these fractions of the training patients, e.g. 0.01,0.1,1 (one run each)."),
    shots: Optional[str] = typer.Option(None, help="Few-shot: train on N patients per class (positive and negative for every task), e.g. 1,2,4,8."),
    bootstrap: Optional[int] = typer.Option(None, help="Bootstrap resamples (default: the benchmark's, 1000)."),
    out: Path = Out,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: int = BatchSize,
    shard_size: int = ShardSize,
    workers: Optional[int] = Workers,
    device: str = Device,
) -> None:
    """Run BENCHMARK with one or more encoders and write results under OUT/BENCHMARK/ENCODER/HEAD/."""
    from cxrbench.pipeline import RunOptions

    options = RunOptions(
        benchmark=benchmark, encoders=[e.strip() for e in encoder.split(",") if e.strip()], out=out,
        cache_root=_cache_root(cache_dir), head=head, seeds=seeds, data_root=data_root, weights=weights,
        revision=revision, image_size=image_size, dataset_options={"label_rule": label_rule} if label_rule else {},
        protocol=protocol, tag=tag, overwrite=overwrite, head_params=_head_params(head_param), budgets=_budgets(train_fraction, shots), bootstrap_resamples=bootstrap, batch_size=batch_size, shard_size=shard_size, num_workers=workers, device=device,
    )
    _run_and_show(options)


def _head_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CxrbenchError(f"--head-param {pair!r}: write KEY=VALUE, e.g. --head-param epochs=5.")
        try:
            params[key.strip()] = safe_load(value)
        except yaml.YAMLError as exc:
            raise CxrbenchError(f"--head-param {pair!r}: the value is not valid YAML ({exc}).") from None
    return params



def _budgets(train_fraction: Optional[str], shots: Optional[str]) -> list:
    """The label budgets to run: the full training split unless fractions and/or shots are given."""
    from cxrbench.data.splits import LabelBudget

    budgets: list = []
    for option, text, kind in (("--train-fraction", train_fraction, float), ("--shots", shots, int)):
        for item in (text or "").split(","):
            if not item.strip():
                continue
            try:
                value = kind(item)
            except ValueError:
                raise CxrbenchError(f"{option} {text}: '{item}' is not a {'number' if kind is float else 'whole number'}.") from None
            full = kind is float and value == 1.0
            budgets.append(None if full else LabelBudget(train_fraction=value) if kind is float else LabelBudget(shots=value))
    return list(dict.fromkeys(budgets)) or [None]


def _run_and_show(options) -> list:
    from cxrbench.pipeline import run as run_pipeline
    from cxrbench.results.tables import bootstrap_caveats, run_display_table

    with _bar() as bar:
        results = run_pipeline(options, RichProgress(bar))
    for result in results:
        _print_frame(run_display_table(result.metrics, result.tasks),
                     f"{options.benchmark} · {result.encoder} · {result.head}  (%, mean ± std over seeds [95% bootstrap CI])", "metric")
        for caveat in bootstrap_caveats(result.metrics):
            console.print(f"[yellow]note[/yellow]: {caveat}", highlight=False)
        console.print(f"results: {result.folder}")
    return results


@app.command()
@user_errors
def explain(
    benchmark: str = typer.Argument("vindr", help="Benchmark with test boxes (VinDr-CXR: annotations/annotations_test.csv)."),
    encoder: str = Encoders,
    findings: str = typer.Option("all", help="'all' (every finding with test boxes, RayDINO), 'benchmark' (its tasks), or comma-separated names."),
    head: str = typer.Option("attentive", help="A head with attentive pooling and attention maps."),
    head_param: list[str] = HeadParams,
    shared_head: bool = typer.Option(False, "--shared-head", help="One head with a query per finding instead of one head per finding."),
    seeds: Optional[int] = Seeds,
    images_per_finding: int = typer.Option(4, help="Attention overlays (PNG) written per finding, first seed."),
    min_overlap: float = typer.Option(0.5, help="A box is hit when the argmax patch overlaps it by this fraction of a patch."),
    data_root: Optional[Path] = DataRoot,
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    label_rule: Optional[str] = LabelRule,
    bootstrap: Optional[int] = typer.Option(None, help="Bootstrap resamples for the macro accuracy's CI (default: the benchmark's)."),
    out: Path = Out,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: int = BatchSize,
    shard_size: int = ShardSize,
    workers: Optional[int] = Workers,
    device: str = Device,
) -> None:
    """RayDINO's explainability: attentive probes per finding; is the most-attended patch on the radiologist's box?
    Writes OUT/BENCHMARK/ENCODER/explain/ (explain.json, explain.csv, heatmaps/)."""
    from cxrbench.explain.runner import ExplainOptions, explain_benchmark

    options = ExplainOptions(
        encoders=[e.strip() for e in encoder.split(",") if e.strip()], out=out, cache_root=_cache_root(cache_dir),
        benchmark=benchmark, data_root=data_root, weights=weights, revision=revision, image_size=image_size, seeds=seeds,
        findings=findings, images_per_finding=images_per_finding, min_overlap=min_overlap, head=head,
        head_overrides=_head_params(head_param), one_head_per_finding=not shared_head,
        dataset_options={"label_rule": label_rule} if label_rule else {}, bootstrap_resamples=bootstrap,
        batch_size=batch_size, shard_size=shard_size, num_workers=workers, device=device,
    )
    with _bar() as bar:
        results = explain_benchmark(options, RichProgress(bar))
    for result in results:
        _print_frame(result.display, f"{benchmark} explainability · {result.encoder} · {result.head}  "
                     "(% of boxes hit by the argmax patch, mean ± std over seeds)", "finding")
        console.print(result.headline)
        console.print(f"results: {result.folder}")


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(DEFAULT_DEMO_DIR, help="Where the synthetic dataset, cache and results go."),
    patients: int = typer.Option(300, help="Synthetic patients (about 1.6 images each)."),
    seeds: int = typer.Option(5, help="Seeds per encoder."),
    head: Optional[str] = typer.Option(None, help="Head to train (default: the benchmark's linear probe; e.g. attentive, raydino-grid)."),
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
    common = dict(benchmark="vindr", out=workdir / "results", cache_root=workdir / "cache", seeds=seeds, data_root=data_root, head=head,
                  overwrite=True)  # the demo's own folder: a rerun with other options replaces it
    _run_and_show(RunOptions(encoders=["pixels"], **common))
    _run_and_show(RunOptions(encoders=["dinov2-small"], weights="random", image_size=112, **common))
    _show_comparison("vindr", workdir / "results", None)


@app.command()
@user_errors
def embed(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    encoder: str = typer.Option(..., "--encoder", "-e", help="Encoder name."),
    out: Path = typer.Option(..., help="Output .safetensors or .npz file."),
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    patches: bool = typer.Option(False, "--patches", help="Also export the patch-token grid [N, H, W, D]."),
    layers: Optional[str] = typer.Option(None, help="Also export these 0-based layers, e.g. 3,5,7,11 ('default' for the adapter's)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
    batch_size: int = typer.Option(16, help="Images per forward pass."),
    device: str = Device,
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
    data_root: Optional[Path] = DataRoot,
    label_rule: Optional[str] = LabelRule,
) -> None:
    """Validate a dataset folder (files, columns, ids) and print positives/negatives per split and task."""
    from cxrbench.pipeline import load_benchmark

    spec, data = load_benchmark(benchmark, data_root, {"label_rule": label_rule} if label_rule else {})
    console.print(f"[green]ok[/green]: {spec.title} at {data.root}: {len(data.samples)} images, "
                  f"{data.samples['patient_id'].nunique()} patients")
    for note in data.notes:
        console.print(f"[dim]•[/dim] {note}")
    counts = data.label_counts()
    _print_counts(counts, "labels in the dataset" if spec.split.scheme == "random" else "labels per official split")
    if spec.split.scheme == "random":
        from cxrbench.data.splits import seed_splits

        split = seed_splits(data.samples, spec.name, 0, spec.split)["split"].to_numpy()
        test_note = "the same test patients for every seed" if spec.split.test == "fixed" else "test patients redrawn per seed"
        counts = data.label_counts(split)
        _print_counts(counts, f"labels per split, seed 0 ({'/'.join(f'{f:g}' for f in spec.split.fractions)} "
                      f"of patients; {test_note})")
    for split_name, task, missing in _missing_classes(counts):
        console.print(f"[yellow]warning[/yellow]: task '{task}' has no {missing} example in the {split_name} split: "
                      f"`cxrbench run {benchmark}` will refuse it (its metric is undefined).", highlight=False)


def _missing_classes(counts) -> list[tuple[str, str, str]]:
    """(split, task, 'positive' | 'negative') for train / test splits in which a task lacks a class."""
    counts = counts[counts["split"].isin(["train", "test"])]
    return [(row["split"], row["task"], "positive" if row["positive"] == 0 else "negative")
            for _, row in counts.iterrows() if row["positive"] == 0 or row["negative"] == 0]


def _print_counts(counts, title: str) -> None:
    counts = counts.set_index(["split", "task"])
    table = Table(title=title, title_justify="left")
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
    benchmark: Optional[str] = typer.Argument(None, help="Benchmark name (not needed with --layout)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
    layout: Optional[str] = typer.Option(
        None, help="A paper table's layout instead of one benchmark: rad-dino-1a | rad-dino-1b | rad-dino-c1; "
                   "writes OUT/tables/LAYOUT.{md,csv,tex}."),
    diff: bool = typer.Option(False, "--diff", help="With --layout: add rows 'ours − published mean' for encoders the paper reports."),
) -> None:
    """Compare every stored run of BENCHMARK (rows encoders, columns tasks) with the paper's numbers, or lay
    out several benchmarks as a paper's table (--layout)."""
    if layout is not None:
        if benchmark is not None or metric is not None:
            raise CxrbenchError("--layout fixes the benchmarks and metrics: give either BENCHMARK [--metric M] or --layout NAME.")
        _show_layout(layout, out, diff)
        return
    if benchmark is None:
        from cxrbench.results.paper_tables import LAYOUTS

        raise CxrbenchError(f"Give a BENCHMARK (e.g. `cxrbench table vindr`) or --layout NAME ({' | '.join(LAYOUTS)}).")
    _show_comparison(benchmark, out, metric)


def _show_layout(name: str, out: Path, diff: bool) -> None:
    from cxrbench.results.paper_tables import display_frame, get_layout, table_from_store, write_paper_table

    paper_layout = get_layout(name)
    result = table_from_store(paper_layout, out, diff=diff)
    _print_frame(display_frame(result), f"{paper_layout.title}  (ours: mean ± std over seeds [95% bootstrap CI])",
                 paper_layout.model_title)
    for note in result.notes:
        console.print(f"[dim]•[/dim] {note}", highlight=False)
    paths = write_paper_table(result, out / "tables" / name)
    console.print("tables: " + ", ".join(str(path) for path in paths.values()))


@app.command()
@user_errors
def curve(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
) -> None:
    """Label efficiency: macro METRIC of every encoder/head against its training budget (fraction or shots), from
    the stored runs HEAD/, HEAD_train-F/ and HEAD_shots-N/; writes OUT/BENCHMARK/efficiency_METRIC.{md,csv,png}."""
    from cxrbench.registry import benchmark_spec
    from cxrbench.results.efficiency import write_efficiency

    result = write_efficiency(benchmark_spec(benchmark), out, metric)
    _print_frame(result.display, f"{result.title}  (%, mean ± std over seeds [95% bootstrap CI])", "model")
    for note in result.notes:
        console.print(f"[dim]•[/dim] {note}", highlight=False)
    console.print("label efficiency: " + ", ".join(str(path) for path in result.paths.values()))


def _show_comparison(benchmark: str, out: Path, metric: Optional[str]) -> None:
    from cxrbench.registry import benchmark_spec
    from cxrbench.results.store import atomic_text, stored_runs
    from cxrbench.results.tables import comparison_long_table, comparison_table, to_markdown
    from cxrbench.stats.metrics import METRIC_TITLES

    spec = benchmark_spec(benchmark)
    metric = metric or spec.primary_metric
    if metric not in spec.metrics:
        raise CxrbenchError(f"Benchmark '{benchmark}' reports {', '.join(spec.metrics)}; --metric {metric} is not among them.")
    from cxrbench.results.efficiency import full_data_runs
    from cxrbench.results.paper_tables import comparison_latex

    runs = full_data_runs(stored_runs(out, benchmark))  # label-budget runs belong to `cxrbench curve`
    if not runs:
        raise CxrbenchError(f"No stored runs of '{benchmark}' under {out}. Run `cxrbench run {benchmark} --encoder NAME --out {out}` first.")
    frame = comparison_table(spec, runs, metric)
    title = f"{spec.title}: {METRIC_TITLES.get(metric, metric)} (%, mean ± std over seeds [95% bootstrap CI])"
    _print_frame(frame, title, "model")
    stem = out / benchmark / f"table_{metric}"
    atomic_text(stem.with_suffix(".md"), f"# {title}\n\n" + to_markdown(frame, "model"))
    atomic_text(stem.with_suffix(".csv"), comparison_long_table(spec, runs, metric).to_csv(index=False))
    atomic_text(stem.with_suffix(".tex"), comparison_latex(spec, runs, metric))
    console.print(f"tables: {stem}.md, {stem}.csv, {stem}.tex")


def main() -> None:
    app()
