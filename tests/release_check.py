"""Before/after check between two cxrbench checkouts (not part of the test run):

    python tests/release_check.py --old /path/to/old/checkout --new . --work /tmp/release-check

Writes the demo's synthetic VinDr-CXR folder and small folders of the other released layouts (with the OLD
checkout's writers, so that both read the very same files), runs the same commands with each checkout
(`PYTHONPATH=<checkout>/src`, one thread, so that float sums happen in one order): the demo, probes of every head
family, a segmentation transfer run, an explain run, a bias run, label-budget runs with their curve, a comparison and
a paper table's reproduction. It then compares

- every number under "metrics" in every metrics.json (explain's numbers, stored in explain.json by older versions,
  are compared with the run's metrics.json by their relative paths),
- the first six columns of every predictions.parquet,
- every CSV table written (numbers to --tolerance, text exactly), and every table.md / comparison Markdown exactly,

prints each difference and exits 1 if there is one. A checkout's outputs are kept under WORK/old or WORK/new and
reused when complete (delete the folder to rerun it).
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

WRITE_DATA = """
import sys
from pathlib import Path
folder = Path(sys.argv[1])
try:  # one package per dataset family (since the run-object redesign)
    from cxrbench.data.common.synthetic import SyntheticConfig
    from cxrbench.data.candid.synthetic import write_synthetic_candid
    from cxrbench.data.jsrt.synthetic import write_synthetic_jsrt
    from cxrbench.data.padchest.synthetic import write_synthetic_padchest
    from cxrbench.data.paxray.synthetic import write_synthetic_paxray
    from cxrbench.data.rsna.synthetic import write_synthetic_rsna
    from cxrbench.data.vindr.synthetic import write_synthetic_vindr
except ImportError:  # checkouts before it
    from cxrbench.data.synthetic import SyntheticConfig, write_synthetic_vindr
    from cxrbench.data.synthetic_layouts import (write_synthetic_candid, write_synthetic_jsrt, write_synthetic_padchest,
                                                 write_synthetic_paxray, write_synthetic_rsna)
