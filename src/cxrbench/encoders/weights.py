"""Resolve an encoder's weights: a Hugging Face repo at a pinned revision (cache first, offline-aware),
a local file or folder, or `random` (seeded initialisation of the identical architecture).

The resolved `identity` goes into the feature-cache key: a hub commit hash, a SHA-256 of local weight
files, or the random seed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlparse
from pathlib import Path
from typing import Literal

from cxrbench.errors import WeightsError
from cxrbench.specs import AdapterSpec, WeightsSpec

WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}


@dataclass(frozen=True)
class WeightsSource:
    kind: Literal["hub", "local", "random", "none"]
    identity: str
    path: Path | None = None
    seed: int = 0


def resolve_weights(spec: AdapterSpec, weights: str | None = None, revision: str | None = None) -> WeightsSource:
    """`weights` is None (the spec's default source), 'random', 'random:SEED', or a local path."""
    if weights is not None and (weights == "random" or weights.startswith("random:")):
        seed_text = weights.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise WeightsError(f"--weights {weights}: the seed after 'random:' must be a whole number.")
        return WeightsSource("random", f"random:seed={int(seed_text)}", seed=int(seed_text))
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsError(f"--weights {weights}: no such file or folder. {_where_to_get(spec.weights)}")
        if path.is_file():
            verify_hash_in_name(path.resolve())
        verify_published_checksums(spec, path.resolve())
        return WeightsSource("local", f"sha256:{weights_digest(path.resolve())}", path=path.resolve())
    if spec.weights.hub_repo:
        return _from_hub(spec, revision or spec.weights.revision)
    if spec.weights.local:  # a generic encoder named by its folder (`hf:PATH`): that folder is the release
        return resolve_weights(spec, spec.weights.local)
    if not spec.weights.files and not spec.weights.distributed_at:
        return WeightsSource("none", "none")
    raise WeightsError(f"Encoder '{spec.name}' needs weights: pass --weights PATH. {_where_to_get(spec.weights)}")


def _from_hub(spec: AdapterSpec, revision: str | None) -> WeightsSource:
    folder = hub_snapshot(spec.name, spec.weights, revision, spec.weights.files)
    verify_published_checksums(spec, folder)
    return WeightsSource("hub", f"hf:{spec.weights.hub_repo}@{folder.name}", path=folder)


def hub_snapshot(name: str, weights: WeightsSpec, revision: str | None, files: Sequence[str]) -> Path:
    """The cached snapshot folder of `weights.hub_repo` at `revision` (None: the cached `main`) holding `files`:
    the cache first, the Hub only when not offline. Generic `hf:` encoders read their config through it too."""
    from huggingface_hub import snapshot_download

    repo = weights.hub_repo
    patterns = list(files) or None
    try:
        folder = snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True)
    except Exception:
        if _offline():
            raise WeightsError(
                f"Weights of '{name}' ({repo} at revision {revision or 'main'}) are not in the Hugging Face cache "
                f"({_hf_cache()}) and offline mode is on. {_where_to_get(weights, revision)}"
            ) from None
        if not _hub_reachable():
            raise WeightsError(
                f"Could not get weights of '{name}' ({repo} at revision {revision or 'main'}): they are not in the "
                f"Hugging Face cache ({_hf_cache()}) and the Hub could not be reached (no network?). "
                f"{_where_to_get(weights, revision)}"
            )
        try:
            with _quiet_hub():
                folder = snapshot_download(repo, revision=revision, allow_patterns=patterns)
        except Exception as exc:
            raise WeightsError(
                f"Could not get weights of '{name}' ({repo} at revision {revision or 'main'}): they are not in the "
                f"Hugging Face cache ({_hf_cache()}) and {_hub_failure(exc)}. {_where_to_get(weights, revision)}"
            ) from None
    folder_path = Path(folder)
    missing = [file for file in files if not (folder_path / file).exists()]
    if missing:
        raise WeightsError(f"The cached snapshot {folder_path} of {repo} lacks {missing}. "
                           f"{_where_to_get(weights, revision)}")
    return folder_path


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub logs a line per retry ("Retrying in 8s [Retry 5/5]") and warns on its way to failing; the user
    gets one message instead, naming the repository, the revision and the `hf download` command."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hub's host answers a TCP connection within `timeout_s`: without a network, huggingface_hub
    retries with back-off for about 20 s before failing. Behind a proxy the host is not reached directly, so the
    download itself is left to find out."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub.constants import ENDPOINT

    endpoint = urlparse(ENDPOINT)
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _hub_failure(exc: Exception) -> str:
    """What went wrong at the Hub, in words (a user needs the cause, not the exception's class)."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return "the repository is gated: accept its terms on its Hub page and log in with `hf auth login`"
    if isinstance(exc, errors.RevisionNotFoundError):
        return "the Hub has no such revision (check --revision)"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "the Hub has no such repository, or it needs a login (`hf auth login`)"
    if isinstance(exc, errors.HfHubHTTPError):
        return "the Hub refused the download"
    return "the Hub could not be reached (no network?)"


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hf_cache() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


def download_command(weights: WeightsSpec, revision: str | None = None) -> str:
    """The `hf` command (huggingface_hub's CLI) that puts an encoder's released files into the cache."""
    names = " ".join(weights.files)
    revision = revision or weights.revision
    return " ".join(part for part in ("hf download", weights.hub_repo, names, f"--revision {revision}" if revision else "") if part)


def _where_to_get(weights: WeightsSpec, revision: str | None = None) -> str:
    parts = []
    if weights.distributed_at:
        parts.append(f"The authors distribute them at {weights.distributed_at}")
    if weights.licence:
        parts.append(f"under the licence: {weights.licence}")
    text = " ".join(parts) + "." if parts else ""
    if weights.hub_repo:
        text += (f" To get them: `{download_command(weights, revision)}`, then run with HF_HUB_OFFLINE=1 (no network "
                 "retries); or pass --weights DIR of a local copy.")
    elif weights.how_to_get:
        text += f" To get them: {weights.how_to_get}."
    return (text + " Use --weights random for a randomly initialised model of the same architecture.").strip()


_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z]+$")


def verify_hash_in_name(path: Path) -> None:
    """torch.hub convention: `name-<sha256 prefix>.pth`. A file whose content disagrees is corrupt or another file."""
    match = _HASH_IN_NAME.search(path.name)
    if not match:
        return
    stat = path.stat()
    digest = _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    if not digest.startswith(match.group(1)):
        raise WeightsError(
            f"{path}: its name promises a SHA-256 starting with {match.group(1)}, but the file's is {digest[:len(match.group(1))]}. "
            "The download is incomplete or corrupt; download it again."
        )


def verify_published_checksums(spec: AdapterSpec, path: Path) -> None:
    """Check every file of `path` (a file or a folder) that the release publishes a digest for."""
    for name, expected in spec.weights.checksums.items():
        file = path if path.is_file() and path.name == name else path / name if path.is_dir() else None
        if file is None or not file.is_file():
            continue
        algorithm, _, digest = expected.partition(":")
        stat = file.stat()
        actual = _file_digest(str(file), stat.st_size, stat.st_mtime_ns, algorithm)
        if actual != digest:
            raise WeightsError(
                f"{file} is not the released {name}: its {algorithm} is {actual}, the authors publish {digest}. "
                "Download it again (or, for your own weights, give the file another name)."
            )


def weights_digest(path: Path) -> str:
    """SHA-256 over the weight files (and config.json) of a file or folder, in name order."""
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    )
    if not files:
        raise WeightsError(f"{path} holds no weight file ({', '.join(sorted(WEIGHT_SUFFIXES))}).")
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(file.name.encode())
        digest.update(_file_sha256(str(file), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:32]


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's content, remembered per (path, size, mtime): a run's provenance names each weight
    file by its digest without reading files already hashed when the weights were resolved."""
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return _file_digest(path, size, mtime_ns, "sha256")


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    """Digest of a file, remembered per (path, size, mtime) so a run hashes each weight file once."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
