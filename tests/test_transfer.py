"""Transfer studies (`cxrbench.transfer`): heads trained on benchmark A and scored on benchmark B through a declared
label table. The head of a transfer run is recomputed here with scikit-learn from A's and B's own cached features;
each pair runs end to end on synthetic folders in its datasets' layouts; bad tables and options are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.errors import CxrbenchError, DataError, SpecError
from cxrbench.registry import benchmark_spec, registry
from cxrbench.results.overlap import pretraining_overlap
from cxrbench.specs import BenchmarkSpec
from cxrbench.typed_yaml import parse_spec
from cxrbench.study import load_benchmark

runner = CliRunner()
ENCODER = ["--encoder", "dinov2-small", "--weights", "random", "--image-size", "28"]
TRANSFERS = ["paxray-to-jsrt", "paxray-to-vindr-ribcxr", "nih-to-chexpert", "nih-to-padchest", "nih-to-vindr",
             "chexpert-to-brax", "mimic-to-brax"]


def _has(name: str) -> bool:
    return name in registry().names("benchmarks")


def _plant_vindr(root: Path) -> Path:
    """The synthetic VinDr-CXR writer plants no atelectasis or consolidation, and a small test set may lack the others:
    mark a few test images positive for each shared finding so that the transfer's metrics are defined (the labels
    need not match the pixels for a run to go through)."""
    path = root / "annotations/image_labels_test.csv"
    frame = pd.read_csv(path)
    for k, finding in enumerate(["Atelectasis", "Consolidation", "Cardiomegaly", "Pleural effusion"]):
        frame.loc[frame.index[2 * k: 2 * k + 3], finding] = 1
    frame.to_csv(path, index=False)
    return root


def _plant_padchest(root: Path) -> Path:
    """The synthetic PadChest writer draws none of atelectasis, cardiomegaly or consolidation: add them to a few PA
    images' Labels (kept as list literals, as the release writes them)."""
    path = next(root.glob("PADCHEST_*.csv"))
    frame = pd.read_csv(path, index_col=0)
    frontal = frame.index[frame["Projection"] == "PA"]
    for k, label in enumerate(["atelectasis", "cardiomegaly", "consolidation"]):
        for row in frontal[k * 3: k * 3 + 4]:
            frame.loc[row, "Labels"] = str([*_labels_of(frame.loc[row, "Labels"]), label])
    frame.to_csv(path)
    return root


def _labels_of(text) -> list[str]:
    import ast

    return list(ast.literal_eval(text)) if isinstance(text, str) else []


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic folders in each dataset's release layout."""
    from cxrbench.data.common.synthetic import SyntheticConfig
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr
    from cxrbench.data.padchest.synthetic import write_synthetic_padchest
    from cxrbench.data.paxray.synthetic import write_synthetic_paxray
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr_ribcxr
    from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr
    from cxrbench.data.chexpert.synthetic import write_synthetic_chexpert
    from cxrbench.data.nih.synthetic import write_synthetic_nih_cxr14

    base = tmp_path_factory.mktemp("transfer")
    folders = {
        "nih-cxr14": write_synthetic_nih_cxr14(base / "nih", patients=48, size=32),
        "chexpert": write_synthetic_chexpert(base / "chexpert", patients=48, size=32),
        "vindr": _plant_vindr(write_synthetic_vindr(base / "vindr", SyntheticConfig(patients=60, size=32))),
        "padchest-lateral": _plant_padchest(write_synthetic_padchest(base / "padchest", patients=40, size=32)),
        "paxray": write_synthetic_paxray(base / "paxray", volumes=8),
        "vindr-ribcxr": write_synthetic_vindr_ribcxr(base / "ribs", train=3, test=2, height=48, width=40),
        "mimic-cxr": write_synthetic_mimic_cxr(base / "mimic", patients=60, size=32),
    }
    folders["chexpert-5"] = folders["chexpert"]
    if _has("brax"):
        from cxrbench.data.brax.synthetic import write_synthetic_brax
        from cxrbench.data.mimic.cxr import CHEXPERT_LABELS

        folders["brax"] = _plant_csv(next(write_synthetic_brax(base / "brax", patients=40, size=32).rglob("master_*.csv")),
                                     CHEXPERT_LABELS)
        folders["chexpert"] = _plant_csv(next(write_synthetic_chexpert(base / "chexpert-brax", patients=48, size=32)
                                              .rglob("train.csv")), CHEXPERT_LABELS)
        folders["mimic-cxr"] = _plant_csv(next(folders["mimic-cxr"].rglob("*chexpert.csv*")), CHEXPERT_LABELS)
    return folders


