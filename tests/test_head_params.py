"""Head parameters are checked against their defaults' types before any data is read, with the key named."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import SpecError
from cxrbench.heads.params import check_params
from cxrbench.registry import registry

runner = CliRunner()


def _head(name: str, **overrides):
    entry = registry().get("heads", name)
    return entry.load()(entry.spec, overrides)


def test_one_value_of_a_sweep_is_a_one_item_list_and_numbers_are_coerced():
    assert _head("knn", k=5).params["k"] == [5]
    assert _head("logistic", C=1).params["C"] == [1.0] and isinstance(_head("logistic", C=1).params["C"][0], float)
    assert _head("linear", lr=1).params["lr"] == 1.0
    grid = _head("raydino-grid", lr=0.01, depth=[2])
    assert {c.lr for c in grid.configs} == {0.01} and {c.depth for c in grid.configs} == {2}


@pytest.mark.parametrize(("head", "override", "message"), [
    ("linear", {"epochs": "abc"}, "epochs='abc' must be an integer"),
    ("linear", {"epochs": 2.5}, "epochs=2.5 must be an integer"),
    ("linear", {"batch_size": 0}, "batch_size=0 must be a finite number > 0"),
    ("linear", {"weight_decay": -1e-4}, "weight_decay=-0.0001 must be a finite number >= 0"),
    ("linear", {"standardize": "yes"}, "standardize='yes' must be true or false"),
    ("knn", {"k": []}, "k needs at least one value"),
    ("knn", {"k": [10, "many"]}, "k='many' must be an integer"),
    ("logistic", {"C": float("inf")}, "C=inf must be a finite number > 0"),
    ("attentive", {"pooling": 3}, "pooling=3 must be a name"),
])
def test_bad_values_name_the_head_and_key(head, override, message):
    with pytest.raises(SpecError, match=f"Head '{head}': {message}"):
        _head(head, **override)


def test_the_online_probe_settings_are_checked_the_same_way():
    assert _head("linear-augmented", lr=1).params["lr"] == 1.0
    with pytest.raises(SpecError, match="Head 'linear-augmented': epochs='x' must be an integer"):
        _head("linear-augmented", epochs="x")
    with pytest.raises(SpecError, match="augmentation=3 must be a mapping"):
        _head("linear-augmented", augmentation=3)
    assert check_params("x", {"seed": 0}, {"seed": 0}) == {"seed": 0}
    assert check_params("x", {"negative_seed": 1}, {"negative_seed": 0}, positive=False) == {"negative_seed": 0}


def test_a_bad_head_param_fails_before_the_data_is_read(tmp_path):
    """The data root does not exist: the parameter error must come first, so nothing is loaded or encoded."""
    result = runner.invoke(app, ["run", "vindr", "--encoder", "pixels", "--data-root", str(tmp_path / "absent"),
                                 "--out", str(tmp_path / "out"), "--head", "knn", "--head-param", "k=[]"])
    assert result.exit_code == 2 and "k needs at least one value" in result.output


def test_a_dataset_option_the_benchmark_does_not_have_is_refused(tmp_path):
    result = runner.invoke(app, ["run", "candid-ptx", "--encoder", "pixels", "--data-root", str(tmp_path),
                                 "--out", str(tmp_path / "out"), "--dataset-option", "label_rule=any"])
    assert result.exit_code == 2 and "--dataset-option label_rule: benchmark 'candid-ptx' has no such dataset option" in result.output
