"""What reading a .vtok file yields: records, index entries, chunks (every stream of a latent-step range),
single-stream chunk views and audio records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .format import CODING_NAMES, RecordType

if TYPE_CHECKING:
    from .reader import VtokReader


@dataclass(frozen=True)
class AudioRecord:
    """One compressed audio packet, stored as demuxed; times in the header's audio time base."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None


class IndexEntry(tuple):
    """(offset, type, first_frame, end_frame) of one record, as listed in the footer index."""

    __slots__ = ()

    def __new__(cls, offset: int, type: int, first_frame: int | None, end_frame: int | None) -> IndexEntry:
        return tuple.__new__(cls, (offset, type, first_frame, end_frame))

    @property
    def offset(self) -> int:
        return self[0]

    @property
    def type(self) -> int:
        return self[1]

    @property
    def frames(self) -> tuple[int, int] | None:
        return None if self[2] is None else (self[2], self[3])


@dataclass(frozen=True)
class VtokChunk:
    """One chunk of a file: every stream's array for latent steps [first_latent, end_latent), decoding to
    source frames [first_frame, end_frame).

    ``latents``: stream name -> array (continuous float32, tokens int64) in the header's chunk shape.
    ``segment_start``: the decoder must start from a fresh state (no causal cache) here.
    """

    latents: dict[str, np.ndarray] = field(repr=False)
    first_latent: int
    end_latent: int
    first_frame: int
    end_frame: int
    segment_start: bool


class StoredChunk(tuple):
    """A single-stream view of a chunk: ``(first_latent, latents)``; also ``.first_frame``, ``.end_frame`` and ``.segment_start``.

    ``segment_start`` is True when the decoder must start from a fresh state (no causal cache) here.
    """

    first_frame: int
    end_frame: int
    segment_start: bool

    def __new__(
        cls, first_latent: int, latents: np.ndarray, first_frame: int, end_frame: int, segment_start: bool
    ) -> StoredChunk:
        self = tuple.__new__(cls, (first_latent, latents))
        self.first_frame = first_frame
        self.end_frame = end_frame
        self.segment_start = segment_start
        return self

    @property
    def first_latent(self) -> int:
        return self[0]

    @property
    def latents(self) -> np.ndarray:
        return self[1]


class StoredTokenChunk(StoredChunk):
    """``(first_latent, indices)`` with indices int64 (t, h, w); same extra attributes as StoredChunk."""

    @property
    def indices(self) -> np.ndarray:
        return self[1]


class Record:
    """One record read from a file, its checksum verified; the payload is decoded on first access."""

    __slots__ = (
        "index", "offset", "type", "flags", "meta", "raw", "stream_index", "_reader", "_payload", "_decoded",
    )  # fmt: skip

    def __init__(
        self,
        reader: VtokReader,
        index: int,
        offset: int,
        type: int,
        flags: int,
        meta: dict,
        raw: bytes,
        stream_index: int | None = None,
    ):
        self._reader = reader
        self.index = index
        self.offset = offset
        self.type = type
        self.flags = flags
        self.meta = meta
        self.raw = raw
        self.stream_index = stream_index
        self._payload: Any = None
        self._decoded = False

    def __repr__(self) -> str:
        return (
            f"Record(index={self.index}, type={self.type_name!r}, frames={self.frames}, "
            f"latents={self.latents}, payload_bytes={len(self.raw)})"
        )

    @property
    def type_name(self) -> str:
        """chunk, audio, segment, end (format 1.0 also latent, tokens), or ``type N``."""
        return RecordType.name(self.type)

    @property
    def stream(self) -> str | None:
        """The name of the stream a chunk record carries, else None."""
        return None if self.stream_index is None else self._reader.streams[self.stream_index].name

    @property
    def frames(self) -> tuple[int, int] | None:
        """[first_frame, end_frame) in source frames, or None for records not tied to frames."""
        f = self.meta.get("frames")
        return None if f is None else (f[0], f[1])

    @property
    def latents(self) -> tuple[int, int] | None:
        """[first_latent, end_latent) in latent frames, or None."""
        f = self.meta.get("latents")
        return None if f is None else (f[0], f[1])

    @property
    def coding(self) -> str | None:
        """Token coding of a record of a token stream (``packed`` or ``rans``), else None."""
        if self.stream_index is None or not self._reader.streams[self.stream_index].discrete:
            return None
        return CODING_NAMES.get(self.flags & 0x0F, f"coding {self.flags & 0x0F}")

    @property
    def payload(self) -> Any:
        """A chunk record's array (latents float32, token indices int64), an AudioRecord, or None.

        Records of types this version does not know give their raw payload bytes.
        """
        if not self._decoded:
            self._payload = self._reader._decode(self)
            self._decoded = True
        return self._payload
