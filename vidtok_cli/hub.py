"""Hugging Face Hub downloads and vidtok's own cache directory.

Downloads go through ``huggingface_hub`` and its cache (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and
HF_TOKEN work as usual); every failure becomes one WeightsUnavailableError line.  Neither torch nor
huggingface_hub is imported at module level.

The weights index (``weights-index.json`` in the cache directory) maps the sha256 of weights files seen on
this machine (downloaded, converted or used to encode) to their paths, so that decoding finds the weights
a .vtok file was made with without the network.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .atomic import write_text
from .checkpoints import sha256_file
from .errors import CheckpointError, WeightsUnavailableError

__all__ = [
    "cache_dir",
    "converted_path",
    "download",
    "file_sha256",
    "find_weights",
    "index_path",
    "parse_hub_ref",
    "record_weights",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "on", "yes", "true"}
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def cache_dir() -> Path:
    """vidtok's cache directory: $VIDTOK_CACHE, else $XDG_CACHE_HOME/vidtok, else ~/.cache/vidtok."""
    explicit = os.environ.get("VIDTOK_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "vidtok"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    return line[:200] if line else type(exc).__name__


def _offline() -> bool:
    """HF_HUB_OFFLINE (read now, and as huggingface_hub read it at import)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint opens within ``timeout`` seconds.

    Without this, huggingface_hub retries an unreachable host for half a minute before failing. With a
    proxy configured the probe is skipped (the proxy decides), and so is the answer cached per process.
    """
    global _REACHABLE
    if _REACHABLE is not None:
        return _REACHABLE
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        _REACHABLE = True
        return True
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            _REACHABLE = True
    except OSError:
        _REACHABLE = False
    return _REACHABLE


_REACHABLE: bool | None = None


def _unreachable(what: str, repo_id: str, filename: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"{what} {repo_id}/{filename} are not in the local Hugging Face cache and the Hub cannot be "
        "reached; run once with network access, or download the file and pass its local path"
    )


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx", "requests"):
        mod = sys.modules.get(module)  # a transport that was never imported raised nothing
        if mod is None:
            continue
        for name in ("TransportError", "ConnectionError", "Timeout", "TimeoutException"):
            cls = getattr(getattr(mod, "exceptions", mod), name, None) or getattr(mod, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                errors.append(cls)
    return tuple(errors)


def _map_error(
    exc: Exception, what: str, repo_id: str, filename: str, revision: str
) -> WeightsUnavailableError:
    """One line for any failure of hf_hub_download."""
    from huggingface_hub import errors as hf

    where = f"{repo_id}/{filename}"
    if isinstance(exc, (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled)):
        return _unreachable(what, repo_id, filename)
    if isinstance(exc, hf.GatedRepoError):
        return WeightsUnavailableError(
            f"{what} {where}: the Hub repository {repo_id} is gated; accept its conditions on "
            "huggingface.co and log in (`hf auth login` or HF_TOKEN)"
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return WeightsUnavailableError(
            f"{what} {where}: Hub repository {repo_id} not found (if it is private, log in with "
            "`hf auth login` or set HF_TOKEN)"
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return WeightsUnavailableError(
            f"{what} {where}: revision {revision!r} not found in Hub repository {repo_id}"
        )
    if isinstance(exc, hf.EntryNotFoundError):
        return WeightsUnavailableError(
            f"{what} {where}: file {filename!r} not found in Hub repository {repo_id} at revision {revision!r}"
        )
    if isinstance(exc, hf.HfHubHTTPError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        detail = f"HTTP {status}" if status is not None else _one_line(exc)
        return WeightsUnavailableError(f"{what} {where}: the Hub answered {detail}; try again later")
    if isinstance(exc, hf.HFValidationError):
        return WeightsUnavailableError(f"{what} {where}: invalid Hub reference ({_one_line(exc)})")
    if isinstance(exc, _connection_errors()):
        return _unreachable(what, repo_id, filename)
    if isinstance(exc, OSError):
        return WeightsUnavailableError(
            f"{what} {where}: cannot store the download in the Hugging Face cache ({_one_line(exc)})"
        )
    return WeightsUnavailableError(
        f"{what} {where}: download failed ({type(exc).__name__}: {_one_line(exc)})"
    )


def download(
    repo_id: str,
    filename: str,
    revision: str | None = "main",
    *,
    sha256: str | None = None,
    what: str = "weights",
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> Path:
    """Path of a Hub file in the local Hugging Face cache, downloading it first when needed.

    ``cache_dir`` overrides the Hugging Face hub cache (default: $HF_HUB_CACHE, else HF_HOME/hub);
    with ``local_files_only`` or HF_HUB_OFFLINE set, only the cache is consulted.  When ``sha256``
    is given the file's content is checked against it.  Raises WeightsUnavailableError (one line)
    when the file cannot be had, CheckpointError when its sha256 differs.
    """
    revision = revision or "main"
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and not _SHA256.match(expected):
        raise CheckpointError(f"{what} {repo_id}/{filename}: expected sha256 {sha256!r} is not 64 hex digits")
    if cache_dir is None and os.environ.get("HF_HUB_CACHE"):
        cache_dir = os.environ["HF_HUB_CACHE"]  # read now: huggingface_hub read it once, at import
    try:
        offline = local_files_only or _offline() or not _hub_reachable()
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(
            repo_id=repo_id,
            filename=filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - every failure becomes one line
        raise _map_error(e, what, repo_id, filename, revision) from None
    path = Path(local)
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(
                f"{what} {repo_id}/{filename} ({path}) has sha256 {actual}, expected {expected}; "
                "the download is corrupt or the Hub file changed: delete it from the cache and retry"
            )
    record_weights(path, expected)
    return path


def parse_hub_ref(ref: str) -> tuple[str, str, str] | None:
    """(repo_id, filename, revision) of "hf://owner/repo/path/file[@revision]", else None."""
    if not isinstance(ref, str) or not ref.startswith("hf://"):
        return None
    body = ref[len("hf://") :]
    revision = "main"
    if "@" in body:
        body, _, revision = body.rpartition("@")
        if not revision or revision.strip() != revision:
            return None
    parts = body.split("/")
    if len(parts) < 3:
        return None
    owner, repo, *file_parts = parts
    if not (_REPO_PART.match(owner) and _REPO_PART.match(repo)):
        return None
    if any(p in ("", ".", "..") for p in file_parts):
        return None
    return f"{owner}/{repo}", "/".join(file_parts), revision


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file; for a Hugging Face cache entry, the name of the LFS blob it links to."""
    name = os.path.basename(os.path.realpath(path))
    if _SHA256.match(name):
        return name
    return sha256_file(path)


def converted_path(source_sha256: str, name: str) -> Path:
    """Where the safetensors conversion of a downloaded checkpoint is cached."""
    digest = source_sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{16,}", digest):
        raise ValueError(f"not a hex sha256: {source_sha256!r}")
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return cache_dir() / "converted" / f"{safe_name}-{digest[:16]}.safetensors"


# ----------------------------------------------------------------------------- weights index


def index_path() -> Path:
    """The weights index: a JSON object {sha256: {"path", "size", "mtime_ns"}} in the cache directory."""
    return cache_dir() / "weights-index.json"


def _read_index() -> dict[str, dict[str, Any]]:
    """The index's entries; a missing, unreadable or corrupt index is empty."""
    try:
        data = json.loads(index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if _SHA256.match(k) and isinstance(v, dict) and "path" in v}


def _write_index(entries: dict[str, dict[str, Any]]) -> None:
    """Replace the index atomically; failures are ignored."""
    try:
        write_text(index_path(), json.dumps(entries, indent=1, sort_keys=True), force=True, make_parents=True)
    except OSError:
        pass  # the index is a convenience: an unwritable cache must not fail the command


def record_weights(path: str | os.PathLike[str], sha256: str | None = None) -> None:
    """Add a local weights file to the index under its sha256 (hashed when not given)."""
    local = Path(os.path.abspath(os.path.expanduser(path)))
    try:
        st = local.stat()
    except OSError:
        return
    entries = _read_index()
    if sha256 is None:
        known = next((e for e in entries.values() if e.get("path") == str(local)), None)
        if known is not None and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
            return
        try:
            sha256 = file_sha256(local)
        except CheckpointError:
            return
    digest = sha256.strip().lower()
    if not _SHA256.match(digest):
        return
    new = {"path": str(local), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if entries.get(digest) == new:
        return
    entries[digest] = new
    _write_index(entries)


def find_weights(sha256: str) -> Path | None:
    """A local file with this sha256 from the index, checked now (size and mtime, else its content)."""
    digest = (sha256 or "").strip().lower()
    entries = _read_index()
    entry = entries.get(digest)
    if entry is None:
        return None
    path = Path(str(entry["path"]))
    try:
        st = path.stat()
        unchanged = entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns
        if unchanged or (st.st_size == entry.get("size") and file_sha256(path) == digest):
            if not unchanged:
                record_weights(path, digest)
            return path
    except (OSError, CheckpointError):
        pass
    del entries[digest]  # gone or changed: forget it
    _write_index(entries)
    return None
