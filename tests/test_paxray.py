"""PAXRay++: COCO run-lengths against pycocotools' encoding rules, class -> structure mappings, the loader on a
synthetic release in the official layout (masks equal the drawn classes, channel order pinned, views and patients),
bad input named by file and annotation, and one run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.paxray.coco_rle import decode_coco_rle, encode_coco_rle
from cxrbench.data.paxray.loader import map_structures
from cxrbench.data.paxray.synthetic import PAXRAY_SYNTHETIC_CLASSES, write_synthetic_paxray
from cxrbench.errors import DataError
from cxrbench.study import load_benchmark

runner = CliRunner()
STRUCTURES = ["left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle", "left_ribs", "right_ribs", "spine"]
SPEC = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "paxray.yaml").read_text())["dataset"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Treat as read-only (tests that damage it work on a copy)."""
    return write_synthetic_paxray(tmp_path_factory.mktemp("paxray") / "paxray", volumes=16, test_volumes=4, size=64, seed=0)


@pytest.fixture
def copy(root, tmp_path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _message(result) -> str:
    return " ".join(result.output.split())


def _plain_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """COCO's uncompressed RLE, one run at a time: alternating 0 / 1 runs down the columns, 0s first."""
    flat, position, value = np.zeros(height * width, dtype=bool), 0, False
    for count in counts:
        flat[position:position + count] = value
        position, value = position + count, not value
    return flat.reshape(width, height).T


# ---------------------------------------------------------------------------------------------- run-lengths


def test_compressed_counts_follow_pycocotools():
    mask = np.array([[0, 1, 0], [0, 1, 0], [1, 1, 1]], dtype=bool)  # column-major: 0 0 1 | 1 1 1 | 0 0 1
    assert encode_coco_rle(mask, compressed=False) == {"size": [3, 3], "counts": [2, 4, 2, 1]}
    # by hand, pycocotools' rleToString: the first three counts as they are, 2 -> '2', 4 -> '4', 2 -> '2'; then the
    # difference to the count two before, 1 - 4 = -3 -> 5 low bits 0b11101 (sign bit set, no more) -> 29 + 48 = 'M'
    assert encode_coco_rle(mask) == {"size": [3, 3], "counts": "242M"}
    np.testing.assert_array_equal(decode_coco_rle({"size": [3, 3], "counts": "242M"}, "here"), mask)
    big = np.zeros((40, 30), dtype=bool)
    big[5:35, 3:29] = True  # runs of 1,000 pixels and more: several characters per number
    assert decode_coco_rle(encode_coco_rle(big), "here").sum() == big.sum()
    rng = np.random.default_rng(0)
    for shape, density in (((37, 53), 0.1), ((53, 37), 0.6), ((1, 9), 0.5), ((64, 64), 0.02)):
        mask = rng.random(shape) < density
        mask[0, 0] = density > 0.5  # a first run of 1s: the counts start with 0
        plain = encode_coco_rle(mask, compressed=False)
        np.testing.assert_array_equal(_plain_decode(plain["counts"], *shape), mask)
        np.testing.assert_array_equal(decode_coco_rle(plain, "here"), mask)
        np.testing.assert_array_equal(decode_coco_rle(encode_coco_rle(mask), "here"), mask)
    empty = np.zeros((4, 6), dtype=bool)
    assert encode_coco_rle(empty, compressed=False)["counts"] == [24]
    np.testing.assert_array_equal(decode_coco_rle(encode_coco_rle(empty), "here"), empty)


@pytest.mark.parametrize("segmentation, message", [
    ({"size": [3, 3], "counts": "24 0M"}, "holds ' ', not a character of the COCO encoding"),
    ({"size": [3, 3], "counts": "24n"}, "ends inside a number"),
    ({"size": [3, 3], "counts": [2, 4, 2]}, "runs cover 8 pixels but its size is 3 x 3 = 9"),
    ({"size": [3, 3], "counts": [2, -4, 11]}, "negative run"),
    ({"size": [3], "counts": "242M"}, "not [height, width]"),
    ([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], "a polygon list, not a run-length encoding"),
])
def test_malformed_run_lengths_name_where_and_the_fix(segmentation, message):
    with pytest.raises(DataError) as caught:
        decode_coco_rle(segmentation, "paxray_test.json, annotation 7 ('heart' on x_frontal.png)")
    text = str(caught.value)
    assert text.startswith("paxray_test.json, annotation 7 ('heart' on x_frontal.png): ") and message in text


def test_map_structures_joins_classes_in_the_mappings_order():
    classes = ["a", "b", "c"]
    mask = np.zeros((3, 2, 2), dtype=bool)
    mask[0, 0, 0] = mask[1, 0, 1] = mask[2, 1, 1] = True
    out = map_structures(mask, classes, {"second": ["c"], "first": ["a", "b"], "all": ["a", "b", "c"], "one": "b"})
    assert out.shape == (4, 2, 2) and out.dtype == bool
    np.testing.assert_array_equal(out[0], mask[2])
    np.testing.assert_array_equal(out[1], mask[0] | mask[1])
    np.testing.assert_array_equal(out[2], mask.any(axis=0))
    np.testing.assert_array_equal(out[3], mask[1])
    with pytest.raises(DataError, match=r"structure 'first' maps to the class 'bb', which is not a PAXRay\+\+ class \(nearest: 'b'\)"):
        map_structures(mask, classes, {"first": ["a", "bb"]})
    with pytest.raises(DataError, match=r"has shape \(3, 2, 2\) but 2 classes are named"):
        map_structures(mask, classes[:2], {"first": ["a"]})


# ------------------------------------------------------------------------------------------------- loader


def test_masks_are_the_drawn_classes_joined_by_the_specs_mapping(root):
    spec, data = load_benchmark("paxray", root, {})
    assert list(spec.target("anatomy").structures) == STRUCTURES and spec.split.scheme == "random"
    samples = data.samples
    assert len(samples) == 32 and data.synthetic and samples["split"].eq("pool").all()  # RayDINO's 80/10/10 is cxrbench's
    _, official = load_benchmark("paxray", root, {"official_split": True})
    assert list(official.samples["split"].value_counts().sort_index().items()) == [("pool", 24), ("test", 8)]
    assert samples.groupby("patient_id")["view"].apply(lambda views: sorted(views) == ["frontal", "lateral"]).all()
    assert samples.groupby("patient_id")["split"].nunique().eq(1).all()
    classes = json.loads((root / "synthetic_truth/classes.json").read_text())
    assert classes == PAXRAY_SYNTHETIC_CLASSES
    for _, row in samples.iloc[[0, 1, 6, 7, 30, 31]].iterrows():
        truth = np.load(root / "synthetic_truth" / f"{row['image_id']}.npy")
        mask = data.mask_reader("anatomy", row["anatomy"])
        assert mask.shape == (8, 64, 64) and mask.dtype == bool
        for k, structure in enumerate(STRUCTURES):
            names = SPEC["structure_classes"][structure]
            expected = np.any([truth[classes.index(n)] for n in names], axis=0)
            np.testing.assert_array_equal(mask[k], expected, err_msg=f"{row['image_id']} {structure}")
        if row["view"] == "lateral":
            assert not mask[[3, 4, 5, 6]].any()  # no clavicles or ribs drawn on the lateral projection
        else:  # the order, independently of the generator: the patient's left on the image's right
            columns = [np.argwhere(m)[:, 1].mean() / 64 for m in mask]
            assert columns[0] > 0.5 > columns[1] and columns[3] > 0.5 > columns[4] and columns[5] > 0.5 > columns[6]
            assert abs(columns[7] - 0.5) < 0.05 and np.argwhere(mask[2])[:, 0].mean() / 64 > 0.5
    assert (samples["anatomy:present"] == 1).all()


def test_data_check_counts_and_views_option(root):
    result = runner.invoke(app, ["data", "check", "paxray", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    text = _message(result)
    assert "32 images, 16 patients" in text
    assert "train 24 (frontal 12, lateral 12), test 8 (frontal 4, lateral 4)" in text
    # each transfer training on PAXRay++ is read from this folder with its own structure table
    assert "transfer paxray-to-jsrt (tested on jsrt): its training side reads from this folder with the transfer's " \
           "options (16 images, 5 structures)" in text
    assert "transfer paxray-to-vindr-ribcxr (tested on vindr-ribcxr): its training side reads from this folder with " \
           "the transfer's options (16 images, 20 structures)" in text
    result = runner.invoke(app, ["data", "check", "paxray", "--data-root", str(root), "--dataset-option", "views=[frontal]"])
    assert result.exit_code == 0, result.output
    assert "16 images, 16 patients" in _message(result) and "16 image(s) of other views left out" in _message(result)


def test_a_structure_named_like_a_class_needs_no_mapping(root, tmp_path):
    spec_file = tmp_path / "paxray-trachea.yaml"
    spec = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "paxray.yaml").read_text())
    spec["targets"] = [{"name": "anatomy", "kind": "mask", "structures": ["trachea", "right_lung"]}]
    del spec["loader"]  # the registry's key, not part of the spec
    spec_file.write_text(yaml.safe_dump(spec))
    from cxrbench.data.paxray.loader import load_paxray
    from cxrbench.specs import BenchmarkSpec
    from cxrbench.typed_yaml import parse_spec

    data = load_paxray(root, parse_spec(BenchmarkSpec, spec, str(spec_file)), {})
    image = data.samples["image_id"].iloc[0]
    truth = np.load(root / "synthetic_truth" / f"{image}.npy")
    mask = data.mask_reader("anatomy", image)
    np.testing.assert_array_equal(mask[0], truth[PAXRAY_SYNTHETIC_CLASSES.index("trachea")])


# ---------------------------------------------------------------------------------------------- bad input


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_unknown_classes_in_a_mapping_are_named(root):
    with pytest.raises(DataError) as caught:
        load_benchmark("paxray", root, {"structure_classes": {"heart": ["hart"]}})
    assert "structure_classes: structure 'heart' maps to the class 'hart'" in str(caught.value)
    assert "(nearest: 'heart'" in str(caught.value)
    result = runner.invoke(app, ["data", "check", "paxray", "--data-root", str(root), "--dataset-option",
                                 "structure_classes={heart: [heart], left_lung: [lung left]}"])
    assert result.exit_code == 2
    assert "dataset option structure_classes: structure 'left_lung' maps to the class 'lung left'" in _message(result)


def test_data_check_names_a_transfer_whose_structure_table_this_release_cannot_serve(root, monkeypatch):
    """`data check paxray` reads every transfer that trains on PAXRay++ with the transfer's own table, so a misspelt
    class there is refused on the PAXRay++ folder alone, naming the transfer's YAML."""
    import cxrbench.study as study

    real = study.registry()
    spec = real.get("benchmarks", "paxray-to-jsrt").spec
    table = {**spec.transfer.train_options["structure_classes"], "heart": ["hart"]}
    broken = replace(spec, transfer=replace(spec.transfer, train_options={**spec.transfer.train_options,
                                                                          "structure_classes": table}))

    class Misspelt:  # the registry, with paxray-to-jsrt's table misspelt
        get = staticmethod(real.get)

        @staticmethod
        def entries(kind):
            return [SimpleNamespace(spec=broken) if e.name == "paxray-to-jsrt" else e for e in real.entries(kind)]

    monkeypatch.setattr(study, "registry", Misspelt)
    result = runner.invoke(app, ["data", "check", "paxray", "--data-root", str(root)])
    assert result.exit_code == 2
    text = _message(result)
    assert "transfer benchmark 'paxray-to-jsrt' (benchmarks/paxray-to-jsrt.yaml, transfer.train_options)" in text
    assert "structure 'heart' maps to the class 'hart'" in text and "(nearest: 'heart'" in text


def test_a_mask_of_another_size_than_its_image_entry_is_named_at_load(copy):
    def shrink(data):
        annotation = next(a for a in data["annotations"] if a["category_id"] == PAXRAY_SYNTHETIC_CLASSES.index("heart") + 1)
        annotation["segmentation"] = encode_coco_rle(np.zeros((64, 48), dtype=bool))
    _edit(copy / "paxray_test.json", shrink)
    with pytest.raises(DataError) as caught:
        load_benchmark("paxray", copy, {})
    text = str(caught.value)
    assert "paxray_test.json, annotation" in text and "('heart' on " in text
    assert "its mask is 64 x 48 px but the image entry says 64 x 64" in text


def test_an_image_file_of_another_size_is_named_when_read(copy):
    _, data = load_benchmark("paxray", copy, {})
    row = data.samples.iloc[2]
    Image.fromarray(np.zeros((48, 48), dtype=np.uint8)).save(row["path"])
    with pytest.raises(DataError) as caught:
        data.mask_reader("anatomy", row["image_id"])
    assert row["path"] in str(caught.value) and "is 48 x 48 px but paxray_train_val.json gives it" in str(caught.value)


def test_a_malformed_run_length_is_named_when_read(copy):
    spine = PAXRAY_SYNTHETIC_CLASSES.index("spine") + 1

    def corrupt(data):
        annotation = next(a for a in data["annotations"] if a["category_id"] == spine and a["image_id"] == data["images"][0]["id"])
        annotation["segmentation"]["counts"] = "\x7f" if isinstance(annotation["segmentation"]["counts"], str) else [1, 2]
        data["corrupted"] = [annotation["id"], data["images"][0]["file_name"]]
    _edit(copy / "paxray_train_val.json", corrupt)
    ident, file_name = json.loads((copy / "paxray_train_val.json").read_text())["corrupted"]
    _, data = load_benchmark("paxray", copy, {})
    with pytest.raises(DataError) as caught:
        data.mask_reader("anatomy", Path(file_name).stem)
    assert f"paxray_train_val.json, annotation {ident} ('spine' on {file_name})" in str(caught.value)
    assert "Restore the annotation from the release" in str(caught.value)


def test_missing_files_are_named(copy):
    image = next((copy / "paxray_images_unfiltered/images_patlas").glob("*_lateral.png"))
    image.unlink()
    result = runner.invoke(app, ["data", "check", "paxray", "--data-root", str(copy)])
    assert result.exit_code == 2 and str(image) in _message(result) and "Complete the download" in _message(result)
    (copy / "paxray_test.json").unlink()
    with pytest.raises(DataError, match=r"paxray_test\.json does not exist.*Unpack the PAXRay\+\+ download"):
        load_benchmark("paxray", copy, {})


# ---------------------------------------------------------------------------------------------- end to end


def test_a_run_with_the_pixels_encoder(root, tmp_path):
    result = runner.invoke(app, ["run", "paxray", "--encoder", "pixels", "--data-root", str(root), "--out", str(tmp_path / "out"),
                                 "--cache-dir", str(tmp_path / "cache"), "--seeds", "1", "--bootstrap", "50",
                                 "--head-param", "epochs=3"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out/paxray/pixels/seg-linear/metrics.json").read_text())
    assert set(metrics["metrics"]) == {"dice", "hd95"} and set(STRUCTURES) <= set(metrics["metrics"]["dice"])


def test_raydino_split_is_80_10_10_by_volume_over_every_class(root):
    """RayDINO: PAXRay++ split 80/10/10 and scored over all its classes (the release's categories, read here from the
    JSON directly); both views of a CT volume stay in one split."""
    from cxrbench.data.splits import check_patient_disjoint, seed_splits

    spec, data = load_benchmark("paxray", root, {"all_classes": True})
    categories = json.loads((root / "paxray_train_val.json").read_text())["categories"]
    assert list(spec.target("anatomy").structures) == [c["name"].strip().replace(" ", "_") for c in categories]
    assert spec.result_columns == spec.target("anatomy").structures and data.targets == spec.targets
    truth = np.load(root / "synthetic_truth" / f"{data.samples['image_id'].iloc[0]}.npy")
    classes = json.loads((root / "synthetic_truth/classes.json").read_text())
    mask = data.mask_reader("anatomy", data.samples["anatomy"].iloc[0])
    for k, category in enumerate(categories):  # each class is its own channel
        np.testing.assert_array_equal(mask[k], truth[classes.index(category["name"].strip())])
    volumes = data.samples["patient_id"].nunique()
    manifest = seed_splits(data.samples, "paxray", 0, spec.split)
    check_patient_disjoint(manifest)
    per_volume = manifest.groupby("patient_id")["split"].first().value_counts().to_dict()
    assert per_volume == {"train": volumes - 2 * round(0.1 * volumes), "val": round(0.1 * volumes),
                          "test": round(0.1 * volumes)}
    _, merged = load_benchmark("paxray", root, {})
    assert list(merged.targets[0].structures) == STRUCTURES  # the merged structures stay the default
