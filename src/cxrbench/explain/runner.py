"""RayDINO's explainability: attentive probes per finding, argmax patch against the radiologists' boxes.

The localisation evaluation (`cxrbench.evaluations.localisation`, `cxrbench explain`) fits attentive heads on the
official training split of a benchmark whose loader supplies test boxes (`fit_attention_maps`), takes each
finding's attention map on every test image and scores the test boxes (`hits`), then `run_explain` writes an
explain run through the results store (`results.store.explain_folder`):

    OUT/BENCHMARK/ENCODER/explain/
        metrics.json    kind "explain", the run's identity and provenance, and under `explain` the protocol,
                        per-finding boxes / hits / accuracy per seed, macro accuracy (mean, std, CI)
        explain.csv     one row per (seed, box): original and input-pixel box, status, argmax cell, overlap, hit
        config.yaml     encoder, preprocessing, head and options
        heatmaps/<finding>/<image_id>.png   attention overlays of the first seed for a few images per finding

atomically (the folder is assembled aside and renamed into place). Its `kind` keeps it off the tables of
`cxrbench run`'s runs; `results validate`, `table --all --check` and the report find it as a run of its own kind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrbench.data.common.images import read_image
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.vindr.boxes import NO_FINDING
from cxrbench.encoders.geometry import CLIPPED, CROPPED_AWAY, EMPTY, InputGeometry, PatchGrid
from cxrbench.errors import CxrbenchError, UnknownNameError
from cxrbench.explain.heatmaps import display_image, render_overlay, write_overlay
from cxrbench.explain.hits import (
    DEFAULT_MIN_OVERLAP, INPUT_COLUMNS, bootstrap_macro, check_attention, finding_accuracy, macro_accuracy, score_boxes,
)
from cxrbench.data.common.sizes import image_sizes
from cxrbench.explain.summary import explain_markdown, plain, published_explainability
from cxrbench.heads.base import FeatureSet, FitReport
from cxrbench.progress import Progress, SilentProgress
from cxrbench.registry import registry
from cxrbench.results.provenance import SCHEMA_VERSION
from cxrbench.results.store import EXPLAIN, METRICS, json_writer, text_writer, write_run, yaml_writer
from cxrbench.specs import BootstrapSpec, PreprocessSpec

CSV_COLUMNS = [
    "seed", "image_id", "finding", "csv_row", "x_min", "y_min", "x_max", "y_max", "status",
    *INPUT_COLUMNS, "argmax_row", "argmax_col", "attention_max", "overlap_fraction", "hit",
]
#: the order of an explain summary's keys (as explain.json had them before explain runs were ordinary runs)
SUMMARY_ORDER = ("split", "n_test_images", "n_images_with_boxes", "protocol", "seeds", "std_ddof", "macro_accuracy",
                 "findings", "left_out", "published")
PROTOCOL = {
    "source": "RayDINO (Moutakanni et al. 2024), Methods, 'Explainability'; headline: VinDr-CXR macro accuracy 52.6",
    "probe": "attentive pooling, one learned query per finding over the patch tokens, trained on the training split "
             "(one head per finding as RayDINO, or one head with a query per finding: see one_head_per_finding)",
    "hit": "area(argmax patch cell ∩ box) >= min_overlap x patch area, box mapped into encoder-input pixels through "
           "the encoder's letterbox/resize/crop and clipped to the input",
    "argmax_ties": "first cell in row-major order",
    "counting": "per box: every test box of a finding is one trial against that image's argmax patch",
    "finding_accuracy": "hits / scored boxes over test images with at least one box of the finding",
    "macro": "unweighted mean of the finding accuracies over findings with at least one scored box",
    "excluded": "boxes entirely in a cropped-away margin (cropped_away) or without area (empty)",
}


@dataclass
class ExplainResult:
    encoder: str
    head: str
    folder: Path
    summary: dict
    per_finding: pd.DataFrame  # index finding: boxes, images, accuracy_mean, accuracy_std
    boxes: pd.DataFrame  # explain.csv
    resumed: bool = False  # stored already with the same settings: kept, nothing trained

    @classmethod
    def stored(cls, folder: Path, metrics: dict) -> "ExplainResult":
        """The result of an explain run kept as stored (its metrics.json's `explain` block and its explain.csv)."""
        summary = metrics["explain"]
        table = pd.DataFrame.from_dict(
            {name: {"boxes": item["boxes"], "images": item["images"],
                    "accuracy_mean": np.nan if item["accuracy_mean"] is None else item["accuracy_mean"],
                    "accuracy_std": np.nan if item["accuracy_std"] is None else item["accuracy_std"]}
             for name, item in summary["findings"].items()}, orient="index")
        return cls(str(metrics.get("encoder", "")), str(metrics.get("head", "")), Path(folder), summary, table,
                   pd.read_csv(Path(folder) / "explain.csv"), resumed=True)

    @property
    def display(self) -> pd.DataFrame:
        """Per finding and macro: boxes, images, accuracy (%, mean ± std over seeds) as text."""
        def pct(mean, std):
            if mean is None or not np.isfinite(mean):
                return "no boxes"
            return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None and np.isfinite(std) else "")

        rows = {name: {"boxes": int(r["boxes"]), "images": int(r["images"]), "accuracy": pct(r["accuracy_mean"], r["accuracy_std"])}
                for name, r in self.per_finding.iterrows()}
        macro = self.summary["macro_accuracy"]
        rows["macro"] = {"boxes": int(self.per_finding["boxes"].sum()), "images": int(self.summary["n_images_with_boxes"]),
                         "accuracy": pct(macro["mean"], macro["std"])}
        return pd.DataFrame.from_dict(rows, orient="index")

    @property
    def headline(self) -> str:
        macro = self.summary["macro_accuracy"]
        text = f"macro accuracy {100 * macro['mean']:.1f}" if macro["mean"] is not None else "macro accuracy: no boxes"
        if macro["ci_low"] is not None:
            text += f" [95% CI {100 * macro['ci_low']:.1f}–{100 * macro['ci_high']:.1f}]"
        text += f" over {macro['findings_averaged']} findings"
        published = self.summary.get("published")
        if published:
            text += (f"; published {published['model']}: {100 * published['macro_accuracy']:.1f} "
                     f"[{100 * published['ci_low']:.1f}–{100 * published['ci_high']:.1f}]")
        return text


