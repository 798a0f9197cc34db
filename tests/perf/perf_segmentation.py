"""Performance benchmark of segmentation training on cached features (not part of the test run):
`python tests/perf/perf_segmentation.py`.

On patch grids in a real feature store (float16 shards, read lazily through `CachedRows`), with loss-grid
targets [N, S, 4*side, 4*side] (float16, in memory) as labels, `SegmentationHead` trains one decoder per learning
rate of an `lr` list. Measured side by side in one process, `--repeats` times interleaved (the fastest run of each
is compared: on shared cores single timings vary by 2x or more):
1. grid:    `SegmentationHead.fit` with `--lrs` learning rates (one decoder each), timed; the feature rows it reads
            are counted. Target: every training image read once per epoch for the whole lr grid (the validation
            reads, one pass over the validation images per epoch, are counted apart, and so are reads outside the
            training loop, of which at most one row, to learn the feature width, is allowed).
2. compute: the sum over the lr configurations of each decoder's own compute, trained alone on in-memory,
            already-tensor (channels-first float32) batches: forward, the head's MONAI Dice loss on the same
            bilinearly upsampled logits, backward, Adam step and schedule step, nothing else.
            Target: grid / compute <= 1.25 (as for the classification grid: every decoder has its own weights).
            The grid's time also holds the per-epoch validation (printed apart) and the reading of the features.
3. memory:  peak RSS of the fit in a fresh (spawned) process, on a store whose patch grids total several times what
            the head keeps in memory (`--ram-images`, with `--ram-lrs` learning rates). Before the fit the child
            resets VmHWM (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0), so VmHWM after it is the fit's exact peak.
            The store's rows are read by position into each batch (not through memory maps, whose pages would stay
            resident and count in RSS), so the peak is what the head keeps, not the part of the store read so far.
            A control fit in another fresh process on 5 batches of images spread over the store (3 to train, 2 to
            validate: each loop holds the previous batch while it reads the next; spread, because the kernel maps
            shard pages in large blocks around each row read, so a batch's reads map more when its rows lie in
            more shards) measures the fit's working memory. What the head keeps (the labels, in memory before the fit;
            the decoders with their gradients, Adam moments and the best copy; a batch of features as float32 with
            its channels-first copy and the previous batch, held while the next is read; one decoder's activations)
            does not grow with the store but for the labels. Both children run with glibc's mmap threshold fixed at
            its initial 128 kB (MALLOC_MMAP_THRESHOLD_), so that buffers of a batch's size are returned to the kernel
            when freed and RSS follows what the fit holds; with glibc's default dynamic threshold
            (`--default-malloc`) they are kept in the heap and RSS wanders by a few batches. The bound is:
                peak(full) <= before-fit(full) + [peak(control) - before-fit(control)]
                              + max(2 batches of float32 features, 32 MB)   (allocator slack)
            Exit 1 when it is exceeded.
Exit 1 also when the reads per epoch miss their target; the time ratio is only printed (the cores may be busy).

Defaults (400 images, 14 x 14 x 384, 2 structures, linear decoder, RayDINO's 9 learning rates, 1 epoch, batch 80,
3 repeats; memory on 6,000 images, a 0.86 GB store, 3 learning rates) take 1.5 to 3 minutes on 2 busy cores.

The ViT-B/16 UPerNet case (four 14 x 14 x 768 blocks, RayDINO's batch 16; 9 x 39.3M decoders take 5.7 GB with
their gradients and Adam moments, and UPerNet's activations another few GB; an hour or more on CPU):

    python tests/perf/perf_segmentation.py --architecture upernet --dim 768 --channels 512 --batch 16 \
        --images 400 --repeats 1 --ram-images 2000 --ram-lrs 9 [--device cuda]

`--device cuda` trains the decoders on a GPU for parts 1 and 2 (the memory part stays on the CPU: it measures
host memory). `--threads N` overrides the torch threads (default: what the head's heavy work gets, as in a run).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import monai.losses  # noqa: F401 - imported before any timing (the head imports it on its first loss)
import numpy as np
import torch

from cxrbench.features.cache import CachedRows, FeatureStore
from cxrbench.heads import segmentation
from cxrbench.heads.base import LAYER_PREFIX, FeatureSet
from cxrbench.heads.decoders import build_decoder
from cxrbench.heads.segmentation import SegmentationHead, trainable_parameters
from cxrbench.registry import head_spec
from cxrbench.threads import threads_for

RAYDINO_LRS = [1e-5, 1e-4, 5e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
SPECS = {"linear": "seg-linear", "vitdet": "vitdet", "upernet": "upernet"}
VIT_B_DEFAULT_LAYERS, VIT_B_BLOCKS = (3, 5, 7, 11), 12  # `layers: default` of the upernet spec on a ViT-B
IDENTITY = {"encoder": "perf-seg"}
MB = 2**20
MALLOC_ENV, MALLOC_MMAP_THRESHOLD = "MALLOC_MMAP_THRESHOLD_", 128 * 1024  # glibc's initial threshold, kept fixed
SLACK = 32 * MB  # allocator and thread-stack noise between two processes, when two batches are less


class CountingRows(CachedRows):
    """Cached rows that count the rows read, per tag ("train", "val") and phase ("epochs": inside the head's
    `train_epochs`, "setup": before or after it)."""

    reads: Counter = Counter()
    phase = "setup"
    tag = "all"

    def __getitem__(self, indices):
        rows = super().__getitem__(indices)
        CountingRows.reads[self.tag, CountingRows.phase] += len(rows) if rows.ndim == len(self.shape) else 1
        return rows

    def select(self, mask_or_indices):
        subset = super().select(mask_or_indices)
        subset.__class__ = CountingRows
        subset.tag = self.tag
        return subset


# -- data ------------------------------------------------------------------------------------------------------
def learning_rates(count: int) -> list[float]:
    return list(RAYDINO_LRS) if count == 9 else np.geomspace(RAYDINO_LRS[0], RAYDINO_LRS[-1], count).tolist()


def make_head(args: argparse.Namespace, device: str = "cpu") -> SegmentationHead:
    overrides = {"lr": learning_rates(args.lrs), "epochs": args.epochs, "batch_size": args.batch, "device": device}
    if args.channels:
        overrides["channels"] = args.channels
    head = SegmentationHead(head_spec(SPECS[args.architecture]), overrides, kind="mask")
    head.select_inputs(VIT_B_DEFAULT_LAYERS, VIT_B_BLOCKS)
    return head


def store_arrays(args: argparse.Namespace) -> tuple[str, ...]:
    """The cached arrays the head reads ("patches", or four "layer_I")."""
    return make_head(args).needs


def write_store(root: Path, images: int, args: argparse.Namespace, seed: int) -> tuple[list[str], np.ndarray]:
    """A store of `images` patch grids (and a global embedding) and their loss-grid targets [N, S, 4s, 4s] float16.

    Each structure is a random rectangle on the loss grid; its coverage of each patch is added to one channel
    of every array, so the decoders have something to learn."""
    rng = np.random.default_rng(seed)
    side, cells, structures = args.side, 4 * args.side, args.structures
    corners = np.sort(rng.integers(0, cells + 1, size=(images, structures, 2, 2)), axis=-1)  # rows, cols: [lo, hi)
    grid = np.arange(cells)
    inside = lambda axis: (grid >= corners[:, :, axis, :1]) & (grid < corners[:, :, axis, 1:])  # noqa: E731
    labels = (inside(0)[..., :, None] & inside(1)[..., None, :]).astype(np.float16)  # [N, S, cells, cells]
    coverage = labels.reshape(images, structures, side, 4, side, 4).mean(axis=(3, 5), dtype=np.float32)
    store = FeatureStore.open(root, IDENTITY)
    keys = [f"img{i}" for i in range(images)]
    chunk = max(1, 2**27 // (side * side * args.dim * 4 * len(store_arrays(args))))  # ~128 MB of float32 at a time
    for start in range(0, images, chunk):
        stop = min(images, start + chunk)
        arrays = {}
        for name in store_arrays(args):
            grids = rng.standard_normal(size=(stop - start, side, side, args.dim), dtype=np.float32)
            grids[..., :structures] += 2 * coverage[start:stop].transpose(0, 2, 3, 1)
            arrays[name] = grids
        arrays["global"] = grids.mean(axis=(1, 2))
        store.write_shard(keys[start:stop], arrays)
    return keys, labels


def store_bytes(root: Path, arrays: tuple[str, ...]) -> int:
    return sum(f.stat().st_size for name in arrays for f in root.glob(f"features/*/shards/*/{name}.npy"))


def feature_sets(root: Path, keys: list[str], labels: np.ndarray, needs: tuple[str, ...], n_train: int,
                 counting: bool) -> tuple[FeatureSet, FeatureSet]:
    """Training and validation features, their patch grids read lazily from the store."""
    store = FeatureStore.open(root, IDENTITY, create=False)
    global_ = store.load(keys, "global")
    train_mask = np.arange(len(keys)) < n_train
    splits = []
    for tag, mask in (("train", train_mask), ("val", ~train_mask)):
        lazy = {}
        for name in needs:
            rows = store.rows(keys, name)
            if counting:
                rows.__class__ = CountingRows
                rows = rows.select(mask)
                rows.tag = tag
            else:
                rows = rows.select(mask)
            lazy[name] = rows
        layers = {int(name[len(LAYER_PREFIX):]): rows for name, rows in lazy.items() if name.startswith(LAYER_PREFIX)}
        splits.append(FeatureSet(global_[mask], labels[mask], lazy.get("patches"), layers=layers))
    return splits[0], splits[1]


# -- 2. each decoder's own compute -------------------------------------------------------------------------------
@contextmanager
def counting_epochs():
    """Tag the reads made inside the head's training loop (its epochs and their validation) as "epochs"."""
    loop = segmentation.train_epochs

    def counted(*args, **kwargs):
        CountingRows.phase = "epochs"
        try:
            return loop(*args, **kwargs)
        finally:
            CountingRows.phase = "setup"

    segmentation.train_epochs = counted
    try:
        yield
    finally:
        segmentation.train_epochs = loop


