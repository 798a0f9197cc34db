"""Data-parallel feature extraction over torch.distributed ranks (`torchrun --nproc-per-node N -m cxrbench extract`).

Why it needs so little: the feature store is content-addressed (a shard holds the keys of the images it encoded, and
the store's index is whatever shards are on disk), so ranks need no shared manifest and no gather to rank 0, the
step that breaks embedding writers under multi-GPU. The images the store lacks are cut into shard-sized chunks in one
order every rank computes alike, and rank r encodes the chunks r, r + N, r + 2N, ...; each rank writes its own shards
(atomic renames, distinct names); after a barrier every rank rereads the shard list. A run killed part way leaves only
whole shards, and a rerun with any number of ranks, one included, encodes only the chunks that are still missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cxrbench.errors import CxrbenchError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of one extraction (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def owns(self, chunk: int) -> bool:
        """Whether this rank encodes chunk number `chunk` of the missing images (round robin)."""
        return chunk % self.world == self.rank

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Ranks()


def launched_ranks(device: str) -> Ranks:
    """The ranks torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK), with the process group joined: gloo on CPU, NCCL on
    CUDA devices. Rank 0 of 1 when the process was not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    try:
        ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        raise CxrbenchError("WORLD_SIZE is set but RANK is not a number: launch with `torchrun --nproc-per-node N -m "
                            "cxrbench extract ...`, which sets both.") from None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return ranks


def rank_device(device: str, ranks: Ranks) -> str:
    """Each rank's own GPU (cuda:LOCAL_RANK) when the device is CUDA without an index; the device as given else."""
    return f"cuda:{ranks.local_rank}" if ranks.distributed and device == "cuda" else device