# --------------------------------------------------------------------------------------------------------------------
# Fitting the attentive heads


def attentive_head_class(head: str = "attentive"):
    """(registry entry, class) of the attentive head; a clear error while it is not registered or lacks attention maps."""
    try:
        entry = registry().get("heads", head)
    except UnknownNameError as exc:
        raise CxrbenchError(
            f"Explainability needs a head with attentive pooling, and the registry has no head '{head}' ({exc}). "
            "The built-in one is `attentive` (heads/attentive.yaml, cxrbench.heads.grid:GridHead with pooling: attentive)."
        ) from None
    head_class = entry.load()
    if not callable(getattr(head_class, "attention_maps", None)):
        raise CxrbenchError(
            f"Head '{head}' ({head_class.__module__}.{head_class.__qualname__}) has no attention_maps(); explainability "
            "needs a head with attentive pooling (choose --head attentive)."
        )
    return entry, head_class


def fit_attention_maps(
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    seed: int,
    *,
    head: str = "attentive",
    overrides: Mapping[str, Any] | None = None,
    one_head_per_finding: bool = True,
    findings: Sequence[str] | None = None,
    selection: str | None = None,
    progress: Progress = SilentProgress(),
) -> tuple[np.ndarray, dict]:
    """Fit the attentive head(s) on `train` (`val` for monitoring/selection) and return the test attention maps
    [N_test, T, H, W] (one softmax map over the patch grid per finding) and the fit reports.

    One head per finding (default): task t's head sees only label column t, so it has a single query, as RayDINO's
    "disease-specific classification adapter using a single attention head". Otherwise one head with a query per
    finding is trained on all columns (with a linear decoder, the queries and outputs of different findings share no
    parameters, so this differs only by the loss scale and any hyperparameter selection across findings).
    `selection`: the metric a head with several settings chooses by on `val` (None: the validation loss).
    """
    entry, head_class = attentive_head_class(head)
    overrides = dict(overrides or {})
    tasks = train.labels.shape[1]
    names = list(findings) if findings is not None else [str(t) for t in range(tasks)]
    if test.patches is None or train.patches is None:
        raise CxrbenchError("Attentive heads need patch tokens; extract them with patch_tokens=True.")

    def column(part: FeatureSet, t: int) -> FeatureSet:
        return FeatureSet(part.global_, part.labels[:, [t]], part.patches)

    reports: dict[str, Any] = {}
    if one_head_per_finding:
        maps = []
        advance = progress.task(f"seed {seed}: fitting one attentive head per finding", tasks)
        for t in range(tasks):
            model = head_class(entry.spec, overrides, "binary", selection)
            report = model.fit(column(train, t), column(val, t), seed, progress)
            reports[names[t]] = _report(report)
            single = check_attention(model.attention_maps(column(test, t)), len(test.labels), 1)
            maps.append(single[:, 0])
            advance(1)
        attention = np.stack(maps, axis=1)
    else:
        model = head_class(entry.spec, overrides, "binary", selection)
        reports["all"] = _report(model.fit(train, val, seed, progress))
        attention = check_attention(model.attention_maps(test), len(test.labels), tasks)
    return attention.astype(np.float32, copy=False), reports


