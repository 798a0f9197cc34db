"""The online source: the frozen encoder on augmented views, trained on by the same heads, loop and optimiser as
cached features (RAD-DINO's own probe is `linear-augmented`). Reproducible views, a frozen encoder, a learned
signal, NaN labels, determinism across decoding workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from cxrbench.data.common.images import read_image
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import SpecError
from cxrbench.features.extract import encode_batches
from cxrbench.heads.base import FeatureSet
from cxrbench.heads.linear import LinearProbe
from cxrbench.progress import SilentProgress
from cxrbench.registry import head_spec
from cxrbench.specs import PreprocessSpec
from cxrbench.study import load_benchmark
from cxrbench.training.augment import AugmentationParams, AugmentationPolicy, view_seed
from cxrbench.training.online import ImageViews, OnlineBatches, augmentation_policy


class RecordingProgress:
    def __init__(self):
        self.tasks, self.advanced, self.notes = [], [], []

    def task(self, description, total, transient=False):
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


def online_probe(encoder, paths, labels, seed=0, workers=0, progress=None, **params):
    """RAD-DINO's probe (heads/linear-augmented.yaml) with `params` overridden, trained online on `paths`; returns the
    probe, its fit report and the source."""
    probe = LinearProbe(head_spec("linear-augmented"), params)
    progress = progress or SilentProgress()
    views = ImageViews(list(paths), augmentation_policy(probe.params["augmentation"], encoder, "test"), encoder.preprocessor, seed)
    source = OnlineBatches(encoder, views, num_workers=workers, progress=progress)
    cached = FeatureSet(np.zeros((len(paths), encoder.embed_dim), np.float32), labels)  # statistics unused (standardize off)
    report = probe.fit(cached, FeatureSet(cached.global_[:0], labels[:0]), seed, progress, source)
    return probe, report, source


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


def test_augmentation_parameters_are_checked_naming_the_head(pixels):
    probe = LinearProbe(head_spec("linear-augmented"), {"augmentation": {"noise_std": 0.02, "crop_scale": [0.7, 1.0]}})
    policy = augmentation_policy(probe.params["augmentation"], pixels, "Head 'linear-augmented'")
    assert policy.params.noise_std == 0.02 and policy.params.crop_scale == (0.7, 1.0)
    spec = head_spec("linear-augmented").params
    assert (spec["lr"], spec["epochs"], spec["batch_size"], spec["weight_decay"], spec["min_steps"]) == (5e-5, 100, 96, 0.01, 0)
    with pytest.raises(SpecError, match="Head 'x': augmentation: Unknown augmentation parameter"):
        augmentation_policy({"flip": 1.0}, pixels, "Head 'x'")
    with pytest.raises(SpecError, match="probability"):
        augmentation_policy({"hflip_p": 2.0}, pixels, "Head 'x'")
    with pytest.raises(SpecError, match="must be a mapping"):
        LinearProbe(head_spec("linear-augmented"), {"augmentation": 3})


def test_probe_learns_cardiomegaly_and_is_deterministic(vindr, pixels):
    spec, data, train = vindr
    labels, paths = data.labels(), data.samples["path"].to_numpy()
    probe, report, _ = online_probe(pixels, paths[train], labels[train], lr=1e-2, epochs=5, batch_size=32)
    features = np.concatenate([a["global"] for _, a in encode_batches(pixels, FeatureRequest(), list(paths[~train]))])
    scores = probe.predict(FeatureSet(features, labels[~train]))
    task = spec.tasks.index("Cardiomegaly")
    truth = labels[~train][:, task]
    assert average_precision_score(truth, scores[:, task]) > 3 * truth.mean()
    assert len(report.history["train_loss"]) == 5 and report.history["train_loss"][-1] < report.history["train_loss"][0]
    assert report.chosen["checkpoint"] == "last" and report.chosen["steps"] == 5 * -(-int(train.sum()) // 32)

    # same seed, same probe, whether the views are drawn in the main process or in two workers
    subset = np.flatnonzero(train)[:48]
    one, first, _ = online_probe(pixels, paths[subset], labels[subset], lr=1e-2, epochs=1, batch_size=16)
    two, second, _ = online_probe(pixels, paths[subset], labels[subset], workers=2, lr=1e-2, epochs=1, batch_size=16)
    torch.testing.assert_close(one.layer.weight, two.layer.weight, rtol=0, atol=0)
    assert first.history["train_loss"] == second.history["train_loss"]
    other, _, _ = online_probe(pixels, paths[subset], labels[subset], seed=1, lr=1e-2, epochs=1, batch_size=16)
    assert not torch.equal(one.layer.weight, other.layer.weight)


def test_unknown_labels_are_ignored_and_every_epoch_shows_progress(vindr, pixels):
    _, data, train = vindr
    subset = np.flatnonzero(train)[:64]
    paths, labels = data.samples["path"].to_numpy()[subset], data.labels()[subset]
    labels[np.random.default_rng(0).random(labels.shape) < 0.3] = np.nan
    with_unknown_task = np.concatenate([labels, np.full((len(labels), 1), np.nan, dtype=np.float32)], axis=1)
    progress = RecordingProgress()
    params = dict(lr=1e-2, weight_decay=0.0, epochs=2, batch_size=16)
    probe, report, _ = online_probe(pixels, paths, with_unknown_task, progress=progress, **params)
    image_bars = [t for t in progress.tasks if "online features" in t[0]]
    assert [total for _, total in image_bars] == [64, 64] and "epoch 2" in image_bars[-1][0]
    assert sum(progress.advanced) >= 2 * 64
    assert np.isfinite(report.history["train_loss"]).all()
    # a task without a single known label gets no gradient: its weights and bias stay at their seeded start
    torch.manual_seed(0)
    start = torch.nn.Linear(pixels.embed_dim, with_unknown_task.shape[1])
    torch.nn.init.normal_(start.weight, std=0.01)
    torch.testing.assert_close(probe.layer.weight[-1], start.weight[-1], rtol=0, atol=0)
    assert probe.layer.bias[-1].item() == 0.0
    assert not torch.equal(probe.layer.weight[0], start.weight[0])  # the others trained


def test_encoder_stays_frozen(vindr):
    _, data, train = vindr
    encoder = build_encoder("dinov2-small", "random", None, 56)
    model = encoder.model
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    model.train().requires_grad_(True)  # whatever the caller left it in, training must freeze it
    subset = np.flatnonzero(train)[:32]
    paths, labels = data.samples["path"].to_numpy()[subset], data.labels()[subset]
    probe, _, source = online_probe(encoder, paths, labels, lr=1e-3, epochs=1, batch_size=16)
    assert not model.training
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert source.describe()["features"] == "online"


def test_the_online_source_feeds_what_the_encoder_gives_an_augmented_view(vindr, pixels):
    """One batch of the source equals the encoder on the policy's view of each image for that epoch."""
    _, data, train = vindr
    paths = list(data.samples["path"].to_numpy()[train][:6])
    policy = AugmentationPolicy(AugmentationParams(), pixels.preprocessing)
    source = OnlineBatches(pixels, ImageViews(paths, policy, pixels.preprocessor, seed=3))
    batch = np.array([4, 1, 2])
    (inputs,) = list(source.epoch([batch], 2, ("global",)))
    expected = torch.stack([pixels.preprocessor(policy(read_image(paths[i]), view_seed(3, 2, int(i)))) for i in batch])
    torch.testing.assert_close(inputs["global"], pixels.encode(expected, FeatureRequest()).global_embedding)
