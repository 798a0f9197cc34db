"""RAD-DINO's online augmented probe: reproducible views, a frozen encoder, a learned signal, NaN labels, predict path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from cxrbench.data.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import SpecError
from cxrbench.features.extract import encode_batches
from cxrbench.pipeline import load_benchmark
from cxrbench.specs import PreprocessSpec
from cxrbench.training import AugmentationParams, AugmentationPolicy, AugmentedProbeConfig, train_augmented_probe
from cxrbench.training.augment import view_seed

class RecordingProgress:
    def __init__(self):
        self.tasks, self.advanced, self.notes = [], [], []

    def task(self, description, total):
        self.tasks.append((description, total))
        return self.advanced.append

    def note(self, message):
        self.notes.append(message)


NO_AUGMENTATION = dict(hflip_p=0.0, affine_degrees=0.0, affine_shear=0.0, crop_scale=(1.0, 1.0), brightness=0.0,
                       contrast=0.0, noise_std=0.0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """32-64 px images gain nothing from intra-op threads, and on a busy 2-core machine their spin-waits cost more
    than the work (measured: 4x the CPU time under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vindr(vindr_root):
    spec, data = load_benchmark("vindr", vindr_root, {})
    train = (data.samples["split"] == "train").to_numpy()
    return spec, data, train


@pytest.fixture(scope="module")
def pixels():
    return build_encoder("pixels", None, None, None)


def test_views_are_reproducible_change_pixels_and_differ_across_epochs(vindr, pixels):
    _, data, _ = vindr
    image = read_image(data.samples["path"][0])
    policy = AugmentationPolicy(AugmentationParams(), pixels.preprocessing)
    rng_before = torch.get_rng_state()
    first, again = policy(image, view_seed(7, 0, 0)), policy(image, view_seed(7, 0, 0))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() <= 1.0
    plain = pixels.preprocessor(image)
    views = [pixels.preprocessor(policy(image, view_seed(7, epoch, 0))) for epoch in range(4)]
    for view in views:  # the encoder's input changes, with the encoder's own preprocessing still applied
        assert view.shape == plain.shape and (view - plain).abs().mean() > 0.05
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.equal(views[a], views[b])
    assert not np.array_equal(first, policy(image, view_seed(8, 0, 0)))  # another run seed, another view
    assert not np.array_equal(first, policy(image, view_seed(7, 0, 1)))  # another image index, another stream


def test_each_augmentation_is_wired():
    image = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    flip = AugmentationPolicy(AugmentationParams(**{**NO_AUGMENTATION, "hflip_p": 1.0, "work_side": None}))
    np.testing.assert_array_equal(flip(image, 1), image[:, ::-1])
    noise = AugmentationPolicy(AugmentationParams(**{**NO_AUGMENTATION, "noise_std": 0.01, "noise_p": 1.0, "work_side": None}))
    assert 0.005 < np.abs(noise(image, 1) - image).mean() < 0.012
    off = AugmentationPolicy(AugmentationParams(enabled=False))
    np.testing.assert_array_equal(off(image, 1), image)
    big = np.random.default_rng(1).random((600, 500)).astype(np.float32)
    spec = PreprocessSpec(size=64, crop=56)
    assert AugmentationPolicy(AugmentationParams(), spec)(big, 1).shape == (76, 64)  # shorter edge to what the encoder keeps


def test_params_dict_and_refusals():
    config = AugmentedProbeConfig.from_params({"lr": 1e-3, "epochs": 3, "noise_std": 0.02, "crop_scale": [0.7, 1.0]})
    assert (config.lr, config.epochs, config.batch_size, config.weight_decay) == (1e-3, 3, 96, 0.01)
    assert config.augmentation.noise_std == 0.02 and config.augmentation.crop_scale == (0.7, 1.0)
    assert AugmentedProbeConfig().lr == 5e-5 and AugmentedProbeConfig().epochs == 100
    assert AugmentedProbeConfig(augmentation={"noise_p": 1.0}).augmentation.noise_p == 1.0
    with pytest.raises(SpecError, match="no parameter"):
        AugmentedProbeConfig.from_params({"learning_rate": 1e-3})
    with pytest.raises(SpecError, match="probability"):
        AugmentedProbeConfig.from_params({"hflip_p": 2.0})


def test_probe_learns_cardiomegaly_and_is_deterministic(vindr, pixels):
    spec, data, train = vindr
    labels, paths = data.labels(), data.samples["path"].to_numpy()
    config = AugmentedProbeConfig(lr=1e-2, epochs=5, batch_size=32, seed=0)
    probe = train_augmented_probe(pixels, paths[train], labels[train], paths[~train][:30], labels[~train][:30], config)
    scores = probe.predict(pixels, paths[~train])
    task = spec.tasks.index("Cardiomegaly")
    truth = labels[~train][:, task]
    prevalence = truth.mean()
    assert average_precision_score(truth, scores[:, task]) > 3 * prevalence
    assert set(probe.history) >= {"train_loss", "val_loss"} and len(probe.history["train_loss"]) == 5
    assert probe.history["train_loss"][-1] < probe.history["train_loss"][0]
    assert all(np.isfinite(probe.history["val_loss"]))
    assert probe.report.chosen["checkpoint"] == "last" and probe.report.chosen["steps"] == 5 * -(-int(train.sum()) // 32)

    # same seed, same probe, whether the views are drawn in the main process or in two workers
    subset = np.flatnonzero(train)[:48]
    short = dataclasses.replace(config, epochs=1, batch_size=16)
    one = train_augmented_probe(pixels, paths[subset], labels[subset], [], labels[:0], short)
    two = train_augmented_probe(pixels, paths[subset], labels[subset], [], labels[:0], dataclasses.replace(short, num_workers=2))
    torch.testing.assert_close(one.layer.weight, two.layer.weight, rtol=0, atol=0)
    assert one.history["train_loss"] == two.history["train_loss"]
    other = train_augmented_probe(pixels, paths[subset], labels[subset], [], labels[:0], dataclasses.replace(short, seed=1))
    assert not torch.equal(one.layer.weight, other.layer.weight)


def test_unknown_labels_are_ignored(vindr, pixels):
    _, data, train = vindr
    subset = np.flatnonzero(train)[:64]
    paths, labels = data.samples["path"].to_numpy()[subset], data.labels()[subset]
    labels[np.random.default_rng(0).random(labels.shape) < 0.3] = np.nan
    with_unknown_task = np.concatenate([labels, np.full((len(labels), 1), np.nan, dtype=np.float32)], axis=1)
    config = AugmentedProbeConfig(lr=1e-2, weight_decay=0.0, epochs=2, batch_size=16)
    progress = RecordingProgress()
    probe = train_augmented_probe(pixels, paths, with_unknown_task, paths[:8], with_unknown_task[:8], config, progress=progress)
    epoch_tasks = [t for t in progress.tasks if "epoch" in t[0]]
    assert [total for _, total in epoch_tasks] == [64, 64] and "epoch 2/2" in epoch_tasks[-1][0]
    assert sum(progress.advanced) >= 2 * 64
    reference = train_augmented_probe(pixels, paths, labels, paths[:8], labels[:8], config)
    assert np.isfinite(probe.history["train_loss"]).all() and np.isfinite(probe.history["val_loss"]).all()
    # a task without a single known label gets no gradient: its bias stays at its zero start ...
    assert probe.layer.bias[-1].item() == 0.0
    # ... and the other tasks train exactly as if it did not exist
    torch.testing.assert_close(probe.layer.weight[:-1], reference.layer.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probe.layer.bias[:-1], reference.layer.bias, rtol=1e-5, atol=1e-6)
    assert probe.history["train_loss"] == pytest.approx(reference.history["train_loss"], rel=1e-5)


def test_encoder_stays_frozen_and_predict_matches_normal_features(vindr):
    _, data, train = vindr
    encoder = build_encoder("dinov2-small", "random", None, 56)
    model = encoder.model
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    model.train().requires_grad_(True)  # whatever the caller left it in, training must freeze it
    subset = np.flatnonzero(train)[:32]
    paths, labels = data.samples["path"].to_numpy()[subset], data.labels()[subset]
    config = AugmentedProbeConfig(lr=1e-3, epochs=1, batch_size=16, standardize=True)
    probe = train_augmented_probe(encoder, paths, labels, paths[:8], labels[:8], config)

    assert not model.training
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert not probe.layer.weight.requires_grad

    test_paths = data.samples["path"].to_numpy()[~train][:12]
    scores = probe.predict(encoder, test_paths, batch_size=5)
    batches = list(encode_batches(encoder, FeatureRequest(global_embedding=True), list(test_paths), batch_size=5))
    assert [i for positions, _ in batches for i in positions] == list(range(12))
    features = torch.from_numpy(np.concatenate([arrays["global"] for _, arrays in batches]))
    expected = torch.sigmoid(((features - probe.mean) / probe.std) @ probe.layer.weight.T + probe.layer.bias)
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-6, atol=1e-7)
    assert scores.shape == (12, len(data.tasks)) and scores.dtype == np.float64
