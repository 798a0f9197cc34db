"""The house's layering (ARCHITECTURE.md: "imports point down; none from a lower layer to a higher one, not even inside a
function") read from the code itself: every `import` / `from ... import` in src/cxrbench, at any depth (inside
functions and `if TYPE_CHECKING:` blocks too), checked against the layer order below, and no cycle between packages.

The order follows ARCHITECTURE.md's flow, bottom up: specs and metrics; the registry that reaches encoders, heads,
loaders and metrics by name; those leaves (a loader sees files, never models or the registry); study, feature
extraction and statistics; online training; the results store; explanations; evaluations; report and launchers; the
one orchestration path; the CLI. A module may import its own layer's modules only where the layer says so.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "cxrbench"

#: bottom up; (packages or modules directly under cxrbench/, whether they may import each other)
LAYERS: list[tuple[frozenset[str], bool]] = [
    (frozenset({"errors", "resources", "console", "progress", "memory", "threads", "files", "device", "recording",
                "typed_yaml", "__init__"}), True),
    (frozenset({"targets"}), False),
    (frozenset({"specs"}), False),
    (frozenset({"metrics"}), False),
    (frozenset({"registry"}), False),
    (frozenset({"data", "encoders", "heads"}), False),
    (frozenset({"transfer"}), False),
    (frozenset({"study", "features", "stats"}), False),
    (frozenset({"training"}), False),
    (frozenset({"results"}), False),
    (frozenset({"tables"}), False),
    (frozenset({"analyses"}), False),
    (frozenset({"explain"}), False),
    (frozenset({"evaluations"}), False),
    (frozenset({"report", "launchers"}), False),
    (frozenset({"runs"}), False),
    (frozenset({"cli"}), False),
    (frozenset({"__main__"}), False),
]

#: inside data/: shared helpers below the study-level splits and groups, below the dataset families
DATA_LAYERS = [frozenset({"common"}), frozenset({"groups"}), frozenset({"splits"})]

#: known exceptions, each with the reason it stands and who removes it
EXCEPTIONS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every cxrbench module `path` imports, with its line, at any depth of the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base, node.lineno)
                      for alias in node.names]
    return [(name, line) for name, line in found if name == "cxrbench" or name.startswith("cxrbench.")]


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (SOURCE / relative).with_suffix(".py").is_file() or (SOURCE / relative / "__init__.py").is_file()


def _unit(module: str) -> str:
    """The top-level package or module of cxrbench that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(unit: str) -> int:
    for index, (units, _) in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"cxrbench.{unit} is in no layer: add it to LAYERS in {Path(__file__).name}, where "
                         "ARCHITECTURE.md's flow puts it.")


def _arrows() -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every import between cxrbench modules."""
    arrows = []
    for path in sorted(SOURCE.rglob("*.py")):
        module = _module_name(path)
        arrows += [(module, imported, line) for imported, line in _imports(path)]
    return arrows


ARROWS = _arrows()


def test_the_scan_reads_imports_inside_functions():
    """The walk sees a function-level import (the kind that hid back-arrows before): a known one is found."""
    assert any(importer == "cxrbench.registry" and imported == "cxrbench.metrics.base" for importer, imported, _ in ARROWS)


def test_every_top_level_package_has_a_layer():
    units = {_unit(_module_name(path)) for path in SOURCE.rglob("*.py")}
    for unit in sorted(units):
        _layer(unit)


def test_no_import_points_up_or_sideways_between_layers():
    wrong = []
    for importer, imported, line in ARROWS:
        if importer in EXCEPTIONS:
            continue
        source, target = _unit(importer), _unit(imported)
        if source == target:
            continue
        low, high = _layer(target), _layer(source)
        if low > high or (low == high and not LAYERS[high][1]):
            wrong.append(f"{importer} (line {line}) -> {imported}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_cycle_between_packages():
    edges: dict[str, set[str]] = {}
    for importer, imported, _ in ARROWS:
        if importer not in EXCEPTIONS and _unit(importer) != _unit(imported):
            edges.setdefault(_unit(importer), set()).add(_unit(imported))
    state: dict[str, int] = {}

    def visit(unit: str, path: list[str]) -> list[str] | None:
        state[unit] = 1
        for nxt in sorted(edges.get(unit, ())):
            if state.get(nxt) == 1:
                return path + [unit, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [unit])):
                return cycle
        state[unit] = 2
        return None

    for unit in sorted(edges):
        if unit not in state:
            cycle = visit(unit, [])
            assert cycle is None, "package cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]):])


def _data_part(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "data" else None


def test_inside_data_helpers_know_no_family_and_families_know_no_other():
    """data/common knows no dataset; the study-level groups and splits know no dataset; a family imports the shared
    helpers, groups and splits, and itself: never another family (what two families share belongs in common/)."""
    rank = {part: index for index, parts in enumerate(DATA_LAYERS) for part in parts}
    family = len(DATA_LAYERS)
    wrong = [f"{importer} (line {line}) -> {imported}" for importer, imported, line in ARROWS
             if importer not in EXCEPTIONS and _data_part(importer) and _data_part(imported)
             and _data_part(importer) != _data_part(imported)
             and rank.get(_data_part(imported), family) >= rank.get(_data_part(importer), family)]
    assert not wrong, "imports inside data/ against its order:\n" + "\n".join(wrong)
