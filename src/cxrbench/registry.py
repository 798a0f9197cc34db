"""Names -> specs -> lazily imported implementations, for encoders, heads, benchmarks and metrics.

Built-in encoders, heads and benchmarks are found by scanning the folders `registry.yaml` names under `scan:` (adapters/,
heads/, benchmarks/): every YAML there is one spec, registered under its file name, and names its implementation
itself (`impl:`, or `loader:` for a benchmark), so adding one is one file and no list to edit. `registry.yaml` keeps
only what a scan cannot find: the metrics, and the resolver of encoders named by their source (`hf:`, `timm:`,
`open_clip:`), which it names as a string, so that the registry imports no encoder module.
Third-party packages add entries through the entry-point groups `cxrbench.encoders`, `cxrbench.heads`,
`cxrbench.benchmarks` and `cxrbench.metrics`. An entry point must resolve to a mapping `{"spec": <path to YAML or
mapping>, "impl": "module:attr" or object}`; a metric's entry needs only `impl` (or is the `Metric` subclass itself):
a metric declares its kinds, direction and scale in its class.
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

from cxrbench.errors import SpecError, UnknownNameError
from cxrbench.resources import project_root
from cxrbench.specs import AdapterSpec, BenchmarkSpec, HeadSpec
from cxrbench.typed_yaml import load_yaml, parse_spec

Kind = Literal["encoders", "heads", "benchmarks", "metrics"]
KINDS: tuple[Kind, ...] = ("encoders", "heads", "benchmarks", "metrics")
SPEC_TYPES: dict[str, type] = {"encoders": AdapterSpec, "heads": HeadSpec, "benchmarks": BenchmarkSpec}
#: the key by which a spec file names its implementation (taken out before the spec is parsed: the spec is data)
IMPL_KEYS: dict[str, str] = {"encoders": "impl", "heads": "impl", "benchmarks": "loader"}
#: the keys registry.yaml may have
REGISTRY_KEYS = ("scan", "encoder_resolver", "metrics")


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
    """One registered name. `origin` says where it came from: "built-in" (a scanned spec file, or registry.yaml's metrics)
    or a distribution."""

    kind: Kind
    name: str
    spec_source: Path | dict[str, Any] | None  # None: a metric, whose class is its spec
    impl_ref: str | Any | None  # None: named by the spec itself (its `impl:` / `loader:` key)
    origin: str

    @property
    def spec(self) -> SpecT:
        return _parse_cached(self)

    @property
    def implementation(self) -> str | Any:
        """What `load` imports: the entry's own reference, else the one its spec file names."""
        return _source(self)[2] if self.impl_ref is None else self.impl_ref

    def load(self) -> Any:
        """The implementation object (class or function), imported on first use."""
        reference = self.implementation
        return import_object(reference) if isinstance(reference, str) else reference


_spec_cache: dict[tuple[str, str, str], Any] = {}
_source_cache: dict[tuple[str, str, str], tuple[dict[str, Any], str, str | None]] = {}


def _source(entry: Entry) -> tuple[dict[str, Any], str, str | None]:
    """The entry's spec mapping without its implementation key, where it comes from, and that key's value."""
    key = (entry.kind, entry.name, str(entry.spec_source))
    if key not in _source_cache:
        if isinstance(entry.spec_source, Path):
            data, where = load_yaml(entry.spec_source), str(entry.spec_source)
        else:
            data, where = dict(entry.spec_source), f"{entry.origin}:{entry.name}"
        impl_key = IMPL_KEYS[entry.kind]
        reference = data.pop(impl_key, None)
        if entry.impl_ref is None and not (isinstance(reference, str) and reference):
            example = {"benchmarks": "cxrbench.data.vindr.cxr:load_vindr", "heads": "cxrbench.heads.linear:LinearProbe",
                       "encoders": "cxrbench.encoders.dinov2:dinov2_encoder"}[entry.kind]
            raise SpecError(f"{where}: `{impl_key}:` must name the implementation as 'package.module:attribute' (e.g. "
                            f"{impl_key}: {example}); found {reference!r}. Every spec in a scanned folder names its own.")
        _source_cache[key] = (data, where, reference)
    return _source_cache[key]


def _parse_cached(entry: Entry) -> Any:
    key = (entry.kind, entry.name, str(entry.spec_source))
    if key not in _spec_cache and entry.kind == "metrics":
        _spec_cache[key] = _metric_spec(entry)
    if key not in _spec_cache:
        data, where, _ = _source(entry)
        spec = parse_spec(SPEC_TYPES[entry.kind], dict(data), where)
        if spec.name != entry.name:
            fix = " (a scanned spec is registered under its file name: rename the file or its `name:`)" \
                if entry.origin == "built-in" else ""
            raise SpecError(f"{where}: spec name '{spec.name}' differs from its registered name '{entry.name}'{fix}.")
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
    def __init__(self, entries: dict[str, dict[str, Entry]], encoder_resolver: str | None = None):
        self._entries = entries
        self._encoder_resolver = encoder_resolver  # `module:function` for encoders named by their source
        self._generic: dict[str, Entry] = {}  # `hf:` / `timm:` / `open_clip:` encoders resolved so far

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[Entry]:
        return [self._entries[kind][name] for name in self.names(kind)]

    def get(self, kind: Kind, name: str) -> Entry:
        if kind == "encoders" and name not in self._entries[kind]:
            generic = self._generic_encoder(name)
            if generic is not None:
                return generic
        if kind == "metrics" and "@" in name and name not in self._entries[kind]:
            return self._metric_point(name)
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


    def _metric_point(self, name: str) -> Entry:
        """`NAME@POINT`: a metric read at one of its points (threshold, referral rate, bin; `cxrbench.metrics.points`)."""
        base, _, point = name.partition("@")
        entry = self.get("metrics", base)
        at = getattr(entry.load(), "at", None)
        if at is None:
            raise UnknownNameError(f"Unknown metric '{name}': '{base}' is not read at points, so it takes no '@{point}'.")
        return Entry("metrics", name, None, at(point), entry.origin)

    def _generic_encoder(self, name: str) -> Entry | None:
        """An encoder named by its source (registry.yaml's `encoder_resolver`), None for a name it does not handle:
        its spec is read from the model's own files once per process, so every later look-up sees the same revision."""
        if name not in self._generic and self._encoder_resolver is not None:
            found = import_object(self._encoder_resolver)(name)
            if found is None:
                return None
            self._generic[name] = Entry("encoders", name, found.spec, found.impl, found.origin)
        return self._generic.get(name)


def _builtin_entries(root: Path) -> tuple[dict[str, dict[str, Entry]], str | None]:
    """The built-ins of the project at `root`: every spec file in the folders registry.yaml scans, and its metrics;
    and the resolver of encoders named by their source."""
    data = load_yaml(root / "registry.yaml")
    unknown = [key for key in data if key not in REGISTRY_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), REGISTRY_KEYS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"{root / 'registry.yaml'}: unknown key '{unknown[0]}'.{hint} It may have: {', '.join(REGISTRY_KEYS)} "
                        "(encoders, heads and benchmarks are found by scanning their folders, `scan:`).")
    entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
    for kind, folder in _scanned_folders(data, root).items():
        for path in sorted(folder.glob("*.yaml")):
            entries[kind][path.stem] = Entry(kind, path.stem, path, None, "built-in")
    for name, item in (data.get("metrics") or {}).items():
        if not isinstance(item, dict) or set(item) != {"impl"}:
            raise SpecError(f"registry.yaml: metrics.{name} must have exactly the key impl.")
        entries["metrics"][name] = Entry("metrics", name, None, item["impl"], "built-in")
    resolver = data.get("encoder_resolver")
    if resolver is not None and not isinstance(resolver, str):
        raise SpecError(f"registry.yaml: encoder_resolver must be 'package.module:function', found {resolver!r}.")
    return entries, resolver


def _scanned_folders(data: dict[str, Any], root: Path) -> dict[Kind, Path]:
    """registry.yaml's `scan:` (kind -> folder), checked: known kinds, existing folders."""
    scan = data.get("scan") or {}
    if not isinstance(scan, dict):
        raise SpecError(f"registry.yaml: `scan:` must map kinds to folders, e.g. benchmarks: benchmarks; found {scan!r}.")
    folders: dict[Kind, Path] = {}
    for kind, folder in scan.items():
        if kind not in SPEC_TYPES:
            raise SpecError(f"registry.yaml: scan.{kind}: only {', '.join(SPEC_TYPES)} are found by scanning.")
        if not (root / str(folder)).is_dir():
            raise SpecError(f"registry.yaml: scan.{kind}: folder {root / str(folder)} does not exist.")
        folders[kind] = root / str(folder)
    return folders


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
    entries, resolver = _builtin_entries(project_root())
    _plugin_entries(entries)
    return Registry(entries, resolver)


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
