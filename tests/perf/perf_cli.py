"""Performance benchmark (not part of the test run): `python tests/perf/perf_cli.py [--repeats N] [--limit S]`.

How long the command line takes to answer what needs no model and no data: `--help`, `--version`, `list
benchmarks`, `list tables`, an encoder typo's did-you-mean and a benchmark typo's. Each command runs N times (3 by
default) in a fresh interpreter (`python -m cxrbench`, so that the import of the CLI is measured, as a user pays it);
prints the best and the median wall time and PASS or FAIL against the limit (1 s, issue 21). The best time is the
command's cost; the median shows what other load on the machine added, and the CPU seconds (user + system, best
of the repeats) what the command itself costs whatever the load: on 2 cores shared with other jobs the wall time
can be several times the CPU time. The import-level property behind these
times (no torch, pandas, scikit-learn ... imported) is tested without timing in `tests/test_cli_fast.py`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    ["--help"],
    ["--version"],
    ["list", "benchmarks"],
    ["list", "tables"],
    ["run", "vindr", "--encoder", "rad-dinoo"],  # typo: did-you-mean, exit 2
    ["run", "vindrr", "--encoder", "pixels"],
)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and exit code of one fresh `python -m cxrbench ARGS`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cxrbench", *args], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=float, default=1.0, help="Seconds a command may take (best of the repeats).")
    options = parser.parse_args()
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    print(f"{'command':<42} {'exit':>4} {'best s':>7} {'median s':>9} {'cpu s':>6}  vs {options.limit:g} s")
    failed = 0
    for args in COMMANDS:
        runs = [timed(args, env) for _ in range(options.repeats)]
        times = [wall for wall, _, _ in runs]
        best = min(times)
        verdict = "PASS" if best < options.limit else "FAIL"
        failed += verdict == "FAIL"
        cpu = min(seconds for _, seconds, _ in runs)
        print(f"{'cxrbench ' + ' '.join(args):<42} {runs[-1][2]:>4} {best:>7.2f} {statistics.median(times):>9.2f} "
              f"{cpu:>6.2f}  {verdict}")
    try:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        load = "unknown"
    print(f"{os.cpu_count()} cores, load average {load}; {failed} command(s) over the limit")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
