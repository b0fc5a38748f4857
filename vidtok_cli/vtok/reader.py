"""Reading a .vtok file: opening and verifying it, iterating its records and chunks, statistics, and
recovering the records before the damage in a file that was cut short or damaged."""

from __future__ import annotations

import base64
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .._version import __version__
from .format import (
    CHUNK_TYPES,
    CHUNK_TYPES_OF,
    CODING_NAMES,
    CODING_PACKED,
    CRC,
    END_MAGIC,
    FORMAT_VERSION,
    FROZEN_KEYS,
    ITEMSIZE,
    LATENT_QUANT,
    LATENT_RAW,
    MAGIC,
    MAX_VALUES_PER_RECORD,
    MIN_RECORD,
    PARSE_ERRORS,
    PREAMBLE,
    RECORD_HEAD,
    TRAILER,
    V10_MODES,
    VIDEO_TYPES,
    ContainerError,
    CutShort,
    Damaged,
    RecordType,
)
from .header import deep_merge, header_problem, int_pair, is_int, load_json, v11_view
from .payloads import decode_latents, shape_size, tokens_to_latents
from .quant import decode_quantized_latents, quantized_error_bound
from .records import AudioRecord, IndexEntry, Record, StoredChunk, StoredTokenChunk, VtokChunk
from .streams import Stream, parse_streams
from .tokens import decode_tokens


def _safe_frames(meta: Any) -> tuple[int, int] | None:
    fr = meta.get("frames") if isinstance(meta, dict) else None
    return (fr[0], fr[1]) if int_pair(fr) and fr[0] <= fr[1] else None


def _frames_text(fr: tuple[int, int] | list[int] | None) -> str:
    if fr is None:
        return ""
    a, b = fr
    if b - a == 1:
        return f", frame {a}"
    return f", frames {a}-{b - 1}" if b > a else f", at frame {a}"


class _ChunkOrder:
    """Checks that chunks are contiguous and that each carries every stream, in stream order, with one range.

    A chunk is a group of consecutive chunk records (one per stream, streams 0..n-1) sharing their frame and
    latent ranges; segment markers sit between chunks, where the previous chunk ended.
    """

    def __init__(self, n_streams: int) -> None:
        self.n = n_streams
        self.pos: tuple[int, int] | None = None
        self.next_stream = 0
        self.ranges: tuple[list[int], list[int]] | None = None

    def check(self, rtype: int, meta: dict, stream: int) -> bool:
        """Checks one video record; True when it completes a chunk. Raises Damaged."""
        fr, lr = meta["frames"], meta["latents"]
        if rtype in CHUNK_TYPES and self.next_stream:
            if stream != self.next_stream:
                raise Damaged(
                    f"it carries stream {stream} where the chunk's stream {self.next_stream} belongs"
                )
            if (fr, lr) != self.ranges:
                raise Damaged("its frame or latent range differs from the other streams of its chunk")
        else:
            if self.next_stream:
                raise Damaged(f"the chunk before it lacks stream {self.next_stream}")
            if rtype in CHUNK_TYPES and stream != 0:
                raise Damaged(f"it carries stream {stream} where a chunk's stream 0 belongs")
            if self.pos is not None and (fr[0], lr[0]) != self.pos:
                raise Damaged(
                    f"it does not continue where the previous chunk ended (frame {self.pos[0]}, latent "
                    f"{self.pos[1]})"
                )
            self.pos = (fr[1], lr[1])
            self.ranges = (fr, lr)
        if rtype not in CHUNK_TYPES:
            return False
        self.next_stream = (stream + 1) % self.n
        return self.next_stream == 0