def in_memory_batches(head: SegmentationHead, train: FeatureSet, seed: int) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    """The head's first epoch of training batches as tensors on its device: channels-first float32 grids and
    float32 targets, read from the store once, before any timing."""
    p, device = head.params, torch.device(head.params["device"])
    in_memory = [np.asarray(train.patches if name == "patches" else train.layers[int(name[len(LAYER_PREFIX):])])
                 for name in head.needs]
    n = len(train)
    batch = min(int(p["batch_size"]), n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()  # the head's first epoch
    chunks = [order[start : start + batch] for start in range(0, n, batch)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [np.concatenate(chunks[-2:])]
    return [([torch.from_numpy(array[index]).permute(0, 3, 1, 2).contiguous().to(device) for array in in_memory],
             torch.from_numpy(train.labels[index].astype(np.float32)).to(device)) for index in chunks]


def own_compute_seconds(head: SegmentationHead, epochs: int, batches, structures: int, seed: int) -> float:
    """Each learning rate alone: forward + Dice loss + backward + Adam and schedule steps on in-memory tensors.
    `head` is a fitted head: its loss function and loss grid are the ones used."""
    p, device = head.params, head.device
    steps = epochs * len(batches)
    dim = batches[0][0][0].shape[1]
    total = 0.0
    for lr in head.learning_rates:
        torch.manual_seed(seed)
        decoder = build_decoder(str(p["architecture"]), dim, len(head.needs), structures, p).to(device)
        optimizer = torch.optim.Adam(decoder.parameters(), lr=lr, weight_decay=p["weight_decay"])
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, head._schedule(steps))  # noqa: SLF001
        decoder.train()
        synchronise(device)
        start = time.perf_counter()
        for step in range(steps):
            grids, target = batches[step % len(batches)]
            loss = head._loss(decoder(grids), target)  # noqa: SLF001
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        synchronise(device)
        total += time.perf_counter() - start
    return total


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- 3. peak memory in a fresh process ----------------------------------------------------------------------------
def status_kb() -> dict[str, int]:
    values = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def memory_child(root: str, images: np.ndarray, n_train: int, args: argparse.Namespace, threads: int,
                 queue) -> None:
    """Fit on these images of the store (the first `n_train` to train, the rest to validate) and report the peak
    RSS it reached."""
    torch.set_num_threads(threads)
    labels = np.load(Path(root) / "labels.npy", mmap_mode="r")[images]  # only these in memory
    keys = [f"img{i}" for i in images]
    head = make_head(args)
    train, val = feature_sets(Path(root), keys, labels, head.needs, n_train, counting=False)
    del labels  # the splits hold their own copies
    gc.collect()
    reset = reset_peak()
    before = status_kb()
    head.fit(train, val, seed=0)
    after = status_kb()
    queue.put({"before": before["VmRSS"], "peak": after["VmHWM"], "after": after["VmRSS"], "reset": reset,
               "before_file": before["RssFile"], "after_file": after["RssFile"],
               "labels": train.labels.nbytes + val.labels.nbytes, "decoder_parameters": trainable_parameters(head.decoder)})


def run_child(root: Path, images: np.ndarray, n_train: int, args: argparse.Namespace, threads: int) -> dict:
    context = mp.get_context("spawn")  # a fresh process: a forked one would start with this one's pages
    queue = context.Queue()
    child = context.Process(target=memory_child, args=(str(root), images, n_train, args, threads, queue))
    before = os.environ.get(MALLOC_ENV)
    if not args.default_malloc:
        os.environ[MALLOC_ENV] = str(MALLOC_MMAP_THRESHOLD)  # read by glibc when the child starts
    try:
        child.start()
    finally:
        if before is None:
            os.environ.pop(MALLOC_ENV, None)
        else:
            os.environ[MALLOC_ENV] = before
    result = queue.get()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"memory child exited with {child.exitcode}")
    return result


