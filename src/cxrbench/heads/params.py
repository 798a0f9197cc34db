"""Checking head parameters (spec files, `--head-param`) against the types of their defaults, before any data is read.

A bad value should fail at once with the parameter's name, not as a TypeError deep inside training after the
features were extracted. Each value must have its default's type (an int where a float is expected is taken);
a parameter whose default is a list (a sweep, e.g. kNN's k) takes one value as a one-item list; numbers must be
finite and positive, or non-negative for the few parameters where 0 means "none".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from cxrbench.errors import SpecError

#: numeric parameters for which 0 is meaningful (no decay, no momentum, no minimum, the first seed, ...)
ZERO_ALLOWED = frozenset({"weight_decay", "momentum", "min_steps", "num_workers", "seed", "warmup_steps", "iterations", "dropout"})


def check_params(where: str, defaults: Mapping[str, Any], given: Mapping[str, Any], sweeps: Iterable[str] = (),
                 positive: bool = True) -> dict[str, Any]:
    """`given` checked against `defaults` and coerced (a float parameter given as 1 becomes 1.0).

    `sweeps`: scalar-default parameters that may also be given as a list of values (a grid head's axes).
    `positive`: numbers must be > 0 (>= 0 for ZERO_ALLOWED); False checks types only (dataset options, seeds).
    """
    sweeps = set(sweeps)
    checked = {}
    for key, value in given.items():
        default = defaults[key]
        if isinstance(default, list) or (key in sweeps and isinstance(value, list)):
            values = value if isinstance(value, list) else [value]
            if not values:
                raise SpecError(f"{where}: {key} needs at least one value, e.g. {key}={default!r}.")
            example = default[0] if isinstance(default, list) and default else default
            checked[key] = [_check_value(where, key, example, v, positive) for v in values]
        else:
            checked[key] = _check_value(where, key, default, value, positive)
    return checked


def _check_value(where: str, key: str, default: Any, value: Any, positive: bool = True) -> Any:
    if default is None:  # no type to check against (e.g. "automatic")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SpecError(f"{where}: {key}={value!r} must be true or false.")
        return value
    if isinstance(default, (int, float)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(default, int) and not isinstance(value, int)):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise SpecError(f"{where}: {key}={value!r} must be {kind}, like its default {default!r}.")
        low_ok = not positive or (value >= 0 if key in ZERO_ALLOWED else value > 0)
        if not math.isfinite(value) or not low_ok:
            bound = ">= 0" if key in ZERO_ALLOWED else "> 0"
            raise SpecError(f"{where}: {key}={value!r} must be a finite number {bound}.")
        return float(value) if isinstance(default, float) else value
    if isinstance(default, str) and not isinstance(value, str):
        raise SpecError(f"{where}: {key}={value!r} must be a name such as {default!r}.")
    if isinstance(default, dict) and not isinstance(value, dict):
        raise SpecError(f"{where}: {key}={value!r} must be a mapping, e.g. {key}='{{hflip_p: 0}}'.")
    return value