def _report(report: FitReport) -> dict:
    last = {k: float(v[-1]) for k, v in report.history.items() if v and np.isfinite(v[-1])}
    return {"chosen": report.chosen, **{f"final_{k}": v for k, v in last.items()}}


# --------------------------------------------------------------------------------------------------------------------
# Scoring and writing


def finding_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "finding"


def place_boxes(
    test: pd.DataFrame, boxes: pd.DataFrame, findings: Sequence[str], preprocessing: PreprocessSpec,
    sizes: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The boxes of `findings` on the `test` images (rows: image_id, path), mapped into encoder-input pixels.

    Returns (boxes with image_index, finding_index, in_* and status; counts of boxes left out and why; the
    encoder-input size). `sizes` [len(test), 2] (height, width) defaults to the images' headers.
    """
    index = pd.Series(np.arange(len(test)), index=test["image_id"].astype(str))
    ours = boxes[boxes["finding"].isin(findings)]
    in_test = ours["image_id"].isin(index.index)
    left_out = {
        "boxes_of_images_outside_test_split": int((~in_test).sum()),
        "boxes_of_findings_not_evaluated": {str(k): int(v) for k, v in
                                            boxes.loc[~boxes["finding"].isin(findings) & (boxes["finding"] != NO_FINDING),
                                                      "finding"].value_counts().items()},
    }
    placed = ours[in_test].copy()
    placed["image_index"] = index.loc[placed["image_id"]].to_numpy()
    placed["finding_index"] = pd.Index(list(findings)).get_indexer(placed["finding"])
    needed = np.unique(placed["image_index"].to_numpy())
    if sizes is None:
        sizes_needed = image_sizes(test["path"].iloc[needed].tolist())
    else:
        sizes_needed = np.asarray(sizes)[needed]
    coords = np.full((len(placed), 4), np.nan)
    status = np.empty(len(placed), dtype=object)
    input_sizes = set()
    for (height, width), image in zip(sizes_needed, needed):
        geometry = InputGeometry.from_spec(preprocessing, int(height), int(width))
        input_sizes.add(geometry.input)
        rows = np.flatnonzero(placed["image_index"].to_numpy() == image)
        mapped, state = geometry.map_boxes(placed[["x_min", "y_min", "x_max", "y_max"]].to_numpy()[rows])
        coords[rows], status[rows] = mapped, state
    for c, name in enumerate(INPUT_COLUMNS):
        placed[name] = coords[:, c]
    placed["status"] = status
    left_out.update({
        "boxes_cropped_away": int((placed["status"] == CROPPED_AWAY).sum()),
        "boxes_empty": int((placed["status"] == EMPTY).sum()),
        "boxes_clipped_by_crop": int((placed["status"] == CLIPPED).sum()),
    })
    if len(input_sizes) > 1:
        raise CxrbenchError(f"The preprocessing gives inputs of several sizes {sorted(input_sizes)}; a patch grid needs one.")
    side = preprocessing.crop or preprocessing.size
    input_size = input_sizes.pop() if input_sizes else (side, side)
    return placed.reset_index(drop=True), left_out, input_size


def run_explain(
    data: BenchmarkData,
    findings: Sequence[str],
    attention: Mapping[int, np.ndarray] | np.ndarray,
    preprocessing: PreprocessSpec,
    patch_stride: int,
    folder: Path,
    *,
    boxes: pd.DataFrame | None = None,
    sizes: np.ndarray | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    images_per_finding: int = 4,
    bootstrap: BootstrapSpec | None = None,
    info: dict | None = None,
    config: dict | None = None,
    run: dict | None = None,
    check=None,
    progress: Progress = SilentProgress(),
) -> ExplainResult:
    """Score and write the explainability of fitted attention maps.

    `data`: the benchmark (its test-split rows, in order, are the images of the attention maps; needs image_id,
    path and patient_id). `attention`: seed -> [N_test, T, H, W] (or one array, seed 0), T = len(findings).
    `boxes`: the loader's test boxes (`data.boxes`) by default. `sizes`: [N_test, 2] original (height, width), by default
    read from the image headers. `run`: metrics.json's top level (benchmark, encoder, head, seeds, run_identity,
    provenance; the summary goes under `explain`); `check(stored metrics.json or None)`: refuses, under the folder's
    lock, to replace a run of other settings. Writes `folder` atomically and returns the summary.
    """
    findings = list(findings)
    if images_per_finding < 0:
        raise CxrbenchError(f"--images-per-finding must be 0 or more, got {images_per_finding}.")
    test = data.samples.loc[data.samples["split"] == "test"].reset_index(drop=True)
    attention, (grid_h, grid_w) = _checked_attention(attention, len(test), findings)
    boxes = data.boxes if boxes is None else boxes
    if boxes is None:
        raise CxrbenchError(f"Benchmark '{data.name}' supplies no test boxes to score attention maps against.")
    placed, left_out, input_size = place_boxes(test, boxes, findings, preprocessing, sizes)
    grid = PatchGrid.for_input(grid_h, grid_w, patch_stride, input_size)
    missing = [f for f in findings if not (placed["finding"] == f).any()]
    scored_by_seed = {seed: score_boxes(placed, attention[seed], grid.stride, min_overlap) for seed in sorted(attention)}
    summary, table = _summary(test, scored_by_seed, findings, bootstrap or BootstrapSpec(), info)
    summary["protocol"] = {**PROTOCOL, "min_overlap": min_overlap, "patch_stride": grid.stride,
                           "input_size": list(input_size), "grid": [grid.rows, grid.cols]}
    summary["left_out"] = {**left_out, "findings_without_test_boxes": missing}
    summary["published"] = published_explainability()
    summary = {**(info or {}), **{key: summary[key] for key in SUMMARY_ORDER}}  # explain.json's key order

    csv = pd.concat([s.assign(seed=seed) for seed, s in scored_by_seed.items()], ignore_index=True)
    csv = csv[CSV_COLUMNS].sort_values(["seed", "finding", "image_id", "csv_row"], kind="stable").reset_index(drop=True)
    first = min(scored_by_seed)
    pictures = _heatmap_writers(test, scored_by_seed[first], attention[first], findings, preprocessing, grid,
                                images_per_finding, first)
    summary["heatmaps"] = sorted(pictures)
    writers = {"explain.csv": lambda path: csv.to_csv(path, index=False),
               METRICS: json_writer({"schema_version": SCHEMA_VERSION, "kind": EXPLAIN, **(run or {}),
                                     "explain": plain(summary)})}
    if config is not None:
        writers["config.yaml"] = yaml_writer(plain(config))
    writers["table.md"] = text_writer(explain_markdown(summary))
    advance = progress.task(f"writing {len(pictures)} attention overlays", len(pictures))

    def counted(write):
        def run(path: Path) -> None:
            write(path)
            advance(1)
        return run

    writers.update({name: counted(write) for name, write in pictures.items()})
    write_run(Path(folder), writers, check=check, on_wait=progress.note)
    return ExplainResult(str((info or {}).get("encoder", "")), str((info or {}).get("head", "")), Path(folder),
                         json.loads(json.dumps(plain(summary))), table, csv)


def _checked_attention(attention, n_test: int, findings: list[str]) -> tuple[dict[int, np.ndarray], tuple[int, int]]:
    """The attention maps by seed, each checked against the test split and the findings, and their one grid (H, W)."""
    if not findings:
        raise CxrbenchError("No finding to explain.")
    attention = {0: attention} if isinstance(attention, np.ndarray) else dict(attention)
    if not attention:
        raise CxrbenchError("No attention maps given (no seed).")
    for seed, maps in attention.items():
        attention[seed] = check_attention(maps, n_test, len(findings))
    shapes = {maps.shape[2:] for maps in attention.values()}
    if len(shapes) != 1:
        raise CxrbenchError(f"The seeds' attention maps have different grids: {sorted(shapes)}.")
    return attention, shapes.pop()


def _summary(test: pd.DataFrame, scored_by_seed: dict[int, pd.DataFrame], findings: list[str], bootstrap: BootstrapSpec,
             info: dict | None) -> tuple[dict, pd.DataFrame]:
    """Per finding and seed the boxes, hits and accuracy, the macro accuracy per seed, over seeds and its bootstrap
    interval (test `units` resampled: patients, or images without patient ids); and the per-finding table."""
    seeds = sorted(scored_by_seed)
    per_seed = {seed: finding_accuracy(scored_by_seed[seed], findings) for seed in seeds}
    macros = {seed: macro_accuracy(per_seed[seed]) for seed in seeds}
    unit = "patient_id" if bootstrap.unit == "patient" and "patient_id" in test else "image_id"
    units = pd.Series(test[unit].astype(str).to_numpy(), index=test["image_id"].astype(str))
    ci = bootstrap_macro(scored_by_seed, findings, units, bootstrap.resamples, bootstrap.confidence, bootstrap.seed)
    first = per_seed[seeds[0]]
    accuracy = pd.DataFrame({s: per_seed[s]["accuracy"] for s in seeds})
    table = pd.DataFrame({
        "boxes": first["boxes"], "images": first["images"],
        "accuracy_mean": accuracy.mean(axis=1), "accuracy_std": accuracy.std(axis=1, ddof=1),
    })
    summary = {
        **(info or {}),
        "split": "test",
        "n_test_images": len(test),
        # distinct test images with a scored box of any finding (an image with two findings counts once)
        "n_images_with_boxes": int(scored_by_seed[seeds[0]].loc[lambda f: f["hit"].notna(), "image_id"].nunique()),
        "seeds": seeds,
        "std_ddof": 1,
        "macro_accuracy": {
            "mean": float(np.mean(list(macros.values()))),
            "std": float(np.std(list(macros.values()), ddof=1)) if len(seeds) > 1 else None,
            "per_seed": {str(s): macros[s] for s in seeds},
            "ci_low": None if ci is None else ci[0],
            "ci_high": None if ci is None else ci[1],
            "bootstrap": {**asdict(bootstrap), "unit": unit.replace("_id", "")},
            "findings_averaged": int((first["boxes"] > 0).sum()),
        },
        "findings": {
            name: {
                "boxes": int(first.loc[name, "boxes"]),
                "images": int(first.loc[name, "images"]),
                "hits": {str(s): int(per_seed[s].loc[name, "hits"]) for s in seeds},
                "accuracy": {str(s): per_seed[s].loc[name, "accuracy"] for s in seeds},
                "accuracy_mean": table.loc[name, "accuracy_mean"],
                "accuracy_std": table.loc[name, "accuracy_std"],
            }
            for name in findings
        },
    }
    return summary, table


def _heatmap_writers(test, scored, attention, findings, preprocessing, grid, per_finding, seed) -> dict:
    writers = {}
    if per_finding <= 0:
        return writers
    valid = scored[scored["hit"].notna()]
    for t, name in enumerate(findings):
        mine = valid[valid["finding"] == name]
        for image_id in sorted(mine["image_id"].unique())[:per_finding]:
            rows = mine[mine["image_id"] == image_id]
            image_index = int(rows["image_index"].iloc[0])
            argmax = (int(rows["argmax_row"].iloc[0]), int(rows["argmax_col"].iloc[0]))
            hits = rows["hit"].astype(bool)
            peak = float(attention[image_index, t].max())
            caption = (f"{name} | seed {seed}\n{image_id}\n"
                       f"{int(hits.sum())}/{len(hits)} box(es) hit by argmax patch {argmax}\n"
                       f"peak attention {peak:.3f} (uniform {1 / (grid.rows * grid.cols):.3f})")
            relative = f"heatmaps/{finding_slug(name)}/{image_id}.png"
            writers[relative] = _overlay_writer(
                test["path"].iloc[image_index], attention[image_index, t], preprocessing, grid.stride,
                rows[list(INPUT_COLUMNS)].to_numpy(), argmax, bool(hits.any()), caption,
            )
    return writers


def _overlay_writer(path, attention, preprocessing, stride, boxes, argmax, hit, caption):
    def write(target: Path) -> None:
        image = display_image(read_image(path), preprocessing)
        write_overlay(target, render_overlay(image, attention, stride, boxes, argmax, hit, caption))
    return write
