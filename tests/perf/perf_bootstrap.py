"""Performance benchmark of the patient-clustered bootstrap (not part of the test run): `python tests/perf/perf_bootstrap.py`.

On synthetic long-form predictions shaped like a classification benchmark's test split (defaults: 3,000 images of
about 1,500 patients, 1 to 3 images each; 7 binary targets with prevalences from 5 % to 40 % and 1 % unknown labels;
5 seeds whose scores are continuous probabilities, so there are few ties), measured side by side in one process:
1. summarize:  `cxrbench.stats.summary.summarize` with `--resamples` patient resamples (default 1,000), for AUPRC
               alone and for AUPRC + AUROC; the fastest of `--repeats` runs is reported (on shared cores single
               timings vary by 2x or more). Target: AUPRC alone < 2 s on 2 cores.
2. plain loop: for each resample, seed and target, the rows drawn (each image repeated as often as its patient was
               drawn) scored by scikit-learn's `average_precision_score` / `roc_auc_score`. It is timed on the first
               `--loop-resamples` resamples (default 50) and scaled linearly to `--resamples` (the output says so).
               Target: plain loop / summarize >= 20 for AUPRC alone.
Checked: on those `--loop-resamples` resamples, summarize's CI, bootstrap median and undefined count equal the plain
loop's to 1e-9 for every target and the macro average (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrbench.specs import BootstrapSpec, TargetSpec
from cxrbench.stats.bootstrap import ClusterBootstrap, percentile_interval
from cxrbench.stats.summary import MACRO, summarize

SKLEARN = {"auprc": average_precision_score, "auroc": roc_auc_score}


def make_predictions(images: int, targets: int, seeds: int, unknown: float, seed: int) -> pd.DataFrame:
    """Long-form predictions: patients own 1-3 images (2 on average), labels belong to images, scores to seeds."""
    rng = np.random.default_rng(seed)
    patient_of = np.repeat(np.arange(images), rng.integers(1, 4, images))[:images]
    image_ids = np.array([f"img{i:05d}" for i in rng.permutation(images)])
    patient_ids = np.array([f"pat{p:05d}" for p in patient_of])
    prevalence = np.linspace(0.05, 0.40, targets)
    rows = []
    for t in range(targets):
        risk = rng.normal(size=patient_of.max() + 1)[patient_of]  # the images of a patient tend to share the label
        labels = (risk + rng.normal(size=images) > np.quantile(risk, 1 - prevalence[t]) + 0.5).astype(np.float64)
        labels[rng.random(images) < unknown] = np.nan
        for s in range(seeds):
            logit = 1.6 * np.nan_to_num(labels) + 0.4 * risk + rng.normal(size=images) - 2.0
            rows.append(pd.DataFrame({"image_id": image_ids, "patient_id": patient_ids, "seed": s, "task": f"finding{t}",
                                      "label": labels, "score": 1.0 / (1.0 + np.exp(-logit))}))
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def timed_summary(predictions: pd.DataFrame, targets: list[TargetSpec], metrics: list[str], spec: BootstrapSpec,
                  repeats: int) -> tuple[float, dict]:
    best, result = float("inf"), {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = summarize(predictions, targets, lambda target: metrics, spec)
        best = min(best, time.perf_counter() - start)
    return best, result


def plain_loop(predictions: pd.DataFrame, metric: str, spec: BootstrapSpec, resamples: int) -> tuple[float, np.ndarray]:
    """[resamples, seeds, targets] metric values by materialising each resample's rows, and the seconds it took."""
    patients = predictions.drop_duplicates("image_id").set_index("image_id")["patient_id"].sort_index()
    boot = ClusterBootstrap(patients.to_numpy(), resamples, spec.seed)
    seeds, tasks = sorted(predictions["seed"].unique()), sorted(predictions["task"].unique())
    parts = []
    for s in seeds:
        for task in tasks:
            part = predictions[(predictions["seed"] == s) & (predictions["task"] == task) & predictions["label"].notna()]
            parts.append((patients.index.get_indexer(part["image_id"]), part["label"].to_numpy(), part["score"].to_numpy()))
    score = SKLEARN[metric]
    out = np.full((resamples, len(seeds) * len(tasks)), np.nan)
    start = time.perf_counter()
    weights = boot.weights()
    for r in range(resamples):
        for k, (columns, labels, scores) in enumerate(parts):
            drawn = np.repeat(np.arange(len(columns)), weights[r, columns].astype(np.int64))
            y = labels[drawn]
            if 0 < y.sum() < len(y):
                out[r, k] = score(y, scores[drawn])
    seconds = time.perf_counter() - start
    return seconds, out.reshape(resamples, len(seeds), len(tasks))


