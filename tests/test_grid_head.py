"""The grid engine: heads trained together behave as if trained alone, attentive pooling finds a planted lesion,
RayDINO's 156-configuration grid trains and is selected on validation, and the CE / SMAPE losses are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrbench.errors import DataError, SpecError
from cxrbench.features.cache import FeatureStore
from cxrbench.heads.base import FeatureSet
from cxrbench.heads.grid import GridHead, expand_grid
from cxrbench.heads.losses import masked_cross_entropy, masked_smape
from cxrbench.heads.stacked import StackedDecoders, StackedSGD
from cxrbench.registry import registry
from cxrbench.specs import HeadSpec

SIDE, DIM = 6, 16


def planted(n: int, rng: np.random.Generator, strength: float = 4.0) -> tuple[FeatureSet, np.ndarray]:
    """Noise tokens; positives carry a lesion direction at one random patch (returned), invisible in the mean."""
    tokens = rng.normal(size=(n, SIDE, SIDE, DIM)).astype(np.float32)
    labels = (rng.random(n) < 0.5).astype(np.float32)
    where = rng.integers(0, SIDE, size=(n, 2))
    for i in np.flatnonzero(labels):
        tokens[i, where[i, 0], where[i, 1], 0] += strength
    return FeatureSet(tokens.mean(axis=(1, 2)), labels[:, None], tokens), where


def _head(name: str, **overrides) -> GridHead:
    return GridHead(registry().get("heads", name).spec, overrides, "binary", "auprc")


def test_stacked_sgd_equals_torch_sgd_per_head():
    generator = torch.Generator().manual_seed(0)
    lr, wd = torch.tensor([0.05, 0.2, 0.01]), torch.tensor([0.0, 1e-2, 1e-3])
    for pooling, depth in (("cls", 2), ("attentive", 2), ("attentive", 1)):
        stacked = StackedDecoders(pooling, depth, 3, 8, 2, 5, generator)
        with torch.no_grad():
            for p in stacked.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)  # queries away from zero
        singles = []
        for h in range(3):
            single = StackedDecoders(pooling, depth, 1, 8, 2, 5, generator)
            single.load_state_dict({k: v[h : h + 1].clone() for k, v in stacked.state_dict().items()})
            decayed = {id(p) for p in single.decayed()}
            groups = [{"params": [p for p in single.parameters() if id(p) in decayed], "weight_decay": float(wd[h])},
                      {"params": [p for p in single.parameters() if id(p) not in decayed], "weight_decay": 0.0}]
            singles.append((single, torch.optim.SGD(groups, lr=float(lr[h]), momentum=0.9)))
        optimizer = StackedSGD(stacked, lr, wd, 0.9)
        for _ in range(4):
            tokens = torch.randn(5, 9, 8, generator=generator)
            inputs = {"cls": tokens[:, 0], "avg": tokens.mean(1), "tokens": tokens}
            target = torch.randint(0, 2, (5, 2), generator=generator).float()
            optimizer.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(
                stacked(inputs), target.expand(3, -1, -1), reduction="none").mean(dim=(1, 2)).sum().backward()
            optimizer.step(0.7)
            for single, reference in singles:
                reference.zero_grad()
                torch.nn.functional.binary_cross_entropy_with_logits(single(inputs)[0], target).backward()
                for group in reference.param_groups:
                    group["lr"] = group.setdefault("base_lr", group["lr"]) * 0.7
                reference.step()
                for group in reference.param_groups:
                    group["lr"] = group["base_lr"]
        for h, (single, _) in enumerate(singles):
            for name, value in single.state_dict().items():
                torch.testing.assert_close(value[0], stacked.state_dict()[name][h], rtol=1e-5, atol=1e-6)


def test_attentive_pooling_attends_to_the_planted_lesion():
    rng = np.random.default_rng(0)
    (train, _), (val, _), (test, where) = planted(600, rng), planted(200, rng), planted(200, rng)
    head = _head("attentive", epochs=60, min_steps=0, lr=[0.1, 0.3])
    head.fit(train, val, seed=0)
    maps = head.attention_maps(test)
    assert maps.shape == (200, 1, SIDE, SIDE)
    np.testing.assert_allclose(maps.sum(axis=(2, 3)), 1.0, rtol=1e-5)
    positive = test.labels[:, 0] == 1
    peak = maps[:, 0].reshape(len(maps), -1).argmax(axis=1)
    assert (peak == where[:, 0] * SIDE + where[:, 1])[positive].mean() > 0.9
    assert average_precision_score(test.labels[:, 0], head.predict(test)[:, 0]) > 0.9
    # the mean token hides the lesion: average pooling cannot find it
    avg = _head("avgpool", epochs=60, min_steps=0)
    avg.fit(train, val, seed=0)
    assert roc_auc_score(test.labels[:, 0], avg.predict(test)[:, 0]) < 0.75


def test_raydino_grid_is_156_heads_selected_on_validation():
    head = _head("raydino-grid", epochs=2, min_steps=0)
    assert len(head.configs) == 156
    assert {(c.pooling, c.depth) for c in head.configs} == {("attentive", 1), ("attentive", 2), ("avg", 1), ("avg", 2)}
    rng = np.random.default_rng(1)
    train, val = planted(200, rng)[0], planted(100, rng)[0]
    report = head.fit(train, val, seed=3)
    assert len(report.table) == 156 and report.chosen["grid_size"] == 156
    best = max(report.table, key=lambda row: row["val_auprc"])
    assert report.chosen["config"] == best["config"]
    chosen = next(row for row in report.table if row["config"] == report.chosen["config"])
    predictions = head.predict(val)
    assert average_precision_score(val.labels[:, 0], predictions[:, 0]) == pytest.approx(chosen["val_auprc"], abs=1e-6)


def test_lazily_read_cached_patches_give_the_same_head(tmp_path):
    rng = np.random.default_rng(2)
    train, val = planted(120, rng)[0], planted(60, rng)[0]
    store = FeatureStore.open(tmp_path, {"encoder": "toy", "v": 1})
    keys = [f"k{i}" for i in range(180)]
    for start in range(0, 180, 50):  # several shards
        store.write_shard(keys[start : start + 50], {"patches": np.concatenate([train.patches, val.patches])[start : start + 50]})
    rows = store.rows(keys, "patches")
    mask = np.arange(180) < 120
    lazy_train = FeatureSet(train.global_, train.labels, rows.select(mask))
    lazy_val = FeatureSet(val.global_, val.labels, rows.select(~mask))
    # the store keeps float16: compare against the same rounding in memory
    eager_train = FeatureSet(train.global_, train.labels, train.patches.astype(np.float16).astype(np.float32))
    eager_val = FeatureSet(val.global_, val.labels, val.patches.astype(np.float16).astype(np.float32))
    lazy, eager = _head("attentive", epochs=3, min_steps=0), _head("attentive", epochs=3, min_steps=0)
    lazy.fit(lazy_train, lazy_val, seed=0)
    eager.fit(eager_train, eager_val, seed=0)
    np.testing.assert_allclose(lazy.predict(lazy_val), eager.predict(eager_val), rtol=1e-5, atol=1e-6)


def test_mlp_head_learns_a_nonlinear_rule_on_global_features():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1500, 8)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float32)[:, None]  # XOR of signs: no linear head can do it
    train, val, test = (FeatureSet(x[s], y[s]) for s in (slice(0, 1000), slice(1000, 1250), slice(1250, None)))
    mlp, linear = _head("mlp", epochs=40, min_steps=0), _head("mlp", depth=1, epochs=40, min_steps=0)
    for head in (mlp, linear):
        head.fit(train, val, seed=0)
    assert mlp.needs == ("global",)
    assert roc_auc_score(test.labels[:, 0], mlp.predict(test)[:, 0]) > 0.9
    assert roc_auc_score(test.labels[:, 0], linear.predict(test)[:, 0]) < 0.65


def test_cross_entropy_and_smape_losses():
    logits = torch.randn(2, 5, 3)
    labels = torch.eye(3)[torch.tensor([0, 2, 1, 1, 0])]
    labels[3] = float("nan")
    expected = torch.stack([torch.nn.functional.cross_entropy(l[[0, 1, 2, 4]], torch.tensor([0, 2, 1, 0])) for l in logits])
    torch.testing.assert_close(masked_cross_entropy(logits, labels), expected)
    predictions, targets = torch.tensor([[1.0, 3.0], [2.0, -1.0]]), torch.tensor([[2.0, float("nan")], [2.0, 1.0]])
    expected = (abs(1 - 2) / 1.5 + 0 / 2 + abs(-1 - 1) / 1) / 3
    assert float(masked_smape(predictions, targets)) == pytest.approx(expected)


def test_multiclass_and_regression_heads_train_with_their_losses():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(900, 6)).astype(np.float32)
    classes = np.argmax(x[:, :3], axis=1)
    onehot = np.eye(3, dtype=np.float32)[classes]
    spec = HeadSpec("g", "grid", {"pooling": "cls", "depth": 1, "lr": [0.01, 0.1], "epochs": 30, "min_steps": 0})
    head = GridHead(spec, kind="multiclass", selection="balanced_accuracy")
    assert head.loss == "ce"
    report = head.fit(FeatureSet(x[:600], onehot[:600]), FeatureSet(x[600:750], onehot[600:750]), seed=0)
    assert "val_loss" in report.table[0]
    probabilities = head.predict(FeatureSet(x[750:], onehot[750:]))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == classes[750:]).mean() > 0.85
    angles = (20 + 10 * x[:, :1] + 5 * x[:, 1:2]).astype(np.float32)  # positive targets, like Cobb angles
    head = GridHead(HeadSpec("g", "grid", {**spec.params, "depth": 2}), kind="regression", selection="pearson_r")
    head.fit(FeatureSet(x[:600], angles[:600]), FeatureSet(x[600:750], angles[600:750]), seed=0)
    predicted = head.predict(FeatureSet(x[750:], angles[750:]))
    assert np.corrcoef(predicted[:, 0], angles[750:, 0])[0, 1] > 0.9


def test_grid_spec_errors_name_the_key():
    with pytest.raises(SpecError, match="pooling 'max'"):
        expand_grid({"pooling": ["avg", "max"], "depth": 1, "lr": 0.1, "weight_decay": 0.0}, "heads/x.yaml")
    with pytest.raises(SpecError, match="depth 3"):
        expand_grid({"pooling": "avg", "depth": [3], "lr": 0.1, "weight_decay": 0.0}, "heads/x.yaml")
    with pytest.raises(SpecError, match=r"lr=-1 must be a finite number > 0"):
        _head("attentive", lr=[1e-3, -1])
    with pytest.raises(SpecError, match="not regression ones"):
        registry().get("heads", "logistic").load()(registry().get("heads", "logistic").spec, kind="regression")
    with pytest.raises(DataError, match="no patch grid"):
        _head("attentive").fit(FeatureSet(np.zeros((4, 2)), np.zeros((4, 1))), FeatureSet(np.zeros((0, 2)), np.zeros((0, 1))), 0)


def test_selection_falls_back_to_validation_loss_when_no_task_can_be_ranked():
    rng = np.random.default_rng(6)
    train = planted(200, rng)[0]
    val = planted(40, rng)[0]
    val.labels[:] = 0.0  # no positive in validation: AUPRC undefined for every configuration
    head = _head("avgpool", epochs=3, min_steps=0)
    report = head.fit(train, val, seed=0)
    assert report.chosen["selected_by"] == "validation loss"
    assert report.chosen["config"] == min(report.table, key=lambda row: row["val_loss"])["config"]
    with pytest.raises(DataError, match="no labelled image"):
        head.fit(train, FeatureSet(val.global_[:0], val.labels[:0], val.patches[:0]), seed=0)


def test_standardisation_statistics_come_from_the_whole_training_split():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 5)).astype(np.float32) * np.array([1, 10, 0.1, 1, 1], dtype=np.float32)
    x[:, 3] = 2.0  # constant: scale 1, not 1/1e-6
    few = FeatureSet(x[:2], np.array([[0.0], [1.0]], dtype=np.float32), standardise_on=FeatureSet(x, np.full((300, 1), np.nan)))
    head = _head("mlp", epochs=1, min_steps=0, lr=0.1)
    head.fit(few, FeatureSet(x[:0], np.zeros((0, 1), np.float32)), seed=0)
    np.testing.assert_allclose(head._scale_global.mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(head._scale_global.std.numpy()[[0, 1, 2, 4]], x.std(0)[[0, 1, 2, 4]], rtol=1e-4)
    assert head._scale_global.std[3] == 1.0


def test_cls_plus_avg_pooling_is_a_linear_layer_on_the_concatenated_inputs():
    """`cls+avg` (DINOv2's linear evaluation with average pooling): logits = [std(cls), mean(std(tokens))] W + b,
    recomputed here by hand from the head's weights and standardisers; linear-dinov2 grids lr x blocks {1, 4} x
    {cls, cls+avg} (the 4-block inputs: tests/test_cls_layers.py)."""
    rng = np.random.default_rng(4)
    train, _ = planted(64, rng)
    train.global_ = rng.normal(size=(64, 10)).astype(np.float32) * 3 + 1  # a global embedding of another width
    head = _head("linear-dinov2", lr=[1e-2], pooling=["cls+avg"], blocks=1, epochs=2, min_steps=0)
    head.fit(train, FeatureSet(train.global_[:0], train.labels[:0], train.patches[:0]), seed=0)
    module, _ = head.families[("cls+avg", 1, 1)]
    cls = (train.global_ - head._scale_global.mean.numpy()) / head._scale_global.std.numpy()
    tokens = (train.patches - head._scale_tokens.mean.numpy()) / head._scale_tokens.std.numpy()
    inputs = np.concatenate([cls, tokens.reshape(64, -1, DIM).mean(axis=1)], axis=1)
    logits = inputs @ module.out_w[0].detach().numpy() + module.out_b[0].detach().numpy()
    np.testing.assert_allclose(head.predict(train), 1 / (1 + np.exp(-logits)), atol=1e-5)
    full = _head("linear-dinov2")
    assert len(full.configs) == 52 and {c.pooling for c in full.configs} == {"cls", "cls+avg"}
    assert {c.depth for c in full.configs} == {1}
