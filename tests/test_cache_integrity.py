"""A damaged feature cache never becomes a silently different number: checksums per shard file, re-encoding of
damaged shards, refusal of non-finite features, repairable stores, no leftovers, and named disk errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.encoders.base import FeatureRequest
from cxrbench.encoders.factory import build_encoder
from cxrbench.errors import CacheError, StorageError
from cxrbench.features import shards as shards_module
from cxrbench.features.cache import FeatureStore
from cxrbench.features.cache_admin import list_stores
from cxrbench.features.extract import extract_features
from cxrbench.files import staging_name

runner = CliRunner()


@pytest.fixture(scope="module")
def paths(vindr_root):
    return sorted(str(p) for p in (vindr_root / "train").glob("*.dicom"))[:24]


def _extract(paths, cache, request=FeatureRequest(patch_tokens=True), notes=None, **kwargs):
    class Notes:
        def task(self, description, total, transient=False):
            return lambda n: None

        def note(self, message):
            (notes if notes is not None else []).append(message)

    encoder = build_encoder("dinov2-small", weights="random", image_size=56)
    return extract_features(encoder, request, paths, cache, batch_size=8, shard_size=8, num_workers=0, progress=Notes(), **kwargs)


def _shards(result) -> list[Path]:
    return sorted(p for p in (result.store.folder / "shards").iterdir() if not p.name.startswith("."))


def _fresh_process_view(result, array: str) -> np.ndarray:
    """What a new process reads: the memo of verified files is per process."""
    shards_module._VERIFIED.clear()
    store = FeatureStore(result.store.folder, json.loads((result.store.folder / "manifest.json").read_text()))
    return store.load(result.keys, array)


def _flip_bytes(path: Path, offset_from_end: int = 64, count: int = 8) -> None:
    data = bytearray(path.read_bytes())
    for i in range(count):
        data[-offset_from_end + i] ^= 0xFF
    path.write_bytes(bytes(data))


def _nan_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-16:] = np.full(8, np.nan, dtype=np.float16).tobytes()
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped bytes": lambda shard: _flip_bytes(shard / "global.npy"),
    "NaN bytes": lambda shard: _nan_bytes(shard / "patches.npy"),
    "truncated array": lambda shard: (shard / "patches.npy").write_bytes((shard / "patches.npy").read_bytes()[:-100]),
    "deleted array": lambda shard: (shard / "global.npy").unlink(),
    "truncated keys": lambda shard: (shard / "keys.txt").write_text((shard / "keys.txt").read_text()[:-40]),
    "deleted keys": lambda shard: (shard / "keys.txt").unlink(),
    "deleted checksums": lambda shard: (shard / "checksums.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_shard_is_encoded_again_and_features_are_unchanged(paths, tmp_path, damage):
    clean = _extract(paths, tmp_path / "cache")
    expected = {a: clean.store.load(clean.keys, a) for a in ("global", "patches")}
    victim = _shards(clean)[1]
    DAMAGE[damage](victim)
    shards_module._VERIFIED.clear()  # a new process
    notes: list[str] = []
    again = _extract(paths, tmp_path / "cache", notes=notes)
    assert again.encoded == 8  # exactly the damaged shard's images
    assert any("damaged" in n and victim.name in n for n in notes), notes
    for array, values in expected.items():
        np.testing.assert_array_equal(_fresh_process_view(again, array), values)


def test_damage_after_extraction_is_refused_by_the_reader_with_the_fix(paths, tmp_path):
    result = _extract(paths, tmp_path / "cache")
    victim = _shards(result)[2]
    _flip_bytes(victim / "patches.npy")
    shards_module._VERIFIED.clear()
    store = FeatureStore(result.store.folder, json.loads((result.store.folder / "manifest.json").read_text()))
    rows = store.rows(result.keys, "patches")
    with pytest.raises(CacheError) as excinfo:
        rows[np.arange(len(result.keys))]
    message = str(excinfo.value)
    assert str(victim) in message and "patches.npy does not match its checksum" in message
    assert "cxrbench cache clear --encoder dinov2-small" in message


def test_each_file_is_hashed_once_per_process(paths, tmp_path, monkeypatch):
    result = _extract(paths, tmp_path / "cache")
    shards_module._VERIFIED.clear()
    calls = []
    original = shards_module.file_checksum
    monkeypatch.setattr(shards_module, "file_checksum", lambda path, *more: calls.append(path) or original(path, *more))
    store = FeatureStore(result.store.folder, json.loads((result.store.folder / "manifest.json").read_text()))
    for _ in range(3):
        store.load(result.keys, "global")
    assert len(calls) == 2 * len(_shards(result))  # keys.txt and global.npy of each shard, once


def test_run_on_a_damaged_cache_gives_the_clean_numbers(vindr_root, tmp_path):
    """The fault as found: bytes flipped in global.npy changed every score with exit 0."""
    args = ["run", "vindr", "--encoder", "pixels", "--data-root", str(vindr_root), "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--seeds", "2", "--bootstrap", "50", "--shard-size", "64",
            "--head", "logistic", "--head-param", "C=[1.0]"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    metrics_path = tmp_path / "out/vindr/pixels/logistic/metrics.json"
    clean = json.loads(metrics_path.read_text())["metrics"]
    shard = sorted((tmp_path / "cache/features").glob("pixels-*/shards/0*"))[0]
    _flip_bytes(shard / "global.npy", offset_from_end=2000, count=400)
    shards_module._VERIFIED.clear()
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "is damaged" in second.output and "encoded 64 images" in second.output
    assert json.loads(metrics_path.read_text())["metrics"] == clean


def test_non_finite_features_are_refused_naming_the_image(paths, tmp_path):
    encoder = build_encoder("pixels")
    original = encoder.encode

    def poisoned(pixels, request):
        features = original(pixels, request)
        features.global_embedding[1, 3] = float("nan")
        return features

    encoder.encode = poisoned
    with pytest.raises(CacheError) as excinfo:
        extract_features(encoder, FeatureRequest(), paths[:8], tmp_path, batch_size=8, num_workers=0)
    assert "non-finite" in str(excinfo.value) and paths[1] in str(excinfo.value)
    store = FeatureStore.open(tmp_path, encoder.identity(FeatureRequest()))
    assert len(store) == 0 and not list((store.folder / "shards").iterdir())


def test_float16_overflow_is_refused(tmp_path):
    store = FeatureStore.open(tmp_path, {"encoder": "toy"})
    with pytest.raises(CacheError, match="out-of-float16-range"):
        store.write_shard(["a", "b"], {"global": np.array([[1.0], [1e6]], dtype=np.float32)}, names=["a.png", "b.png"])


def _damaged_manifest_store(paths, cache) -> Path:
    result = _extract(paths[:8], cache, FeatureRequest())
    (result.store.folder / "manifest.json").write_text('{"format": 2, "key": "trunc')
    return result.store.folder


def test_damaged_manifest_is_named_with_the_fix(paths, tmp_path):
    _damaged_manifest_store(paths, tmp_path / "cache")
    with pytest.raises(CacheError) as excinfo:
        _extract(paths[:8], tmp_path / "cache", FeatureRequest())
    assert "manifest.json is unreadable" in str(excinfo.value)
    assert "cxrbench cache clear --encoder dinov2-small" in str(excinfo.value)


def test_cache_ls_and_clear_work_on_a_damaged_store(paths, tmp_path):
    folder = _damaged_manifest_store(paths, tmp_path / "cache")
    listing = runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path / "cache")])
    assert listing.exit_code == 0, listing.output
    assert "dinov2-small" in listing.output and "manifest.json missing or unreadable" in listing.output
    cleared = runner.invoke(app, ["cache", "clear", "--encoder", "dinov2-small", "--yes", "--cache-dir", str(tmp_path / "cache")])
    assert cleared.exit_code == 0 and "removed 1 store" in cleared.output and not folder.exists()


def test_cache_ls_verify_finds_flipped_bytes(paths, tmp_path):
    result = _extract(paths[:16], tmp_path / "cache", FeatureRequest())
    _flip_bytes(_shards(result)[0] / "global.npy")
    shards_module._VERIFIED.clear()
    assert list_stores(tmp_path / "cache")[0].status == "ok"  # structure intact: only the checksums can tell
    assert list_stores(tmp_path / "cache", verify=True)[0].status == "1 damaged shard(s)"


def test_cache_ls_verify_exits_non_zero_on_damage(paths, tmp_path):
    """A script (or CI) that asks `cache ls --verify` must see damage in the exit code, not only in a table cell."""
    result = _extract(paths[:16], tmp_path / "cache", FeatureRequest())
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert runner.invoke(app, ["cache", "ls", "--verify", *cache]).exit_code == 0
    _flip_bytes(_shards(result)[0] / "global.npy")
    shards_module._VERIFIED.clear()
    verified = runner.invoke(app, ["cache", "ls", "--verify", *cache])
    assert verified.exit_code == 2, verified.output
    assert "1 damaged shard(s)" in verified.output and "1 of 1 store(s)" in verified.output
    assert runner.invoke(app, ["cache", "ls", *cache]).exit_code == 0  # without --verify: a listing, checksums unread


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_writers_are_removed_and_not_counted(paths, tmp_path, monkeypatch):
    result = _extract(paths[:16], tmp_path / "cache", FeatureRequest())
    shard_root = result.store.folder / "shards"
    monkeypatch.setattr(os, "getpid", _dead_pid)
    dead = shard_root / staging_name("shard")
    monkeypatch.undo()
    dead.mkdir()
    (dead / "global.npy").write_bytes(b"x" * 10_000)
    old_style = shard_root / ".tmp-0123456789abcdef"  # an older cxrbench's name: stale after a day
    old_style.mkdir()
    os.utime(old_style, (time.time() - 2 * 86400,) * 2)
    alive = shard_root / staging_name("shard")  # this process's own: must stay
    alive.mkdir()
    summary = list_stores(tmp_path / "cache")[0]
    assert summary.images == 16 and "3 unfinished shard(s)" in summary.status
    assert summary.bytes == sum(f.stat().st_size for s in _shards(result) for f in s.iterdir()) + \
        (result.store.folder / "manifest.json").stat().st_size
    _extract(paths[:20], tmp_path / "cache", FeatureRequest())  # something to encode: the writer cleans up first
    assert not dead.exists() and not old_style.exists() and alive.exists()


def test_duplicate_images_are_counted_once(paths, tmp_path):
    store = FeatureStore.open(tmp_path, {"encoder": "toy"})
    store.write_shard(["a", "b"], {"global": np.ones((2, 3), np.float32)})
    store.write_shard(["b", "c"], {"global": np.ones((2, 3), np.float32)})
    assert list_stores(tmp_path)[0].images == 3


def test_full_disk_names_the_path_and_the_free_space_and_leaves_nothing(paths, tmp_path, monkeypatch):
    def full(file, array, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(StorageError) as excinfo:
        _extract(paths[:8], tmp_path / "cache", FeatureRequest())
    message = str(excinfo.value)
    assert "No space left on device" in message and "GB free" in message and "--cache-dir" in message
    assert str(tmp_path / "cache") in message
    shard_root = next((tmp_path / "cache/features").glob("*/shards"))
    assert list(shard_root.iterdir()) == []


def test_full_disk_through_the_cli_exits_2_with_the_message(vindr_root, tmp_path, monkeypatch):
    def full(file, array, *args, **kwargs):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", str(file))

    monkeypatch.setattr(np, "save", full)
    result = runner.invoke(app, ["run", "vindr", "--encoder", "pixels", "--data-root", str(vindr_root), "--out",
                                 str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--seeds", "1"])
    assert result.exit_code == 2
    assert "Disk quota exceeded" in result.output and "GB free" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def _nan_with_matching_checksum(shard: Path) -> None:
    """NaN written into an array and its checksum recomputed: only a look at the values can tell."""
    _nan_bytes(shard / "patches.npy")
    sums = json.loads((shard / "checksums.json").read_text())
    sums["patches.npy"] = shards_module.file_checksum(shard / "patches.npy")
    (shard / "checksums.json").write_text(json.dumps(sums))


def test_nan_with_a_matching_checksum_is_refused_by_reads_and_encoded_again(paths, tmp_path):
    """The fault as found: such a shard gave exit 0, every metric n/a and NaN scores."""
    clean = _extract(paths, tmp_path / "cache")
    expected = clean.store.load(clean.keys, "patches")
    victim = _shards(clean)[1]
    _nan_with_matching_checksum(victim)
    shards_module._VERIFIED.clear()
    store = FeatureStore(clean.store.folder, json.loads((clean.store.folder / "manifest.json").read_text()))
    with pytest.raises(CacheError) as excinfo:
        store.load(clean.keys, "patches")
    message = str(excinfo.value)
    assert str(victim) in message and "non-finite" in message and "cxrbench cache clear --encoder dinov2-small" in message
    assert list_stores(tmp_path / "cache", verify=True)[0].status == "1 damaged shard(s)"
    notes: list[str] = []
    again = _extract(paths, tmp_path / "cache", notes=notes)
    assert again.encoded == 8 and any(victim.name in n and "non-finite" in n for n in notes), notes
    np.testing.assert_array_equal(_fresh_process_view(again, "patches"), expected)


def test_non_finite_count_matches_numpy_across_block_boundaries(tmp_path):
    """Blocks of the checksum pass split values and the header: the count must still be numpy's own."""
    values = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float16)
    values[[3, 17, 49], [0, 6, 2]] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "a.npy", values)
    counter = shards_module._NonFiniteCount.of(tmp_path / "a.npy")
    data = memoryview((tmp_path / "a.npy").read_bytes())
    for start in range(0, len(data), 37):  # odd block size: every block boundary splits a float16
        counter(data[start:start + 37])
    assert counter.count == int((~np.isfinite(values)).sum()) == 3
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # every float16 bit pattern
    np.save(tmp_path / "every.npy", every)
    counter = shards_module._NonFiniteCount.of(tmp_path / "every.npy")
    counter(memoryview((tmp_path / "every.npy").read_bytes()))
    assert counter.count == int((~np.isfinite(every)).sum())


