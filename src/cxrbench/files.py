"""Writing files so that a crash, a full disk or a second process never leaves a wrong result behind.

Every writer in cxrbench (feature shards, run folders, tables, plots) goes through this module:

- whole files are written to a temporary sibling and renamed over the target (`atomic_write`);
- folders are assembled under a *staging* name that records the host and process that made them, so that a
  later run can tell the leftovers of a killed process (`remove_stale`) from the work of one still running;
- check-and-write sections shared by processes take a lock file beside what they guard (`folder_lock`);
- an `OSError` while writing (disk full, quota, read-only) becomes a `StorageError` naming the path and the space
  left on its disk (`storage_errors`), instead of a traceback.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from cxrbench.errors import StorageError

#: leftovers made on another host cannot be checked against its processes: they count as stale after this long
FOREIGN_STALE_SECONDS = 24 * 3600
_HOST = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def path_part(name: str) -> str:
    """`name` as one folder name: generic encoder names hold ':' and '/' (`hf:org/name`, `hf:/a/local/folder`), which
    would otherwise nest folders. Unsafe runs become '--' (as the Hugging Face cache spells org/name); a long result
    keeps its end and a digest of the whole name, so distinct names stay distinct."""
    safe = _UNSAFE.sub("--", name).strip("-.") or "_"
    if safe == name:
        return name
    return f"{safe[-80:]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}" if len(safe) > 96 else safe


def staging_name(stem: str) -> str:
    """A hidden sibling name for work in progress: `.STEM.HOST-PID-RANDOM` (see `is_stale`)."""
    return f".{stem}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether a staging folder or file was left by a process that no longer runs.

    Made on this host: stale when its process is gone, or when the process now holding that pid started after the
    folder was made (the pid was reused). Made elsewhere, or named by an older cxrbench: stale after a day.
    """
    try:
        made = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    parts = path.name.rsplit(".", 1)[-1].split("-")
    if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit():
        pid = int(parts[1])
        if pid == os.getpid():
            return False
        started = _process_start(pid)
        return started is None or started > made + 1.0
    return (now or time.time()) - made > FOREIGN_STALE_SECONDS


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), or None if there is no such process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by someone else
    try:  # Linux: field 22 of /proc/PID/stat is the start time in clock ticks after boot
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0  # alive, start unknown: never newer than what it made


def remove_stale(folder: Path, prefix: str) -> int:
    """Delete the stale staging entries of `folder` whose names start with `prefix` (lock files are kept: deleting
    a held lock would let a second process in); returns how many went."""
    removed = 0
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(prefix) and not p.name.endswith(".lock")]
    except FileNotFoundError:
        return 0
    for entry in entries:
        if is_stale(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def is_staging(name: str) -> bool:
    """Hidden names are work in progress, locks or leftovers: never results, never counted as data."""
    return name.startswith(".")


_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def free_space(path: Path) -> str:
    """The space left on the disk holding `path` (or its nearest existing parent), e.g. '1.2 GB free'."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return f"{shutil.disk_usage(probe).free / 1e9:.1f} GB free"
    except OSError:
        return "free space unknown"


@contextmanager
def storage_errors(path: Path, fix: str = "") -> Iterator[None]:
    """Turn a failed write under `path` into a StorageError that names it, says what the system said and how
    much space is left, and how to fix it. Other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None and exc.errno not in _DISK_ERRORS:
            raise
        # errno None: a write that failed without the system saying why, e.g. numpy's short write on a full disk
        # ("122 requested and 0 written"): a storage problem all the same, never a traceback
        where = exc.filename or path
        advice = fix or "Free some space or point the option that chose this folder elsewhere, then rerun."
        raise StorageError(
            f"Cannot write {where}: {exc.strerror or exc} ({free_space(Path(where))} on that disk). {advice}"
        ) from None


def check_writable(folder: Path, option: str) -> None:
    """Refuse a results folder that cannot be written, before any work: a read-only `--out` used to be found only when
    the first run was stored, after the training. The nearest existing folder on the way is probed by creating a file
    in it (permissions alone miss read-only mounts)."""
    existing = folder.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"{option} {folder}: {existing} is a file, not a folder; choose another {option}.")
    try:
        probe = existing / staging_name("write-probe")
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"{option} {folder}: cannot write in {existing} ({exc.strerror or exc}); choose a folder you "
                           f"can write, or fix its permissions.") from None


def atomic_write(path: Path, write: Callable[[Path], None], fix: str = "") -> Path:
    """Call `write(temporary path)` and rename the result over `path`: readers see the old file or the new one.
    `fix` says what to do when the disk refuses (`storage_errors`)."""
    tmp = path.with_name(staging_name(path.name))
    with storage_errors(path, fix):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return path


def atomic_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


@contextmanager
def folder_lock(lock_path: Path, what: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock file (`what` names the guarded thing in the message shown while waiting).

    Locks are advisory and per host on most network file systems: processes of one machine (or of a cluster
    whose file system supports `flock`) are serialised.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"waiting for another cxrbench process that is writing {what} (lock {lock_path})")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
