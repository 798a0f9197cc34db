"""Segmentation end to end: decoders on cached features of synthetic folders in the released layouts (JSRT + SCR of
radiographs projected from one real CT, SIIM-ACR), masks carried through each encoder's preprocessing geometry, per-case
Dice that MONAI recomputes from the stored masks, and the errors a user meets first."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.metrics import DiceMetric
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.encoders.geometry import training_targets
from cxrbench.encoders.geometry import InputGeometry
from cxrbench.evaluations.masks import to_mask_grid
from cxrbench.evaluations.segmentation import read_predicted_masks
from cxrbench.metrics.segmentation import per_case_values
from cxrbench.registry import registry
from cxrbench.specs import PreprocessSpec
from cxrbench.study import load_benchmark

runner = CliRunner()


def _message(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def jsrt_root(tmp_path_factory) -> Path:
    """Radiographs projected from one real CT with its projected labels (no drawn shapes): 12 train, 12 test poses."""
    from cxrbench.data.jsrt.phantom import write_anatomy_jsrt

    return write_anatomy_jsrt(tmp_path_factory.mktemp("seg") / "jsrt", images=24, seed=1)


@pytest.fixture(scope="module")
def jsrt_run(jsrt_root, tmp_path_factory) -> Path:
    """UPerNet on four blocks of a randomly initialised ViT-S (112 px: 8 x 8 patches), trained from cached features."""
    work = tmp_path_factory.mktemp("seg-run")
    result = runner.invoke(app, ["run", "jsrt", "--encoder", "dinov2-small", "--weights", "random", "--image-size", "112",
                                 "--data-root", str(jsrt_root), "--out", str(work / "out"), "--cache-dir", str(work / "cache"),
                                 "--seeds", "1", "--head", "upernet", "--bootstrap", "100", "--head-param", "epochs=40",
                                 "--head-param", "batch_size=4", "--head-param", "channels=64", "--head-param", "lr=0.001"])
    assert result.exit_code == 0, result.output
    return work / "out" / "jsrt" / "dinov2-small" / "upernet"


def _blind_prior_dice(data, run: Path) -> dict[str, float]:
    """Mean test Dice of an image-blind predictor: the training masks' pixel-wise majority, on the run's own split
    (seed 0). All images show one person in slightly different poses, so this prior is strong; a decoder must beat it
    to have used the pixels."""
    splits = pd.read_parquet(run / "splits.parquet")
    splits = splits[splits["seed"] == 0]
    train = np.stack([data.mask_reader("anatomy", i) for i in splits.loc[splits["split"] == "train", "image_id"]])
    prior = train.mean(axis=0) >= 0.5
    test = [data.mask_reader("anatomy", i) for i in splits.loc[splits["split"] == "test", "image_id"]]
    scores = [[2 * (p & r).sum() / (p.sum() + r.sum()) for p, r in zip(prior, reference)] for reference in test]
    return dict(zip(data.target("anatomy").structures, np.mean(scores, axis=0)))


def test_a_decoder_on_random_vit_features_segments_projected_anatomy(jsrt_run, jsrt_root):
    metrics = json.loads((jsrt_run / "metrics.json").read_text())
    dice = {k: v["mean"] for k, v in metrics["metrics"]["dice"].items()}
    _, data = load_benchmark("jsrt", jsrt_root, {})
    blind = _blind_prior_dice(data, jsrt_run)
    for structure in ("right_lung", "heart"):
        assert dice[structure] > max(0.85, blind[structure] + 0.02), (structure, dice, blind)
    assert metrics["heads"]["0"]["masks"]["chosen"]["trainable_parameters"] > 0
    assert metrics["run_identity"]["synthetic_data"] is True
    # RayDINO's JSRT split: 20% of the 24 images test, selection on the training images (a finite validation loss)
    assert len(list((jsrt_run / "overlays").glob("*.png"))) == 5
    assert np.isfinite(metrics["heads"]["0"]["masks"]["final_val_loss"])


def test_stored_dice_equals_monai_recomputed_from_the_saved_masks(jsrt_run, jsrt_root):
    """Per case and structure, on the reference masks' own 1024 x 1024 grid (SCR), not the encoder's input."""
    _, data = load_benchmark("jsrt", jsrt_root, {})
    predicted = read_predicted_masks(jsrt_run / "masks" / "seed-0.npz")
    stored = pd.read_parquet(jsrt_run / "predictions.parquet")
    structures = data.target("anatomy").structures
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    assert set(predicted) == set(stored["image_id"])
    for image_id, mask in predicted.items():
        reference = data.mask_reader("anatomy", image_id)
        assert mask.shape == reference.shape == (5, 1024, 1024)
        expected = metric(torch.from_numpy(mask[None]).double(), torch.from_numpy(reference[None]).double())[0].numpy()
        rows = stored[stored["image_id"] == image_id].set_index("task").loc[list(structures)]
        np.testing.assert_allclose(rows["dice"].to_numpy(), expected, atol=1e-6)
    summary = json.loads((jsrt_run / "metrics.json").read_text())["metrics"]["dice"]
    for structure in structures:
        assert summary[structure]["mean"] == pytest.approx(stored.loc[stored["task"] == structure, "dice"].mean(), abs=1e-12)


def test_the_ci_check_recomputes_a_segmentation_run_from_its_predictions(jsrt_run, tmp_path):
    """`cxrbench table --all --check` scores mask targets once per structure, as the run did; an edited per-case Dice
    is caught."""
    from cxrbench.analyses.check import metric_drift, recompute
    from cxrbench.results.store import stored_runs

    copy = tmp_path / "jsrt" / "dinov2-small" / "upernet"
    copy.mkdir(parents=True)
    for name in ("metrics.json", "predictions.parquet"):
        shutil.copy(jsrt_run / name, copy / name)
    [run] = stored_runs(tmp_path, "jsrt")
    assert metric_drift(run, recompute(run)) == []
    frame = pd.read_parquet(copy / "predictions.parquet")
    frame.loc[frame["task"] == "heart", "dice"] *= 0.5
    frame.to_parquet(copy / "predictions.parquet", index=False)
    drift = metric_drift(run, recompute(run))
    assert any("metrics.dice.heart.mean" in line for line in drift), drift


def test_empty_mask_policies_are_separate_metrics():
    """Dice on cases with the structure, the Kaggle convention over all cases, and the detection rate."""
    from cxrbench.registry import metric

    reference = np.zeros((3, 1, 16, 16), dtype=bool)
    predicted = np.zeros_like(reference)
    reference[0, 0, 2:8, 2:8] = predicted[0, 0, 4:8, 2:8] = True  # found, half the area: Dice 2*24/(36+24) = 0.8
    predicted[2, 0, 0:2, 0:2] = True  # a false positive on an empty case
    values = [per_case_values(p, r) for p, r in zip(predicted, reference)]
    labels = np.array([r.any() for r in reference], dtype=float)
    column = {name: np.array([v[name][0] for v in values]) for name in ("dice", "dice_empty_is_1", "predicted")}
    for name, expected in (("dice", 0.8), ("dice_empty_is_1", (0.8 + 1 + 0) / 3), ("detection_rate", 1.0)):
        scorer = metric(name)
        keep = scorer.selects(labels, column[scorer.case_value])
        assert scorer.score(labels[keep], column[scorer.case_value][keep]) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("preprocessing", [
    PreprocessSpec(size=96, resize="shortest_edge", crop=96),  # crops the long side
    PreprocessSpec(size=96, resize="square", letterbox=96),    # letterbox margins
])
def test_masks_follow_the_encoder_geometry_there_and_back(preprocessing):
    """A mask taken to an encoder's loss grid and its coverage resampled back lands where it was (crop, letterbox)."""
    height, width = 300, 240
    geometry = InputGeometry.from_spec(preprocessing, height, width)
    yy, xx = np.mgrid[0:150, 0:120]
    mask = (((yy - 80) / 40.0) ** 2 + ((xx - 60) / 30.0) ** 2 < 1)[None]  # on a half-resolution grid, like SCR's
    covered = geometry.input
    coverage = training_targets(mask, geometry, covered, (covered[0] // 2, covered[1] // 2))
    logits = torch.logit(torch.from_numpy(coverage).clamp(1e-4, 1 - 1e-4))
    back = torch.sigmoid(to_mask_grid(logits, geometry, covered, mask.shape[1:])).numpy() > 0.5
    dice = 2 * (back & mask).sum() / (back.sum() + mask.sum())
    assert dice > 0.95, dice


def test_siim_runs_with_the_pixels_encoder_and_records_the_empty_cases(tmp_path):
    from cxrbench.data.siim.synthetic import write_synthetic_siim

    root = write_synthetic_siim(tmp_path / "siim", patients=60, size=64)
    result = runner.invoke(app, ["run", "siim-acr", "--encoder", "pixels", "--data-root", str(root), "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1",
                                 "--bootstrap", "50", "--head-param", "epochs=3"])
    assert result.exit_code == 0, result.output
    stored = pd.read_parquet(tmp_path / "out/siim-acr/pixels/seg-linear/predictions.parquet")
    assert set(stored["label"]) == {0.0, 1.0}  # test cases with and without a pneumothorax
    assert stored.loc[stored["label"] == 0, "dice"].isna().all()  # Dice is undefined on them ...
    assert stored["dice_empty_is_1"].notna().all()  # ... the Kaggle convention scores every case
    metrics = json.loads((tmp_path / "out/siim-acr/pixels/seg-linear/metrics.json").read_text())
    assert set(metrics["metrics"]) == {"dice", "dice_empty_is_1", "detection_rate", "hd95"}


def test_a_probe_on_a_mask_benchmark_is_refused_before_any_data_is_read(tmp_path):
    result = runner.invoke(app, ["run", "jsrt", "--encoder", "pixels", "--head", "linear", "--data-root",
                                 str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "is not a segmentation decoder" in _message(result)
    result = runner.invoke(app, ["run", "scoliosis", "--encoder", "pixels", "--head", "upernet", "--data-root",
                                 str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "trains mask targets, not regression ones" in _message(result)


def test_a_mask_that_does_not_cover_its_image_is_named(jsrt_root, tmp_path):
    from PIL import Image

    root = Path(shutil.copytree(jsrt_root, tmp_path / "jsrt", copy_function=os.link))
    gif = next((root / "scratch/fold1/masks/heart").glob("*.gif"))
    for structure in gif.parent.parent.iterdir():  # every mask of one image, another aspect ratio than 2048 x 2048
        (structure / gif.name).unlink()
        Image.fromarray(np.zeros((1024, 700), dtype=np.uint8)).save(structure / gif.name)
    result = runner.invoke(app, ["run", "jsrt", "--encoder", "pixels", "--data-root", str(root), "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1"])
    assert result.exit_code != 0
    text = _message(result)
    assert gif.stem in text and "must cover the image" in text, text
    assert not (tmp_path / "out/jsrt").exists() or not any((tmp_path / "out/jsrt").rglob("metrics.json"))


def test_decoder_heads_are_registered_with_their_protocols():
    heads = {name: registry().get("heads", name).spec.params for name in
             ("seg-linear", "seg-linear-4", "vitdet", "upernet", "upernet-raydino")}
    assert heads["upernet"]["layers"] == "default" and heads["vitdet"]["layers"] == "last"
    assert heads["seg-linear-4"]["layers"] == "last4"
    assert len(heads["upernet-raydino"]["lr"]) == 9 and heads["upernet-raydino"]["iterations"] == 5000


# -- online training: image and masks augmented together -----------------------------------------------------------
def test_an_online_view_moves_its_masks_with_its_image(tmp_path):
    """Image = its own mask (an off-centre ellipse): after affine + elastic draws, the view's pixels and its loss-grid
    targets must still coincide, and differ from the un-augmented targets."""
    from PIL import Image

    from cxrbench.encoders.preprocessing import Preprocessor
    from cxrbench.training.mask_views import MaskAugmentation, MaskViews

    yy, xx = np.mgrid[0:200, 0:160]
    mask = (((yy - 70) / 35.0) ** 2 + ((xx - 100) / 25.0) ** 2 < 1)
    path = tmp_path / "image.png"
    Image.fromarray((mask * 255).astype(np.uint8)).save(path)
    preprocessing = PreprocessSpec(size=64, resize="square", channels=1, mean=(0.0,), std=(1.0,))
    policy = MaskAugmentation(affine_p=1.0, rotate_degrees=30, translate=0.1, elastic_p=1.0, intensity_p=0.0, gamma_p=0.0)
    views = MaskViews([str(path)], lambda index: mask[None], 1, policy, Preprocessor(preprocessing), (64, 64), (16, 16), seed=0)
    still = training_targets(mask[None], InputGeometry.from_spec(preprocessing, 200, 160), (64, 64), (16, 16))[0]
    moved = 0
    for epoch in range(4):
        view = views[(epoch, 0)]
        assert view["error"] == ""
        pixels = torch.nn.functional.avg_pool2d(view["pixels"][None], 4)[0, 0].numpy()
        targets = view["targets"][0].numpy()
        assert np.corrcoef(pixels.ravel(), targets.ravel())[0, 1] > 0.9
        moved += np.abs(targets - still).mean() > 0.01
        np.testing.assert_array_equal(views[(epoch, 0)]["targets"].numpy(), view["targets"].numpy())  # reproducible
    assert moved >= 3


def test_a_flip_is_refused_for_lateral_structures_before_any_data_is_read(tmp_path):
    """(Online training itself runs in test_every_decoder_trains_and_predicts_from_a_vit.)"""
    result = runner.invoke(app, ["run", "jsrt", "--encoder", "pixels", "--data-root", str(tmp_path / "absent"),
                                 "--head-param", "features=online", "--head-param", "augmentation={hflip_p: 0.5}"])
    assert result.exit_code == 2 and "have a side" in _message(result)


def test_rad_dino_table_3_lays_our_decoders_beside_the_papers(tmp_path):
    """Our rows show the spread over test cases, as the paper does; the paper's rows are encoder / decoder pairs."""
    from cxrbench.data.candid.synthetic import write_synthetic_candid_seg
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr_ribcxr

    roots = {"candid-ptx-seg": write_synthetic_candid_seg(tmp_path / "candid", patients=30),
             "vindr-ribcxr": write_synthetic_vindr_ribcxr(tmp_path / "ribs")}
    options = {"candid-ptx-seg": ["--dataset-option", "mask_size=0"], "vindr-ribcxr": []}  # synthetic 64 px images
    for benchmark, root in roots.items():
        result = runner.invoke(app, ["run", benchmark, "--encoder", "pixels", "--data-root", str(root), "--out",
                                     str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "2",
                                     "--bootstrap", "50", "--head-param", "epochs=3", *options[benchmark]])
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["table", "--layout", "rad-dino-3", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "mean ± std over test cases" in _message(result)
    latex = (tmp_path / "out/tables/rad-dino-3.tex").read_text()
    assert latex.count(r"\begin{") == latex.count(r"\end{") and "RAD-DINO / UPerNet" in latex
    table = pd.read_csv(tmp_path / "out/tables/rad-dino-3.csv")
    ours = table[table["source"] == "cxrbench"]
    assert set(ours["column"]) == {"Pneumothorax", "Chest tubes", "Ribs"}
    ribs = json.loads((tmp_path / "out/vindr-ribcxr/pixels/seg-linear/metrics.json").read_text())["metrics"]["dice"]["macro"]
    assert ours.loc[ours["column"] == "Ribs", "std"].iloc[0] == pytest.approx(ribs["case_std"], abs=1e-12)
    published = table[(table["source"] != "cxrbench") & (table["model"] == "RAD-DINO / UPerNet")]
    assert published.set_index("column")["mean"].to_dict() == pytest.approx(
        {"Lungs": 0.98, "Lung zones": 0.912, "Pneumothorax": 0.658, "Chest tubes": 0.719, "Ribs": 0.853})
    assert published.set_index("column").loc["Lungs", "std"] == pytest.approx(0.011)
    from cxrbench.tables.recipes import get_layout

    layout = get_layout("rad-dino-3")
    block = layout.published_block(layout.groups[0], "dice")
    assert block.paper_model("rad-dino", "upernet") == "RAD-DINO / UPerNet"
    assert block.paper_model("rad-dino", "seg-linear [online]") == "RAD-DINO / Linear"
    assert block.paper_model("rad-dino", "upernet-raydino") is None and block.paper_model("dinov2-small", "upernet") is None


@pytest.mark.parametrize("head, features", [("seg-linear-4", "cached"), ("vitdet", "cached"), ("upernet", "online")])
def test_every_decoder_trains_and_predicts_from_a_vit(tmp_path, head, features):
    """The decoders that read a ViT's intermediate blocks or build a pyramid, on SIIM-ACR's layout, cached and online."""
    from cxrbench.data.siim.synthetic import write_synthetic_siim

    root = write_synthetic_siim(tmp_path / "siim", patients=30, size=64)
    result = runner.invoke(app, ["run", "siim-acr", "--encoder", "dinov2-small", "--weights", "random", "--image-size", "56",
                                 "--data-root", str(root), "--out", str(tmp_path / "out"), "--cache-dir",
                                 str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "20", "--head", head,
                                 "--head-param", "epochs=2", "--head-param", "batch_size=8", "--head-param", "channels=32",
                                 "--head-param", f"features={features}"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / f"out/siim-acr/dinov2-small/{head}/metrics.json").read_text())
    chosen = metrics["heads"]["0"]["masks"]["chosen"]
    assert chosen["trainable_parameters"] > 0 and chosen.get("features", "cached") == features
    if features == "online":  # image and masks augmented together, never flipped by default
        assert chosen["augmentation"]["hflip_p"] == 0.0 and chosen["augmentation"]["affine_p"] > 0
    assert metrics["metrics"]["dice_empty_is_1"]["pneumothorax"]["mean"] is not None


def test_paxray_transfer_trains_on_projections_and_scores_the_real_masks(jsrt_root, tmp_path, monkeypatch):
    from cxrbench.data.paxray.synthetic import write_synthetic_paxray

    monkeypatch.delenv("CXRBENCH_JSRT_ROOT", raising=False)
    paxray = write_synthetic_paxray(tmp_path / "paxray", volumes=12)
    _, data = load_benchmark("paxray-to-jsrt", paxray, {"test_root": str(jsrt_root)})
    samples = data.samples
    assert set(samples.loc[samples["split"] == "train", "image_id"].str.split(":").str[0]) == {"paxray"}
    assert set(samples.loc[samples["split"] == "test", "image_id"].str.split(":").str[0]) == {"jsrt"}
    # RayDINO's 154 test images are JSRT's nodule images (JPCLN): the transfer tests on those only
    nodule = sorted(i for i in jsrt_root.joinpath("All247images").iterdir() if i.name.startswith("JPCLN"))
    tested = samples.loc[samples["split"] == "test", "image_id"]
    assert sorted(tested) == [f"jsrt:{p.stem}" for p in nodule] and 0 < len(nodule) < 24 and data.synthetic
    _, every = load_benchmark("paxray-to-jsrt", paxray, {"test_root": str(jsrt_root), "test_images": "all"})
    assert (every.samples["split"] == "test").sum() == 24
    _, jsrt = load_benchmark("jsrt", jsrt_root, {})
    test_row = samples[samples["split"] == "test"].iloc[0]
    np.testing.assert_array_equal(data.mask_reader("anatomy", test_row["anatomy"]),
                                  jsrt.mask_reader("anatomy", test_row["image_id"].split(":", 1)[1]))
    train_row = samples[samples["split"] == "train"].iloc[0]
    assert data.mask_reader("anatomy", train_row["anatomy"]).shape[0] == 5  # PAXRay++ classes mapped onto JSRT's five

    result = runner.invoke(app, ["run", "paxray-to-jsrt", "--encoder", "pixels", "--data-root", str(paxray), "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1",
                                 "--bootstrap", "20", "--head-param", "epochs=1"])
    assert "test_root=DIR" in _message(result) and result.exit_code == 2  # where JSRT is must be said
    result = runner.invoke(app, ["run", "paxray-to-jsrt", "--encoder", "pixels", "--data-root", str(paxray), "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1",
                                 "--bootstrap", "20", "--head-param", "epochs=1", "--dataset-option", f"test_root={jsrt_root}"])
    assert result.exit_code == 0, result.output
    stored = pd.read_parquet(tmp_path / "out/paxray-to-jsrt/pixels/seg-linear/predictions.parquet")
    assert stored["image_id"].str.startswith("jsrt:JPCLN").all() and stored["image_id"].nunique() == len(nodule)
    result = runner.invoke(app, ["table", "--layout", "raydino-seg", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out/tables/raydino-seg.csv")
    assert len(table[table["source"] != "cxrbench"]) == 6  # RayDINO's six mDice figures
    latex = (tmp_path / "out/tables/raydino-seg.tex").read_text()
    assert latex.count(r"\begin{") == latex.count(r"\end{") and "RayDINO" in latex
    assert set(table.loc[table["source"] == "cxrbench", "benchmark"]) == {"paxray-to-jsrt"}
    assert table.loc[(table["source"] != "cxrbench") & (table["benchmark"] == "paxray-to-jsrt"), "mean"].iloc[0] == pytest.approx(0.808)


def test_training_targets_larger_than_memory_go_to_a_scratch_file_that_is_removed(tmp_path, monkeypatch):
    from cxrbench.data.siim.synthetic import write_synthetic_siim
    from cxrbench.evaluations import segmentation

    root = write_synthetic_siim(tmp_path / "siim", patients=30, size=64)
    arguments = ["run", "siim-acr", "--encoder", "pixels", "--data-root", str(root), "--cache-dir", str(tmp_path / "cache"),
                 "--seeds", "1", "--bootstrap", "20", "--head-param", "epochs=2"]
    assert runner.invoke(app, [*arguments, "--out", str(tmp_path / "ram")]).exit_code == 0
    monkeypatch.setattr(segmentation, "TARGETS_IN_MEMORY", 0)
    created = []
    original = np.lib.format.open_memmap
    monkeypatch.setattr(np.lib.format, "open_memmap", lambda path, **kw: created.append(path) or original(path, **kw))
    result = runner.invoke(app, [*arguments, "--out", str(tmp_path / "disk")])
    assert result.exit_code == 0, result.output
    scratch = [Path(p) for p in created if ".mask-targets-" in str(p)]  # (the feature cache maps its shards too)
    assert scratch and all(p.parent == tmp_path / "cache" and not p.exists() for p in scratch)
    ram, disk = (pd.read_parquet(tmp_path / f"{out}/siim-acr/pixels/seg-linear/predictions.parquet") for out in ("ram", "disk"))
    pd.testing.assert_frame_equal(ram, disk)


def test_a_structure_in_two_mask_targets_is_refused_when_the_spec_is_parsed():
    from cxrbench.errors import SpecError
    from cxrbench.specs import BenchmarkSpec, TargetSpec

    targets = (TargetSpec("a", "mask", structures=("lung", "heart")), TargetSpec("b", "mask", structures=("heart",)))
    with pytest.raises(SpecError, match="structure 'heart' is listed twice"):
        BenchmarkSpec("x", "x", {}, targets, metrics=("dice",), primary_metric="dice")


def test_overlays_give_each_structure_its_own_colour_and_a_legend():
    """Twenty ribs drawn in one colour cannot be told apart: each structure's outlines take its own colour, the
    reference solid and the prediction dashed, and the legend names every structure and both line styles."""
    from matplotlib.colors import to_hex

    from cxrbench.evaluations.segmentation import overlay_figure, overlay_png

    size, names = 96, [f"rib_{k}" for k in range(12)]
    yy, xx = np.mgrid[:size, :size]
    references = np.stack([(yy - 8 - 7 * (k // 4)) ** 2 + (xx - 12 - 22 * (k % 4)) ** 2 < 20 for k in range(12)])
    predicted = np.roll(references, 1, axis=2)
    figure = overlay_figure(np.full((size, size), 0.5), references, predicted, names)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == [*names, "reference", "predicted"]
    contours = [c for c in figure.axes[0].collections]
    colours = {to_hex(c.get_edgecolor()[0]) for c in contours}
    assert len(contours) == 2 * len(names) and len(colours) == len(names)
    assert overlay_png(np.zeros((size, size)), references, predicted, names)[:8] == b"\x89PNG\r\n\x1a\n"


def test_scoring_on_raydinos_512_grid_equals_monai_on_masks_resized_nearest():
    """RayDINO computes its metrics at 512 x 512: both masks brought there by nearest neighbour (torch's rule, used
    here as the independent reference) and scored by MONAI's DiceMetric; None keeps the mask's own grid (RAD-DINO)."""
    import torch.nn.functional as F

    from cxrbench.evaluations.segmentation import scored_values

    rng = np.random.default_rng(3)
    for shape in ((300, 200), (1024, 1024), (37, 53)):
        reference = rng.random((3, *shape)) > 0.6
        predicted = reference ^ (rng.random((3, *shape)) > 0.85)
        reference[2] = False  # an absent structure: NaN for both
        ours = scored_values(predicted, reference, 512)["dice"]
        resized = [F.interpolate(torch.from_numpy(m[None]).float(), size=(512, 512), mode="nearest") for m in (predicted, reference)]
        metric = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
        theirs = metric(*resized)[0].double().numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-6, equal_nan=True)
        assert np.isnan(ours[2]) and not np.isnan(ours[:2]).any()
        own = scored_values(predicted, reference, None)["dice"]
        np.testing.assert_allclose(own, per_case_values(predicted, reference)["dice"], atol=0, equal_nan=True)
    assert registry().get("heads", "upernet-raydino").spec.params["score_grid"] == 512
    assert "score_grid" not in registry().get("heads", "upernet").spec.params  # RAD-DINO: the mask's own grid