def test_short_write_without_errno_is_a_storage_error(paths, tmp_path, monkeypatch):
    """numpy reports a full disk as OSError('N requested and M written') with no errno: it was a traceback."""
    original = np.save

    def short(file, array, *args, **kwargs):
        Path(file).write_bytes(b"\x93NUMPY")  # part of the file, then the error numpy raises
        raise OSError(f"{array.nbytes} requested and 6 written")

    monkeypatch.setattr(np, "save", short)
    with pytest.raises(StorageError) as excinfo:
        _extract(paths[:8], tmp_path / "cache", FeatureRequest())
    message = str(excinfo.value)
    assert "requested and 6 written" in message and "GB free" in message and str(tmp_path / "cache") in message
    monkeypatch.setattr(np, "save", original)
    assert list(next((tmp_path / "cache/features").glob("*/shards")).iterdir()) == []


def test_manifest_with_wrong_array_shapes_is_refused_and_listed(paths, tmp_path):
    """The fault as found: reads failed with a ValueError traceback and `cache ls --verify` said ok."""
    result = _extract(paths[:16], tmp_path / "cache", FeatureRequest())
    manifest_path = result.store.folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["arrays"]["global"] = [manifest["arrays"]["global"][0] * 2]
    manifest_path.write_text(json.dumps(manifest))
    shards_module._VERIFIED.clear()
    store = FeatureStore(result.store.folder, manifest)
    with pytest.raises(CacheError) as excinfo:
        store.load(result.keys, "global")
    message = str(excinfo.value)
    assert "global.npy" in message and "manifest.json" in message and "cxrbench cache clear --encoder dinov2-small" in message
    with pytest.raises(CacheError, match="manifest.json"):  # a new extraction refuses too, rather than mixing shapes
        _extract(paths[:16], tmp_path / "cache", FeatureRequest())
    status = list_stores(tmp_path / "cache", verify=True)[0].status
    assert status == "2 shard(s) whose array shapes differ from manifest.json (clear the store)"