write_synthetic_vindr(folder / "vindr", SyntheticConfig(patients=300))  # the demo's data
write_synthetic_candid(folder / "candid", patients=120)  # every cross-validation fold holds each finding
write_synthetic_rsna(folder / "rsna", patients=80)
write_synthetic_padchest(folder / "padchest", patients=80)
write_synthetic_paxray(folder / "paxray", volumes=16, test_volumes=4, size=64, seed=0)
write_synthetic_jsrt(folder / "jsrt", images=8, seed=0)  # JSRT is read only at its released 2048 px
"""

PROBES = [  # (benchmark, encoder arguments, head, seeds)
    ("vindr", ["--encoder", "pixels"], "linear", 5),
    ("vindr", ["--encoder", "dinov2-small", "--weights", "random", "--image-size", "112"], "linear", 5),
    ("vindr", ["--encoder", "pixels"], "knn", 3),
    ("vindr", ["--encoder", "pixels"], "mlp", 2),
    ("candid-ptx", ["--encoder", "pixels"], "logistic", 3),
    ("candid-ptx", ["--encoder", "pixels"], "linear", 2),
    ("rsna-pneumonia", ["--encoder", "pixels"], "logistic", 3),
    ("padchest-lateral", ["--encoder", "pixels"], "logistic", 3),
]
ROOTS = {"vindr": "vindr", "candid-ptx": "candid", "rsna-pneumonia": "rsna", "padchest-lateral": "padchest",
         "paxray-to-jsrt": "paxray"}
RANDOM_VIT = ["--encoder", "dinov2-small", "--weights", "random", "--image-size", "56"]


def commands(data: Path, out: Path) -> list[list[str]]:
    """Every command run with each checkout, in order (later ones read what earlier ones stored)."""
    results, common = str(out / "results"), ["--bootstrap", "300", "--out", str(out / "results")]
    runs = [["run", b, *e, "--head", h, "--seeds", str(s), "--data-root", str(data / ROOTS[b]), *common, "--overwrite"]
            for b, e, h, s in PROBES]
    return [
        ["demo", "--workdir", str(out / "demo"), "--seeds", "2"],
        *runs,
        ["run", "vindr", "--encoder", "pixels", "--head", "linear", "--train-fraction", "0.25,0.5", "--seeds", "2",
         "--data-root", str(data / "vindr"), *common],
        ["curve", "vindr", "--out", results],
        ["compare", "vindr", "--encoders", "pixels,dinov2-small", "--head", "linear", "--out", results],
        ["run", "paxray-to-jsrt", *RANDOM_VIT, "--head", "seg-linear", "--seeds", "1", "--data-root", str(data / "paxray"),
         "--dataset-option", f"test_root={data / 'jsrt'}", *common],
        ["explain", "vindr", "--encoder", "pixels", "--seeds", "1", "--data-root", str(data / "vindr"), *common],
        ["bias", "vindr", "--attribute", "sex", "--encoder", "pixels", "--head", "linear", "--folds", "2",
         "--data-root", str(data / "vindr"), *common],
        ["reproduce", "rad-dino-1b", "--weights", "random", "--image-size", "56", "--seeds", "1",
         "--data-root", f"candid-ptx={data / 'candid'}", "--data-root", f"rsna-pneumonia={data / 'rsna'}",
         "--out", str(out / "reproduced")],
    ]


def write_data(old: Path, folder: Path) -> None:
    if (folder / ".done").is_file():
        return
    env = {**os.environ, "PYTHONPATH": str(old / "src"), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", WRITE_DATA, str(folder)], env=env, check=True)
    (folder / ".done").write_text("")


def run_all(checkout: Path, data: Path, out: Path) -> None:
    if (out / ".done").is_file():
        print(f"{checkout}: outputs kept from an earlier check ({out})", flush=True)
        return
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "OMP_NUM_THREADS": "1", "CXRBENCH_CACHE": str(out / "cache")}
    for index, command in enumerate(commands(data, out)):
        marker = out / f".done-{index}"
        if marker.is_file():  # a check stopped half-way goes on where it stopped
            continue
        full = [sys.executable, "-c", "from cxrbench.cli import main; main()", *command]
        done = subprocess.run(full, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{checkout}: {' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        marker.write_text("")
        print(f"{checkout.name}: {' '.join(command[:2])} done", flush=True)
    (out / ".done").write_text("")


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


class Report:
    def __init__(self, tolerance: float) -> None:
        self.tolerance, self.compared, self.problems = tolerance, 0, 0

    def differ(self, where: str, what: str) -> None:
        self.problems += 1
        print(f"{where}: {what}")

    def same_numbers(self, where: str, a: dict, b: dict) -> None:
        for key in sorted(set(a) | set(b)):
            self.compared += 1
            x, y = a.get(key, "absent"), b.get(key, "absent")
            if not (x == y or (isinstance(x, float) and isinstance(y, float) and abs(x - y) <= self.tolerance)):
                self.differ(f"{where}{key}", f"{x} -> {y}")


def run_numbers(folder: Path) -> dict:
    """A run's numbers: metrics.json's "metrics"; an explain or bias run's are its whole "explain" / "bias" block
    (explain's was explain.json in older versions)."""
    if (folder / "explain.json").is_file():
        return dict(numbers(json.loads((folder / "explain.json").read_text())))
    metrics = json.loads((folder / "metrics.json").read_text())
    kind = metrics.get("kind")
    return dict(numbers(metrics[kind] if kind in ("explain", "bias") else metrics["metrics"]))


def compare_runs(old: Path, new: Path, report: Report) -> None:
    folders = sorted({p.parent.relative_to(old) for pattern in ("metrics.json", "explain.json") for p in old.rglob(pattern)
                      if "cache" not in p.parts})
    for relative in folders:
        if not (new / relative).is_dir():
            report.differ(str(relative), "run folder missing in the new checkout")
            continue
        report.same_numbers(str(relative), run_numbers(old / relative), run_numbers(new / relative))
        p_old, p_new = old / relative / "predictions.parquet", new / relative / "predictions.parquet"
        if p_old.is_file():
            same_predictions(str(relative / "predictions.parquet"), pd.read_parquet(p_old), pd.read_parquet(p_new), report)


def same_predictions(where: str, a: pd.DataFrame, b: pd.DataFrame, report: Report) -> None:
    """Every column of the old predictions (a probe's image_id ... score, a segmentation run's per-case values),
    the same in the new ones, in the same rows and order."""
    missing = [c for c in a.columns if c not in b.columns]
    if missing or len(a) != len(b):
        report.differ(where, f"columns {missing} missing or rows differ ({len(a)} vs {len(b)})")
        return
    report.compared += 1
    for column in a.columns:
        if a[column].equals(b[column]):
            continue
        numeric = pd.api.types.is_numeric_dtype(a[column]) and pd.api.types.is_numeric_dtype(b[column])
        diff = np.nanmax(np.abs(a[column].to_numpy(float) - b[column].to_numpy(float))) if numeric else "text"
        report.differ(f"{where}:{column}", f"differs (max difference {diff})")


def compare_files(old: Path, new: Path, report: Report) -> None:
    """Every CSV (numbers to the tolerance) and every Markdown table (exactly) the old checkout wrote."""
    for path in sorted(old.rglob("*")):
        if path.suffix not in (".csv", ".md") or "cache" in path.parts or path.name.startswith("."):
            continue
        relative = path.relative_to(old)
        other = new / relative
        if not other.is_file():
            report.differ(str(relative), "missing in the new checkout")
            continue
        report.compared += 1
        if path.suffix == ".md":
            if path.read_text() != other.read_text():
                report.differ(str(relative), "text differs")
            continue
        a, b = pd.read_csv(path), pd.read_csv(other)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            report.differ(str(relative), f"shape or columns differ ({list(a.columns)} vs {list(b.columns)})")
            continue
        for column in a.columns:
            x, y = a[column], b[column]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                close = np.isclose(x.to_numpy(float), y.to_numpy(float), rtol=0, atol=report.tolerance, equal_nan=True)
                if not close.all():
                    report.differ(f"{relative}:{column}", f"{int((~close).sum())} value(s) differ")
            elif not x.astype(str).equals(y.astype(str)):
                report.differ(f"{relative}:{column}", "text differs")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, default=Path("."))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--tolerance", type=float, default=1e-12)
    args = parser.parse_args()
    write_data(args.old.resolve(), args.work / "data")
    for name, checkout in (("old", args.old.resolve()), ("new", args.new.resolve())):
        run_all(checkout, args.work / "data", args.work / name)
    report = Report(args.tolerance)
    compare_runs(args.work / "old", args.work / "new", report)
    compare_files(args.work / "old", args.work / "new", report)
    print(f"{report.compared} numbers and files compared, {report.problems} difference(s) beyond {args.tolerance:g}")
    raise SystemExit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
