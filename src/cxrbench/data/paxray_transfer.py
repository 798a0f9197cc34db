"""PAXRay++ -> JSRT / VinDr-RibCXR: decoders trained on projected-CT anatomy, scored on real radiographs (RayDINO).

A transfer benchmark (`benchmarks/paxray-to-jsrt.yaml`, `paxray-to-vindr-ribcxr.yaml`) has the TEST benchmark's
targets. Its images are PAXRay++'s official train+val images (the training split; 10% of their CT volumes validate,
drawn per seed) and the test benchmark's images (the test split, both of its official parts): every one, or with
`test_images: nodule` JSRT's 154 nodule images only (RayDINO's JSRT transfer test set). PAXRay++'s
classes become the test benchmark's structures through a documented mapping (`jsrt_mapping` /
`vindr_ribcxr_mapping` in benchmarks/paxray.yaml, `cxrbench.data.paxray.map_structures`), so one decoder learns the
test benchmark's structures on PAXRay++ and predicts them on the real images, where they are scored on the real masks.

The PAXRay++ folder is `--data-root` (or CXRBENCH_PAXRAY_ROOT); the test benchmark's folder is the dataset option
`test_root`, else that benchmark's own variable (CXRBENCH_JSRT_ROOT, CXRBENCH_VINDR_RIBCXR_ROOT). Image ids and
patients are prefixed with their source (`paxray:`, `jsrt:`), so the two datasets can never share a patient.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.samples import BenchmarkData, present_column
from cxrbench.data.common.settings import dataset_settings
from cxrbench.errors import DataError
from cxrbench.specs import BenchmarkSpec

DEFAULTS: dict[str, Any] = {"test_root": None, "views": ["frontal"], "test_images": "all"}
#: test_images choices: every image, or the images whose `nodule` column is 1 (JSRT's JPCLN files)
TEST_IMAGES = ("all", "nodule")


class TransferMasks:
    """`reader(target, (source, reference))`: the training images' masks from PAXRay++ (mapped onto the test
    benchmark's structures), the test images' from the test benchmark's own reader."""

    def __init__(self, readers: Mapping[str, Any], names: Mapping[str, str]):
        self.readers, self.names = dict(readers), dict(names)  # source -> reader; source -> the target's name there

    def __call__(self, target: str, reference: Any) -> np.ndarray:
        source, inner = reference
        return self.readers[source](self.names[source], inner)


