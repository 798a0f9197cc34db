"""Performance benchmark of the head grid (not part of the test run): `python tests/perf/perf_grid.py`.

On cached features in a real feature store (float16 shards, read lazily), measured side by side in one process:
1. grid:       RayDINO's 156 heads trained together by `GridHead` (one read of the cached features per epoch).
2. compute:    the sum over the 156 configurations of each head's own compute, trained alone on in-memory,
               already standardised batches: forward, loss, backward, optimiser step, nothing else.
               Target: grid / compute <= 1.25 (the floor: every head has its own weights).
3. sequential: the 156 heads trained one after another by `GridHead`, each reading the cache itself.
               Reported: the grid's speed-up over it.
Also checked: how many feature rows the grid read per epoch (target: each training image once).
Defaults approximate a ViT-B/16 at 224 px (14 x 14 x 768 patch tokens) on a few thousand images.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cxrbench.features.cache import CachedRows, FeatureStore
from cxrbench.heads.base import FeatureSet
from cxrbench.heads.grid import GridHead
from cxrbench.heads.losses import masked_bce
from cxrbench.heads.stacked import StackedDecoders, StackedSGD
from cxrbench.registry import head_spec


class CountingRows(CachedRows):
    """Cached rows that count how many rows were read."""

    read = 0

    def __getitem__(self, indices):
        rows = super().__getitem__(indices)
        CountingRows.read += len(rows) if rows.ndim == 4 else 1
        return rows

    def select(self, mask_or_indices):
        subset = super().select(mask_or_indices)
        subset.__class__ = CountingRows
        return subset


def make_store(folder: Path, images: int, side: int, dim: int, tasks: int, seed: int) -> tuple[CachedRows, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((images, tasks)) < 0.2).astype(np.float32)
    store = FeatureStore.open(folder, {"encoder": "perf", "dim": dim})
    keys = [f"img{i}" for i in range(images)]
    for start in range(0, images, 512):
        stop = min(images, start + 512)
        patches = rng.normal(size=(stop - start, side, side, dim)).astype(np.float32)
        patches[..., 0] += 2 * labels[start:stop, :1, None]  # some signal
        store.write_shard(keys[start:stop], {"global": patches.mean(axis=(1, 2)), "patches": patches})
    rows = store.rows(keys, "patches")
    rows.__class__ = CountingRows
    return rows, store.load(keys, "global"), labels


def own_compute_seconds(head: GridHead, train: FeatureSet, epochs: int, batch: int, seed: int) -> float:
    """Each configuration alone: forward + loss + backward + step on in-memory standardised batches."""
    generator = torch.Generator().manual_seed(seed)
    n = len(train.labels)
    order = torch.randperm(n, generator=generator).numpy()
    batches = [np.sort(order[s : s + batch]) for s in range(0, n, batch)]
    inputs = [head._inputs(train, index) for index in batches]  # noqa: SLF001 - the grid's own preprocessing, done once
    targets = [torch.from_numpy(train.labels[index]) for index in batches]
    dim_tokens, tasks = train.patches.shape[-1], train.labels.shape[1]
    total = 0.0
    for config in head.configs:
        module = StackedDecoders(config.pooling, config.depth, 1, dim_tokens, tasks, int(head.params["hidden_dim"]), generator)
        optimizer = StackedSGD(module, torch.tensor([config.lr]), torch.tensor([config.weight_decay]), 0.9)
        steps = epochs * len(batches)
        start = time.perf_counter()
        for step in range(steps):
            x, y = inputs[step % len(batches)], targets[step % len(batches)]
            loss = masked_bce(module(x), y).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step(0.5 * (1 + math.cos(math.pi * step / steps)))
        total += time.perf_counter() - start
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=14, help="patch grid side (14 = ViT-B/16 at 224 px)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--tasks", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sequential-sample", type=int, default=0,
                        help="train only every k-th configuration sequentially and scale up (0 = all 156)")
    args = parser.parse_args()
    torch.manual_seed(0)
    overrides = {"epochs": args.epochs, "min_steps": 0, "batch_size": args.batch}
    spec = head_spec("raydino-grid")
    with tempfile.TemporaryDirectory() as tmp:
        rows, global_, labels = make_store(Path(tmp), args.images, args.side, args.dim, args.tasks, seed=0)
        n_train = int(0.8 * args.images)
        train_mask = np.arange(args.images) < n_train
        train = FeatureSet(global_[train_mask], labels[train_mask], rows.select(train_mask))
        val = FeatureSet(global_[~train_mask], labels[~train_mask], rows.select(~train_mask))
        print(f"features: {args.images} images x {args.side}x{args.side} x {args.dim} (float16 store), {args.tasks} tasks; "
              f"{args.epochs} epochs, batch {args.batch}; torch threads {torch.get_num_threads()}")

        grid = GridHead(spec, overrides)
        CountingRows.read = 0
        start = time.perf_counter()
        grid.fit(train, val, seed=0)
        grid_seconds = time.perf_counter() - start
        # reads: one standardisation pass + one per epoch over the training rows, one over the validation rows
        per_epoch = (CountingRows.read - n_train - (args.images - n_train)) / args.epochs
        print(f"grid ({len(grid.configs)} heads together): {grid_seconds:.1f} s; training rows read per epoch: "
              f"{per_epoch:.0f} of {n_train} (target: {n_train})")

        in_memory = FeatureSet(train.global_, train.labels, np.asarray(train.patches))
        compute_seconds = own_compute_seconds(grid, in_memory, args.epochs, args.batch, seed=0)
        print(f"sum of the heads' own compute (each alone, in-memory batches): {compute_seconds:.1f} s")

        step = args.sequential_sample or 1
        start = time.perf_counter()
        for config in grid.configs[::step]:
            single = GridHead(spec, {**overrides, "pooling": config.pooling, "depth": config.depth,
                                     "lr": config.lr, "weight_decay": config.weight_decay})
            single.fit(train, val, seed=0)
        sequential_seconds = (time.perf_counter() - start) * step
        scaled = f" (every {step}th head, scaled x{step})" if step > 1 else ""
        print(f"sequential (156 heads one after another, each reading the cache){scaled}: {sequential_seconds:.1f} s")

    print()
    print(f"grid / sum of own compute = {grid_seconds / compute_seconds:.2f}   (target <= 1.25)")
    print(f"speed-up of the grid over sequential training = {sequential_seconds / grid_seconds:.1f}x")


if __name__ == "__main__":
    main()
