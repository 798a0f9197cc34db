"""Regenerate the committed CI fixtures under tests/fixtures/committed/ (not part of the test run):

    python tests/committed_results.py [--work /tmp/cxrbench-committed] [--out tests/fixtures/committed]

No dataset or released weight is available where CI runs, so the committed runs are the paper tables' recipes
(`cxrbench reproduce TABLE --weights random --image-size 56`) on synthetic folders in each dataset's official layout,
written here; every table labels their rows "random init, 56 px, synthetic data". They live apart from results/, the
default --out, so that a user's real runs there never meet them. The same commands with real folders (`--data-root
BENCHMARK=DIR`) and without `--weights random` give the real tables, written into results/.
`cxrbench table --all --check --out tests/fixtures/committed` (run by .ci/run) then holds every committed table to
these predictions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from cxrbench.data.brax.synthetic import write_synthetic_brax
from cxrbench.data.candid.synthetic import write_synthetic_candid
from cxrbench.data.chexpert.synthetic import write_synthetic_chexpert
from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.mimic.cxr import CHEXPERT_LABELS
from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr
from cxrbench.data.mimic.synthetic_long_tail import write_synthetic_mimic_lt
from cxrbench.data.mimic.synthetic_prognosis import write_synthetic_mimic_prognosis
from cxrbench.data.nih.synthetic import write_synthetic_nih_cxr14
from cxrbench.data.padchest.synthetic import write_synthetic_padchest
from cxrbench.data.ranzcr.synthetic import write_synthetic_ranzcr
from cxrbench.data.rsna.synthetic import write_synthetic_rsna
from cxrbench.data.vindr.synthetic import write_synthetic_vindr
# the transfers' test sides need every shared finding planted in the synthetic labels (tests/test_transfer.py says why)
from test_transfer import _plant_csv, _plant_padchest, _plant_vindr

DATASETS = {  # benchmark -> how its synthetic folder is written (the demo's VinDr-CXR; small folders otherwise)
    "vindr": lambda root: write_synthetic_vindr(root, SyntheticConfig()),
    "candid-ptx": lambda root: write_synthetic_candid(root, patients=120),
    "rsna-pneumonia": lambda root: write_synthetic_rsna(root, patients=120),
    "padchest-lateral": lambda root: write_synthetic_padchest(root, patients=120),
    "mimic-demographics": lambda root: write_synthetic_mimic_cxr(root, patients=240),
    "brax": lambda root: _plant_csv(next(write_synthetic_brax(root, patients=400).rglob("master_*.csv")), CHEXPERT_LABELS),
    "ranzcr-catheters": lambda root: write_synthetic_ranzcr(root, patients=200),
    "mimic-lt": write_synthetic_mimic_lt,
    "mimic-prognosis": lambda root: write_synthetic_mimic_prognosis(root, patients=200),
    "nih-cxr14": lambda root: write_synthetic_nih_cxr14(root, patients=200, test_patients=100),
    # the transfers' own sides (planted copies: the benchmarks above keep the folders their committed runs used)
    "chexpert": lambda root: _plant_csv(next(write_synthetic_chexpert(root, patients=120).rglob("train.csv")),
                                        CHEXPERT_LABELS),
    "chexpert-5": lambda root: write_synthetic_chexpert(root, patients=120, valid_patients=80),
    "mimic-cxr": lambda root: _plant_csv(next(write_synthetic_mimic_cxr(root, patients=120).rglob("*chexpert.csv*")),
                                         CHEXPERT_LABELS),
    "vindr-transfer": lambda root: _plant_vindr(write_synthetic_vindr(root, SyntheticConfig(patients=120))),
    "padchest-transfer": lambda root: _plant_padchest(write_synthetic_padchest(root, patients=120)),
}
#: a transfer's test benchmark -> the folder it reads, where that is not the benchmark's own folder above
TRANSFER_TEST_FOLDERS = {"vindr": "vindr-transfer", "padchest-lateral": "padchest-transfer"}
#: Where the committed fixture runs and their tables live (never the default --out, results/).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "committed"
#: (recipe, extra arguments): every row of RAD-DINO's classification and demographics tables (about 50 minutes on 2 CPU
#: cores, most of it random ViT-L / ViT-g networks encoding 620 images). The segmentation tables are not committed:
#: their decoders would take hours on these cores; tests/test_segmentation.py holds a segmentation run to the same
#: check. Table C.2 reads the runs of Table 5.
TABLES = [("rad-dino-1a", []), ("rad-dino-1b", []), ("rad-dino-c1", []), ("rad-dino-5", []), ("rad-dino-c2", [])]
#: Issue 23's tables, kept small: 2 seeds and 200 bootstrap resamples (about 2 minutes). Domain pre-training Tables
#: 7 and 8 read the NIH -> CheXpert runs of Table 2.
SMALL = ["--seeds", "2", "--bootstrap", "200"]
TABLES += [("domain-pretraining-2", SMALL), ("domain-pretraining-7", SMALL), ("domain-pretraining-8", SMALL)]
#: Run only when named (--tables): RayDINO's grid head (heads/raydino-grid.yaml: 156 decoders, at least 500 steps per
#: seed) is slow on CPU, so the committed runs are the raydino rows only, one seed. Measured on one thread each of two
#: shared cores: raydino-3c about 28 minutes, raydino-3a 63 minutes (26 classes), raydino-4a 59 minutes (two runs).
RAYDINO_ROWS = ["--seeds", "1", "--bootstrap", "200", "--encoder", "raydino"]
SLOW_TABLES = [("raydino-3a", RAYDINO_ROWS), ("raydino-3c", RAYDINO_ROWS), ("raydino-4a", RAYDINO_ROWS)]


def data_arguments(benchmarks: list[str], roots: dict[str, Path]) -> tuple[list[str], dict[str, str]]:
    """--data-root per benchmark of a table, and for a transfer benchmark its test side's folder in the environment
    variable that side reads (`cxrbench.transfer`: the YAML's test_root, else that variable)."""
    from cxrbench.registry import benchmark_spec

    arguments, environment = [], {}
    for name in benchmarks:
        plan = benchmark_spec(name).transfer
        arguments.append(f"--data-root={name}={roots[plan.train if plan else name]}")
        if plan is not None:
            test = benchmark_spec(plan.test)
            environment[test.data_root_env] = str(roots[TRANSFER_TEST_FOLDERS.get(plan.test, plan.test)])
    return arguments, environment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cxrbench-committed"), help="synthetic data and feature cache")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--tables", nargs="*", default=[name for name, _ in TABLES],
                        help=f"default: {' '.join(name for name, _ in TABLES)}; also: "
                             f"{' '.join(name for name, _ in SLOW_TABLES)}")
    args = parser.parse_args()
    roots = {}
    for benchmark, write in DATASETS.items():
        roots[benchmark] = args.work / "data" / benchmark
        if not roots[benchmark].exists():
            write(roots[benchmark])
    for name, extra in TABLES + SLOW_TABLES:
        if name not in args.tables:
            continue
        from cxrbench.tables.recipes import load_recipe

        data, environment = data_arguments(load_recipe(name).benchmarks, roots)
        started = time.perf_counter()
        command = ["cxrbench", "reproduce", name, "--weights", "random", "--image-size", "56", *data, *extra,
                   "--out", str(args.out), "--cache-dir", str(args.work / "cache")]
        print("$", " ".join(command), flush=True)
        result = subprocess.run(command, env={**os.environ, **environment})
        print(f"{name}: exit {result.returncode} after {time.perf_counter() - started:.0f} s", flush=True)
        if result.returncode:
            return result.returncode
    return subprocess.run(["cxrbench", "table", "--all", "--out", str(args.out)]).returncode


if __name__ == "__main__":
    sys.exit(main())
