"""The `--config FILE.yaml` of `cxrbench run`: every key documented here, once, and merged defaults < file < flags.

The file holds a RunSpec's keys at the top level (`encoder` may list several encoders: one run each), `out` and
`overwrite`, and a `machine:` section (a MachineSpec). `--print-config` writes this same form, each key under its
documentation as a comment, so that the printed file is the reference of what a file may hold and reads back as
the same runs. The command line's help strings are taken from these texts too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from cxrbench.errors import SpecError
from cxrbench.runs.spec import MachineSpec, RunSpec, spec_keys
from cxrbench.typed_yaml import load_yaml, parse_spec

#: every key of a run file (and of `--print-config`), with what it means
RUN_KEYS: dict[str, str] = {
    "benchmark": "Benchmark name (`cxrbench list benchmarks`).",
    "encoder": "Encoder name, or a list of them: one run each (`cxrbench list encoders`).",
    "data_root": "Dataset folder (default: the benchmark's $VAR).",
    "dataset_options": "The benchmark's dataset options (its spec's `dataset:` block), e.g. {label_rule: any}.",
    "split": "Fields of the benchmark's `split:` replaced, e.g. {scheme: random} for a fixed test set.",
    "weights": "Weights path, or random[:SEED] (default: hub).",
    "revision": "Hugging Face revision overriding the adapter's pinned one.",
    "image_size": "Input size (px), a multiple of the patch size.",
    "precision": "Encoder forward precision: fp32, bf16 or fp16 (features cached as float16 either way).",
    "head": "Head name (default: the benchmark's; `cxrbench list heads`).",
    "head_params": "Head parameters overridden, e.g. {epochs: 5, lr: [0.01, 0.1]}.",
    "evaluation": "probe (the benchmark's own: heads, or decoders on masks) or localisation (`cxrbench explain`).",
    "evaluation_params": "The evaluation's own settings (localisation: findings, images_per_finding, min_overlap, "
                         "one_head_per_finding).",
    "train_fractions": "Label efficiency: train on these fractions of the training patients (one run each).",
    "shots": "Few-shot: train on N patients per class (one run each).",
    "groups": "Bias protocol: {attribute, names, patients}: one run per group and one on their union.",
    "seeds": "Number of seeds (default: the benchmark's).",
    "bootstrap": "Bootstrap resamples (default: the benchmark's; 0 skips the bootstrap).",
    "metrics": "Registered metrics scored besides the benchmark's own (`cxrbench list metrics`).",
    "tag": "Variant name (results in HEAD_TAG/).",
    "out": "Results folder.",
    "overwrite": "Replace a stored run made with other settings.",
    "machine": "Where and how the runs are computed (never part of a run's identity):",
}
MACHINE_KEYS: dict[str, str] = {
    "cache_dir": "Feature cache folder (default $CXRBENCH_CACHE or ~/.cache/cxrbench).",
    "device": "Torch device: auto (default: cuda, mps or cpu), cpu, cuda:1, mps.",
    "batch_size": "Images per encoder forward pass, or auto: the largest power of two up to 256 that fits the GPU.",
    "shard_size": "Images per feature-cache shard: an interrupted run resumes from the last complete shard.",
    "workers": "Image-decoding worker processes (default: 0 on CPU, up to 8 with a GPU).",
    "threads": "CPU threads at most (default: $OMP_NUM_THREADS, else all cores).",
    "pixel_cache": "Keep decoded images so that further encoders decode no image again.",
    "launcher": "Where the jobs run: local (here, one after the other), ray or slurm.",
    "launcher_params": "Launcher settings: ray: address, cpus, gpus, retries; slurm: submitit's parameters, logs, "
                       "cluster=local.",
}
#: keys of a run file that are not a RunSpec's
FILE_ONLY = ("out", "overwrite", "machine")
DEFAULT_OUT = "results"


@dataclass(frozen=True)
class RunRequest:
    """What `cxrbench run` was asked: the runs (one per encoder), where they are stored, and the machine."""

    specs: tuple[RunSpec, ...]
    out: str = DEFAULT_OUT
    overwrite: bool = False
    machine: MachineSpec = field(default_factory=MachineSpec)


def read_config(path: Path) -> dict[str, Any]:
    """A run file's mapping, its keys checked (did-you-mean, naming the file and key) and its machine section
    parsed; the run keys are checked again as a RunSpec when merged (`build_request`)."""
    data = load_yaml(path)
    known = list(RUN_KEYS)
    for key in data:
        if key not in RUN_KEYS:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else f" Valid keys: {', '.join(known)}."
            raise SpecError(f"{path}: unknown key '{key}'.{hint} (`cxrbench run ... --print-config` shows every key.)")
    if "machine" in data:
        data["machine"] = _machine_dict(data["machine"], f"{path}: machine")
    return data


def _machine_dict(value: Any, where: str) -> dict[str, Any]:
    parse_spec(MachineSpec, value, where)  # unknown keys (did-you-mean) and types, naming the file and key
    return dict(value)


def build_request(flags: dict[str, Any], file: dict[str, Any] | None = None, where: str = "the command line") -> RunRequest:
    """Defaults < file < flags. `flags` holds only the options given on the command line, in the file's keys; a
    mapping (dataset_options, split, head_params, launcher_params) is merged key by key."""
    merged: dict[str, Any] = dict(file or {})
    for key, value in flags.items():
        if key == "machine":
            continue
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    machine = {**(file or {}).get("machine", {})}
    for key, value in flags.get("machine", {}).items():
        machine[key] = {**machine.get(key, {}), **value} if isinstance(value, dict) else value
    for required in ("benchmark", "encoder"):
        if merged.get(required) in (None, "", []):
            raise SpecError(f"no {required} given: name it on the command line or as `{required}:` in the --config file.")
    encoders = merged.pop("encoder")
    encoders = [encoders] if isinstance(encoders, str) else list(encoders)
    run = {key: value for key, value in merged.items() if key not in FILE_ONLY}
    specs = tuple(parse_spec(RunSpec, {**run, "encoder": name}, where) for name in encoders)
    return RunRequest(specs, str(merged.get("out", DEFAULT_OUT)), bool(merged.get("overwrite", False)),
                      parse_spec(MachineSpec, machine, f"{where}: machine"))


def resolved(request: RunRequest) -> RunRequest:
    return replace(request, specs=tuple(spec.resolved() for spec in request.specs))


def to_yaml(request: RunRequest) -> str:
    """The request as a run file: the shared keys once (`encoder` lists every encoder), each under its
    documentation; reads back through `read_config` + `build_request` as the same request."""
    first = request.specs[0].as_dict()
    encoders = [spec.encoder for spec in request.specs]
    values = {**first, "encoder": encoders[0] if len(encoders) == 1 else encoders,
              "out": request.out, "overwrite": request.overwrite}
    lines = ["# cxrbench run --config FILE: defaults < this file < flags given with it"]
    for key in RUN_KEYS:
        if key == "machine":
            continue
        lines += [f"# {RUN_KEYS[key]}", _dump({key: values[key]})]
    lines.append(f"# {RUN_KEYS['machine']}")
    machine = request.machine.as_dict()
    lines.append("machine:")
    for key in spec_keys(MachineSpec):
        lines += [f"  # {MACHINE_KEYS[key]}", "\n".join("  " + line for line in _dump({key: machine[key]}).splitlines())]
    return "\n".join(lines) + "\n"


def _dump(value: dict) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip("\n")
