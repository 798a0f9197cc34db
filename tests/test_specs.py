"""Spec parsing (errors name the file and key), the VinDr-CXR benchmark spec and the published RAD-DINO numbers."""

from __future__ import annotations

import copy
import dataclasses

import pandas as pd
import pytest

from cxrbench.errors import CxrbenchError, SpecError
from cxrbench.registry import benchmark_spec
from cxrbench.resources import project_root
from cxrbench.tables.published import read_published
from cxrbench.specs import AdapterSpec, BenchmarkSpec, BootstrapSpec, HeadSpec, PreprocessSpec, PublishedSpec, SplitSpec
from cxrbench.typed_yaml import load_yaml, parse_spec

WHERE = "adapters/toy.yaml"


@pytest.fixture
def adapter() -> dict:
    """A valid encoder spec mapping (as adapters/pixels.yaml)."""
    spec = copy.deepcopy(load_yaml(project_root() / "adapters" / "pixels.yaml"))
    del spec["impl"]  # the registry's key (it names the code), not part of the spec
    return spec


def _error(cls, data, where=WHERE) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(cls, data, where)
    assert isinstance(info.value, CxrbenchError)
    return str(info.value)


# ------------------------------------------------------------------------------------------- parse_spec


def test_valid_adapter_parses(adapter):
    spec = parse_spec(AdapterSpec, adapter, WHERE)
    assert spec.name == "pixels"
    assert isinstance(spec.preprocessing, PreprocessSpec)
    assert spec.preprocessing.size == 32
    assert spec.preprocessing.mean == (0.5,) and isinstance(spec.preprocessing.mean, tuple)
    assert spec.preprocessing.crop is None
    assert spec.preprocessing.value_range == (0.0, 1.0)  # default
    assert spec.weights.licence == "none (no weights)"
    assert spec.default_layers == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


def test_unknown_key_suggests_closest(adapter):
    adapter["preprocesing"] = adapter.pop("preprocessing")
    message = _error(AdapterSpec, adapter)
    assert WHERE in message
    assert "unknown key 'preprocesing'" in message
    assert "Did you mean 'preprocessing'?" in message


def test_unknown_nested_key_names_location(adapter):
    adapter["preprocessing"]["interpolaton"] = "bilinear"
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.preprocessing" in message
    assert "'interpolaton'" in message and "Did you mean 'interpolation'?" in message


def test_unknown_key_without_close_match_lists_valid_keys(adapter):
    adapter["zzz"] = 1
    message = _error(AdapterSpec, adapter)
    assert "Valid keys:" in message and "preprocessing" in message and "global_embedding" in message


def test_missing_required_key(adapter):
    del adapter["description"]
    message = _error(AdapterSpec, adapter)
    assert WHERE in message
    assert "required key 'description' is missing" in message


def test_missing_required_nested_key(adapter):
    del adapter["preprocessing"]["size"]
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.preprocessing" in message
    assert "required key 'size' is missing" in message


@pytest.mark.parametrize("value", ["32", 32.0, True])
def test_wrong_type_for_int(adapter, value):
    adapter["preprocessing"]["size"] = value
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.preprocessing.size" in message
    assert "expected int" in message


def test_wrong_type_for_optional_int(adapter):
    adapter["preprocessing"]["crop"] = "518"
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.preprocessing.crop" in message
    assert "expected int" in message


@pytest.mark.parametrize("value", ["high", True, None])
def test_wrong_type_for_float(value):
    """A non-number where a float belongs is the YAML's fault and must say what was expected (like int/str do)."""
    message = _error(BootstrapSpec, {"confidence": value}, "benchmarks/b.yaml.bootstrap")
    assert "benchmarks/b.yaml.bootstrap.confidence" in message
    assert "expected float" in message
    assert repr(value) in message


def test_wrong_type_for_str(adapter):
    adapter["description"] = 5
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.description" in message and "expected str" in message


def test_literal_violation(adapter):
    adapter["preprocessing"]["resize"] = "stretch"
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.preprocessing.resize" in message
    assert "'stretch'" in message
    assert "'shortest_edge'" in message and "'square'" in message


def test_tuple_items_are_checked(adapter):
    adapter["preprocessing"]["value_range"] = [0.0, 1.0, 2.0]
    assert "expected 2 items" in _error(AdapterSpec, adapter)
    adapter["preprocessing"]["value_range"] = [0.0, "one"]
    assert f"{WHERE}.preprocessing.value_range[1]" in _error(AdapterSpec, adapter)
    adapter["preprocessing"]["value_range"] = 1.0
    assert "expected a list" in _error(AdapterSpec, adapter)


def test_int_accepted_where_float(adapter):
    adapter["preprocessing"]["value_range"] = [0, 255]
    spec = parse_spec(AdapterSpec, adapter, WHERE)
    assert spec.preprocessing.value_range == (0.0, 255.0)
    assert all(isinstance(v, float) for v in spec.preprocessing.value_range)