class VtokReader:
    """Reads and verifies a .vtok file; every problem with the file raises one ContainerError line naming it.

    Opening checks the magic number, version, header and footer index. Record checksums are checked as the
    records are read. ``recover=True`` opens a file that was cut short (or damaged after some point) and reads
    the records before the damage; ``problem`` then says what was wrong, ``last_good_frame`` where it stopped.
    """

    def __init__(self, path: str | os.PathLike[str], *, recover: bool = False):
        self.path = Path(path)
        self.recover = recover
        self.problem: str | None = None
        self.last_good_frame: int | None = None
        try:
            self._open()
        except ContainerError:
            raise
        except (Damaged, CutShort) as e:  # pragma: no cover - defensive
            raise ContainerError(f"{self.path}: {e}") from None
        except OSError as e:
            raise ContainerError(f"cannot read {self.path}: {e.strerror or e}") from None
        except PARSE_ERRORS as e:
            raise ContainerError(f"{self.path}: damaged .vtok file ({type(e).__name__}: {e})") from None

    def __enter__(self) -> VtokReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def _err(self, msg: str) -> ContainerError:
        return ContainerError(f"{self.path}: {msg}")

    # -- opening ------------------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.file_size = os.path.getsize(self.path)
        except OSError as e:
            raise ContainerError(f"cannot read {self.path}: {e.strerror or e}") from None
        with open(self.path, "rb") as f:
            self._read_preamble(f)
            footer_problem = self._read_footer(f)
            if footer_problem is None:
                return
            if not self.recover and footer_problem != "missing":
                raise self._err(footer_problem)
            self._scan(f, footer_problem)

    def _read_preamble(self, f: BinaryIO) -> None:
        head = f.read(PREAMBLE.size)
        if len(head) < 8 or head[:8] != MAGIC:
            raise self._err("not a .vtok file (wrong magic number)")
        if len(head) < PREAMBLE.size:
            raise self._err("file is cut short inside its header")
        _, major, minor, hlen = PREAMBLE.unpack(head)
        self.version = (major, minor)
        self._minor = min(minor, FORMAT_VERSION[1])  # a later minor version only adds what this one skips
        if major != FORMAT_VERSION[0]:
            newer = major > FORMAT_VERSION[0]
            raise self._err(
                f"made with .vtok format version {major}.{minor}; this vidtok ({__version__}) reads version "
                f"{FORMAT_VERSION[0]}.x" + ("; upgrade vidtok to read it" if newer else "")
            )
        if PREAMBLE.size + hlen + 4 > self.file_size:
            raise self._err(
                f"file is cut short inside its header (header length {hlen}, file {self.file_size} bytes)"
            )
        body = f.read(hlen)
        crc = f.read(4)
        if len(body) != hlen or len(crc) != 4:
            raise self._err("file is cut short inside its header")
        if zlib.crc32(body, zlib.crc32(head)) != CRC.unpack(crc)[0]:
            raise self._err("the header fails its CRC check: the file is damaged")
        try:
            header = load_json(body, "the header")
        except Damaged as e:
            raise self._err(str(e)) from None
        problem = header_problem(header, self._minor)
        if problem:
            raise self._err(f"invalid header: {problem}")
        if self._minor == 0 and header["mode"] not in V10_MODES:
            raise self._err(f"mode {header['mode']!r} is not supported by this version of vidtok")
        self.header_initial: dict[str, Any] = header
        self.header: dict[str, Any] = self._view(header)
        self.header_updates: dict[str, Any] = {}
        self.streams: list[Stream] = parse_streams(self.header["streams"])
        self._chunk_types = CHUNK_TYPES_OF[self._minor]
        self._data_start = PREAMBLE.size + hlen + 4

    def _read_footer(self, f: BinaryIO) -> str | None:
        """Reads the footer; None when it is valid, else "missing" or a description of the damage."""
        size = self.file_size
        if size < self._data_start + MIN_RECORD + TRAILER.size:
            return "missing"
        f.seek(size - TRAILER.size)
        footer_offset, end_magic = TRAILER.unpack(f.read(TRAILER.size))
        if end_magic != END_MAGIC:
            return "missing"
        if not self._data_start <= footer_offset <= size - TRAILER.size - MIN_RECORD:
            return "the footer offset points outside the file: the file is damaged"
        try:
            rtype, flags, meta, payload = self._read_raw(f, footer_offset, size - TRAILER.size, exact=True)
        except (Damaged, CutShort) as e:
            return f"the footer is damaged ({e})"
        if rtype != RecordType.END:
            return "the footer offset does not point at the footer: the file is damaged"
        try:
            entries = self._parse_index(payload, footer_offset)
            updates = meta.get("header_updates")
            if not isinstance(updates, dict) or meta.get("records") != len(entries):
                raise Damaged("footer metadata is inconsistent")
            self._apply_updates(updates)
        except Damaged as e:
            return f"the footer is damaged ({e})"
        self.index: list[IndexEntry] = entries
        self._data_end = footer_offset
        return None

    def _view(self, header: dict[str, Any]) -> dict[str, Any]:
        """The header as format 1.1 presents it (a 1.0 header gains ``streams`` and ``frame_layout``)."""
        return v11_view(header) if self._minor == 0 else header

    def _apply_updates(self, updates: dict[str, Any]) -> None:
        if any(k in updates for k in FROZEN_KEYS):
            raise Damaged("header updates change frozen keys")
        merged = deep_merge(self.header_initial, updates)
        problem = header_problem(merged, self._minor)
        if problem:
            raise Damaged(f"updated header is invalid: {problem}")
        self.header = self._view(merged)
        self.header_updates = updates

    def _parse_index(self, payload: bytes, footer_offset: int) -> list[IndexEntry]:
        raw = load_json(payload, "the index")
        if not isinstance(raw, list):
            raise Damaged("the index is not a list")
        entries: list[IndexEntry] = []
        prev = self._data_start - 1
        pos: int | None = None
        group: tuple[int, int] | None = None
        for e in raw:
            if not (isinstance(e, list) and len(e) == 4 and is_int(e[0]) and is_int(e[1], 0, 254)):
                raise Damaged("an index entry is malformed")
            off, typ, a, b = e
            if not prev < off < footer_offset or (not entries and off != self._data_start):
                raise Damaged("index offsets are out of order")
            if typ in VIDEO_TYPES:
                if not (is_int(a) and is_int(b) and a <= b):
                    raise Damaged("an index entry has an invalid frame range")
                if typ == RecordType.SEGMENT and a != b:
                    raise Damaged("a segment entry covers frames")
                if typ != RecordType.SEGMENT and a == b:
                    raise Damaged("a chunk entry covers no frames")
                if typ == RecordType.CHUNK and (a, b) == group:
                    pass  # another stream of the same chunk
                elif pos is not None and a != pos:
                    raise Damaged("index frame ranges are not contiguous")
                pos = b
                group = (a, b) if typ == RecordType.CHUNK else None
            elif not (a is None and b is None) and not (is_int(a) and is_int(b) and a <= b):
                raise Damaged("an index entry has an invalid frame range")
            prev = off
            entries.append(IndexEntry(off, typ, a, b))
        if entries and entries[-1].offset + MIN_RECORD > footer_offset:
            raise Damaged("the last index entry overlaps the footer")
        if not entries and footer_offset != self._data_start:
            raise Damaged("the index is empty but records precede the footer")
        return entries

    def _read_raw(self, f: BinaryIO, offset: int, limit: int, exact: bool) -> tuple[int, int, dict, bytes]:
        """(type, flags, meta, payload) of the record at ``offset``, CRC checked.

        Raises CutShort when the record runs past the end of the file, Damaged when it is damaged; with ``exact``
        the record must end exactly at ``limit``, else it must end at or before it.
        """
        f.seek(offset)
        head = f.read(RECORD_HEAD.size)
        if len(head) < RECORD_HEAD.size:
            raise CutShort("the file ends inside its fixed fields")
        rtype, flags, reserved, plen, mlen = RECORD_HEAD.unpack(head)
        end = offset + RECORD_HEAD.size + mlen + plen + 4
        if end > self.file_size:
            raise CutShort(f"its length ({end - offset} bytes) runs past the end of the file")
        if end > limit or (exact and end != limit):
            raise Damaged(f"its length ({end - offset} bytes) does not fit its place in the file")
        meta_b = f.read(mlen)
        payload = f.read(plen)
        crc_b = f.read(4)
        if len(meta_b) != mlen or len(payload) != plen or len(crc_b) != 4:
            raise CutShort("the file ends inside it")
        crc = zlib.crc32(payload, zlib.crc32(meta_b, zlib.crc32(head)))
        if crc != CRC.unpack(crc_b)[0]:
            try:  # best effort: name the frames in the message
                frames = _safe_frames(load_json(meta_b, "metadata"))
            except Damaged:
                frames = None
            raise Damaged("it fails its CRC check", frames)
        meta = load_json(meta_b, "its metadata")
        if not isinstance(meta, dict):
            raise Damaged("its metadata is not a JSON object")
        return rtype, flags, meta, payload

    def stream_index(self, rtype: int, meta: dict) -> int:
        """The stream a chunk record carries (format 1.0: its one stream); raises Damaged."""
        if rtype not in self._chunk_types:
            raise Damaged(f"a {RecordType.name(rtype)} record in a format 1.{self._minor} file")
        if self._minor == 0:
            mode = self.header["mode"]
            if mode != ("latent" if rtype == RecordType.LATENT else "tokens"):
                raise Damaged(f"a {RecordType.name(rtype)} record in a file of mode {mode!r}")
            return 0
        k = meta.get("stream")
        if not is_int(k, 0, len(self.streams) - 1):
            raise Damaged(f"its stream {k!r} is not one of the header's {len(self.streams)} streams")
        return k

    def _check_meta(self, rtype: int, flags: int, meta: dict, plen: int) -> int | None:
        """Checks a record's metadata against the header; the stream index of a chunk. Raises Damaged."""
        if rtype in VIDEO_TYPES:
            fr, lr = meta.get("frames"), meta.get("latents")
            if not (int_pair(fr) and int_pair(lr) and fr[0] <= fr[1] and lr[0] <= lr[1]):
                raise Damaged("its frame or latent range is malformed")
            if rtype == RecordType.SEGMENT:
                if fr[0] != fr[1] or lr[0] != lr[1] or plen != 0:
                    raise Damaged("a segment marker must cover no frames and carry no payload")
                return None
            if fr[0] == fr[1] or lr[0] == lr[1]:
                raise Damaged("it covers no frames")
        if rtype in CHUNK_TYPES:
            k = self.stream_index(rtype, meta)
            self._check_chunk(self.streams[k], flags, meta, plen)
            return k
        if rtype == RecordType.AUDIO:
            if self.header["audio"] is None:
                raise Damaged("an audio packet in a file without audio")
            for key in ("pts", "dts", "duration"):
                v = meta.get(key)
                if v is not None and not is_int(v, -(1 << 63)):
                    raise Damaged(f"its {key} is not an integer")
        elif rtype == RecordType.END:
            raise Damaged("a footer record in the middle of the file")
        return None

    def _check_chunk(self, stream: Stream, flags: int, meta: dict, plen: int) -> None:
        """Checks a chunk record's shape, coding and payload length against its stream; raises Damaged."""
        shape = meta.get("shape")
        ta = stream.step_axis
        ok = isinstance(shape, list) and len(shape) == len(stream.shape) + 1 and is_int(shape[ta], 1, 1 << 30)
        if self._minor == 0 and ok:
            ok = shape[ta] == meta["latents"][1] - meta["latents"][0]
        expect = list(stream.chunk_shape(shape[ta] if ok else meta["latents"][1] - meta["latents"][0]))
        if not ok or shape != expect:
            raise Damaged(f"its shape {shape} does not match the header (expected {expect})")
        if shape_size(shape) > MAX_VALUES_PER_RECORD:
            raise Damaged("it holds more values than a record may")
        if not stream.discrete:
            want = LATENT_QUANT if stream.coding == "quant" else LATENT_RAW
            if flags not in (LATENT_RAW, LATENT_QUANT):
                raise Damaged(f"latent coding {flags} is unknown to this version of vidtok")
            if flags != want:
                raise Damaged(f"its latent coding {flags} differs from the stream's ({stream.coding})")
            if stream.coding == "quant":
                return
            assert stream.dtype is not None
            need = shape_size(shape) * ITEMSIZE[stream.dtype]
            if plen != need:
                raise Damaged(f"its payload is {plen} bytes but shape {shape} in {stream.dtype} needs {need}")
        elif flags & 0x0F not in CODING_NAMES:
            raise Damaged(f"token coding {flags & 0x0F} is unknown to this version of vidtok")
        elif stream.coding == "packed" and flags & 0x0F != CODING_PACKED:
            raise Damaged(f"stream {stream.name!r} is declared packed but the record is entropy-coded")

    def _error_bound(self, rec: Record, stream: Stream) -> float:
        try:
            return quantized_error_bound(rec.raw, stream, tuple(rec.meta["shape"]))
        except (Damaged, *PARSE_ERRORS) as e:
            raise self._err(f"{self._describe(rec.index, rec.type, rec.frames)} is damaged: {e}") from None

    def _describe(self, k: int, rtype: int, frames: Any) -> str:
        return f"record {k} ({RecordType.name(rtype)}{_frames_text(frames)})"

    # -- scanning a file without a valid footer ------------------------------------------------------------
    def _scan(self, f: BinaryIO, footer_problem: str) -> None:
        entries: list[IndexEntry] = []
        offset = self._data_start
        order = _ChunkOrder(len(self.streams))
        group_start = 0
        last_video: tuple[int, int] | None = None  # (record number, end_frame)
        k = 0
        problem: str | None = None
        while True:
            if offset == self.file_size:
                problem = "cut"
                break
            rtype: int | None = None
            meta: dict = {}
            try:
                rtype, flags, meta, payload = self._read_raw(f, offset, self.file_size, exact=False)
                if rtype == RecordType.END:
                    end = f.tell()
                    if self.file_size - end < TRAILER.size:
                        problem = "cut"
                    elif footer_problem == "missing":
                        extra = self.file_size - end - TRAILER.size
                        problem = (
                            f"{extra} unexpected bytes follow the footer"
                            if extra
                            else "the end marker of the file is damaged"
                        )
                    else:
                        problem = footer_problem
                    break
                stream = self._check_meta(rtype, flags, meta, len(payload))
                fr = meta.get("frames") if rtype in VIDEO_TYPES else None
                if rtype in VIDEO_TYPES and order.check(rtype, meta, stream or 0):
                    last_video = (k, fr[1])
            except CutShort:
                problem = "cut"
                break
            except Damaged as e:
                frames = e.frames if isinstance(e, Damaged) and e.frames else _safe_frames(meta)
                what = f"record {k}" if rtype is None else self._describe(k, rtype, frames)
                problem = f"{what} is damaged: {e}"
                break
            if rtype in CHUNK_TYPES and order.next_stream == (1 % len(self.streams)):
                group_start = len(entries)  # the first record of a chunk
            entries.append(IndexEntry(offset, rtype, fr[0] if fr else None, fr[1] if fr else None))
            offset = f.tell()
            k += 1
        if problem == "cut":
            if last_video is None:
                msg = "file is cut short before the first frame (no complete chunk)"
            else:
                msg = f"file is cut short after frame {last_video[1] - 1} (record {last_video[0]})"
            hint = "; re-encode it, or open it with recovery to use the frames before the cut"
        else:
            msg = problem
            hint = "; open it with recovery to use the records before the damage"
        self.last_good_frame = None if last_video is None else last_video[1] - 1
        if not self.recover:
            raise self._err(msg + hint)
        self.problem = msg
        self.index = entries[:group_start] if order.next_stream else entries  # complete chunks only
        self._data_end = offset

    # -- reading records ----------------------------------------------------------------------------------
    def _record_at(self, f: BinaryIO, k: int) -> Record:
        e = self.index[k]
        limit = self.index[k + 1].offset if k + 1 < len(self.index) else self._data_end
        try:
            rtype, flags, meta, payload = self._read_raw(f, e.offset, limit, exact=True)
            if rtype != e.type:
                raise Damaged(f"its type ({RecordType.name(rtype)}) differs from the index")
            stream = self._check_meta(rtype, flags, meta, len(payload))
            if rtype in VIDEO_TYPES and tuple(meta["frames"]) != e.frames:
                raise Damaged("its frame range differs from the index")
        except (Damaged, CutShort) as err:
            raise self._err(f"{self._describe(k, e.type, e.frames)} is damaged: {err}") from None
        return Record(self, k, e.offset, rtype, flags, meta, payload, stream)

    def _guard(self, gen: Iterator[Any]) -> Iterator[Any]:
        """Re-raises anything unexpected from reading a damaged file as a ContainerError."""
        try:
            yield from gen
        except ContainerError:
            raise
        except OSError as e:
            raise ContainerError(f"cannot read {self.path}: {e.strerror or e}") from None
        except (Damaged, CutShort, *PARSE_ERRORS) as e:
            raise self._err(f"damaged .vtok file ({type(e).__name__}: {e})") from None

    def records(self, start_frame: int | None = None) -> Iterator[Record]:
        """Every record in file order, checksums verified; from the segment start at or before ``start_frame``.

        Chunks must be contiguous: a chunk that does not start where the previous one ended is an error.
        """
        return self._guard(self._records(self._start_pos(start_frame)))

    def _records(self, start: int) -> Iterator[Record]:
        order = _ChunkOrder(len(self.streams))
        with open(self.path, "rb") as f:
            for k in range(start, len(self.index)):
                rec = self._record_at(f, k)
                if rec.type in VIDEO_TYPES:
                    try:
                        order.check(rec.type, rec.meta, rec.stream_index or 0)
                    except Damaged as e:
                        raise self._err(
                            f"{self._describe(k, rec.type, rec.frames)} is damaged: {e}: the file is damaged"
                        ) from None
                yield rec
        if order.next_stream:
            raise self._err(f"the last chunk lacks stream {order.next_stream}: the file is damaged")

    def _start_pos(self, start_frame: int | None) -> int:
        """Index position of the nearest segment start at or before start_frame (0: the beginning)."""
        if start_frame is None:
            return 0
        best = 0
        for k, e in enumerate(self.index):
            if e.type == RecordType.SEGMENT and e[2] <= start_frame:
                best = k
            elif e.type in VIDEO_TYPES and e[2] is not None and e[2] > start_frame:
                break
        return best

    def _decode(self, rec: Record) -> Any:
        try:
            return self._decode_payload(rec)
        except ContainerError:
            raise
        except (Damaged, *PARSE_ERRORS) as e:
            raise self._err(f"{self._describe(rec.index, rec.type, rec.frames)} is damaged: {e}") from None

    def _decode_payload(self, rec: Record) -> Any:
        if rec.type in CHUNK_TYPES:
            assert rec.stream_index is not None
            stream = self.streams[rec.stream_index]
            shape = tuple(rec.meta["shape"])
            if stream.discrete:
                return decode_tokens(rec.raw, rec.flags & 0x0F, stream, shape)
            if stream.coding == "quant":
                return decode_quantized_latents(rec.raw, stream, shape)
            return decode_latents(rec.raw, stream.dtype or "float16", shape)
        if rec.type == RecordType.AUDIO:
            return AudioRecord(rec.raw, rec.meta.get("pts"), rec.meta.get("dts"), rec.meta.get("duration"))
        if rec.type == RecordType.SEGMENT:
            return None
        return rec.raw

    def _chunks(self, start_frame: int | None) -> Iterator[VtokChunk]:
        fresh = True
        latents: dict[str, Any] = {}
        for rec in self._records(self._start_pos(start_frame)):
            if rec.type == RecordType.SEGMENT:
                fresh = True
            elif rec.type in CHUNK_TYPES:
                assert rec.stream_index is not None and rec.latents is not None and rec.frames is not None
                latents[self.streams[rec.stream_index].name] = rec.payload
                if rec.stream_index == len(self.streams) - 1:
                    yield VtokChunk(latents, *rec.latents, *rec.frames, fresh)
                    latents, fresh = {}, False

    def iter_chunks(self, start_frame: int | None = None) -> Iterator[VtokChunk]:
        """The chunks in order, each with every stream of its latent-step range: ``chunk.latents`` maps stream
        names to arrays (continuous float32, tokens int64) in the shapes the header declares.

        With ``start_frame`` the iteration begins at the nearest segment start at or before it; the chunks
        then still cover frames before ``start_frame``, which the caller decodes and drops.
        """
        return self._guard(self._chunks(start_frame))

    def _single(self, want_latents: bool) -> Stream:
        if len(self.streams) != 1:
            names = ", ".join(s.name for s in self.streams)
            raise self._err(f"holds {len(self.streams)} streams ({names}); read them with iter_chunks")
        (stream,) = self.streams
        if not want_latents and not stream.discrete:
            raise self._err("holds latents, not tokens")
        if want_latents and stream.kind == "vq":
            raise self._err("holds VQ indices, not latents")
        return stream

    def _single_chunks(self, start_frame: int | None, want_latents: bool) -> Iterator[StoredChunk]:
        stream = self._single(want_latents)
        cls = StoredChunk if want_latents else StoredTokenChunk
        for c in self._chunks(start_frame):
            value = c.latents[stream.name]
            if want_latents and stream.kind == "fsq":
                value = tokens_to_latents(value, stream.levels)
            yield cls(c.first_latent, value, c.first_frame, c.end_frame, c.segment_start)

    def iter_latent_chunks(self, start_frame: int | None = None) -> Iterator[StoredChunk]:
        """Single-stream files: (first_latent, latents float32) in order; an FSQ stream gives its codes
        (n_levels, *indices shape). ``start_frame`` as in :meth:`iter_chunks`."""
        return self._guard(self._single_chunks(start_frame, True))

    def iter_token_chunks(self, start_frame: int | None = None) -> Iterator[StoredTokenChunk]:
        """Single-stream token files: (first_latent, indices int64) in order, like iter_latent_chunks."""
        return self._guard(self._single_chunks(start_frame, False))  # type: ignore[return-value]

    def audio_packets(self) -> Iterator[AudioRecord]:
        """The stored audio packets in file order (reads only the audio records)."""

        def gen() -> Iterator[AudioRecord]:
            with open(self.path, "rb") as f:
                for k, e in enumerate(self.index):
                    if e.type == RecordType.AUDIO:
                        yield self._record_at(f, k).payload

        return self._guard(gen())

    @property
    def audio_extradata(self) -> bytes | None:
        """The audio codec's extradata, decoded from the header, or None."""
        aud = self.header.get("audio")
        if not aud or not aud.get("extradata"):
            return None
        return base64.b64decode(aud["extradata"])

    def verify(self) -> None:
        """Reads every record and decodes every payload; ContainerError at the first problem."""
        for rec in self.records():
            _ = rec.payload

    def stats(self) -> dict[str, Any]:
        """Sizes and rates: file size, records by type, tokens, bits per token and per pixel, per stream.

        Reads every record (checksums verified, payloads not decoded). ``tokens`` counts the indices of every
        token stream (None without one); ``bits_per_token`` counts the whole file, ``bits_per_token_payload``
        only the token payloads; ``bits_per_pixel`` is 8 * file_size / (frames * width * height) with the
        source size and frame count. ``streams``: per stream, its records, payload bytes, values, ``bits`` (of
        its payloads) and ``bits_per_pixel`` (its share of the file's); for quantized streams ``max_error``,
        the bound on the absolute error of the values (half the largest quantization step of the file).
        """
        by_type: dict[str, int] = {}
        codings: dict[str, int] = {}
        per_stream = {
            s.name: {"kind": s.kind, "records": 0, "payload_bytes": 0, "values": 0} for s in self.streams
        }
        audio_bytes = 0
        first_frame: int | None = None
        end_frame = 0
        end_latent = 0
        for rec in self.records():
            by_type[rec.type_name] = by_type.get(rec.type_name, 0) + 1
            if rec.type in CHUNK_TYPES:
                assert rec.stream_index is not None
                stream = self.streams[rec.stream_index]
                st = per_stream[stream.name]
                st["records"] += 1
                st["payload_bytes"] += len(rec.raw)
                st["values"] += shape_size(rec.meta["shape"])
                if stream.discrete:
                    c = rec.coding or "?"
                    codings[c] = codings.get(c, 0) + 1
                elif stream.coding == "quant":
                    bound = self._error_bound(rec, stream)
                    st["max_error"] = max(st.get("max_error", 0.0), bound)
                if first_frame is None:
                    first_frame = rec.meta["frames"][0]
                end_frame = rec.meta["frames"][1]
                end_latent = rec.meta["latents"][1]
            elif rec.type == RecordType.AUDIO:
                audio_bytes += len(rec.raw)
        discrete = [per_stream[s.name] for s in self.streams if s.discrete]
        tokens = sum(st["values"] for st in discrete)
        token_bytes = sum(st["payload_bytes"] for st in discrete)
        latent_bytes = sum(per_stream[s.name]["payload_bytes"] for s in self.streams if not s.discrete)
        src = self.header["source"]
        frames = src["frame_count"]
        if frames is None:
            frames = end_frame - (first_frame or 0)
        pixels = frames * src["width"] * src["height"]
        for st in per_stream.values():
            st["bits"] = 8 * st["payload_bytes"]
            st["bits_per_pixel"] = st["bits"] / pixels if pixels else None
        size = self.file_size
        return {
            "file_size": size,
            "records": by_type,
            "frames": frames,
            "latent_frames": end_latent,
            "tokens": tokens if discrete else None,
            "token_codings": codings,
            "token_payload_bytes": token_bytes,
            "latent_payload_bytes": latent_bytes,
            "audio_bytes": audio_bytes,
            "bits_per_token": 8 * size / tokens if tokens else None,
            "bits_per_token_payload": 8 * token_bytes / tokens if tokens else None,
            "bits_per_pixel": 8 * size / pixels if pixels else None,
            "streams": per_stream,
            "problem": self.problem,
        }
