"""The registry: built-in entries, did-you-mean for unknown names, and entry-point plugins of real distributions."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cxrbench.errors import CxrbenchError, SpecError, UnknownNameError
from cxrbench.registry import KINDS, SPEC_TYPES, MetricSpec, benchmark_spec, encoder_spec, head_spec, import_object, registry
from cxrbench.resources import project_root
from cxrbench.specs import AdapterSpec, BenchmarkSpec, HeadSpec

REGISTRY_YAML = yaml.safe_load((project_root() / "registry.yaml").read_text())
FOLDERS = {"encoders": "adapters", "heads": "heads", "benchmarks": "benchmarks"}
IMPL_KEY = {"encoders": "impl", "heads": "impl", "benchmarks": "loader"}


def _scanned(kind: str) -> dict[str, str]:
    """name -> implementation of every spec file in the kind's folder, read here independently of the registry."""
    return {path.stem: yaml.safe_load(path.read_text())[IMPL_KEY[kind]]
            for path in (project_root() / FOLDERS[kind]).glob("*.yaml")}


BUILTINS = {**{kind: _scanned(kind) for kind in FOLDERS},
            "metrics": {name: item["impl"] for name, item in REGISTRY_YAML["metrics"].items()}}
BUILTIN_ITEMS = [(kind, name) for kind in KINDS for name in BUILTINS[kind]]

# adapters/pixels.yaml, field by field, under another name
TOY_SPEC = {
    "name": "toy-encoder",
    "description": "Downsampled raw intensities; needs no weights. The floor any encoder must beat.",
    "architecture": {"patch_size": 4},
    "weights": {"licence": "none (no weights)"},
    "preprocessing": {
        "size": 32,
        "resize": "square",
        "interpolation": "area",
        "antialias": False,
        "channels": 1,
        "mean": [0.5],
        "std": [0.25],
    },
    "embedding_dim": 1024,
    "patch_stride": 4,
    "global_embedding": "All 32x32 intensities, flattened (1024-d).",
    "pretraining_data": [],
    "pretraining_notes": "No pre-training: raw intensities.",
}


# --------------------------------------------------------------------------------------------- built-ins


def test_builtin_names_are_the_scanned_files_and_registry_yaml_metrics():
    assert {"pixels", "rad-dino", "dinov2-base"} <= set(BUILTINS["encoders"])
    for kind in KINDS:
        builtin = [e.name for e in registry().entries(kind) if e.origin == "built-in"]
        assert sorted(builtin) == sorted(BUILTINS[kind])
        assert registry().names(kind) == sorted(registry().names(kind))


@pytest.mark.parametrize("kind,name", BUILTIN_ITEMS, ids=[f"{k}:{n}" for k, n in BUILTIN_ITEMS])
def test_builtin_entry_parses_and_imports(kind, name):
    entry = registry().get(kind, name)
    assert entry.origin == "built-in"
    spec = entry.spec
    assert isinstance(spec, SPEC_TYPES.get(kind, MetricSpec))
    assert spec.name == name
    assert entry.spec is spec  # parsed once
    implementation = entry.load()
    assert callable(implementation)
    assert implementation is import_object(BUILTINS[kind][name])


def test_builtin_implementations_are_the_expected_objects():
    from cxrbench.data.vindr.cxr import load_vindr
    from cxrbench.encoders.dinov2 import dinov2_encoder
    from cxrbench.encoders.pixels import PixelsEncoder
    from cxrbench.encoders.timm_vit import TimmViTEncoder
    from cxrbench.heads.linear import LinearProbe

    assert registry().get("encoders", "pixels").load() is PixelsEncoder
    assert registry().get("encoders", "rad-dino").load() is dinov2_encoder
    assert registry().get("encoders", "raydino").load() is TimmViTEncoder
    assert registry().get("heads", "linear").load() is LinearProbe
    assert registry().get("benchmarks", "vindr").load() is load_vindr


def test_spec_shortcuts():
    assert isinstance(encoder_spec("rad-dino"), AdapterSpec)
    assert encoder_spec("rad-dino").weights.hub_repo == "microsoft/rad-dino"
    assert encoder_spec("rad-dino").preprocessing.crop == 518
    assert isinstance(head_spec("linear"), HeadSpec)
    assert head_spec("linear").params["epochs"] == 100
    assert isinstance(benchmark_spec("vindr"), BenchmarkSpec)