def test_mapping_expected(adapter):
    adapter["preprocessing"] = [32]
    message = _error(AdapterSpec, adapter)
    assert f"{WHERE}.preprocessing" in message and "expected a mapping" in message
    assert "expected a mapping" in _error(HeadSpec, ["linear"])
    assert "expected a mapping" in _error(HeadSpec, {"name": "h", "description": "d", "params": [1]})


def test_benchmark_nested_literals():
    base = {"name": "b", "title": "t", "dataset": {}, "targets": ["A"]}
    spec = parse_spec(BenchmarkSpec, base, "benchmarks/b.yaml")
    assert spec.bootstrap == BootstrapSpec() and spec.split == SplitSpec()
    message = _error(BenchmarkSpec, {**base, "bootstrap": {"unit": "study"}}, "benchmarks/b.yaml")
    assert "benchmarks/b.yaml.bootstrap.unit" in message and "'study'" in message
    message = _error(BenchmarkSpec, {**base, "seeds": "five"}, "benchmarks/b.yaml")
    assert "benchmarks/b.yaml.seeds" in message


# --------------------------------------------------------------------------------------------- load_yaml


def test_load_yaml_invalid(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\npreprocessing: [unclosed\n  size: 3\n")
    with pytest.raises(SpecError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "not valid YAML" in str(info.value)


@pytest.mark.parametrize("text,found", [("- a\n- b\n", "list"), ("just a string\n", "str"), ("", "NoneType")])
def test_load_yaml_non_mapping(tmp_path, text, found):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "mapping" in str(info.value) and found in str(info.value)


def test_load_yaml_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="does not exist") as info:
        load_yaml(path)
    assert str(path) in str(info.value)


def test_load_yaml_is_safe(tmp_path):
    path = tmp_path / "unsafe.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_yaml(path)


# ------------------------------------------------------------------------------------------- vindr spec

RAD_DINO_TABLE_1A = (
    "Lung Opacity",
    "Cardiomegaly",
    "Pleural thickening",
    "Aortic enlargement",
    "Pulmonary fibrosis",
    "Tuberculosis",
    "Pleural effusion",
)


def test_vindr_benchmark_spec():
    spec = benchmark_spec("vindr")
    assert isinstance(spec, BenchmarkSpec)
    assert spec.tasks == RAD_DINO_TABLE_1A
    assert spec.seeds == 5
    assert spec.metrics == ("auprc", "auroc")
    assert spec.primary_metric == "auprc"
    assert {t.kind for t in spec.targets} == {"binary"}
    assert spec.dataset["label_rule"] == "majority"
    assert spec.default_head == "linear"
    assert spec.bootstrap == BootstrapSpec(resamples=1000, confidence=0.95, unit="patient", seed=0)
    assert spec.split.scheme == "official" and spec.split.val_fraction == 0.1 and spec.split.by == "patient"


def test_vindr_published_spec_maps_every_task():
    published = benchmark_spec("vindr").published
    assert isinstance(published, PublishedSpec)
    assert list(published.task_columns) == list(RAD_DINO_TABLE_1A)
    assert published.metric == "auprc" and published.scale == 100
    assert published.encoders["rad-dino"] == "RAD-DINO"


def test_read_published_rad_dino():
    table = read_published(benchmark_spec("vindr").published)
    assert set(table.columns) >= {"model", "task", "mean", "std"}
    rad = table[table["model"] == "RAD-DINO"].set_index("task")
    assert set(rad.index) == {*RAD_DINO_TABLE_1A, "macro"}
    assert rad.loc["macro", "mean"] == pytest.approx(0.528, abs=1e-12)
    assert pd.isna(rad.loc["macro", "std"])  # the paper gives no std for the average
    assert rad.loc["Cardiomegaly", "mean"] == pytest.approx(0.699, abs=1e-12)
    assert rad.loc["Cardiomegaly", "std"] == pytest.approx(0.003, abs=1e-12)
    assert rad.loc["Lung Opacity", "mean"] == pytest.approx(0.149, abs=1e-12)
    assert rad.loc["Pleural effusion", "std"] == pytest.approx(0.004, abs=1e-12)
    # every model of the CSV, each with the seven tasks and the macro average
    assert table["model"].nunique() == 10
    assert len(table) == 10 * 8
    assert table.loc[(table["model"] == "MRM") & (table["task"] == "Cardiomegaly"), "mean"].item() == pytest.approx(0.797)


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 would read `1e-3` as a string; a spec author (or --head-param) means a learning rate."""
    path = tmp_path / "h.yaml"
    path.write_text("name: h\ndescription: d\nparams:\n  lr: [1e-3, 5E-5, 1.0e-2]\n  wd: 0\n  tag: 1e-3x\n", encoding="utf-8")
    params = load_yaml(path)["params"]
    assert params["lr"] == [1e-3, 5e-5, 1e-2] and params["wd"] == 0 and params["tag"] == "1e-3x"