def _plant_csv(path: Path, labels: list[str]) -> Path:
    """The synthetic writers plant a few of the 14 CheXpert findings only: mark every third row positive for each
    label (shifted per label) so that all of them can be trained and scored; returns the dataset folder."""
    frame = pd.read_csv(path)
    for k, label in enumerate(labels):
        if label in frame:
            frame.loc[frame.index[k % 3::3], label] = 1.0
    frame.to_csv(path, index=False)
    while not (path.parent / "cxrbench-synthetic.json").is_file():
        path = path.parent
    return path.parent


def _run(name: str, roots: dict[str, Path], out: Path, *extra: str, seeds: int = 2):
    plan = benchmark_spec(name).transfer
    return runner.invoke(app, ["run", name, *ENCODER, "--data-root", str(roots[plan.train]), "--out", str(out),
                               "--cache-dir", str(out.parent / "cache"), "--seeds", str(seeds), "--bootstrap", "20",
                               "--dataset-option", f"test_root={roots[plan.test]}", *extra])


def test_a_transfer_head_equals_one_trained_on_a_and_scored_on_b_by_hand(roots, tmp_path):
    from cxrbench.encoders.base import FeatureRequest
    from cxrbench.runs.pipeline import EncoderOptions, MachineOptions, extract

    out = tmp_path / "out"
    result = _run("nih-to-chexpert", roots, out, "--head", "logistic", "--head-param", "C=1.0")
    assert result.exit_code == 0, result.output
    run = out / "nih-to-chexpert/dinov2-small/logistic"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["transfer"]["train"] == "nih-cxr14" and metrics["transfer"]["test"] == "chexpert-5"
    assert metrics["transfer"]["mapping"]["Pleural Effusion"] == "Effusion"
    assert runner.invoke(app, ["results", "validate", str(run)]).exit_code == 0  # the schema knows the transfer block
    predictions, splits = pd.read_parquet(run / "predictions.parquet"), pd.read_parquet(run / "splits.parquet")

    # A's and B's own studies, features from the same cache: nothing is encoded again
    encoders, machine = EncoderOptions(["dinov2-small"], "random", None, 28), MachineOptions(tmp_path / "cache")
    sides = {}
    for name, used in (("nih-cxr14", "train"), ("chexpert-5", "test")):
        _, data = load_benchmark(name, roots[name], {})
        [features] = extract(name, encoders, machine, FeatureRequest(), roots[name], {})
        # only the images the transfer did not use are encoded now (NIH's test list, CheXpert's training images)
        unused = (data.samples["split"] == "test") if used == "train" else (data.samples["split"] != "test")
        assert features.extraction.encoded == int(unused.sum()) > 0, name
        sides[name] = (data.samples.set_index("image_id"), pd.Series(np.arange(len(data.samples)), data.samples["image_id"]),
                       features.global_)
    nih, nih_rows, nih_x = sides["nih-cxr14"]
    chexpert, chexpert_rows, chexpert_x = sides["chexpert-5"]
    # the training images are NIH's train_val_list, read here from the file itself; the test images CheXpert's valid.csv
    listed = set(Path(roots["nih-cxr14"], "train_val_list.txt").read_text().split())
    seed0 = splits[splits["seed"] == 0]
    trained = seed0.loc[seed0["split"].isin(["train", "val"]), "image_id"].str.removeprefix("nih-cxr14:")
    assert set(trained) == listed & set(nih.index)
    assert set(predictions["image_id"].str.removeprefix("chexpert-5:")) == set(chexpert.index[chexpert["split"] == "test"])

    mapping = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation",
               "Edema": "Edema", "Pleural Effusion": "Effusion"}
    for seed in (0, 1):
        part = splits[(splits["seed"] == seed) & (splits["split"] == "train")]
        train_ids = part["image_id"].str.removeprefix("nih-cxr14:").to_numpy()
        x_train = nih_x[nih_rows[train_ids].to_numpy()]
        scaler = StandardScaler().fit(x_train)
        scored = predictions[predictions["seed"] == seed]
        for task, column in mapping.items():
            y = nih.loc[train_ids, column].to_numpy(dtype=float)
            known = ~np.isnan(y)
            model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(scaler.transform(x_train)[known], y[known])
            rows = scored[scored["task"] == task]
            test_ids = rows["image_id"].str.removeprefix("chexpert-5:").to_numpy()
            expected = model.predict_proba(scaler.transform(chexpert_x[chexpert_rows[test_ids].to_numpy()]))[:, 1]
            np.testing.assert_allclose(rows["score"].to_numpy(), expected, rtol=1e-6, atol=1e-9, err_msg=task)
            np.testing.assert_array_equal(rows["label"].to_numpy(), chexpert.loc[test_ids, task].to_numpy(dtype=float))


