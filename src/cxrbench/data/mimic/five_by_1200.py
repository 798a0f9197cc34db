"""MIMIC-CXR 5x1200 (`mimic-5x1200`), the reports paper's diagnostic task (Appendix A.1, "MIMIC 5x1200"): 1,200
frontal MIMIC-CXR-JPG images for each of five findings (Atelectasis, Cardiomegaly, Edema, Pleural Effusion,
Consolidation), 1,000 to train and 200 to test, each image of a subject whose study carries exactly one of the five.

Read from the `mimic-cxr` layout (`cxrbench.data.mimic.cxr`: metadata, CheXpert labels, files/; MIMIC-IV for
demographics when present). The paper does not say how the images were drawn; here, with a fixed seed (`draw_seed`):
  1. eligible images: frontal (PA / AP), of a study whose CheXpert row has exactly one of the five labels at 1.0 and
     none of the other four uncertain (-1.0; an uncertain one would make "exactly one" unsure);
  2. one eligible image per subject, drawn at random, so that no subject is in two classes or in both splits;
  3. per class, `per_class` of those subjects drawn at random, the first `test_per_class` of them the test set.
The official MIMIC-CXR split is not used (the paper builds its own 1,000 / 200 split). Its synthetic release is
`synthetic_mimic.write_synthetic_mimic_cxr` (studies with one or two findings), read with small per_class and
test_per_class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.mimic.cxr import (COMMON, DEMOGRAPHIC_COLUMNS, attach_demographics, cxr_settings, frontal_images,
                                     study_labels)
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.common.settings import data_folder
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

FINDINGS = ("Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion", "Consolidation")
TARGET = "Finding"
DEFAULTS: dict[str, Any] = {**COMMON, "per_class": 1200, "test_per_class": 200, "draw_seed": 0}


def _settings(spec: BenchmarkSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    settings = cxr_settings(spec, options, DEFAULTS)
    counts = (settings["per_class"], settings["test_per_class"])
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts) or not 0 < counts[1] < counts[0]:
        raise DataError(f"benchmark '{spec.name}': per_class and test_per_class must be whole numbers with 0 < "
                        f"test_per_class < per_class, got {counts[0]!r} and {counts[1]!r}.")
    target = spec.targets[0] if len(spec.targets) == 1 else None
    if target is None or target.kind != "multiclass" or tuple(target.classes) != FINDINGS:
        raise DataError(f"benchmark '{spec.name}': mimic-5x1200 has one multiclass target whose classes are "
                        f"{list(FINDINGS)} in that order.")
    return settings


def eligible_images(frame: pd.DataFrame, raw: pd.DataFrame) -> pd.Series:
    """Per image, the index of its one finding among FINDINGS, or -1 when its study is not eligible (see module doc)."""
    values = raw[list(FINDINGS)].to_numpy(dtype=np.float64)
    positive = values == 1.0
    single = raw["labelled"].to_numpy(dtype=bool) & (positive.sum(axis=1) == 1) & ~(values == -1.0).any(axis=1)
    return pd.Series(np.where(single, positive.argmax(axis=1), -1), index=frame.index)


def draw(frame: pd.DataFrame, finding: pd.Series, settings: Mapping[str, Any]) -> pd.DataFrame:
    """One eligible image per subject, then per class `per_class` subjects, the first `test_per_class` in test."""
    rng = np.random.default_rng(int(settings["draw_seed"]))
    chosen = frame.assign(code=finding)[finding >= 0].sort_values("image_id", kind="stable")
    chosen = chosen.iloc[rng.permutation(len(chosen))].drop_duplicates("patient_id", keep="first")
    parts = []
    for code, name in enumerate(FINDINGS):
        pool = chosen[chosen["code"] == code].sort_values("image_id", kind="stable")
        if len(pool) < settings["per_class"]:
            raise DataError(f"Only {len(pool)} subjects have a frontal image of a study labelled {name} alone among "
                            f"{', '.join(FINDINGS)}; mimic-5x1200 draws per_class={settings['per_class']}. Check the "
                            "MIMIC-CXR-JPG download, or lower per_class and test_per_class (--dataset-option).")
        picked = pool.iloc[rng.permutation(len(pool))[: settings["per_class"]]]
        parts.append(picked.assign(split=np.where(np.arange(len(picked)) < settings["test_per_class"], "test", "train")))
    return pd.concat(parts, ignore_index=True)


def load_mimic_5x1200(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    root = data_folder(root, "MIMIC-CXR-JPG", "mimic-cxr-jpg/ (and mimic-iv/ for demographics)")
    settings = _settings(spec, options)
    frame, notes = frontal_images(root, settings)
    raw, label_notes = study_labels(frame, root, settings)
    finding = eligible_images(frame, raw)
    notes += [*label_notes, f"{int((finding >= 0).sum())} frontal images of {frame.loc[finding >= 0, 'patient_id'].nunique()}"
              f" subjects are of studies with exactly one of {', '.join(FINDINGS)} (none of the others uncertain)"]
    frame = draw(frame, finding, settings)
    frame[TARGET] = frame["code"].astype(np.float64)
    frame, demographic_notes = attach_demographics(frame.reset_index(drop=True), root, settings)
    notes += [f"drawn (draw_seed {settings['draw_seed']}): {settings['per_class']} subjects per finding, one image each, "
              f"{settings['test_per_class']} of them test; the official split is not used", *demographic_notes]
    columns = ["image_id", "patient_id", "path", "split", *DEMOGRAPHIC_COLUMNS, TARGET]
    return BenchmarkData(spec.name, root, spec.targets, frame[columns], notes)
