"""Options several commands share, defined once so that their names and help stay the same everywhere; the help
texts are the run file's key documentation (`cxrbench.runs.config`), written in one place.

The machine options (cache, batch size, shard size, workers, device, threads, pixel cache, launcher and its
parameters) are one group: `@machine_options` adds them to a command and hands it one `MachineSpec`, built here
and only here, with the names of the options actually typed (so that a `--config` file's `machine:` section is
overridden only by what the user gave).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from cxrbench.cli.common import DEFAULT_OUT, key_values, names, numbers
from cxrbench.errors import CxrbenchError
from cxrbench.launchers import LAUNCHERS
from cxrbench.runs.config import MACHINE_KEYS, RUN_KEYS
from cxrbench.runs.spec import MachineSpec

MACHINE = "Machine (also a --config file's `machine:`; never part of a run's identity)"
CONTEXT = "cxrbench_context"  # the injected Typer context
Encoders = typer.Option(..., "--encoder", "-e", metavar="NAMES", help="Encoder name(s), comma-separated.")
Seeds = typer.Option(None, min=1, metavar="N", help=RUN_KEYS["seeds"])
DataRoot = typer.Option(None, metavar="DIR", help=RUN_KEYS["data_root"])
Weights = typer.Option(None, metavar="PATH", help=RUN_KEYS["weights"])
Revision = typer.Option(None, help=RUN_KEYS["revision"], hidden=True)
ImageSize = typer.Option(None, min=1, metavar="PX", help=RUN_KEYS["image_size"])
DatasetOptions = typer.Option([], "--dataset-option", help="One of the benchmark's dataset options, KEY=VALUE, e.g. label_rule=any; repeatable.", hidden=True)
SplitOptions = typer.Option([], "--split", help="Replace a field of the benchmark's `split:`, KEY=VALUE, e.g. scheme=random; repeatable.", hidden=True)
HeadParams = typer.Option([], "--head-param", metavar="K=V", help="Head parameter (VALUE as YAML); repeatable.")
Precision = typer.Option("fp32", "--precision", help=RUN_KEYS["precision"], hidden=True)
Out = typer.Option(DEFAULT_OUT, metavar="DIR", help=RUN_KEYS["out"])
StoredOut = typer.Option(DEFAULT_OUT, metavar="DIR", help="Results folder holding the stored runs.")
Bootstrap = typer.Option(None, min=0, metavar="N", help="Bootstrap resamples (default: the benchmark's); 0 skips the bootstrap.")
Overwrite = typer.Option(False, help=RUN_KEYS["overwrite"], show_default=False)
CacheDir = typer.Option(None, "--cache-dir", metavar="DIR", help=MACHINE_KEYS["cache_dir"], rich_help_panel=MACHINE)
Device = typer.Option("auto", metavar="NAME", help=MACHINE_KEYS["device"], rich_help_panel=MACHINE, show_default=False)
Threads = typer.Option(None, "--threads", metavar="N", help=MACHINE_KEYS["threads"], rich_help_panel=MACHINE)


_RARE = ("--dataset-option KEY=VALUE, --split KEY=VALUE, --revision REV, --precision fp32|bf16|fp16, --metric NAME, "
         "--train-fraction F,..., --shots N,..., --batch-size N|auto, --shard-size N, --workers N, --pixel-cache, "
         "--launcher-param KEY=VALUE, where a command takes them. `cxrbench run ... --print-config` documents every setting.")


def more(*own: str) -> str:
    """The epilog of a command with rarer options hidden from its --help (they work; --print-config documents them):
    the command's own hidden options (e.g. "--min-overlap F"), then those many commands share. A --help fits one
    screen (issue 22; tests/test_cli_fast.py holds every command to 50 lines at 100 columns)."""
    return f"Also (rarer): {''.join(f'{option}, ' for option in own)}{_RARE}"


MORE = more()


def _batch_size(text: str) -> Optional[int]:
    """--batch-size N or auto (None), checked while the command line is read."""
    from cxrbench.features.batch_size import parse_batch_size

    try:
        return parse_batch_size(text)
    except CxrbenchError as exc:
        raise typer.BadParameter(str(exc)) from None


_GROUP = {  # option name -> (MachineSpec key, annotation, typer option)
    "cache_dir": ("cache_dir", Optional[Path], CacheDir),
    "batch_size": ("batch_size", Optional[int], typer.Option("32", parser=_batch_size, metavar="N|auto", help=MACHINE_KEYS["batch_size"], rich_help_panel=MACHINE, hidden=True)),
    "shard_size": ("shard_size", int, typer.Option(512, min=1, help=MACHINE_KEYS["shard_size"], rich_help_panel=MACHINE, hidden=True)),
    "workers": ("workers", Optional[int], typer.Option(None, min=0, help=MACHINE_KEYS["workers"], rich_help_panel=MACHINE, hidden=True)),
    "device": ("device", str, Device),
    "threads": ("threads", Optional[int], Threads),
    "pixel_cache": ("pixel_cache", bool, typer.Option(False, "--pixel-cache/--no-pixel-cache", help=MACHINE_KEYS["pixel_cache"], rich_help_panel=MACHINE, hidden=True)),
    "launcher": ("launcher", str, typer.Option("local", "--launcher", metavar="NAME", help=f"Where the jobs run: {', '.join(LAUNCHERS)} (default local: here, in turn).", rich_help_panel=MACHINE, show_default=False)),
    "launcher_param": ("launcher_params", list[str], typer.Option([], "--launcher-param", help=MACHINE_KEYS["launcher_params"] + " Repeatable.", rich_help_panel=MACHINE, hidden=True)),
}


def machine_options(command: Callable) -> Callable:
    """Add the machine option group to `command`, which receives `machine: MachineSpec`, `machine_given` (the
    MachineSpec keys typed on the command line: a config file's `machine:` keeps the others) and, when it has a
    `context` parameter, the Typer context."""
    signature = inspect.signature(command)
    injected = ("machine", "machine_given", "context")
    kept = [p for p in signature.parameters.values() if p.name not in injected]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
             for name, (_, annotation, option) in _GROUP.items()]
    added.append(inspect.Parameter(CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in _GROUP}
        context = kwargs.pop(CONTEXT)
        if "context" in signature.parameters:  # the command reads which of its own options were typed
            kwargs["context"] = context
        given = [_GROUP[name][0] for name in _GROUP if typed(context, name)]
        return command(*args, machine=machine_spec(values), machine_given=given, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k not in injected},
                               **{name: annotation for name, (_, annotation, _) in _GROUP.items()}, CONTEXT: typer.Context}
    return wrapper


def typed(context: typer.Context, name: str) -> bool:
    """Whether option `name` was given on the command line (or its environment variable), not left at its default."""
    source = context.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def machine_spec(values: dict) -> MachineSpec:
    """The one place the machine options become a `MachineSpec`."""
    return MachineSpec(str(values["cache_dir"].expanduser()) if values["cache_dir"] else None, values["device"],
                       "auto" if values["batch_size"] is None else values["batch_size"], values["shard_size"],
                       values["workers"], values["threads"], values["pixel_cache"], values["launcher"],
                       key_values("--launcher-param", values["launcher_param"]))


#: a command's option -> (the run file's key, how the typed value becomes that key's value): the one translation of
#: flags into RunSpec keys (`run_keys`), for `run`, `explain` and `bias`
RUN_FLAGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "benchmark": ("benchmark", str), "encoder": ("encoder", names), "head": ("head", str), "seeds": ("seeds", int),
    "data_root": ("data_root", str), "dataset_option": ("dataset_options", lambda v: key_values("--dataset-option", v)),
    "split": ("split", lambda v: key_values("--split", v)), "weights": ("weights", str), "revision": ("revision", str),
    "image_size": ("image_size", int), "precision": ("precision", str), "tag": ("tag", str),
    "overwrite": ("overwrite", bool), "head_param": ("head_params", lambda v: key_values("--head-param", v)),
    "metric": ("metrics", list), "train_fraction": ("train_fractions", lambda v: numbers("--train-fraction", v, float)),
    "shots": ("shots", lambda v: numbers("--shots", v, int)), "bootstrap": ("bootstrap", int), "out": ("out", str),
}


def run_keys(context: typer.Context, typed_only: bool = False, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run file's keys (`cxrbench.runs.config.build_request`'s flags) from the options of `context`'s command
    named in RUN_FLAGS, unset ones (None) left out. `typed_only`: only the options given on the command line, so
    that a --config file keeps its other keys (`run`). `leave_out`: options of the command that mean something else
    there (`bias --metric` is the metric per group, not an extra metric)."""
    return {key: convert(value) for name, value in context.params.items()
            if name in RUN_FLAGS and name not in leave_out and value is not None
            and (not typed_only or typed(context, name)) for key, convert in [RUN_FLAGS[name]]}
