"""Writing a .vtok file: records streamed to a temporary file, a footer index, an atomic rename into place."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..atomic import commit, discard, refuse_existing, temp_path
from .format import (
    CRC,
    END_MAGIC,
    FORMAT_VERSION,
    FROZEN_KEYS,
    LATENT_QUANT,
    LATENT_RAW,
    MAGIC,
    MAX_VALUES_PER_RECORD,
    PREAMBLE,
    RECORD_HEAD,
    TRAILER,
    ContainerError,
    RecordType,
)
from .header import deep_merge, dump_json, validate_header
from .payloads import encode_latents
from .quant import encode_quantized
from .streams import Stream, parse_streams
from .tokens import encode_tokens


def _record_bytes(rtype: int, flags: int, meta: Mapping[str, Any], payload: bytes) -> bytes:
    """One record's bytes: fixed fields, metadata JSON, payload, CRC-32 of all three."""
    m = dump_json(dict(meta))
    head = RECORD_HEAD.pack(rtype, flags, 0, len(payload), len(m))
    crc = zlib.crc32(payload, zlib.crc32(m, zlib.crc32(head)))
    return b"".join((head, m, payload, CRC.pack(crc)))


class VtokWriter:
    """Writes a .vtok file record by record; the file appears under its name only after a clean close.

    The output is written to a hidden temporary file in the same directory and renamed into place by
    ``close()`` (or a clean exit from the ``with`` block). An exception or KeyboardInterrupt inside the block,
    or ``abort()``, deletes the temporary file and leaves no output. An existing output is refused
    (ContainerError) unless ``force=True``.
    """

    def __init__(self, path: str | os.PathLike[str], header: Mapping[str, Any], *, force: bool = False):
        self.path = Path(path)
        self.force = force
        self.header = validate_header(header)
        self.streams: list[Stream] = parse_streams(self.header["streams"])
        if self.path.is_dir():
            raise ContainerError(f"{self.path} is a directory")
        refuse_existing(self.path, force, ContainerError)
        if not self.path.parent.is_dir():
            raise ContainerError(f"cannot write {self.path}: directory {self.path.parent} does not exist")
        self._tmp: Path | None = temp_path(self.path)
        try:
            self._file: BinaryIO | None = open(self._tmp, "xb")  # noqa: SIM115 - closed by close()/abort()
        except OSError as e:
            raise ContainerError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._closed = False
        self._index: list[list[Any]] = []
        self._offset = 0
        self._pos: tuple[int, int] | None = None  # (end_frame, end_latent) of the last video record
        self._updates: dict[str, Any] = {}
        try:
            hj = dump_json(self.header)
            pre = PREAMBLE.pack(MAGIC, FORMAT_VERSION[0], FORMAT_VERSION[1], len(hj)) + hj
            self._write(pre + CRC.pack(zlib.crc32(pre)))
        except BaseException:
            self.abort()
            raise

    # -- context manager --------------------------------------------------------------------------------
    def __enter__(self) -> VtokWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True) is False:
            self.abort()

    # -- properties ---------------------------------------------------------------------------------------
    @property
    def bytes_written(self) -> int:
        """Bytes written so far (preamble and records)."""
        return self._offset

    @property
    def records_written(self) -> int:
        """Records written so far (not counting the footer)."""
        return len(self._index)

    # -- writing -------------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._closed or self._file is None:
            raise ContainerError(f"{self.path}: the writer is closed")
        try:
            self._file.write(data)
        except OSError as e:
            self.abort()
            raise ContainerError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._offset += len(data)

    def _record(self, rtype: int, flags: int, meta: Mapping[str, Any], payload: bytes, frames: Any) -> int:
        rec = _record_bytes(rtype, flags, meta, payload)
        off = self._offset
        self._write(rec)
        self._index.append([off, rtype, frames[0] if frames else None, frames[1] if frames else None])
        return len(rec)

    def _check_range(self, first_frame: int, end_frame: int, first_latent: int, t: int, empty: bool) -> None:
        for name, v in (
            ("first_frame", first_frame),
            ("end_frame", end_frame),
            ("first_latent", first_latent),
        ):
            if not isinstance(v, (int, np.integer)) or int(v) < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {v!r}")
        if empty and end_frame != first_frame:
            raise ValueError("a segment marker covers no frames")
        if not empty and end_frame <= first_frame:
            raise ValueError(f"frame range [{first_frame}, {end_frame}) is empty")
        if not empty and t < 1:
            raise ValueError("a chunk needs at least one latent frame")
        if self._pos is not None and (first_frame, first_latent) != self._pos:
            raise ValueError(
                f"chunk starts at frame {first_frame}, latent {first_latent}; the previous one ended at "
                f"frame {self._pos[0]}, latent {self._pos[1]} (chunks must be contiguous and in order)"
            )

    def write_chunk(
        self,
        latents: Mapping[str, np.ndarray],
        first_frame: int,
        end_frame: int,
        first_latent: int,
        *,
        end_latent: int | None = None,
        coding: str = "auto",
    ) -> int:
        """Store one chunk of every stream, ``{name: array}``, covering source frames [first_frame, end_frame)
        and latent steps [first_latent, end_latent); returns the bytes written.

        Each array has its stream's step shape with the chunk's steps inserted at the stream's time axis;
        continuous streams real-valued, token streams integers in [0, K). ``end_latent`` defaults to
        ``first_latent`` plus the first stream's steps. ``coding``: ``"auto"`` keeps a token record
        entropy-coded when that is smaller than plain packing (unless the stream's coding is ``packed``),
        ``"packed"`` always packs.
        """
        if coding not in ("auto", "packed", "rans"):
            raise ValueError(f"coding must be auto, packed or rans, not {coding!r}")
        names = [s.name for s in self.streams]
        missing = [n for n in names if n not in latents]
        unknown = [n for n in latents if n not in names]
        if missing or unknown:
            raise ValueError(
                f"a chunk holds every stream of the file ({', '.join(names)})"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(map(str, unknown))}" if unknown else "")
            )
        arrays = [self._check_array(s, latents[s.name]) for s in self.streams]
        steps = [a.shape[s.step_axis] for s, a in zip(self.streams, arrays, strict=True)]
        first_frame, end_frame, first_latent = int(first_frame), int(end_frame), int(first_latent)
        end = first_latent + steps[0] if end_latent is None else int(end_latent)
        self._check_range(first_frame, end_frame, first_latent, end - first_latent, empty=False)
        total = 0
        for k, (stream, a) in enumerate(zip(self.streams, arrays, strict=True)):
            meta = {
                "stream": k,
                "frames": [first_frame, end_frame],
                "latents": [first_latent, end],
                "shape": list(a.shape),
            }
            if stream.discrete:
                want = "packed" if "packed" in (coding, stream.coding) else "auto"
                flags, payload = encode_tokens(a, stream, want)
            elif stream.coding == "quant":
                flags, payload = LATENT_QUANT, encode_quantized(a, stream)
            else:
                flags, payload = LATENT_RAW, encode_latents(a, stream.dtype or "float16")
            total += self._record(RecordType.CHUNK, flags, meta, payload, (first_frame, end_frame))
        self._pos = (end_frame, end)
        return total

    def _check_array(self, stream: Stream, array: np.ndarray) -> np.ndarray:
        """``array`` checked against its stream (shape, dtype, range); token indices as int64."""
        a = np.asarray(array)
        what = f"stream {stream.name!r}"
        if stream.discrete and a.dtype.kind not in "iu":
            raise ValueError(f"{what}: token indices must be an integer array")
        if not stream.discrete and a.dtype.kind not in "fiu":
            raise ValueError(f"{what}: latents must be a real-valued array")
        if a.ndim != len(stream.shape) + 1 or stream.chunk_shape(a.shape[stream.step_axis]) != a.shape:
            want = list(stream.shape)
            want.insert(stream.step_axis, "t")  # type: ignore[arg-type]
            raise ValueError(f"{what} must have shape ({', '.join(map(str, want))}), not {a.shape}")
        if a.shape[stream.step_axis] < 1:
            raise ValueError(f"{what}: a chunk needs at least one latent step")
        if a.size > MAX_VALUES_PER_RECORD:
            raise ValueError(f"a record holds at most {MAX_VALUES_PER_RECORD} values; write smaller chunks")
        if stream.discrete:
            k = stream.codebook_size
            assert k is not None
            if a.size and (int(a.min()) < 0 or int(a.max()) >= k):
                raise ValueError(f"{what}: token indices must lie in 0..{k - 1}")
            a = a.astype(np.int64)
        return a

    def write_audio(self, data: bytes, pts: int | None, dts: int | None, duration: int | None) -> int:
        """Store one compressed audio packet as it is; times in the header's audio time base; bytes written."""
        if self.header["audio"] is None:
            raise ValueError("the header has no audio stream (audio is null)")
        for name, v in (("pts", pts), ("dts", dts), ("duration", duration)):
            if v is not None and not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer or None, not {v!r}")
        meta = {
            "pts": None if pts is None else int(pts),
            "dts": None if dts is None else int(dts),
            "duration": None if duration is None else int(duration),
        }
        return self._record(RecordType.AUDIO, 0, meta, bytes(data), None)

    def mark_segment(self, first_frame: int, first_latent: int) -> int:
        """Mark a segment start: decoding can begin here from a fresh state (no causal cache); bytes written."""
        first_frame, first_latent = int(first_frame), int(first_latent)
        self._check_range(first_frame, first_frame, first_latent, 0, empty=True)
        meta = {"frames": [first_frame, first_frame], "latents": [first_latent, first_latent]}
        n = self._record(RecordType.SEGMENT, 0, meta, b"", (first_frame, first_frame))
        self._pos = (first_frame, first_latent)
        return n

    def update_header(self, updates: Mapping[str, Any]) -> None:
        """Header values to record in the footer (e.g. the final frame count); merged key by key.

        The keys that decide how records decode (model, streams, frame_layout) cannot change.
        """
        frozen = [k for k in updates if k in FROZEN_KEYS]
        if frozen:
            raise ValueError(f"header keys {', '.join(frozen)} cannot change after records are written")
        merged = deep_merge(self._updates, updates)
        validate_header(deep_merge(self.header, merged))
        self._updates = merged

    def close(self, header_updates: Mapping[str, Any] | None = None) -> None:
        """Write the footer (index and header updates), flush to disk and rename the file into place."""
        if self._closed:
            return
        try:
            if header_updates:
                self.update_header(header_updates)
            footer_offset = self._offset
            meta = {"header_updates": self._updates, "records": len(self._index)}
            self._write(_record_bytes(RecordType.END, 0, meta, dump_json(self._index)))
            self._write(TRAILER.pack(footer_offset, END_MAGIC))
            assert self._file is not None and self._tmp is not None
            self._file.close()
            self._file = None
            tmp, self._tmp = self._tmp, None
            try:
                commit(tmp, self.path, force=self.force, error=ContainerError)
            except OSError as e:
                raise ContainerError(f"cannot write {self.path}: {e.strerror or e}") from None
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Stop writing and delete the temporary file; no output is left."""
        self._closed = True
        f, self._file = getattr(self, "_file", None), None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
        tmp, self._tmp = getattr(self, "_tmp", None), None
        if tmp is not None:
            discard(tmp)
