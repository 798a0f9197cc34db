"""Segmentation: decoders trained on an encoder's frozen patch grids for mask targets (`cxrbench run` on a benchmark
whose targets are masks).

Per study the reference masks are read once per image and reduced to their coverage of the decoder's loss grid
in the encoder's input (`encoders.geometry.training_targets`, through the encoder's exact preprocessing geometry),
so training reads no mask file. Per seed one decoder (`heads.segmentation`) learns every structure of the
benchmark's mask targets together on the training split, is selected on the validation loss, and predicts the
test split; each test prediction is resampled onto its reference mask's own grid, thresholded and scored per
structure there (`metrics.segmentation.per_case_values`, MONAI). A head with `score_grid: N` (RayDINO's 512) scores
instead on an N x N grid, prediction and reference both brought there by nearest neighbour
(`evaluations.masks.on_score_grid`); the stored masks stay on the reference's grid. The shared run steps
(`evaluations.runs`) write the run folder, as for a probe; this evaluation adds its own files:

    masks/seed-S.npz     the predicted test masks of seed S (bit-packed, one [S, H, W] entry per image id), from
                         which the stored per-case values can be recomputed
    overlays/*.png       each structure's reference (solid) and predicted (dashed) outline in its own colour, with a
                         legend, on the first test images of the first seed

Predictions hold one row per test image, structure and seed: `label` 1 where the reference has the structure,
and the per-case columns `metrics.segmentation.CASE_COLUMNS`.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cxrbench.data.common.sizes import image_size
from cxrbench.encoders.base import Encoder, FeatureRequest
from cxrbench.encoders.geometry import training_targets
from cxrbench.encoders.geometry import InputGeometry
from cxrbench.errors import DataError, SpecError
from cxrbench.evaluations.base import EvaluationResult, RunOptions, RunResult
from cxrbench.evaluations.masks import on_score_grid, to_mask_grid
from cxrbench.evaluations.runs import Method, RunPlan, plan_runs, run_each, write_result
from cxrbench.features.extract import EncoderFeatures, ExtractionSettings
from cxrbench.heads.segmentation import SegmentationHead
from cxrbench.metrics.segmentation import CASE_COLUMNS, per_case_values
from cxrbench.progress import Progress
from cxrbench.registry import metric_spec, registry
from cxrbench.specs import BenchmarkSpec, TargetSpec
from cxrbench.study import Study
from cxrbench.threads import use_threads

#: test images of the first seed drawn as overlays
OVERLAYS = 8
#: training targets larger than this (bytes) are kept in a scratch file under the cache root, not in memory
TARGETS_IN_MEMORY = 1 << 30


@dataclass
class _Layout:
    """Where a run's masks live: the structures (decoder channels), the input pixels the patch grid covers, the loss
    grid, the images with masks, and the images' original sizes."""

    structures: list["_Structure"]
    covered: tuple[int, int]
    cells: tuple[int, int]
    known: np.ndarray
    sizes: "_Sizes"


@dataclass(frozen=True)
class _Structure:
    target: str
    structure: str
    channel: int  # the structure's channel within its target's mask