# ------------------------------------------------------------------------------------------ unknown names


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError) as info:
        registry().get("encoders", "rad-dinov")
    message = str(info.value)
    assert "rad-dino" in message
    assert "Did you mean" in message
    assert "'rad-dinov'" in message
    assert "cxrbench list encoders" in message
    assert isinstance(info.value, CxrbenchError)


def test_unknown_name_without_close_match():
    with pytest.raises(UnknownNameError) as info:
        registry().get("heads", "zzzzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "cxrbench list heads" in str(info.value)


def test_unknown_name_through_shortcut():
    with pytest.raises(UnknownNameError, match="vindr"):
        benchmark_spec("vinder")


@pytest.mark.parametrize(
    "reference,fragment",
    [
        ("no_colon_here", "must have the form"),
        ("cxrbench_no_such_module_xyz:Thing", "Cannot import module"),
        ("cxrbench.encoders.pixels:NoSuchEncoder", "has no attribute"),
    ],
)
def test_import_object_errors(reference, fragment):
    with pytest.raises(SpecError, match=fragment):
        import_object(reference)


def test_import_object_dotted_attribute():
    assert import_object("cxrbench.specs:PreprocessSpec.with_size").__name__ == "with_size"


# ----------------------------------------------------------------------------------------------- plugins


def _write_distribution(root: Path, dist: str, version: str, module: str, source: str, entry_points: str) -> None:
    """A real installed distribution (module + .dist-info), discoverable by importlib.metadata on sys.path."""
    package = root / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """Put tmp_path on sys.path with a fresh registry; restore the built-in registry afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.cache_clear()
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith("cxrb_")]:
        del sys.modules[module]
    monkeypatch.undo()
    importlib.invalidate_caches()
    registry.cache_clear()


@pytest.fixture
def toy_plugin(tmp_path):
    _write_distribution(
        tmp_path,
        "cxrb-toy-plugin",
        "0.1",
        "cxrb_toy_plugin",
        f"ENTRY = {{'spec': {TOY_SPEC!r}, 'impl': 'cxrbench.encoders.pixels:PixelsEncoder'}}\n",
        "[cxrbench.encoders]\ntoy-encoder = cxrb_toy_plugin:ENTRY\n",
    )
    return tmp_path


def test_toy_spec_copies_pixels_yaml():
    pixels = yaml.safe_load((project_root() / "adapters" / "pixels.yaml").read_text())
    assert pixels.pop("impl") == "cxrbench.encoders.pixels:PixelsEncoder"
    assert {**TOY_SPEC, "name": "pixels"} == pixels


def test_plugin_listed_by_cli(toy_plugin):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(toy_plugin), *filter(None, [env.get("PYTHONPATH")])])
    env["COLUMNS"] = "250"
    completed = subprocess.run(
        [sys.executable, "-c", "from cxrbench.cli import main; main()", "list", "encoders"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "toy-encoder" in completed.stdout
    assert "cxrb-toy-plugin 0.1" in completed.stdout
    assert "rad-dino" in completed.stdout and "built-in" in completed.stdout
    toy_line = next(line for line in completed.stdout.splitlines() if "toy-encoder" in line)
    assert "cxrb-toy-plugin 0.1" in toy_line and "32" in toy_line


def test_cli_list_without_plugin_does_not_show_it(tmp_path):
    env = dict(os.environ, COLUMNS="250")
    completed = subprocess.run(
        [sys.executable, "-c", "from cxrbench.cli import main; main()", "list", "encoders"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert "pixels" in completed.stdout
    assert "toy-encoder" not in completed.stdout


def test_plugin_in_process(toy_plugin, plugin_path):
    from cxrbench.encoders.factory import build_encoder
    from cxrbench.encoders.pixels import PixelsEncoder

    entry = registry().get("encoders", "toy-encoder")
    assert entry.origin == "cxrb-toy-plugin 0.1"
    spec = entry.spec
    assert isinstance(spec, AdapterSpec)
    assert spec.name == "toy-encoder"
    assert spec.preprocessing.size == 32 and spec.preprocessing.resize == "square"
    assert spec.preprocessing.mean == (0.5,)
    assert entry.load() is PixelsEncoder
    assert "toy-encoder" in registry().names("encoders")
    assert "pixels" in registry().names("encoders")  # built-ins are still there

    encoder = build_encoder("toy-encoder")
    assert isinstance(encoder, PixelsEncoder)
    assert encoder.spec is spec
    assert encoder.embed_dim == 32 * 32
    assert encoder.weights.kind == "none"

    with pytest.raises(UnknownNameError, match="toy-encoder"):
        registry().get("encoders", "toy-encodr")


def test_registry_cache_restored_after_plugin_test():
    """Runs after test_plugin_in_process: the toy plugin must not leak into the process-wide registry."""
    assert "toy-encoder" not in registry().names("encoders")


def test_plugin_name_clash_with_builtin(tmp_path, plugin_path):
    _write_distribution(
        tmp_path,
        "cxrb-clash-plugin",
        "2.3",
        "cxrb_clash_plugin",
        f"ENTRY = {{'spec': {dict(TOY_SPEC, name='pixels')!r}, 'impl': 'cxrbench.encoders.pixels:PixelsEncoder'}}\n",
        "[cxrbench.encoders]\npixels = cxrb_clash_plugin:ENTRY\n",
    )
    with pytest.raises(SpecError) as info:
        registry()
    message = str(info.value)
    assert "cxrb-clash-plugin 2.3" in message
    assert "'pixels'" in message
    assert "built-in" in message


def test_plugin_spec_from_yaml_path(tmp_path, plugin_path):
    spec_file = tmp_path / "head.yaml"
    spec_file.write_text("name: toy-head\ndescription: A head from a plugin's YAML file.\nparams: {lr: 0.5}\n")
    _write_distribution(
        tmp_path,
        "cxrb-head-plugin",
        "1.0",
        "cxrb_head_plugin",
        f"ENTRY = {{'spec': {str(spec_file)!r}, 'impl': 'cxrbench.heads.linear:LinearProbe'}}\n",
        "[cxrbench.heads]\ntoy-head = cxrb_head_plugin:ENTRY\n",
    )
    entry = registry().get("heads", "toy-head")
    assert entry.origin == "cxrb-head-plugin 1.0"
    assert entry.spec.params == {"lr": 0.5}


@pytest.mark.parametrize(
    "source,fragment",
    [
        ("ENTRY = ['not', 'a', 'mapping']\n", "must resolve to a mapping"),
        ("raise RuntimeError('plugin import exploded')\n", "failed to load"),
    ],
)
def test_broken_plugin(tmp_path, plugin_path, source, fragment):
    _write_distribution(
        tmp_path, "cxrb-broken-plugin", "0.0.1", "cxrb_broken_plugin", source,
        "[cxrbench.encoders]\nbroken = cxrb_broken_plugin:ENTRY\n",
    )
    with pytest.raises(SpecError, match=fragment) as info:
        registry()
    assert "cxrb-broken-plugin 0.0.1" in str(info.value)


def test_plugin_spec_name_must_match_entry_point(tmp_path, plugin_path):
    _write_distribution(
        tmp_path,
        "cxrb-misnamed-plugin",
        "0.2",
        "cxrb_misnamed_plugin",
        f"ENTRY = {{'spec': {dict(TOY_SPEC, name='other-name')!r}, 'impl': 'cxrbench.encoders.pixels:PixelsEncoder'}}\n",
        "[cxrbench.encoders]\nmisnamed = cxrb_misnamed_plugin:ENTRY\n",
    )
    entry = registry().get("encoders", "misnamed")
    with pytest.raises(SpecError, match="other-name"):
        entry.spec


def test_plugin_spec_errors_name_the_plugin(tmp_path, plugin_path):
    _write_distribution(
        tmp_path,
        "cxrb-typo-plugin",
        "0.3",
        "cxrb_typo_plugin",
        f"ENTRY = {{'spec': {dict(TOY_SPEC, name='typo', preprocesing={})!r}, 'impl': 'x:y'}}\n",
        "[cxrbench.encoders]\ntypo = cxrb_typo_plugin:ENTRY\n",
    )
    with pytest.raises(SpecError) as info:
        registry().get("encoders", "typo").spec
    assert "cxrb-typo-plugin 0.3:typo" in str(info.value)
    assert "preprocessing" in str(info.value)


# ------------------------------------------------------------------------------------------ found by scanning


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A copy of the project's registry.yaml and spec folders, made the registry's project for the test."""
    import shutil

    import cxrbench.registry as registry_module

    shutil.copy(project_root() / "registry.yaml", tmp_path / "registry.yaml")
    for folder in FOLDERS.values():
        shutil.copytree(project_root() / folder, tmp_path / folder)
    monkeypatch.setattr(registry_module, "project_root", lambda: tmp_path)
    registry.cache_clear()
    yield tmp_path
    registry.cache_clear()


def test_a_benchmark_yaml_dropped_into_the_folder_is_found_without_editing_registry_yaml(project_copy):
    before = (project_copy / "registry.yaml").read_bytes()
    spec = yaml.safe_load((project_copy / "benchmarks" / "vindr.yaml").read_text())
    spec.update(name="vindr-copy", title="VinDr-CXR under another name")
    (project_copy / "benchmarks" / "vindr-copy.yaml").write_text(yaml.safe_dump(spec))

    from cxrbench.data.vindr.cxr import load_vindr

    entry = registry().get("benchmarks", "vindr-copy")
    assert entry.origin == "built-in" and entry.spec.name == "vindr-copy"
    assert entry.spec.targets == benchmark_spec("vindr").targets
    assert entry.load() is load_vindr
    assert "vindr-copy" in registry().names("benchmarks")
    assert (project_copy / "registry.yaml").read_bytes() == before


def test_a_head_yaml_dropped_into_the_folder_is_found(project_copy):
    (project_copy / "heads" / "linear-short.yaml").write_text(
        "name: linear-short\nimpl: cxrbench.heads.linear:LinearProbe\ndescription: d\nparams: {epochs: 3}\n")
    from cxrbench.heads.linear import LinearProbe

    assert head_spec("linear-short").params == {"epochs": 3}
    assert registry().get("heads", "linear-short").load() is LinearProbe


def test_a_scanned_spec_without_its_implementation_key_is_refused_with_the_fix(project_copy):
    spec = yaml.safe_load((project_copy / "benchmarks" / "vindr.yaml").read_text())
    del spec["loader"]
    spec["name"] = "no-loader"
    (project_copy / "benchmarks" / "no-loader.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError) as info:
        registry().get("benchmarks", "no-loader").load()
    message = str(info.value)
    assert "no-loader.yaml" in message and "`loader:`" in message and "package.module:attribute" in message


def test_a_scanned_spec_is_registered_under_its_file_name(project_copy):
    spec = yaml.safe_load((project_copy / "heads" / "knn.yaml").read_text())
    (project_copy / "heads" / "knn-renamed.yaml").write_text(yaml.safe_dump(spec))  # its name: is still knn
    with pytest.raises(SpecError, match="knn-renamed.yaml.*rename the file or its `name:`"):
        head_spec("knn-renamed")


def test_registry_yaml_unknown_key_is_named(project_copy):
    path = project_copy / "registry.yaml"
    path.write_text(path.read_text().replace("\nscan:\n", "\nscans:\n", 1))
    with pytest.raises(SpecError, match="unknown key 'scans'. Did you mean 'scan'"):
        registry()


def test_registry_imports_no_encoder_module():
    """Generic encoder names are resolved through registry.yaml's `encoder_resolver`, a string: the registry module
    itself names no encoder module (encoders import the registry, not the other way round)."""
    import ast

    import cxrbench.registry as registry_module

    tree = ast.parse(Path(registry_module.__file__).read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("cxrbench.encoders")]
    assert REGISTRY_YAML["encoder_resolver"] == "cxrbench.encoders.generic:resolve_generic"
    from cxrbench.encoders.generic import resolve_generic

    assert resolve_generic("rad-dinov") is None  # not a generic form: the registry then says "unknown encoder"
