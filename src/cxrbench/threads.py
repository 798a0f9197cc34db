"""How many CPU threads a piece of work may use.

Why: torch and the BLAS behind numpy start one thread per core. A head on cached global embeddings does tiny
matrix products (256 x 768 x 7 per step, thousands of steps) where extra threads only add synchronisation, and on
a machine whose cores are busy each synchronisation waits for a thread the scheduler has put aside: a linear probe
with 2 threads on 2 shared cores ran 30x slower than with one. Encoder forward passes and heads that read patch
grids do gain from every core. So the work says what it is (`Work`), and the budget is sized from that.

The cap on threads is, in order: `--threads N`, then `OMP_NUM_THREADS`, then the cores this process may run on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Work = Literal["light", "heavy"]  # light: small per-step products (heads on global embeddings); heavy: the rest

_cap: int | None = None


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a Slurm allocation), not every core of the host."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_thread_cap(threads: int | None) -> None:
    """The user's `--threads` (None: the environment decides)."""
    global _cap
    if threads is not None and threads < 1:
        from cxrbench.errors import CxrbenchError

        raise CxrbenchError(f"--threads {threads}: give 1 or more.")
    _cap = threads


def thread_cap() -> int:
    if _cap is not None:
        return _cap
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    return available_cores()


def threads_for(work: Work) -> int:
    return 1 if work == "light" else thread_cap()


@contextmanager
def use_threads(work: Work) -> Iterator[int]:
    """Run the block with torch's and the BLAS libraries' thread pools sized for `work`; restores them after."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = threads_for(work)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield threads
    finally:
        torch.set_num_threads(before)
