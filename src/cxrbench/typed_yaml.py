"""YAML read safely and validated into typed dataclasses: the machinery under every spec (adapters, heads,
benchmarks, run configs, table recipes), kept apart from the spec classes it builds so that any frozen dataclass can
be read from YAML the same way (unknown keys with a did-you-mean, missing keys and wrong types name the file and key).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from cxrbench.errors import SpecError

SpecT = typing.TypeVar("SpecT")


class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that reads 1e-3 as a number: YAML 1.1 (PyYAML's default) wants a dot (1.0e-3), YAML 1.2 does not.
    Its parser is libyaml's where PyYAML was built with it (the same documents, safe constructors only; `cxrbench
    list` parses every spec, and the pure-Python parser took most of a second on a loaded machine)."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """Parse YAML safely (no object construction), with YAML 1.2 number syntax."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: Path) -> dict[str, Any]:
    """Safe-load a YAML mapping; name the file on any failure."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = safe_load(handle.read())
    except FileNotFoundError:
        raise SpecError(f"Spec file {path} does not exist; check the path given in registry.yaml or the plugin.") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"Spec file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"Spec file {path} must contain a mapping at the top level, found {type(data).__name__}.")
    return data


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """A spec class's field types, evaluated once per class (evaluating them per parse was most of `cxrbench list`)."""
    return typing.get_type_hints(cls)


def parse_spec(cls: type[SpecT], data: dict[str, Any], where: str) -> SpecT:
    """Build the dataclass `cls` from a mapping, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, found {type(data).__name__}.")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else f" Valid keys: {', '.join(fields)}."
        raise SpecError(f"{where}: unknown key '{key}'.{hint}")
    values = {}
    for name, spec_field in fields.items():
        if name in data:
            values[name] = _coerce(hints[name], data[name], f"{where}.{name}")
        elif spec_field.default is dataclasses.MISSING and spec_field.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}: required key '{name}' is missing.")
    try:
        return cls(**values)
    except SpecError as exc:  # a check across fields (__post_init__): say which file or entry
        raise SpecError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, dict):  # a mapping can only be meant as the dataclass form: report its own error
            forms = [arg for arg in args if dataclasses.is_dataclass(arg)]
            if len(forms) == 1:
                return parse_spec(forms[0], value, where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except SpecError as exc:
                errors.append(str(exc))
        raise SpecError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of the allowed forms.")
    if origin is Literal:
        if value not in args:
            raise SpecError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}.")
        return value
    if dataclasses.is_dataclass(hint):
        return parse_spec(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, found {value!r}.")
        item_types = args if len(args) != 2 or args[1] is not Ellipsis else (args[0],) * len(value)
        if len(item_types) != len(value):
            raise SpecError(f"{where}: expected {len(item_types)} items, found {len(value)}.")
        return tuple(_coerce(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(item_types, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a mapping, found {value!r}.")
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            return {key: parse_spec(args[1], item, f"{where}.{key}") for key, item in value.items()}
        return dict(value)
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SpecError(f"{where}: expected float (a number), found {value!r}.")
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise SpecError(f"{where}: expected {hint.__name__}, found {value!r}.")
        return value
    raise SpecError(f"{where}: cannot read a value of type {hint!r}.")  # pragma: no cover - spec author error
