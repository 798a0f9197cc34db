"""The `cxrbench` command: one module per command group, the only package that prints (through
`cxrbench.console`).

    run.py      run (RunSpecs from flags, --config, --print-config)    explain.py  explain
    bias.py     bias                                                    reproduce.py reproduce
    demo.py     demo                                                    features.py extract, embed, cache ls|clear
    data.py     data check                                              listing.py  list
    tables.py   table, curve, report, results validate                  compare.py  compare
    show.py     finished runs shown; failed jobs listed                 show_tables.py  tables of stored runs
    common.py   errors, name checks, KEY=VALUE                          options.py  the shared option groups

Answers come in well under a second: importing this package loads no torch, pandas, scikit-learn or transformers
(`tests/test_cli_fast.py`); each command checks its names against the YAML registry first, then imports the heavy
modules inside its body.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (torch reads this once, when it loads): on a machine shared with other
# jobs a spinning thread burns the CPU share the working one needs (a ViT forward on 2 threads beside two busy torch
# processes: 24 s spinning, 18.6 s sleeping; the same 6.3-6.5 s on an idle machine). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cxrbench.cli import bias, compare, data, demo, explain, features, listing, reproduce, run, tables  # noqa: E402,F401
from cxrbench.cli.app import app  # noqa: E402


def main() -> None:
    app()


__all__ = ["app", "main"]