def measure_memory(args: argparse.Namespace, threads: int, failures: list[str]) -> None:
    # control: 3 training and 2 validation batches (each loop holds the previous batch while it reads the next),
    # spread over the store like the full fit's (a batch's reads then touch as many shards, whose pages the kernel
    # maps in large blocks around every row read)
    images = max(args.ram_images, 10 * args.batch)
    n_train = int(0.8 * images)
    control = np.concatenate([np.linspace(0, n_train - 1, 3 * args.batch).astype(int),
                              np.linspace(n_train, images - 1, 2 * args.batch).astype(int)])
    arrays = store_arrays(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        _, labels = write_store(root, images, args, seed=1)
        np.save(root / "labels.npy", labels)
        size = store_bytes(root, arrays)
        print(f"\nmemory: store of {images} images, {'+'.join(arrays)}: {size / MB:.0f} MB float16 "
              f"({2 * size / MB:.0f} MB as float32); labels {labels.nbytes / MB:.0f} MB; written in "
              f"{time.perf_counter() - start:.0f} s; {args.lrs} learning rates")
        del labels
        control = run_child(root, control, 3 * args.batch, args, threads)
        full = run_child(root, np.arange(images), n_train, args, threads)
    parameters = full["decoder_parameters"]
    batch_f32 = args.batch * args.side**2 * args.dim * 4 * len(arrays)
    decoders = args.lrs * parameters * 4 * 4 + 2 * parameters * 4  # weights, gradients, Adam's 2 moments; best copies
    kept = control["peak"] - control["before"]
    slack = max(2 * batch_f32, SLACK)
    bound = full["before"] + kept + slack
    since = "" if full["reset"] and control["reset"] else " (VmHWM could not be reset: peaks since the process started)"
    print(f"  what the head keeps, stated: labels {full['labels'] / MB:.0f} MB (in memory before the fit) + "
          f"{args.lrs} decoders x {parameters:,} parameters (weights, gradients, Adam moments, best copy) "
          f"{decoders / MB:.1f} MB + a batch of features as float32, {batch_f32 / MB:.0f} MB, x3 (the batch read, "
          f"its channels-first copy, the previous batch while the next is read) + one decoder's activations")
    print(f"  control ({3 * args.batch} train + {2 * args.batch} val images spread over the store): RSS "
          f"{control['before'] / MB:.0f} MB before the fit, peak {control['peak'] / MB:.0f} MB: the fit's working "
          f"memory {kept / MB:.0f} MB{since}")
    print(f"  full ({images} images): RSS {full['before'] / MB:.0f} MB before the fit, peak {full['peak'] / MB:.0f} MB "
          f"(+{(full['peak'] - full['before']) / MB:.0f} MB); store / working memory = {size / max(kept, 1):.1f}x; "
          f"mapped file pages after the fit {(full['after_file'] - full['before_file']) / MB:+.0f} MB "
          f"({'glibc default malloc' if args.default_malloc else f'{MALLOC_ENV}={MALLOC_MMAP_THRESHOLD}'})")
    print(f"  bound: before the fit (labels included) + the control's working memory + max(2 batches, "
          f"{SLACK // MB} MB) = {bound / MB:.0f} MB -> {'ok' if full['peak'] <= bound else 'EXCEEDED'}")
    if full["peak"] > bound:
        failures.append(f"peak RSS {full['peak'] / MB:.0f} MB > bound {bound / MB:.0f} MB")


# -- main ---------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=400, help="images of the timing store (80%% train, 20%% val)")
    parser.add_argument("--side", type=int, default=14, help="patch grid side (14 = ViT-B/16 at 224 px)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--structures", type=int, default=2)
    parser.add_argument("--lrs", type=int, default=9, help="learning rates in the grid (9: RayDINO's)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=80)
    parser.add_argument("--architecture", choices=sorted(SPECS), default="linear")
    parser.add_argument("--channels", type=int, default=0, help="UPerNet head width (0: the spec's, 512)")
    parser.add_argument("--ram-images", type=int, default=6000, help="images of the memory store (0: skip part 3)")
    parser.add_argument("--ram-lrs", type=int, default=3,
                        help="learning rates in the memory part (linear decoders' states are negligible; 9 for UPerNet)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the head's heavy-work budget)")
    parser.add_argument("--device", default="cpu", help="where parts 1 and 2 train the decoders")
    parser.add_argument("--repeats", type=int, default=3, help="grid and compute timings, interleaved; fastest kept")
    parser.add_argument("--default-malloc", action="store_true",
                        help="memory part: glibc's dynamic mmap threshold (RSS then wanders by a few batches)")
    args = parser.parse_args()
    threads = args.threads or threads_for(SegmentationHead.work)
    torch.set_num_threads(threads)
    failures: list[str] = []
    needs = make_head(args).needs
    n_train = int(0.8 * args.images)
    n_val = args.images - n_train
    with tempfile.TemporaryDirectory() as tmp:
        keys, labels = write_store(Path(tmp), args.images, args, seed=0)
        train, val = feature_sets(Path(tmp), keys, labels, needs, n_train, counting=True)
        print(f"features: {args.images} images ({n_train} train, {n_val} val) x {args.side}x{args.side} x {args.dim} "
              f"({'+'.join(needs)}, float16 store); labels {labels.shape[1:]} float16; {args.architecture} "
              f"decoder, {args.lrs} learning rates; {args.epochs} epoch(s), batch {args.batch}; "
              f"torch threads {torch.get_num_threads()}, device {args.device}; {args.repeats} repeat(s), interleaved")
        batches, grid_runs, compute_runs = None, [], []
        for repeat in range(args.repeats):
            head, validation = make_head(args, args.device), [0.0]
            timed = head._validation_losses  # noqa: SLF001

            def validation_losses(features, timed=timed, validation=validation):
                start = time.perf_counter()
                try:
                    return timed(features)
                finally:
                    validation[0] += time.perf_counter() - start

            head._validation_losses = validation_losses  # noqa: SLF001
            CountingRows.reads.clear()
            with counting_epochs():
                start = time.perf_counter()
                head.fit(train, val, seed=0)
                grid_runs.append(time.perf_counter() - start)
            reads = {key: count / len(needs) for key, count in CountingRows.reads.items()}  # rows per cached array
            per_epoch = reads.get(("train", "epochs"), 0) / args.epochs
            val_per_epoch = reads.get(("val", "epochs"), 0) / args.epochs
            setup = reads.get(("train", "setup"), 0) + reads.get(("val", "setup"), 0)
            if batches is None:
                batches = in_memory_batches(head, train, seed=0)
            compute_runs.append(own_compute_seconds(head, args.epochs, batches, labels.shape[1], seed=0))
            print(f"  run {repeat + 1}: grid ({args.lrs} decoders together) {grid_runs[-1]:.1f} s, of which "
                  f"validation {validation[0]:.1f} s; sum of the decoders' own compute {compute_runs[-1]:.1f} s; "
                  f"ratio {grid_runs[-1] / compute_runs[-1]:.2f}. Rows read per epoch: training {per_epoch:.0f} of "
                  f"{n_train}, validation {val_per_epoch:.0f} of {n_val}; outside the epochs {setup:.0f}")
            reads_ratio = per_epoch / n_train
            if reads_ratio != 1.0:
                failures.append(f"run {repeat + 1}: training reads per epoch / training images = {reads_ratio:.3f}, not 1")
            if setup > 1:
                failures.append(f"run {repeat + 1}: {setup:.0f} rows read outside the training loop (more than one)")
    grid_seconds, compute_seconds = min(grid_runs), min(compute_runs)
    print(f"grid ({args.lrs} decoders together, fastest run): {grid_seconds:.1f} s")
    print(f"sum of the decoders' own compute (each alone, in-memory tensor batches, fastest run): {compute_seconds:.1f} s")

    print()
    print(f"grid / sum of own compute = {grid_seconds / compute_seconds:.2f}   (target <= 1.25)")
    print(f"training reads / (epochs x training images) = {reads_ratio:.3f}   (target 1.0)")
    if args.ram_images:
        measure_memory(argparse.Namespace(**{**vars(args), "lrs": args.ram_lrs}), threads, failures)
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
