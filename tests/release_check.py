"""Before/after check between two cxrbench checkouts (not part of the test run):

    python tests/release_check.py --old /path/to/old/checkout --new . --work /tmp/release-check

Writes the demo's synthetic VinDr-CXR folder and small folders of the other released layouts, runs the same
commands with each checkout (`PYTHONPATH=<checkout>/src`, one thread, so that float sums happen in one order),
and compares every number under "metrics" in every metrics.json, and the binary targets' columns of every
predictions.parquet. Prints each difference larger than --tolerance and exits 1 if there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

RUNS = [  # (benchmark, encoder arguments, head, seeds)
    ("vindr", ["--encoder", "pixels"], "linear", 5),
    ("vindr", ["--encoder", "dinov2-small", "--weights", "random", "--image-size", "112"], "linear", 5),
    ("vindr", ["--encoder", "pixels"], "knn", 3),
    ("vindr", ["--encoder", "pixels"], "mlp", 2),
    ("candid-ptx", ["--encoder", "pixels"], "logistic", 3),
    ("candid-ptx", ["--encoder", "pixels"], "linear", 2),
    ("rsna-pneumonia", ["--encoder", "pixels"], "logistic", 3),
    ("padchest-lateral", ["--encoder", "pixels"], "logistic", 3),
]


def write_data(folder: Path) -> dict[str, Path]:
    from cxrbench.data.candid.synthetic import write_synthetic_candid
    from cxrbench.data.common.synthetic import SyntheticConfig
    from cxrbench.data.padchest.synthetic import write_synthetic_padchest
    from cxrbench.data.rsna.synthetic import write_synthetic_rsna
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr

    roots = {"vindr": folder / "vindr", "candid-ptx": folder / "candid", "rsna-pneumonia": folder / "rsna",
             "padchest-lateral": folder / "padchest"}
    if not (roots["vindr"] / "annotations").is_dir():
        write_synthetic_vindr(roots["vindr"], SyntheticConfig(patients=300))  # the demo's data
        write_synthetic_candid(roots["candid-ptx"], patients=120)  # every cross-validation fold holds each finding
        write_synthetic_rsna(roots["rsna-pneumonia"], patients=80)
        write_synthetic_padchest(roots["padchest-lateral"], patients=80)
    return roots


def run_all(checkout: Path, roots: dict[str, Path], out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "OMP_NUM_THREADS": "1", "CXRBENCH_CACHE": str(out / "cache")}
    for benchmark, encoder, head, seeds in RUNS:
        command = [sys.executable, "-c", "from cxrbench.cli import main; main()", "run", benchmark, *encoder,
                   "--head", head, "--seeds", str(seeds), "--bootstrap", "300", "--data-root", str(roots[benchmark]),
                   "--out", str(out / "results"), "--overwrite"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{checkout}: {' '.join(command[3:])} failed:\n{done.stderr[-3000:]}")
        print(f"{checkout.name}: {benchmark} {encoder[1]} {head} done", flush=True)


def numbers(value, path: str = ""):
    """Every number of a JSON value with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from numbers(item, f"{path}[{index}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, float(value)
    elif value is None:
        yield path, None


def compare(old: Path, new: Path, tolerance: float) -> int:
    problems = compared = 0
    for metrics_old in sorted((old / "results").glob("*/*/*/metrics.json")):
        relative = metrics_old.relative_to(old / "results")
        metrics_new = new / "results" / relative
        a = dict(numbers(json.loads(metrics_old.read_text())["metrics"]))
        b = dict(numbers(json.loads(metrics_new.read_text())["metrics"]))
        for key in sorted(set(a) | set(b)):
            compared += 1
            x, y = a.get(key, "absent"), b.get(key, "absent")
            same = x == y or (isinstance(x, float) and isinstance(y, float) and abs(x - y) <= tolerance)
            if not same:
                problems += 1
                print(f"{relative}{key}: {x} -> {y}")
        p_old = pd.read_parquet(metrics_old.with_name("predictions.parquet"))
        p_new = pd.read_parquet(metrics_new.with_name("predictions.parquet"))
        columns = ["image_id", "patient_id", "seed", "task", "label", "score"]
        if list(p_new.columns[: len(columns)]) != columns or not p_old[columns].equals(p_new[columns]):
            diff = np.abs(p_old["score"].to_numpy() - p_new["score"].to_numpy()).max() if len(p_old) == len(p_new) else "rows differ"
            problems += 1
            print(f"{relative.parent}/predictions.parquet differs (max score difference {diff})")
    print(f"{compared} numbers compared, {problems} difference(s) beyond {tolerance:g}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, default=Path("."))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=1e-12)
    args = parser.parse_args()
    roots = write_data(args.work / "data")
    for name, checkout in (("old", args.old.resolve()), ("new", args.new.resolve())):
        run_all(checkout, roots, args.work / name)
    raise SystemExit(1 if compare(args.work / "old", args.work / "new", args.tolerance) else 0)


if __name__ == "__main__":
    main()
