"""Names -> specs -> lazily imported implementations, for encoders, heads, benchmarks and metrics.

Built-ins come from `registry.yaml`; third-party packages add entries through the entry-point groups
`cxrbench.encoders`, `cxrbench.heads`, `cxrbench.benchmarks` and `cxrbench.metrics`. An entry point must resolve
to a mapping `{"spec": <path to YAML or mapping>, "impl": "module:attr" or object}`; a metric's entry needs only
`impl` (or is the `Metric` subclass itself): a metric declares its kinds, direction and scale in its class.
Implementations are imported only when used, so `cxrbench list` never loads torch models.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from cxrbench.encoders.generic import is_generic
from cxrbench.errors import SpecError, UnknownNameError
from cxrbench.resources import project_root
from cxrbench.specs import AdapterSpec, BenchmarkSpec, HeadSpec, load_yaml, parse_spec

Kind = Literal["encoders", "heads", "benchmarks", "metrics"]
KINDS: tuple[Kind, ...] = ("encoders", "heads", "benchmarks", "metrics")
SPEC_TYPES: dict[str, type] = {"encoders": AdapterSpec, "heads": HeadSpec, "benchmarks": BenchmarkSpec}


@dataclass(frozen=True)
class MetricSpec:
    """What a metric declares in its class (`cxrbench.metrics.base.Metric`), read without computing anything."""

    name: str
    title: str
    kinds: tuple[str, ...]
    higher_is_better: bool
    scale: float
    unit: str
    decimals: int
    description: str

    @property
    def heading(self) -> str:
        """How tables name it: 'AUPRC (%)', 'MAE', 'Pearson r'."""
        return f"{self.title} ({self.unit})" if self.unit else self.title
SpecT = TypeVar("SpecT")


def import_object(reference: str) -> Any:
    """Import `module:attr` (attr may be dotted). No code strings are evaluated."""
    module_name, sep, attr_path = reference.partition(":")
    if not sep or not module_name or not attr_path:
        raise SpecError(f"Implementation reference '{reference}' must have the form 'package.module:attribute'.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"Cannot import module '{module_name}' for '{reference}': {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SpecError(f"Module '{module_name}' has no attribute '{attr_path}' (from '{reference}').") from None
    return obj


@dataclass
class Entry(Generic[SpecT]):
    """One registered name. `origin` says where it came from (registry.yaml or a distribution)."""

    kind: Kind
    name: str
    spec_source: Path | dict[str, Any] | None  # None: a metric, whose class is its spec
    impl_ref: str | Any
    origin: str

    @property
    def spec(self) -> SpecT:
        return _parse_cached(self)

    def load(self) -> Any:
        """The implementation object (class or function), imported on first use."""
        return import_object(self.impl_ref) if isinstance(self.impl_ref, str) else self.impl_ref


_spec_cache: dict[tuple[str, str, str], Any] = {}


def _parse_cached(entry: Entry) -> Any:
    key = (entry.kind, entry.name, str(entry.spec_source))
    if key not in _spec_cache and entry.kind == "metrics":
        _spec_cache[key] = _metric_spec(entry)
    if key not in _spec_cache:
        if isinstance(entry.spec_source, Path):
            data, where = load_yaml(entry.spec_source), str(entry.spec_source)
        else:
            data, where = dict(entry.spec_source), f"{entry.origin}:{entry.name}"
        spec = parse_spec(SPEC_TYPES[entry.kind], data, where)
        if spec.name != entry.name:
            raise SpecError(f"{where}: spec name '{spec.name}' differs from its registered name '{entry.name}'.")
        if entry.kind == "benchmarks":
            _check_metrics(spec, where)
        _spec_cache[key] = spec
    return _spec_cache[key]


def _metric_spec(entry: Entry) -> MetricSpec:
    from cxrbench.metrics.base import Metric
    from cxrbench.targets import kind_names

    implementation = entry.load()
    if not (isinstance(implementation, type) and issubclass(implementation, Metric)):
        raise SpecError(f"Metric '{entry.name}' ({entry.origin}): {entry.impl_ref!r} is not a cxrbench.metrics.base.Metric subclass.")
    unknown = [k for k in implementation.kinds if k not in kind_names()]
    if not implementation.kinds or unknown:
        raise SpecError(f"Metric '{entry.name}' ({entry.origin}): `kinds` must name target kinds among "
                        f"{', '.join(kind_names())} (got {list(implementation.kinds)}).")
    return MetricSpec(entry.name, implementation.title or entry.name, tuple(implementation.kinds),
                      bool(implementation.higher_is_better), float(implementation.scale), implementation.unit,
                      int(implementation.decimals), " ".join(implementation.description.split()))


def _check_metrics(spec: BenchmarkSpec, where: str) -> None:
    """Every metric a benchmark names exists and scores the kind of each target it is asked of."""
    for target in spec.targets:
        for name in spec.metrics_for(target):
            try:
                metric = registry().get("metrics", name).spec
            except UnknownNameError as exc:
                raise SpecError(f"{where}: {exc}") from None
            if target.kind not in metric.kinds:
                raise SpecError(f"{where}: metric '{name}' scores {' / '.join(metric.kinds)} targets; target "
                                f"'{target.name}' is {target.kind}. Give that target its own `metrics:`, or drop '{name}'.")


class Registry:
    def __init__(self, entries: dict[str, dict[str, Entry]]):
        self._entries = entries
        self._generic: dict[str, Entry] = {}  # `hf:` / `timm:` / `open_clip:` encoders resolved so far

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[Entry]:
        return [self._entries[kind][name] for name in self.names(kind)]

    def get(self, kind: Kind, name: str) -> Entry:
        if kind == "encoders" and name not in self._entries[kind] and is_generic(name):
            return self._generic_encoder(name)
        try:
            return self._entries[kind][name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries[kind], n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            singular = kind[:-1]
            forms = " Any Hugging Face, timm or open_clip model runs as hf:ORG/NAME, timm:NAME or open_clip:NAME." \
                if kind == "encoders" else ""
            raise UnknownNameError(
                f"Unknown {singular} '{name}'.{hint} Run `cxrbench list {kind}` to see every available {singular}.{forms}"
            ) from None


    def _generic_encoder(self, name: str) -> Entry:
        """An encoder named by its source (`cxrbench.encoders.generic`): its spec is read from the model's own files
        once per process, so every later look-up sees the same revision."""
        if name not in self._generic:
            from cxrbench.encoders.generic import resolve_generic

            found = resolve_generic(name)
            self._generic[name] = Entry("encoders", name, found.spec, found.impl, found.origin)
        return self._generic[name]


def _builtin_entries() -> dict[str, dict[str, Entry]]:
    root = project_root()
    data = load_yaml(root / "registry.yaml")
    entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        keys = {"impl"} if kind == "metrics" else {"spec", "impl"}
        for name, item in (data.get(kind) or {}).items():
            if not isinstance(item, dict) or set(item) != keys:
                raise SpecError(f"registry.yaml: {kind}.{name} must have exactly the key(s) {', '.join(sorted(keys))}.")
            spec = root / item["spec"] if "spec" in item else None
            entries[kind][name] = Entry(kind, name, spec, item["impl"], "built-in")
    return entries


def _plugin_entries(entries: dict[str, dict[str, Entry]]) -> None:
    for kind in KINDS:
        for point in metadata.entry_points(group=f"cxrbench.{kind}"):
            origin = f"{point.dist.name} {point.dist.version}" if point.dist else point.value
            if point.name in entries[kind]:
                raise SpecError(
                    f"Plugin '{origin}' registers {kind[:-1]} '{point.name}', which {entries[kind][point.name].origin} "
                    "already provides; rename the plugin's entry point."
                )
            try:
                target = point.load()
            except Exception as exc:  # a broken plugin must not hide the others' names
                raise SpecError(f"Plugin entry point '{point.name}' ({origin}) failed to load: {exc}") from exc
            if kind == "metrics":
                impl = target.get("impl") if isinstance(target, dict) and set(target) == {"impl"} else target
                entries[kind][point.name] = Entry(kind, point.name, None, impl, origin)
                continue
            if not isinstance(target, dict) or set(target) != {"spec", "impl"}:
                raise SpecError(
                    f"Plugin entry point '{point.name}' ({origin}) must resolve to a mapping with keys 'spec' and 'impl'."
                )
            spec = target["spec"]
            spec_source = Path(spec) if isinstance(spec, (str, Path)) else spec
            entries[kind][point.name] = Entry(kind, point.name, spec_source, target["impl"], origin)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry: built-ins plus every installed plugin."""
    entries = _builtin_entries()
    _plugin_entries(entries)
    return Registry(entries)


def encoder_spec(name: str) -> AdapterSpec:
    return registry().get("encoders", name).spec


def head_spec(name: str) -> HeadSpec:
    return registry().get("heads", name).spec


def benchmark_spec(name: str) -> BenchmarkSpec:
    return registry().get("benchmarks", name).spec


def metric_spec(name: str) -> MetricSpec:
    return registry().get("metrics", name).spec


def metric(name: str):
    """A registered metric, ready to score (`cxrbench.metrics.base.Metric`)."""
    registry().get("metrics", name).spec  # checks the class
    instance = registry().get("metrics", name).load()()
    instance.name = name
    return instance
