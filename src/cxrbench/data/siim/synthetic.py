"""A small synthetic SIIM-ACR Pneumothorax Segmentation release (DICOM folders, train-rle.csv in the challenge's
relative run-length encoding), for tests and demos. Same arguments, same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrbench.data.common.rle import encode_relative_rle
from cxrbench.data.common.synthetic import _patients, _render, _uid, _write_dicom, mark_synthetic, pneumothorax_region

# ---------------------------------------------------------------------------------------------- SIIM-ACR




def write_synthetic_siim(root: str | Path, patients: int = 60, size: int = 64, seed: int = 0) -> Path:
    """train-rle.csv and dicom-images-train/<study>/<series>/<ImageId>.dcm as released (DICOMs of `size` rows; every
    third image is narrower, `size` x 3/4 columns), plus a few stage-1 test images in dicom-images-test/, which only
    stage_2_train.csv labels (it lists every image, header "ImageId,EncodedPixels", as the stage-2 file does).

    About 30% of the images carry a planted bright pneumothorax-like crescent (`pneumothorax_region`) whose relative
    run-length encoding, on the DICOM's own Rows x Columns, is the truth; every other such image has it split over
    two rows that overlap (the mask is their union). The others have -1. The CSV is written like the release: header
    "ImageId, EncodedPixels" and values with a leading space. Each DICOM carries its image id as PatientID (the
    release's anonymisation gave every image its own patient id).
    """
    root = Path(root)
    mark_synthetic(root, "siim-acr", {"patients": patients, "size": size, "seed": seed})
    rng = np.random.default_rng(seed)
    rows, test_rows, count, positives = [], [], 0, 0
    drawn = _patients(patients, size, seed, rng)
    extra = max(2, patients // 10)  # images of the stage-1 test set (labelled in stage 2 only)
    for index, patient in enumerate(drawn):
        folder = "dicom-images-test" if index >= len(drawn) - extra else "dicom-images-train"
        for visit in range(patient["n_images"]):
            image_id = _uid(seed, "siim-image", index, visit)
            study, series = _uid(seed, "siim-study", index, visit), _uid(seed, "siim-series", index, visit)
            image, _ = _render(patient, [], size, rng)
            if count % 3 == 2:
                image = image[:, : size * 3 // 4]
            count += 1
            # the test images come last, so drawing for them leaves the training images as they were
            positive = rng.random() < 0.3
            if positive:
                region = pneumothorax_region(*image.shape, rng)
                image = np.where(region, np.clip(image + 0.35, 0.0, 1.0), image)
            _write_dicom(root / folder / study / series / f"{image_id}.dcm", image, {**patient, "id": image_id}, rng)
            kept = rows if folder == "dicom-images-train" else test_rows
            if not positive:
                kept.append((image_id, "-1"))
            elif positives % 2:
                cut = int(np.median(np.nonzero(region)[0]))
                upper, lower = region.copy(), region.copy()
                upper[cut + 2:] = False
                lower[: max(cut - 2, 0)] = False
                kept += [(image_id, encode_relative_rle(upper)), (image_id, encode_relative_rle(lower))]
            else:
                kept.append((image_id, encode_relative_rle(region)))
            positives += positive
    pd.DataFrame({"ImageId": [r[0] for r in rows], " EncodedPixels": [" " + r[1] for r in rows]}).to_csv(
        root / "train-rle.csv", index=False)
    stage_2 = rows + test_rows
    pd.DataFrame({"ImageId": [r[0] for r in stage_2], "EncodedPixels": [r[1] for r in stage_2]}).to_csv(
        root / "stage_2_train.csv", index=False)
    return root
