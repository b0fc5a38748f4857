"""Provenance records and resolution helpers for the metric networks' weight files (LPIPS, I3D)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, WeightsUnavailableError

if TYPE_CHECKING:
    import torch

__all__ = [
    "UnverifiedWeightsWarning",
    "WeightsFile",
    "existing_file",
    "file_hash",
    "hub_file",
    "hub_source",
    "tensor_digest",
]

_HUB_GENERIC_TAIL = "download the file and pass its local path"
_SNAPSHOT = re.compile(r"[/\\]snapshots[/\\]([0-9a-f]{40})[/\\]")


class UnverifiedWeightsWarning(UserWarning):
    """A weights file whose sha256 differs from the pinned value but was used because the user named it."""


@dataclass(frozen=True)
class WeightsFile:
    """Where one weights file came from, and the hashes that identify it in a report.

    ``verified`` is True when ``sha256`` equals the pinned value, False when it differs, and None when
    no value is pinned for this file.  ``tensor_sha256`` hashes the tensors actually loaded (names,
    shapes and float32 values), so the same weights from different containers give the same value.
    """

    role: str
    path: str
    sha256: str
    source: str
    verified: bool | None
    expected_sha256: str | None = None
    tensor_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted names, shapes and float32 little-endian values of a state dict."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu", torch.float32).contiguous()
        h.update(key.encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.numpy().astype("<f4", copy=False).tobytes())
    return h.hexdigest()


def hub_source(repo_id: str, filename: str, path: Path) -> str:
    """'hf://repo/file@commit' for a file in the Hugging Face cache (commit read from its snapshot path)."""
    m = _SNAPSHOT.search(str(path))
    rev = f"@{m.group(1)}" if m else ""
    return f"hf://{repo_id}/{filename}{rev}"


def hub_file(repo_id: str, filename: str, *, what: str, remedy: str) -> Path:
    """A Hub file from the local cache or a download, as vidtok_cli.hub.download does it.

    On failure, a one-line WeightsUnavailableError that ends with ``remedy`` (what to download or pass
    instead, phrased to follow "or").
    """
    from .. import hub

    try:
        return hub.download(repo_id, filename, "main", what=what)
    except WeightsUnavailableError as e:
        msg = str(e)
        if msg.endswith(_HUB_GENERIC_TAIL):
            msg = msg[: -len(_HUB_GENERIC_TAIL)] + remedy
        else:
            msg = f"{msg}, or {remedy}"
        raise WeightsUnavailableError(msg) from None


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path when it names a file, else a one-line UsageError."""
    p = Path(path).expanduser()
    if not p.is_file():
        problem = "is a directory" if p.is_dir() else "does not exist"
        raise UsageError(f"{what} {p} {problem}; pass the path of the weights file")
    return p


def file_hash(path: Path) -> str:
    """sha256 of a weights file (for a Hugging Face cache entry, its blob name, without re-reading it)."""
    from ..hub import file_sha256

    return file_sha256(path)