def loop_entries(samples: np.ndarray, tasks: list[str], confidence: float) -> dict[str, tuple]:
    """(ci_low, median, ci_high, undefined) of the seed mean per target and for the macro average, as summarize."""
    columns = {task: samples[:, :, t] for t, task in enumerate(tasks)} | {MACRO: samples.mean(axis=2)}
    out = {}
    for name, values in columns.items():
        seed_mean = values.mean(axis=1)
        out[name] = (*percentile_interval(seed_mean, confidence), int((~np.isfinite(seed_mean)).sum()))
    return out


def agree(summary: dict, expected: dict[str, tuple]) -> float:
    """The largest absolute difference between summarize's entries and the plain loop's (inf when undefined differs)."""
    worst = 0.0
    for name, (low, median, high, undefined) in expected.items():
        entry = summary[name]
        if entry["bootstrap_undefined"] != undefined:
            return float("inf")
        for got, want in ((entry["ci_low"], low), (entry["bootstrap_median"], median), (entry["ci_high"], high)):
            got = np.nan if got is None else got
            if np.isnan(got) != np.isnan(want):
                return float("inf")
            if not np.isnan(want):
                worst = max(worst, abs(got - want))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--targets", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--unknown", type=float, default=0.01, help="share of unknown (NaN) labels per target")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--loop-resamples", type=int, default=50, help="resamples the plain loop is timed on")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    predictions = make_predictions(args.images, args.targets, args.seeds, args.unknown, seed=0)
    tasks = sorted(predictions["task"].unique())
    targets = [TargetSpec(task) for task in tasks]
    spec = BootstrapSpec(resamples=args.resamples, seed=0)
    patients = predictions["patient_id"].nunique()
    print(f"predictions: {args.images} images of {patients} patients x {args.targets} binary targets x {args.seeds} seeds, "
          f"{args.unknown:.0%} unknown labels; {args.resamples} patient resamples")

    failed = False
    seconds: dict[str, float] = {}
    loop_seconds: dict[str, float] = {}
    small = BootstrapSpec(resamples=args.loop_resamples, seed=spec.seed)
    for metric in ("auprc", "auroc"):
        loop, samples = plain_loop(predictions, metric, small, args.loop_resamples)
        loop_seconds[metric] = loop * args.resamples / args.loop_resamples
        check = summarize(predictions, targets, lambda target: [metric], small)[metric]
        difference = agree(check, loop_entries(samples, tasks, small.confidence))
        ok = difference <= 1e-9
        failed |= not ok
        print(f"plain loop, {metric}: {loop:.2f} s for {args.loop_resamples} resamples, scaled linearly to {args.resamples}: "
              f"{loop_seconds[metric]:.1f} s; CI equal to summarize's on those resamples: "
              f"{'yes' if ok else 'NO'} (largest difference {difference:.1e})")

    for metrics in (["auprc"], ["auprc", "auroc"]):
        label = " + ".join(m.upper() for m in metrics)
        seconds[label], _ = timed_summary(predictions, targets, metrics, spec, args.repeats)
        loop = sum(loop_seconds[m] for m in metrics)
        print(f"summarize, {label}: {seconds[label]:.2f} s (fastest of {args.repeats});  plain loop (scaled): {loop:.1f} s;  "
              f"speed-up {loop / seconds[label]:.1f}x")

    print()
    auprc = seconds["AUPRC"]
    print(f"AUPRC alone: {auprc:.2f} s (target < 2 s), {loop_seconds['auprc'] / auprc:.1f}x the plain loop (target >= 20x)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