@pytest.mark.parametrize("name", [pytest.param("paxray-to-vindr-ribcxr", marks=pytest.mark.slow), "nih-to-padchest",
                                  "nih-to-vindr", "chexpert-to-brax", "mimic-to-brax"])
def test_each_transfer_pair_runs_end_to_end_with_random_weights(name, roots, tmp_path):
    plan = benchmark_spec(name).transfer
    if plan.test not in roots:
        pytest.skip(f"benchmark '{plan.test}' is not registered in this tree")
    head = ["--head-param", "epochs=1"] if plan.train == "paxray" else ["--head", "logistic", "--head-param", "C=1.0"]
    result = _run(name, roots, tmp_path / "out", *head, seeds=1 if plan.train == "paxray" else 2)
    assert result.exit_code == 0, result.output
    run = tmp_path / "out" / name / "dinov2-small" / ("seg-linear" if plan.train == "paxray" else "logistic")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["transfer"]["train"] == plan.train and metrics["run_identity"]["synthetic_data"] is True
    splits = pd.read_parquet(run / "splits.parquet")
    source = splits["image_id"].str.split(":").str[0]
    assert set(source[splits["split"].isin(["train", "val"])]) == {plan.train}
    assert set(source[splits["split"] == "test"]) == {plan.test}
    if name == "paxray-to-vindr-ribcxr":  # every image of both official parts is scored
        _, test = load_benchmark(plan.test, roots[plan.test], {})
        assert set(splits.loc[splits["split"] == "test", "image_id"]) == {f"vindr-ribcxr:{i}" for i in test.samples["image_id"]}


def test_pretraining_overlap_marks_the_test_benchmark_only():
    # raydino saw NIH, CheXpert, MIMIC and PadChest: a head trained on NIH and tested on VinDr-CXR is not flagged
    assert pretraining_overlap("raydino", benchmark_spec("nih-to-vindr")) == ()
    assert pretraining_overlap("raydino", benchmark_spec("nih-to-chexpert")) == ("chexpert",)
    assert pretraining_overlap("raydino", benchmark_spec("nih-to-padchest")) == ("padchest",)


def test_every_transfer_table_names_registered_benchmarks_and_their_targets():
    for name in TRANSFERS:
        spec = benchmark_spec(name)
        plan = spec.transfer
        assert plan is not None and set(plan.mapping) == set(spec.tasks), name
        assert spec.data_root_env == benchmark_spec(plan.train).data_root_env, name
        for side, names in ((plan.train, plan.mapping.values()), (plan.test, spec.tasks)):
            if not _has(side):
                continue
            own = {t.name: t.kind for t in benchmark_spec(side).targets}
            kinds = {t.name: t.kind for t in spec.targets}
            # a side's target of that name has the transfer's kind (PadChest's findings come from test_options)
            assert all(own.get(n, k) == k for n, k in zip(names, kinds.values())), (name, side)


