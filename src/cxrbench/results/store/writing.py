"""Writing run folders: atomic, locked, and never over a run of other settings unless asked.

A run folder is assembled in a hidden sibling and renamed into place, so a crash never leaves a half-written
folder that looks complete, and a previous result is replaced only by a finished one. Whether a run is written at
all is decided here too (`resume_decision`): the same identity and schema is kept, other settings are refused
unless --overwrite, so every kind of run (probe, segmentation, explain, bias) resumes and refuses alike.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from cxrbench.errors import DataError
from cxrbench.files import atomic_text, folder_lock, remove_stale, staging_name, storage_errors
from cxrbench.results.labels import run_variant
from cxrbench.results.provenance import SCHEMA_VERSION
from cxrbench.results.store.layout import METRICS
from cxrbench.results.store.runs import read_metrics


def write_run(folder: Path, writers: dict[str, Callable[[Path], None]],
              check: Callable[[dict | None], None] | None = None, on_wait: Callable[[str], None] | None = None) -> Path:
    """Call each writer with its file path inside a staging folder, then move the folder into place.

    Under the folder's lock: `check(stored metrics.json or None)` runs first and may refuse (another process may
    have stored a run of other settings since this one started), staging leftovers of killed processes are
    removed, and the previous folder is replaced only by a complete one.
    """
    parent = folder.parent
    with storage_errors(parent, "Free some space, or pass --out on a disk with room, then rerun (features are cached)."):
        parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(parent / f".{folder.name}.lock", f"results into {folder}", on_wait):
            _restore_retired(folder, on_wait)
            if check is not None:
                check(read_metrics(folder))
            remove_stale(parent, f".{folder.name}.")
            staging = parent / staging_name(f"{folder.name}.partial")
            staging.mkdir()
            try:
                for name, write in writers.items():  # a name may hold a subfolder (masks/seed-0.npz)
                    (staging / name).parent.mkdir(parents=True, exist_ok=True)
                    write(staging / name)
                if folder.exists():
                    retired = parent / staging_name(f"{folder.name}.old")
                    os.rename(folder, retired)
                    os.rename(staging, folder)
                    shutil.rmtree(retired)
                else:
                    os.rename(staging, folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return folder


def recover_run(folder: Path, note: Callable[[str], None] | None = None) -> None:
    """Under the folder's lock, put back a run that a process killed inside `write_run` left only as its retired copy
    (see `_restore_retired`); call before deciding whether a run is stored there."""
    if folder.parent.is_dir() and not folder.exists():
        with folder_lock(folder.parent / f".{folder.name}.lock", f"results into {folder}", note):
            _restore_retired(folder, note)


def _restore_retired(folder: Path, note: Callable[[str], None] | None) -> None:
    """A kill between `write_run`'s two renames leaves the previous run only as `.HEAD.old.*` and no HEAD/: rename it
    back (call under the folder's lock), before anything is decided or cleared, so that the next run neither deletes it
    as a leftover nor stores other settings in its place without --overwrite."""
    if folder.exists():
        return
    retired = sorted(folder.parent.glob(f".{folder.name}.old.*"), key=lambda p: p.stat().st_mtime)
    retired = [path for path in retired if (path / METRICS).is_file()]
    if retired:
        os.rename(retired[-1], folder)
        if note is not None:
            note(f"restored {folder} from {retired[-1].name}: a process was stopped while replacing that run.")


def resume_decision(folder: Path, identity: dict, overwrite: bool, note: Callable[[str], None] | None = None,
                    tagged: bool = True) -> dict | None:
    """Before any work: the stored metrics.json when `folder` holds this very run (the same `run_identity` and this
    cxrbench's schema version): keep it, train nothing. None when nothing is stored, or when a run of other settings
    may be replaced (`overwrite`); a run of other settings without `overwrite` is refused (`refuse_other_settings`)."""
    recover_run(folder, note)
    stored = read_metrics(folder)
    if stored is None:
        return None
    if stored.get("run_identity") == identity and stored.get("schema_version") == SCHEMA_VERSION:
        return stored
    refuse_other_settings(folder, stored, identity, overwrite, tagged=tagged)
    return None


def refuse_other_settings(folder: Path, stored: dict | None, identity: dict, overwrite: bool, at_write: bool = False,
                          tagged: bool = True) -> None:
    """Refuse to replace `stored` (a metrics.json of `folder`, or None) by a run of `identity`, unless `overwrite` or
    the identities agree. Called before any work and again under the folder's lock when writing (`at_write`): another
    process may have stored a run there meanwhile, and two results must never silently become one. `tagged`: the
    command has --tag (explain has not), so the message offers it."""
    if overwrite or stored is None:
        return
    previous = stored.get("run_identity")
    if previous == identity:
        return
    differing = sorted(k for k in {*identity, *(previous or {})} if (previous or {}).get(k) != identity.get(k))
    meanwhile = (" (stored by another process while this run trained; its features are cached, so a rerun only "
                 "trains the heads)") if at_write else ""
    found, asked = run_variant(previous), run_variant(identity)
    kinds = f": it holds {found.describe()}, this run is {asked.describe()}" if found != asked else ""
    fix = ("Name this run with --tag NAME, write to another --out," if tagged else "Write to another --out")
    raise DataError(f"{folder} holds a run with other settings ({', '.join(differing)} differ){kinds}{meanwhile}. {fix} "
                    "or pass --overwrite to replace it.")


def write_texts(stem: Path, texts: dict[str, str]) -> list[Path]:
    """Files of one table beside the runs (STEM.SUFFIX per text, e.g. a benchmark's table or a comparison), each
    written atomically: a reader never sees half a table. `stem` comes from this store's layout."""
    return [atomic_text(stem.with_suffix(suffix), text) for suffix, text in texts.items()]


def yaml_writer(data: dict) -> Callable[[Path], None]:
    plain = json.loads(json.dumps(data, default=str))  # tuples -> lists, version objects -> strings
    return lambda path: path.write_text(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True), encoding="utf-8")


def json_writer(data: dict) -> Callable[[Path], None]:
    return lambda path: path.write_text(json.dumps(data, indent=2, allow_nan=False), encoding="utf-8")


def parquet_writer(frame) -> Callable[[Path], None]:
    """`frame`: a pandas DataFrame, written without its index."""
    return lambda path: frame.to_parquet(path, index=False)


def text_writer(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text, encoding="utf-8")


def csv_writer(frame) -> Callable[[Path], None]:
    """`frame`: a pandas DataFrame, written without its index."""
    return lambda path: frame.to_csv(path, index=False)
