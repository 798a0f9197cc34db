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
import subprocess
import sys
import time
from pathlib import Path

from cxrbench.data.candid.synthetic import write_synthetic_candid
from cxrbench.data.common.synthetic import SyntheticConfig
from cxrbench.data.mimic.synthetic import write_synthetic_mimic_cxr
from cxrbench.data.padchest.synthetic import write_synthetic_padchest
from cxrbench.data.rsna.synthetic import write_synthetic_rsna
from cxrbench.data.vindr.synthetic import write_synthetic_vindr

DATASETS = {  # benchmark -> how its synthetic folder is written (the demo's VinDr-CXR; small folders otherwise)
    "vindr": lambda root: write_synthetic_vindr(root, SyntheticConfig()),
    "candid-ptx": lambda root: write_synthetic_candid(root, patients=120),
    "rsna-pneumonia": lambda root: write_synthetic_rsna(root, patients=120),
    "padchest-lateral": lambda root: write_synthetic_padchest(root, patients=120),
    "mimic-demographics": lambda root: write_synthetic_mimic_cxr(root, patients=240),
}
#: Where the committed fixture runs and their tables live (never the default --out, results/).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "committed"
#: (recipe, extra arguments): every row of RAD-DINO's classification and demographics tables (about 50 minutes on 2 CPU
#: cores, most of it random ViT-L / ViT-g networks encoding 620 images). The segmentation tables are not committed:
#: their decoders would take hours on these cores; tests/test_segmentation.py holds a segmentation run to the same
#: check. Table C.2 reads the runs of Table 5.
TABLES = [("rad-dino-1a", []), ("rad-dino-1b", []), ("rad-dino-c1", []), ("rad-dino-5", []), ("rad-dino-c2", [])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cxrbench-committed"), help="synthetic data and feature cache")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--tables", nargs="*", default=[name for name, _ in TABLES])
    args = parser.parse_args()
    roots = {}
    for benchmark, write in DATASETS.items():
        roots[benchmark] = args.work / "data" / benchmark
        if not roots[benchmark].exists():
            write(roots[benchmark])
    for name, extra in TABLES:
        if name not in args.tables:
            continue
        from cxrbench.tables.recipes import load_recipe

        data = [f"--data-root={b}={roots[b]}" for b in load_recipe(name).benchmarks]
        started = time.perf_counter()
        command = ["cxrbench", "reproduce", name, "--weights", "random", "--image-size", "56", *data, *extra,
                   "--out", str(args.out), "--cache-dir", str(args.work / "cache")]
        print("$", " ".join(command), flush=True)
        result = subprocess.run(command)
        print(f"{name}: exit {result.returncode} after {time.perf_counter() - started:.0f} s", flush=True)
        if result.returncode:
            return result.returncode
    return subprocess.run(["cxrbench", "table", "--all", "--out", str(args.out)]).returncode


if __name__ == "__main__":
    sys.exit(main())
