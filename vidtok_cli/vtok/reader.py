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
    CODING_NAMES,
    CRC,
    END_MAGIC,
    FORMAT_VERSION,
    FROZEN_KEYS,
    ITEMSIZE,
    MAGIC,
    MAX_VALUES_PER_RECORD,
    MIN_RECORD,
    PARSE_ERRORS,
    PREAMBLE,
    RECORD_HEAD,
    TRAILER,
    VIDEO_TYPES,
    WRITABLE_MODES,
    ContainerError,
    CutShort,
    Damaged,
    RecordType,
)
from .header import deep_merge, header_problem, int_pair, is_int, load_json
from .payloads import decode_latents, shape_size, tokens_to_latents
from .records import AudioRecord, IndexEntry, Record, StoredChunk, StoredTokenChunk
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
        problem = header_problem(header)
        if problem:
            raise self._err(f"invalid header: {problem}")
        self.header_initial: dict[str, Any] = header
        self.header: dict[str, Any] = header
        self.header_updates: dict[str, Any] = {}
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

    def _apply_updates(self, updates: dict[str, Any]) -> None:
        if any(k in updates for k in FROZEN_KEYS):
            raise Damaged("header updates change frozen keys")
        merged = deep_merge(self.header_initial, updates)
        problem = header_problem(merged)
        if problem:
            raise Damaged(f"updated header is invalid: {problem}")
        self.header = merged
        self.header_updates = updates

    def _parse_index(self, payload: bytes, footer_offset: int) -> list[IndexEntry]:
        raw = load_json(payload, "the index")
        if not isinstance(raw, list):
            raise Damaged("the index is not a list")
        entries: list[IndexEntry] = []
        prev = self._data_start - 1
        pos: int | None = None
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
                if pos is not None and a != pos:
                    raise Damaged("index frame ranges are not contiguous")
                pos = b
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

    def _check_meta(self, rtype: int, flags: int, meta: dict, plen: int) -> None:
        """Checks a record's metadata against the header; raises Damaged."""
        lat = self.header["latent"]
        mode = self.header["mode"]
        if rtype in VIDEO_TYPES:
            fr, lr = meta.get("frames"), meta.get("latents")
            if not (int_pair(fr) and int_pair(lr) and fr[0] <= fr[1] and lr[0] <= lr[1]):
                raise Damaged("its frame or latent range is malformed")
            if rtype == RecordType.SEGMENT:
                if fr[0] != fr[1] or lr[0] != lr[1] or plen != 0:
                    raise Damaged("a segment marker must cover no frames and carry no payload")
                return
            if fr[0] == fr[1] or lr[0] == lr[1]:
                raise Damaged("it covers no frames")
        if rtype in CHUNK_TYPES:
            want = "latent" if rtype == RecordType.LATENT else "tokens"
            if mode != want:
                raise Damaged(f"a {RecordType.name(rtype)} record in a file of mode {mode!r}")
            shape = meta.get("shape")
            t = meta["latents"][1] - meta["latents"][0]
            hw = [lat["height"], lat["width"]]
            expect = [lat["channels"], t, *hw] if rtype == RecordType.LATENT else [t, *hw]
            if shape != expect:
                raise Damaged(f"its shape {shape} does not match the header (expected {expect})")
            if shape_size(shape) > MAX_VALUES_PER_RECORD:
                raise Damaged("it holds more values than a record may")
            if rtype == RecordType.LATENT:
                need = shape_size(shape) * ITEMSIZE[lat["dtype"]]
                if flags != 0:
                    raise Damaged(f"latent coding {flags} is unknown to this version of vidtok")
                if plen != need:
                    raise Damaged(
                        f"its payload is {plen} bytes but shape {shape} in {lat['dtype']} needs {need}"
                    )
            elif flags & 0x0F not in CODING_NAMES:
                raise Damaged(f"token coding {flags & 0x0F} is unknown to this version of vidtok")
        elif rtype == RecordType.AUDIO:
            if self.header["audio"] is None:
                raise Damaged("an audio packet in a file without audio")
            for k in ("pts", "dts", "duration"):
                v = meta.get(k)
                if v is not None and not is_int(v, -(1 << 63)):
                    raise Damaged(f"its {k} is not an integer")
        elif rtype == RecordType.END:
            raise Damaged("a footer record in the middle of the file")

    def _describe(self, k: int, rtype: int, frames: Any) -> str:
        return f"record {k} ({RecordType.name(rtype)}{_frames_text(frames)})"

    # -- scanning a file without a valid footer ------------------------------------------------------------
    def _scan(self, f: BinaryIO, footer_problem: str) -> None:
        entries: list[IndexEntry] = []
        offset = self._data_start
        pos: tuple[int, int] | None = None
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
                self._check_meta(rtype, flags, meta, len(payload))
                fr = meta.get("frames") if rtype in VIDEO_TYPES else None
                if rtype in VIDEO_TYPES:
                    start = (fr[0], meta["latents"][0])
                    if pos is not None and start != pos:
                        raise Damaged("it does not continue where the previous chunk ended")
                    pos = (fr[1], meta["latents"][1])
                    if rtype in CHUNK_TYPES:
                        last_video = (k, fr[1])
            except CutShort:
                problem = "cut"
                break
            except Damaged as e:
                frames = e.frames if isinstance(e, Damaged) and e.frames else _safe_frames(meta)
                what = f"record {k}" if rtype is None else self._describe(k, rtype, frames)
                problem = f"{what} is damaged: {e}"
                break
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
        self.index = entries
        self._data_end = offset

    # -- reading records ----------------------------------------------------------------------------------
    def _record_at(self, f: BinaryIO, k: int) -> Record:
        e = self.index[k]
        limit = self.index[k + 1].offset if k + 1 < len(self.index) else self._data_end
        try:
            rtype, flags, meta, payload = self._read_raw(f, e.offset, limit, exact=True)
            if rtype != e.type:
                raise Damaged(f"its type ({RecordType.name(rtype)}) differs from the index")
            self._check_meta(rtype, flags, meta, len(payload))
            if rtype in VIDEO_TYPES and tuple(meta["frames"]) != e.frames:
                raise Damaged("its frame range differs from the index")
        except (Damaged, CutShort) as err:
            raise self._err(f"{self._describe(k, e.type, e.frames)} is damaged: {err}") from None
        return Record(self, k, e.offset, rtype, flags, meta, payload)

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
        pos: tuple[int, int] | None = None
        with open(self.path, "rb") as f:
            for k in range(start, len(self.index)):
                rec = self._record_at(f, k)
                if rec.type in VIDEO_TYPES:
                    here = (rec.meta["frames"][0], rec.meta["latents"][0])
                    if pos is not None and here != pos:
                        raise self._err(
                            f"{self._describe(k, rec.type, rec.frames)} does not continue where the previous "
                            f"chunk ended (frame {pos[0]}, latent {pos[1]}): the file is damaged"
                        )
                    pos = (rec.meta["frames"][1], rec.meta["latents"][1])
                yield rec

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
        lat = self.header["latent"]
        if rec.type == RecordType.LATENT:
            return decode_latents(rec.raw, lat["dtype"], tuple(rec.meta["shape"]))
        if rec.type == RecordType.TOKENS:
            return decode_tokens(rec.raw, rec.flags & 0x0F, lat["fsq_levels"], tuple(rec.meta["shape"]))
        if rec.type == RecordType.AUDIO:
            return AudioRecord(rec.raw, rec.meta.get("pts"), rec.meta.get("dts"), rec.meta.get("duration"))
        if rec.type == RecordType.SEGMENT:
            return None
        if rec.type in (RecordType.MOTION, RecordType.TWIN):
            raise ContainerError(
                f"{self.path}: {rec.type_name} chunks are not supported by this version of vidtok"
            )
        return rec.raw

    def _chunks(self, start_frame: int | None, want_latents: bool) -> Iterator[StoredChunk]:
        mode = self.header["mode"]
        if mode not in WRITABLE_MODES:
            raise self._err(f"mode {mode!r} is not supported by this version of vidtok")
        if not want_latents and mode != "tokens":
            raise self._err("holds latents, not tokens")
        levels = self.header["latent"]["fsq_levels"]
        fresh = True
        for rec in self._records(self._start_pos(start_frame)):
            if rec.type == RecordType.SEGMENT:
                fresh = True
            elif rec.type in CHUNK_TYPES:
                value = rec.payload
                cls = StoredTokenChunk
                if want_latents:
                    cls = StoredChunk
                    if rec.type == RecordType.TOKENS:
                        value = tokens_to_latents(value, levels)
                assert rec.latents is not None and rec.frames is not None
                yield cls(rec.latents[0], value, rec.frames[0], rec.frames[1], fresh)
                fresh = False

    def iter_latent_chunks(self, start_frame: int | None = None) -> Iterator[StoredChunk]:
        """(first_latent, latents float32 (C, t, h, w)) in order; tokens files give their FSQ codes.

        With ``start_frame`` the iteration begins at the nearest segment start at or before it; the chunks
        then still cover frames before ``start_frame``, which the caller decodes and drops.
        """
        return self._guard(self._chunks(start_frame, True))

    def iter_token_chunks(self, start_frame: int | None = None) -> Iterator[StoredTokenChunk]:
        """(first_latent, indices int64 (t, h, w)) in order, like iter_latent_chunks (tokens files only)."""
        return self._guard(self._chunks(start_frame, False))  # type: ignore[arg-type]

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
        """Sizes and rates: file size, records by type, tokens, bits per token and per pixel.

        Reads every record (checksums verified, payloads not decoded). ``bits_per_token`` counts the whole
        file, ``bits_per_token_payload`` only the token payloads; ``bits_per_pixel`` is
        8 * file_size / (frames * width * height) with the source size and frame count.
        """
        by_type: dict[str, int] = {}
        codings: dict[str, int] = {}
        tokens = 0
        token_bytes = 0
        latent_bytes = 0
        audio_bytes = 0
        first_frame: int | None = None
        end_frame = 0
        end_latent = 0
        for rec in self.records():
            by_type[rec.type_name] = by_type.get(rec.type_name, 0) + 1
            if rec.type == RecordType.TOKENS:
                tokens += shape_size(rec.meta["shape"])
                token_bytes += len(rec.raw)
                c = rec.coding or "?"
                codings[c] = codings.get(c, 0) + 1
            elif rec.type == RecordType.LATENT:
                latent_bytes += len(rec.raw)
            elif rec.type == RecordType.AUDIO:
                audio_bytes += len(rec.raw)
            if rec.type in CHUNK_TYPES:
                if first_frame is None:
                    first_frame = rec.meta["frames"][0]
                end_frame = rec.meta["frames"][1]
                end_latent = rec.meta["latents"][1]
        src = self.header["source"]
        frames = src["frame_count"]
        if frames is None:
            frames = end_frame - (first_frame or 0)
        pixels = frames * src["width"] * src["height"]
        size = self.file_size
        return {
            "file_size": size,
            "records": by_type,
            "frames": frames,
            "latent_frames": end_latent,
            "tokens": tokens if self.header["mode"] == "tokens" else None,
            "token_codings": codings,
            "token_payload_bytes": token_bytes,
            "latent_payload_bytes": latent_bytes,
            "audio_bytes": audio_bytes,
            "bits_per_token": 8 * size / tokens if tokens else None,
            "bits_per_token_payload": 8 * token_bytes / tokens if tokens else None,
            "bits_per_pixel": 8 * size / pixels if pixels else None,
            "problem": self.problem,
        }
