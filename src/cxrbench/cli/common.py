"""What every command shares: the error wrapper, name checks from the YAML registry, KEY=VALUE parsing.

Answers come in well under a second: this module imports no torch, pandas, scikit-learn or transformers; each
command checks its names and options here (`check_request`), then imports the heavy modules inside its body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import typer
import yaml

from cxrbench.console import error
from cxrbench.errors import CxrbenchError
from cxrbench.typed_yaml import safe_load

DEFAULT_OUT = Path("results")
DEFAULT_DEMO_DIR = Path("cxrbench-demo")
VALUES = "mean ± std over seeds [95% bootstrap CI]; fractions in %"
INTERRUPTED = ("interrupted. Nothing half-written was kept: finished feature-cache shards and finished runs stay, and "
               "running the same command again resumes from them.")


def user_errors(command: Callable) -> Callable:
    """Errors the user can fix (`CxrbenchError`) become one message and exit code 2; Ctrl-C says what was kept
    and exits 130."""
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


def check_request(benchmark: Optional[str] = None, encoders: Sequence[str] = (), head: Optional[str] = None,
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

            from cxrbench.specs import SplitSpec
            from cxrbench.typed_yaml import parse_spec

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


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def key_values(option: str, pairs: list[str]) -> dict:
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


def numbers(option: str, text: Optional[str], kind: type) -> tuple:
    """--train-fraction 0.01,0.1,1 or --shots 1,2,4: each item a number of `kind`, named when it is not."""
    values = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        try:
            values.append(kind(item))
        except ValueError:
            raise CxrbenchError(f"{option} {text}: '{item}' is not a {'number' if kind is float else 'whole number'}.") from None
    return tuple(values)