def load_paxray_transfer(root: Path, spec: BenchmarkSpec, options: Mapping[str, Any]) -> BenchmarkData:
    from cxrbench.data.common.synthetic import synthetic_settings
    from cxrbench.registry import registry
    from cxrbench.study import load_benchmark, resolve_data_root

    settings = dataset_settings(spec, options, DEFAULTS)
    test_name = str(settings["test_benchmark"])
    if len(spec.targets) != 1:
        raise DataError(f"benchmark '{spec.name}': a transfer benchmark has one mask target (the test benchmark's).")
    target = spec.targets[0]
    test_spec: BenchmarkSpec = registry().get("benchmarks", test_name).spec
    test_target = next((t for t in test_spec.targets if t.structures == target.structures), None)
    if test_target is None:
        raise DataError(f"benchmark '{spec.name}': its target's structures {list(target.structures)} are not those of a "
                        f"target of '{test_name}' ({[list(t.structures) for t in test_spec.targets]}); keep them equal.")
    paxray_spec: BenchmarkSpec = registry().get("benchmarks", "paxray").spec
    mapping = settings["mapping"]
    if isinstance(mapping, str):  # the name of a mapping in benchmarks/paxray.yaml
        if not isinstance(paxray_spec.dataset.get(mapping), Mapping):
            raise DataError(f"benchmark '{spec.name}': mapping '{mapping}' is not a mapping of benchmarks/paxray.yaml's "
                            "dataset block (jsrt_mapping, vindr_ribcxr_mapping), nor a mapping given here.")
        mapping = paxray_spec.dataset[mapping]
    missing = [s for s in target.structures if s not in mapping]
    if missing:
        raise DataError(f"benchmark '{spec.name}': the dataset option mapping has no PAXRay++ classes for {missing}; "
                        "give every structure of the test benchmark its classes.")

    # PAXRay++'s own split: the test JSON's images are left out, the others train (and validate)
    paxray_options = {"structure_classes": dict(mapping), "views": settings["views"], "official_split": True}
    source_spec = dataclasses.replace(paxray_spec, targets=(dataclasses.replace(target, name="paxray"),))
    source = registry().get("benchmarks", "paxray").load()(root, source_spec, paxray_options)
    given = settings["test_root"]
    if given is None and not (test_spec.data_root_env and os.environ.get(test_spec.data_root_env)):
        raise DataError(f"benchmark '{spec.name}' is scored on {test_name}'s images: pass --dataset-option test_root=DIR "
                        f"(the {test_name} folder){f' or set {test_spec.data_root_env}' if test_spec.data_root_env else ''}.")
    test_root = resolve_data_root(test_spec, None if given is None else Path(given))
    _, test = load_benchmark(test_name, test_root, {})
    tested = _test_images(test.samples, settings["test_images"], spec.name, test_name)

    train = source.samples[source.samples["split"] != "test"]
    frames = [_prefixed(train, "paxray", "paxray", target.name, "train"),
              _prefixed(tested, test_name, test_target.name, target.name, "test")]
    samples = pd.concat(frames, ignore_index=True)
    common = Path(os.path.commonpath([os.path.abspath(source.root), os.path.abspath(test.root)]))
    reader = TransferMasks({"paxray": source.mask_reader, test_name: test.mask_reader},
                           {"paxray": "paxray", test_name: test_target.name})
    notes = [f"transfer: trains on PAXRay++ at {source.root} ({len(train)} official train+val images of the views "
             f"{', '.join(settings['views'])}; its official test images are not used), tests on "
             f"{'every' if settings['test_images'] == 'all' else 'the nodule'} {test_name} images at {test.root} "
             f"({len(tested)} of {len(test.samples)}); PAXRay++ classes mapped onto {test_name}'s structures: "
             + "; ".join(f"{s} = {' | '.join(mapping[s])}" for s in target.structures)]
    synthetic = synthetic_settings(source.root) is not None or test.synthetic
    return BenchmarkData(spec.name, common, (target,), samples, notes, synthetic=synthetic, mask_reader=reader)


def _test_images(samples: pd.DataFrame, chosen: str, benchmark: str, test_name: str) -> pd.DataFrame:
    """The test benchmark's images that are scored: all, or those its loader marks as nodule images."""
    if chosen not in TEST_IMAGES:
        raise DataError(f"benchmark '{benchmark}': dataset option test_images={chosen!r}; choose {' or '.join(TEST_IMAGES)}.")
    if chosen == "all":
        return samples
    if "nodule" not in samples:
        raise DataError(f"benchmark '{benchmark}': test_images=nodule needs a test benchmark that marks nodule images "
                        f"(jsrt); {test_name} does not. Use --dataset-option test_images=all.")
    return samples[samples["nodule"] == 1.0]


def _prefixed(samples: pd.DataFrame, source: str, column: str, target: str, split: str) -> pd.DataFrame:
    """One source's images with prefixed ids and patients, the target's references tagged with their source."""
    known = samples[column].notna()
    out = pd.DataFrame({
        "image_id": [f"{source}:{i}" for i in samples["image_id"]],
        "patient_id": [f"{source}:{p}" for p in samples["patient_id"]],
        "path": samples["path"].to_numpy(),
        "split": split,
        target: [(source, ref) if ok else None for ref, ok in zip(samples[column], known)],
    })
    presence = present_column(column)
    out[present_column(target)] = samples[presence].to_numpy(dtype=np.float32) if presence in samples else np.where(known, 1.0, np.nan)
    return out