def _transfer(**changes) -> dict:
    data = {"name": "x-to-y", "title": "t", "dataset": {"test_root": None, "test_images": "test"},
            "targets": ["Atelectasis", "Pleural Effusion"],
            "transfer": {"train": "nih-cxr14", "test": "chexpert-5",
                         "mapping": {"Atelectasis": "Atelectasis", "Pleural Effusion": "Effusion"}}}
    for key, value in changes.items():
        if key in ("mapping", "unmapped"):
            data["transfer"][key] = value
        else:
            data[key] = value
    return data


def test_a_transfer_spec_needs_one_mapping_row_per_target_and_takes_no_source_datasets():
    parse_spec(BenchmarkSpec, _transfer(), "x")
    with pytest.raises(SpecError, match="'Pleural Effusion' has no row in transfer.mapping"):
        parse_spec(BenchmarkSpec, _transfer(mapping={"Atelectasis": "Atelectasis"}), "x")
    with pytest.raises(SpecError, match="row 'Edema' is not a target"):
        parse_spec(BenchmarkSpec, _transfer(mapping={"Atelectasis": "A", "Pleural Effusion": "E", "Edema": "Edema"}), "x")
    with pytest.raises(SpecError, match="remove source_datasets"):
        parse_spec(BenchmarkSpec, _transfer(source_datasets=["chexpert"]), "x")


def test_unmapped_findings_are_noted_or_refused_and_bad_options_named(roots, monkeypatch):
    import cxrbench.registry as reg

    entries = registry()._entries["benchmarks"]
    made = {"x-to-y": _transfer(targets=["Atelectasis"], mapping={"Atelectasis": "Atelectasis"}, unmapped="refuse"),
            "x-to-z": _transfer(targets=["Atelectasis"], mapping={"Atelectasis": "Atelectasis"}),
            "x-to-w": _transfer(targets=["Atelectasis"], mapping={"Atelectasis": "anatomy"})}
    made["x-to-w"]["transfer"]["train"] = "paxray-to-jsrt"
    for name, data in made.items():
        data["name"] = name
        monkeypatch.setitem(entries, name, reg.Entry("benchmarks", name, data, "cxrbench.transfer:compose_transfer", "test"))
    options = {"test_root": str(roots["chexpert"])}
    with pytest.raises(DataError, match=r"\['Cardiomegaly', 'Consolidation', 'Edema', 'Pleural Effusion'\] have no row"):
        load_benchmark("x-to-y", roots["nih-cxr14"], options)
    _, data = load_benchmark("x-to-z", roots["nih-cxr14"], options)
    assert any(n.startswith("not scored: chexpert-5's finding(s) Cardiomegaly, Consolidation, Edema, Pleural Effusion")
               for n in data.notes)
    with pytest.raises(DataError, match="test_images='bogus' is neither"):
        load_benchmark("x-to-z", roots["nih-cxr14"], {**options, "test_images": "bogus"})
    with pytest.raises(DataError, match="'paxray-to-jsrt' is itself a transfer"):
        load_benchmark("x-to-w", roots["nih-cxr14"], options)
    made["x-to-w"]["transfer"]["train"] = "paxray"  # a binary target fed by PAXRay++'s mask target
    monkeypatch.setitem(entries, "x-to-w", reg.Entry("benchmarks", "x-to-w", made["x-to-w"], "", "test"))
    with pytest.raises(DataError, match="has 'anatomy' as a mask target; map it onto a binary one"):
        load_benchmark("x-to-w", roots["nih-cxr14"], options)
    with pytest.raises(CxrbenchError, match="--dataset-option views"):
        load_benchmark("x-to-z", roots["nih-cxr14"], {**options, "views": ["PA"]})