@dataclass
class SegmentationEvaluation(RunOptions):
    """Segmentation decoders on patch grids for mask targets; the run steps of `evaluations.runs` write it."""

    def check(self, spec: BenchmarkSpec) -> None:
        self.entry = registry().get("heads", self.head or spec.default_head)
        others = [t.name for t in spec.targets if t.target_kind.evaluation != "segmentation"]
        if others:
            raise SpecError(f"benchmark '{spec.name}': segmentation scores mask targets; {others} are not masks.")
        for name in self.metrics:
            kinds = metric_spec(name).kinds
            wrong = list(dict.fromkeys(t.kind for t in spec.targets if t.kind not in kinds))
            if wrong:
                raise SpecError(f"--metric {name} does not score {' / '.join(wrong)} targets (see `cxrbench list metrics`).")
        self.method = Method(self.entry.name, self._decoder(spec).params)
        if self.method.params["features"] == "online":  # a bad augmentation fails before any data is read
            from cxrbench.training.mask_views import MaskAugmentation

            MaskAugmentation.from_dict(self.method.params["augmentation"], [t.name for t in spec.targets if t.lateral],
                                       f"Head '{self.entry.name}'")

    def prepare(self, study: Study, progress: Progress) -> Study:
        return study

    def plan(self, study: Study, encoder: Encoder, settings: ExtractionSettings) -> bool:
        self.plans = plan_runs(self, self.method, study, encoder, settings)
        return not all(plan.stored for plan in self.plans)

    def evaluate(self, study: Study, features: EncoderFeatures | None, settings: ExtractionSettings,
                 progress: Progress) -> list[RunResult]:
        return run_each(self.plans, study, lambda plan: write_result(
            study, features, self, self.method, plan, self._train(study, features, settings, plan, progress), progress))

    def _decoder(self, spec: BenchmarkSpec, device: str | None = None) -> SegmentationHead:
        head_class = self.entry.load()
        if not issubclass(head_class, SegmentationHead):
            raise SpecError(f"Head '{self.entry.name}' is not a segmentation decoder; benchmark '{spec.name}' has mask "
                            "targets: choose seg-linear, seg-linear-4, vitdet or upernet (`cxrbench list heads`).")
        overrides = dict(self.head_params)
        if device is not None and "device" not in overrides and "device" not in self.entry.spec.params:
            overrides["device"] = device
        return head_class(self.entry.spec, overrides, "mask")

    def request(self, study: Study, encoder: Encoder) -> FeatureRequest:
        needs = self._decoder(study.spec).select_inputs(encoder.spec.default_layers, encoder.num_layers)
        layers = tuple(int(n.split("_")[1]) for n in needs if n != "patches")
        return FeatureRequest(global_embedding=True, patch_tokens="patches" in needs, layers=layers)

    # -- training and prediction -------------------------------------------------------------------------------
    def _train(self, study: Study, features: EncoderFeatures, settings: ExtractionSettings, plan: RunPlan,
               progress: Progress) -> EvaluationResult:
        encoder = features.encoder
        grid = _grid(features)
        covered = (grid[0] * encoder.patch_stride, grid[1] * encoder.patch_stride)
        stride = int(self._decoder(study.spec).params["loss_stride"])
        layout = _Layout(_structures(study.data.targets), covered, (covered[0] // stride, covered[1] // stride),
                         _has_masks(study.data), _Sizes(study.data))
        self._scratch_files: list[Path] = []
        try:
            return self._fit_and_score(study, features, settings, plan, progress, layout)
        finally:
            for path in self._scratch_files:
                path.unlink(missing_ok=True)

    def _fit_and_score(self, study: Study, features: EncoderFeatures, settings: ExtractionSettings, plan: RunPlan,
                       progress: Progress, layout: "_Layout") -> EvaluationResult:
        data, encoder, known = study.data, features.encoder, layout.known
        targets = self._targets(study, encoder, layout, Path(settings.cache_root), progress)
        trained = EvaluationResult()
        masks: dict[int, dict[str, np.ndarray]] = {}
        rows = []
        advance = progress.task(f"training {plan.name} decoders on {encoder.spec.name}", len(study.seeds))
        for seed in study.seeds:
            split = study.split(plan.budget, seed)
            parts = {name: features.rows(targets, (split == name) & known) for name in ("train", "test")}
            parts["val"] = features.rows(targets, (split == study.spec.split.validation_split) & known)
            trained.n_train[seed] = len(parts["train"])
            trained.reports[seed] = {}
            head = self._decoder(study.spec, settings.device)
            head.select_inputs(encoder.spec.default_layers, encoder.num_layers)
            source = self._online_mask_source(head, data, split == "train", encoder, layout, seed, settings, progress)
            with use_threads("heavy"):
                report = head.fit(parts["train"], parts["val"], seed, progress, source)
                logits = head.predict(parts["test"])
            trained.record(seed, "masks", report, source)
            masks[seed] = {}
            for position, row in enumerate(np.flatnonzero((split == "test") & known)):
                predicted, reference = self._case(data, row, logits[position], encoder, layout, float(head.params["threshold"]))
                masks[seed][str(data.samples["image_id"].iloc[row])] = predicted
                values = scored_values(predicted, reference, head.params["score_grid"])
                for k, s in enumerate(layout.structures):
                    rows.append({"image_id": data.samples["image_id"].iloc[row], "patient_id": data.samples["patient_id"].iloc[row],
                                 "seed": seed, "task": s.structure, "label": float(reference[k].any()),
                                 **{column: float(values[column][k]) for column in CASE_COLUMNS}})
            advance(1)
        trained.predictions = pd.DataFrame(rows, columns=["image_id", "patient_id", "seed", "task", "label", *CASE_COLUMNS])
        trained.files = {f"masks/seed-{seed}.npz": _mask_writer(predicted) for seed, predicted in masks.items()}
        first = study.seeds[0]
        for image_id in list(masks[first])[:OVERLAYS]:
            row = int(np.flatnonzero(data.samples["image_id"].astype(str).to_numpy() == image_id)[0])
            trained.files[f"overlays/{_file_name(image_id)}.png"] = _overlay_writer(data, layout.structures, row, masks[first][image_id])
        return trained

    def _online_mask_source(self, head: SegmentationHead, data, train: np.ndarray, encoder: Encoder, layout: "_Layout",
                            seed: int, settings: ExtractionSettings, progress: Progress):
        """The frozen encoder on augmented image + mask views for `features: online`; None for cached features."""
        if head.params["features"] == "cached":
            return None
        from cxrbench.training.mask_views import MaskAugmentation, MaskViews
        from cxrbench.training.online import OnlineBatches

        lateral = [t.name for t in data.targets if t.lateral]
        policy = MaskAugmentation.from_dict(head.params["augmentation"], lateral, f"Head '{head.spec.name}'")
        rows = np.flatnonzero(train & layout.known)
        views = MaskViews(data.samples["path"].to_numpy()[rows], _MaskRows(data, rows), len(layout.structures), policy,
                          encoder.preprocessor, layout.covered, layout.cells, seed)
        return OnlineBatches(encoder, views, settings.device, settings.num_workers, progress)

    def _targets(self, study: Study, encoder: Encoder, layout: "_Layout", scratch: Path, progress: Progress) -> np.ndarray:
        """[N, S, rows, cols] float16: each image's mask coverage of the loss grid, for the images some seed trains or
        validates on (zeros elsewhere). Above `TARGETS_IN_MEMORY` bytes the array lives in a file under `scratch`
        (PAXRay++ at 512 px: 13,000 images x 8 structures x 128 x 128 cells are 3.4 GB)."""
        data, sizes = study.data, layout.sizes
        shape = (len(data.samples), len(layout.structures), *layout.cells)
        if np.prod(shape) * 2 > TARGETS_IN_MEMORY:
            scratch.mkdir(parents=True, exist_ok=True)
            handle = tempfile.NamedTemporaryFile(dir=scratch, prefix=".mask-targets-", suffix=".npy", delete=False)
            handle.close()
            self._scratch_files.append(Path(handle.name))
            out = np.lib.format.open_memmap(handle.name, mode="w+", dtype=np.float16, shape=shape)
        else:
            out = np.zeros(shape, dtype=np.float16)
        fitted = np.zeros(len(data.samples), dtype=bool)
        for manifest in study.manifests.values():
            fitted |= data.samples["image_id"].isin(manifest.loc[manifest["split"].isin(["train", "val"]), "image_id"]).to_numpy()
        rows = np.flatnonzero(layout.known & fitted)
        advance = progress.task("reading reference masks", len(rows), transient=True)
        for row in rows:
            geometry = InputGeometry.from_spec(encoder.preprocessing, *sizes[row])
            channel = 0
            for target in data.targets:
                mask = _read_mask(data, target, row, sizes[row])
                out[row, channel : channel + len(target.structures)] = training_targets(mask, geometry, layout.covered, layout.cells)
                channel += len(target.structures)
            advance(1)
        return out

    def _case(self, data, row: int, logits: np.ndarray, encoder: Encoder, layout: "_Layout",
              threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """(predicted, reference) bool [S, H, W] of one test image on its reference masks' grid."""
        size = layout.sizes[row]
        geometry = InputGeometry.from_spec(encoder.preprocessing, *size)
        references = [_read_mask(data, t, row, size) for t in data.targets]
        if len({m.shape[1:] for m in references}) > 1:
            raise DataError(f"Image {data.samples['image_id'].iloc[row]}: its mask targets are on different grids; "
                            "score them as separate benchmarks.")
        predicted, channel = [], 0
        for mask in references:
            part = torch.from_numpy(logits[channel : channel + len(mask)])
            predicted.append(torch.sigmoid(to_mask_grid(part, geometry, layout.covered, mask.shape[1:])).numpy() > threshold)
            channel += len(mask)
        return np.concatenate(predicted), np.concatenate(references)


def scored_values(predicted: np.ndarray, reference: np.ndarray, grid: int | None) -> dict[str, np.ndarray]:
    """Per-structure case values of one image, on the reference's own grid (`grid` None: RAD-DINO states no
    resampling) or on a `grid` x `grid` one (RayDINO's 512)."""
    if grid is None:
        return per_case_values(predicted, reference)
    return per_case_values(on_score_grid(predicted, int(grid)), on_score_grid(reference, int(grid)))


def _structures(targets) -> list[_Structure]:
    return [_Structure(t.name, s, k) for t in targets for k, s in enumerate(t.structures)]


def _grid(features: EncoderFeatures) -> tuple[int, int]:
    rows = features.patches if features.patches is not None else next(iter(features.layers.values()))
    return int(rows.shape[1]), int(rows.shape[2])


def _has_masks(data) -> np.ndarray:
    """Images with a reference for every mask target (the others take part in no split)."""
    known = np.ones(len(data.samples), dtype=bool)
    for target in data.targets:
        known &= data.samples[target.name].notna().to_numpy()
    return known


class _MaskRows:
    """Position in `rows` -> the image's masks of every mask target, stacked (picklable for DataLoader workers)."""

    def __init__(self, data, rows: np.ndarray):
        self.data, self.rows = data, rows

    def __call__(self, position: int) -> np.ndarray:
        row = int(self.rows[position])
        return np.concatenate([_read_mask(self.data, t, row) for t in self.data.targets])


class _Sizes:
    """Original image sizes (height, width), read from file headers when first asked."""

    def __init__(self, data):
        self.paths = data.samples["path"].tolist()
        self.known: dict[int, tuple[int, int]] = {}

    def __getitem__(self, row: int) -> tuple[int, int]:
        if row not in self.known:
            self.known[row] = image_size(self.paths[row])
        return self.known[row]


def _read_mask(data, target: TargetSpec, row: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image's mask of `target`, bool [S, H, W]; with the image's `size` (height, width), the mask must cover
    the same field of view: its grid may be coarser or finer (SCR's masks are half JSRT's side), not of another shape."""
    image_id = data.samples["image_id"].iloc[row]
    if data.mask_reader is None:
        raise DataError(f"The loader of '{data.name}' gives no mask reader for its mask target '{target.name}'.")
    mask = np.asarray(data.mask_reader(target.name, data.samples[target.name].iloc[row]))
    if mask.ndim != 3 or len(mask) != len(target.structures):
        raise DataError(f"Image {image_id} of {data.name}: the mask of '{target.name}' has shape {mask.shape}; expected "
                        f"[{len(target.structures)}, H, W] ({', '.join(target.structures)}).")
    if size is not None and abs(mask.shape[1] * size[1] - mask.shape[2] * size[0]) > 0.01 * mask.shape[2] * size[0]:
        raise DataError(f"Image {image_id} of {data.name} ({data.samples['path'].iloc[row]}) is {size[0]} x {size[1]} px "
                        f"but its '{target.name}' mask is {mask.shape[1]} x {mask.shape[2]}: a mask must cover the image "
                        "(same height-to-width ratio). Fix or replace the mask, or remove the image's row.")
    return mask.astype(bool)


def _mask_writer(masks: dict[str, np.ndarray]):
    def write(path: Path) -> None:
        arrays = {}
        for image_id, mask in masks.items():
            arrays[f"{image_id}"] = np.packbits(mask, axis=None)
            arrays[f"{image_id}::shape"] = np.asarray(mask.shape)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.write_bytes(buffer.getvalue())
    return write


def read_predicted_masks(path: Path) -> dict[str, np.ndarray]:
    """The masks `masks/seed-S.npz` holds: image id -> bool [S, H, W]."""
    with np.load(path) as stored:
        return {key: np.unpackbits(stored[key], count=int(np.prod(stored[f"{key}::shape"]))).reshape(stored[f"{key}::shape"]).astype(bool)
                for key in stored.files if not key.endswith("::shape")}


def _file_name(image_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in str(image_id))


def _overlay_writer(data, structures: list[_Structure], row: int, predicted: np.ndarray):
    def write(path: Path) -> None:
        from skimage.transform import resize

        from cxrbench.data.common.images import read_image

        references = np.concatenate([_read_mask(data, t, row) for t in data.targets])
        image = resize(read_image(data.samples["path"].iloc[row]), references.shape[1:], order=1, anti_aliasing=True)
        path.write_bytes(overlay_png(image, references, predicted, [s.structure for s in structures]))
    return write


def overlay_png(image: np.ndarray, references: np.ndarray, predicted: np.ndarray, names: list[str]) -> bytes:
    """`overlay_figure` as PNG bytes: what overlays/*.png holds."""
    buffer = io.BytesIO()
    overlay_figure(image, references, predicted, names).savefig(buffer, format="png")
    return buffer.getvalue()


def overlay_figure(image: np.ndarray, references: np.ndarray, predicted: np.ndarray, names: list[str]):
    """An image [H, W] in [0, 1] with each structure's reference (solid) and predicted (dashed) outline in the
    structure's own colour (tab10, or tab20 beyond ten structures: VinDr-RibCXR's 20 ribs each get their own), and a
    legend naming every structure and the two line styles: with one colour for all structures, twenty ribs or a heart
    against a lung could not be told apart."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    height, width = image.shape
    inches = 6.0
    legend_rows = -(-len(names) // 4)  # four structures to a legend row
    legend_inches = 0.3 + 0.22 * (legend_rows + 1)
    figure = Figure(figsize=(inches, inches * height / width + legend_inches), dpi=100)
    FigureCanvasAgg(figure)
    total = inches * height / width + legend_inches
    ax = figure.add_axes((0.0, legend_inches / total, 1.0, 1.0 - legend_inches / total))
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="bilinear")
    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    handles = []
    for k, name in enumerate(names):
        colour = palette(k % palette.N)
        for mask, style in ((references[k], "solid"), (predicted[k], "dashed")):
            if mask.any() and not mask.all():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.2, linestyles=style)
        handles.append(Line2D([], [], color=colour, linewidth=2, label=name))
    handles += [Line2D([], [], color="black", linestyle="solid", label="reference"),
                Line2D([], [], color="black", linestyle="dashed", label="predicted")]
    ax.set_axis_off()
    figure.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize="small", frameon=False)
    return figure
