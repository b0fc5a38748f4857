"""The .vtok container: a header, checksummed records streamed as the encoder produces them, a footer index.

``docs/FORMAT.md`` is the byte-level specification; this module is its reference implementation. It uses
numpy and the standard library only (no torch), so files can be inspected and verified without a model.

Write::

    header = make_header(model_card=..., weights_sha256=..., mode="tokens", ...)
    with VtokWriter("clip.vtok", header) as w:
        w.write_tokens(indices, first_frame=0, end_frame=1, first_latent=0)
        ...
        w.close(header_updates={"source": {"frame_count": 300}})

Read::

    r = VtokReader("clip.vtok")
    for chunk in r.iter_latent_chunks():
        first_latent, latents = chunk        # also chunk.first_frame, .end_frame, .segment_start
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import secrets
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._version import __version__
from .errors import VidtokError

__all__ = [
    "ContainerError",
    "VtokWriter",
    "VtokReader",
    "Record",
    "RecordType",
    "AudioPacket",
    "LatentChunk",
    "TokenChunk",
    "IndexEntry",
    "make_header",
    "validate_header",
    "pack_indices",
    "unpack_indices",
    "bits_for_levels",
    "float32_to_bfloat16_bits",
    "bfloat16_bits_to_float32",
    "tokens_to_latents",
    "token_coding_report",
    "MAGIC",
    "END_MAGIC",
    "FORMAT_VERSION",
]


class ContainerError(VidtokError):
    """A .vtok file that cannot be written, or that is not a .vtok file, is damaged, or cut short."""


# ----------------------------------------------------------------------------------------------------------
# Constants of the format (docs/FORMAT.md)

MAGIC = b"\x89VTK\r\n\x1a\n"
END_MAGIC = b"VTOK_END"
FORMAT_VERSION = (1, 0)

_PREAMBLE = struct.Struct("<8sHHI")  # magic, major, minor, header_len; then header JSON, then u32 CRC
_RECORD_HEAD = struct.Struct("<BBHQI")  # type, flags, reserved, payload_len, meta_len
_TRAILER = struct.Struct("<Q8s")  # footer offset, end magic
_CRC = struct.Struct("<I")
_RANS_HEAD = struct.Struct("<BBHIII")  # scale_bits, model, reserved, lanes, n_words, n_coded

_MIN_RECORD = _RECORD_HEAD.size + _CRC.size


class RecordType:
    """Record type numbers (the u8 at the start of every record)."""

    LATENT = 1
    TOKENS = 2
    AUDIO = 3
    SEGMENT = 4
    MOTION = 5  # reserved
    TWIN = 6  # reserved
    END = 255

    NAMES = {1: "latent", 2: "tokens", 3: "audio", 4: "segment", 5: "motion", 6: "twin", 255: "end"}

    @classmethod
    def name(cls, value: int) -> str:
        """Human name of a record type, or ``"type N"`` for one this version does not know."""
        return cls.NAMES.get(value, f"type {value}")


_VIDEO_TYPES = (RecordType.LATENT, RecordType.TOKENS, RecordType.SEGMENT, RecordType.MOTION, RecordType.TWIN)
_CHUNK_TYPES = (RecordType.LATENT, RecordType.TOKENS)

# Token codings (low 4 bits of the flags byte of a TOKENS record).
CODING_PACKED = 0
CODING_RANS = 1
_CODING_NAMES = {CODING_PACKED: "packed", CODING_RANS: "rans"}

MODES = ("latent", "tokens", "motion", "twin")
_WRITABLE_MODES = ("latent", "tokens")
LATENT_DTYPES = ("float16", "bfloat16", "float32")
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4}
# Header keys that fix how records are decoded; they cannot be changed by the footer's header_updates.
_FROZEN_KEYS = ("mode", "model", "latent")

# Limits that keep a damaged or hostile file from causing huge allocations or endless loops.
MAX_VALUES_PER_RECORD = 1 << 25
RANS_MAX_STEPS = 1 << 16
RANS_MAX_LEVEL = 256
_RANS_SCALE = 14
_RANS_L = 1 << 16
_RANS_TARGET_STEPS = 2048


# ----------------------------------------------------------------------------------------------------------
# Small helpers


class _Bad(Exception):
    """Internal: a damaged structure; the reader turns it into a ContainerError naming file and record."""

    def __init__(self, msg: str, frames: tuple[int, int] | None = None):
        super().__init__(msg)
        self.frames = frames


class _Cut(Exception):
    """Internal: the file ends inside a structure."""


# What parsing damaged bytes can raise beyond the explicit checks; turned into ContainerError at the API.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    struct.error,
    MemoryError,
    RecursionError,
)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Bad(f"{what} is not valid JSON ({type(e).__name__})") from None


def _is_int(x: Any, lo: int = 0, hi: int = (1 << 63) - 1) -> bool:
    return type(x) is int and lo <= x <= hi


def _int_pair(x: Any, lo: int = 0) -> bool:
    return isinstance(x, list) and len(x) == 2 and _is_int(x[0], lo) and _is_int(x[1], lo)


def _deep_merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in updates.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _prod(shape: Any) -> int:
    return math.prod(int(s) for s in shape)


def bits_for_levels(levels: list[int] | tuple[int, ...]) -> int:
    """Bits per packed FSQ index: ceil(log2(prod(levels))), at least 1 (18 for 6 levels of 8)."""
    k = math.prod(int(v) for v in levels)
    return max(1, (k - 1).bit_length())


# ----------------------------------------------------------------------------------------------------------
# The header


def _fps_pair(fps: Any) -> list[int]:
    if isinstance(fps, (list, tuple)) and len(fps) == 2:
        fr = Fraction(int(fps[0]), int(fps[1]))
    else:
        fr = Fraction(fps).limit_denominator(1_000_000)
    return [fr.numerator, fr.denominator]


def make_header(
    *,
    model_card: str,
    weights_sha256: str,
    mode: str,
    latent_channels: int,
    latent_height: int,
    latent_width: int,
    temporal_factor: int,
    spatial_factor: int,
    width: int,
    height: int,
    fps: Any,
    frame_count: int | None = None,
    latent_dtype: str = "float16",
    fsq_levels: list[int] | tuple[int, ...] | None = None,
    pad: tuple[int, int, int, int] | list[int] = (0, 0, 0, 0),
    crop: list[int] | tuple[int, int, int, int] | None = None,
    frames_padded: int = 0,
    frames_per_record: int | None = None,
    segment_frames: int | None = None,
    clip_overlap: int = 0,
    audio: Mapping[str, Any] | None = None,
    family: str = "vidtok",
    tool_version: str = __version__,
    **extra: Any,
) -> dict[str, Any]:
    """A validated header dict from keyword arguments (fps as a Fraction, a number or a (num, den) pair).

    ``audio`` takes codec, sample_rate, channels, time_base, extradata (bytes or base64 text) and optionally
    layout; extra keyword arguments become extra top-level header keys.
    """
    aud: dict[str, Any] | None = None
    if audio is not None:
        aud = dict(audio)
        ed = aud.get("extradata")
        if isinstance(ed, (bytes, bytearray, memoryview)):
            aud["extradata"] = base64.b64encode(bytes(ed)).decode("ascii") if len(ed) else None
        aud.setdefault("extradata", None)
        aud.setdefault("layout", None)
        aud["time_base"] = _fps_pair(aud["time_base"])
    header = {
        "tool_version": str(tool_version),
        "model": {"card": model_card, "sha256": weights_sha256, "family": family},
        "mode": mode,
        "latent": {
            "channels": int(latent_channels),
            "dtype": latent_dtype,
            "height": int(latent_height),
            "width": int(latent_width),
            "temporal_factor": int(temporal_factor),
            "spatial_factor": int(spatial_factor),
            "fsq_levels": None if fsq_levels is None else [int(v) for v in fsq_levels],
        },
        "source": {
            "width": int(width),
            "height": int(height),
            "frame_count": None if frame_count is None else int(frame_count),
            "fps": _fps_pair(fps),
        },
        "padding": {
            "pad": [int(v) for v in pad],
            "crop": None if crop is None else [int(v) for v in crop],
            "frames_padded": int(frames_padded),
        },
        "chunking": {
            "frames_per_record": frames_per_record,
            "segment_frames": segment_frames,
            **({"clip_overlap": int(clip_overlap)} if clip_overlap else {}),
        },
        "audio": aud,
        **extra,
    }
    problem = _header_problem(header)
    if problem:
        raise ContainerError(f"invalid .vtok header: {problem}")
    return header


def _header_problem(h: Any) -> str | None:
    """What is wrong with a header dict, or None when it is valid (unknown extra keys are allowed)."""
    if not isinstance(h, dict):
        return "the header is not a JSON object"

    def need(d: Any, path: str, key: str) -> Any:
        if not isinstance(d, dict):
            raise _Bad(f"{path} must be an object")
        if key not in d:
            raise _Bad(f"{path}.{key} is missing")
        return d[key]

    try:
        if not isinstance(need(h, "header", "tool_version"), str):
            return "tool_version must be a string"
        model = need(h, "header", "model")
        if not isinstance(need(model, "model", "card"), str):
            return "model.card must be a string"
        sha = need(model, "model", "sha256")
        if not (
            isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())
        ):
            return "model.sha256 must be 64 hexadecimal digits"
        if not isinstance(need(model, "model", "family"), str):
            return "model.family must be a string"
        mode = need(h, "header", "mode")
        if mode not in MODES:
            return f"mode must be one of {', '.join(MODES)}, not {mode!r}"
        lat = need(h, "header", "latent")
        for k in ("channels", "height", "width", "temporal_factor", "spatial_factor"):
            if not _is_int(need(lat, "latent", k), 1, 1 << 30):
                return f"latent.{k} must be a positive integer"
        if need(lat, "latent", "dtype") not in LATENT_DTYPES:
            return f"latent.dtype must be one of {', '.join(LATENT_DTYPES)}"
        levels = need(lat, "latent", "fsq_levels")
        if levels is not None:
            if not (isinstance(levels, list) and levels and all(_is_int(v, 2, 1 << 16) for v in levels)):
                return "latent.fsq_levels must be null or a list of integers >= 2"
            if len(levels) > 64 or math.prod(levels) > (1 << 62):
                return "latent.fsq_levels describe a codebook larger than 2**62"
        if mode == "tokens":
            if levels is None:
                return "mode 'tokens' needs latent.fsq_levels"
            if len(levels) != lat["channels"]:
                return "latent.channels must equal the number of FSQ levels"
        src = need(h, "header", "source")
        for k in ("width", "height"):
            if not _is_int(need(src, "source", k), 1, 1 << 30):
                return f"source.{k} must be a positive integer"
        fc = need(src, "source", "frame_count")
        if fc is not None and not _is_int(fc):
            return "source.frame_count must be null or an integer >= 0"
        if not _int_pair(need(src, "source", "fps"), 1):
            return "source.fps must be a [numerator, denominator] pair of positive integers"
        pad = need(h, "header", "padding")
        p = need(pad, "padding", "pad")
        if not (isinstance(p, list) and len(p) == 4 and all(_is_int(v) for v in p)):
            return "padding.pad must be [top, bottom, left, right] integers >= 0"
        crop = pad.get("crop")
        if crop is not None and not (
            isinstance(crop, list) and len(crop) == 4 and all(_is_int(v) for v in crop)
        ):
            return "padding.crop must be null or [x, y, width, height] integers >= 0"
        if not _is_int(need(pad, "padding", "frames_padded")):
            return "padding.frames_padded must be an integer >= 0"
        ch = need(h, "header", "chunking")
        for k in ("frames_per_record", "segment_frames"):
            v = need(ch, "chunking", k)
            if v is not None and not _is_int(v, 1):
                return f"chunking.{k} must be null or a positive integer"
        if not _is_int(ch.get("clip_overlap", 0)):
            return "chunking.clip_overlap must be an integer >= 0"
        aud = need(h, "header", "audio")
        if aud is not None:
            if not isinstance(need(aud, "audio", "codec"), str):
                return "audio.codec must be a string"
            for k in ("sample_rate", "channels"):
                if not _is_int(need(aud, "audio", k), 1):
                    return f"audio.{k} must be a positive integer"
            if not _int_pair(need(aud, "audio", "time_base"), 1):
                return "audio.time_base must be a [numerator, denominator] pair of positive integers"
            layout = aud.get("layout")
            if layout is not None and not isinstance(layout, str):
                return "audio.layout must be null or a string"
            ed = aud.get("extradata")
            if ed is not None:
                if not isinstance(ed, str):
                    return "audio.extradata must be null or base64 text"
                try:
                    base64.b64decode(ed, validate=True)
                except (binascii.Error, ValueError):
                    return "audio.extradata is not valid base64"
    except _Bad as e:
        return str(e)
    return None


def validate_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-clean copy of ``header`` after checking every required field; ContainerError when invalid."""
    try:
        clean = json.loads(_dumps(dict(header)))
    except (TypeError, ValueError) as e:
        raise ContainerError(f"invalid .vtok header: not representable as JSON ({e})") from None
    problem = _header_problem(clean)
    if problem:
        raise ContainerError(f"invalid .vtok header: {problem}")
    return clean


# ----------------------------------------------------------------------------------------------------------
# Payload encodings: latents


def float32_to_bfloat16_bits(a: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even; NaN stays a (quiet) NaN."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32)
    out = ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype(
        np.uint16
    )
    nan = np.isnan(a)
    if nan.any():
        out[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bfloat16_bits_to_float32(b: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (uint16); exact."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def _encode_latents(arr: np.ndarray, dtype: str) -> bytes:
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if dtype == "float32":
        return a.astype("<f4").tobytes()
    if dtype == "bfloat16":
        return float32_to_bfloat16_bits(a).astype("<u2").tobytes()
    with np.errstate(over="ignore"):
        h = a.astype("<f2")
    bad = np.isinf(h) & np.isfinite(a)
    if bad.any():
        peak = float(np.abs(a[bad]).max())
        raise ContainerError(
            f"latent values reach {peak:.4g}, beyond float16's range (65504); store latents as bfloat16 or float32"
        )
    return h.tobytes()


def _decode_latents(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "float32":
        return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(shape)
    if dtype == "bfloat16":
        return bfloat16_bits_to_float32(np.frombuffer(data, dtype="<u2")).reshape(shape)
    return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(shape)


# ----------------------------------------------------------------------------------------------------------
# Payload encodings: FSQ token indices


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Non-negative integers (any shape, C order) packed at ``bits`` bits each, little-endian bit order.

    Value i occupies bits [i*bits, (i+1)*bits) of the stream, least significant bit first; bit p of the
    stream is bit (p % 8) of byte p // 8. The last byte is padded with zero bits.
    """
    if not 1 <= int(bits) <= 63:
        raise ValueError(f"bits must be 1..63, not {bits}")
    bits = int(bits)
    v = np.asarray(indices)
    if v.dtype.kind not in "iu":
        raise ValueError("indices must be an integer array")
    v = v.reshape(-1)
    if v.size and (int(v.min()) < 0 or int(v.max()) >= (1 << bits)):
        raise ValueError(f"indices must lie in 0..{(1 << bits) - 1} to be packed at {bits} bits")
    v = v.astype(np.uint64)
    planes = np.empty((v.size, bits), dtype=np.uint8)
    for j in range(bits):
        planes[:, j] = (v >> np.uint64(j)) & np.uint64(1)
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_indices(data: bytes, bits: int, count: int) -> np.ndarray:
    """The first ``count`` integers (int64, 1-D) packed by :func:`pack_indices` at ``bits`` bits each."""
    if not 1 <= int(bits) <= 63:
        raise ValueError(f"bits must be 1..63, not {bits}")
    bits, count = int(bits), int(count)
    if count < 0:
        raise ValueError("count must be >= 0")
    need = (count * bits + 7) // 8
    if len(data) < need:
        raise ValueError(f"{count} values at {bits} bits need {need} bytes, got {len(data)}")
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    planes = np.unpackbits(raw, count=count * bits, bitorder="little").reshape(count, bits)
    out = np.zeros(count, dtype=np.uint64)
    for j in range(bits):
        out |= planes[:, j].astype(np.uint64) << np.uint64(j)
    return out.astype(np.int64)


def _digits(indices: np.ndarray, levels: list[int]) -> np.ndarray:
    """FSQ digits (n_levels, *shape) of indices; digit 0 is the least significant (the FSQ convention)."""
    out = np.empty((len(levels),) + indices.shape, dtype=np.int64)
    rest = indices.astype(np.int64)
    for i, lv in enumerate(levels):
        out[i] = rest % lv
        rest = rest // lv
    return out


def _from_digits(digits: np.ndarray, levels: list[int]) -> np.ndarray:
    out = np.zeros(digits.shape[1:], dtype=np.int64)
    basis = 1
    for i, lv in enumerate(levels):
        out += digits[i].astype(np.int64) * basis
        basis *= lv
    return out


def tokens_to_latents(indices: np.ndarray, levels: list[int] | tuple[int, ...]) -> np.ndarray:
    """FSQ codes (n_levels, *shape) float32 for indices (*shape); equal to FSQ.indices_to_latent's values."""
    lv = [int(v) for v in levels]
    d = _digits(np.asarray(indices), lv)
    half = np.array([v // 2 for v in lv], dtype=np.int64).reshape((-1,) + (1,) * (d.ndim - 1))
    return (d - half).astype(np.float32) / half.astype(np.float32)


def _quantise_freqs(counts: np.ndarray, scale: int) -> np.ndarray:
    """Frequencies summing to 2**scale, at least 1 for every symbol that occurs."""
    m = 1 << scale
    n = int(counts.sum())
    f = (counts.astype(np.int64) * m) // max(n, 1)
    f[(counts > 0) & (f == 0)] = 1
    if n == 0:
        f[0] = m
    diff = m - int(f.sum())
    if diff > 0:
        f[int(np.argmax(counts))] += diff
    while diff < 0:
        i = int(np.argmax(f))
        take = min(-diff, int(f[i]) - 1)
        f[i] -= take
        diff += take
    return f


def _code_cost(counts: np.ndarray, freqs: np.ndarray, scale: int) -> float:
    used = counts > 0
    return float(-(counts[used] * (np.log2(freqs[used]) - scale)).sum())


@dataclass
class _TokenModel:
    """How one record's tokens are turned into rANS symbol groups (docs/FORMAT.md, "rANS token coding")."""

    repeat: bool  # a repeat-flag group comes first
    transforms: list[int]  # per level: 0 plain digits, 1 temporal difference mod L
    groups: list[np.ndarray]  # symbols in coding order
    tables: list[np.ndarray]  # quantised frequencies per group
    cost: float  # estimated size of the coded symbols, bits
    entropy: float  # empirical order-0 entropy of the groups, bits


def _entropy_bits(counts: np.ndarray) -> float:
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / c.sum())).sum()) if c.size else 0.0


def _token_model(indices: np.ndarray, levels: list[int], repeat: bool) -> _TokenModel:
    digits = _digits(indices, levels)
    t = indices.shape[0]
    groups: list[np.ndarray] = []
    tables: list[np.ndarray] = []
    cost = entropy = 0.0
    if repeat:
        flags = indices[1:] == indices[:-1]
        mask = np.concatenate([np.ones((1,) + indices.shape[1:], dtype=bool), ~flags])
        fs = flags.reshape(-1).astype(np.int64)
        counts = np.bincount(fs, minlength=2)
        f = _quantise_freqs(counts, _RANS_SCALE)
        groups.append(fs)
        tables.append(f)
        cost += _code_cost(counts, f, _RANS_SCALE)
        entropy += _entropy_bits(counts)
    else:
        mask = np.ones(indices.shape, dtype=bool)
    transforms: list[int] = []
    for i, lv in enumerate(levels):
        d = digits[i]
        best = None
        for tr in (0, 1) if t > 1 else (0,):
            sym = d if tr == 0 else np.concatenate([d[:1], (d[1:] - d[:-1]) % lv])
            sym = sym[mask]
            counts = np.bincount(sym, minlength=lv)
            f = _quantise_freqs(counts, _RANS_SCALE)
            c = _code_cost(counts, f, _RANS_SCALE)
            if best is None or c < best[0]:
                best = (c, tr, sym, f, _entropy_bits(counts))
        assert best is not None
        cost += best[0]
        entropy += best[4]
        transforms.append(best[1])
        groups.append(best[2])
        tables.append(best[3])
    return _TokenModel(repeat, transforms, groups, tables, cost, entropy)


def _rans_lanes(n: int) -> int:
    return max(1, -(-n // _RANS_TARGET_STEPS))


def _model_size(m: _TokenModel) -> float:
    """Estimated payload bytes of a token model."""
    n = sum(len(g) for g in m.groups)
    return _RANS_HEAD.size + sum(1 + 2 * len(t) for t in m.tables) + 4 * _rans_lanes(n) + m.cost / 8


def _choose_token_model(indices: np.ndarray, levels: list[int]) -> _TokenModel:
    models = [_token_model(indices, levels, False)]
    if indices.shape[0] > 1:
        models.append(_token_model(indices, levels, True))
    return min(models, key=_model_size)


def _rans_tables(tables: list[np.ndarray], scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Freq, cum and slot->symbol tables, one row per group plus a padding row (freq 2**scale, cum 0)."""
    m = 1 << scale
    width = max(len(t) for t in tables)
    rows = len(tables) + 1
    freq = np.zeros((rows, width), dtype=np.uint64)
    cum = np.zeros((rows, width), dtype=np.uint64)
    slot = np.zeros((rows, m), dtype=np.int64)
    for r, t in enumerate(tables):
        t = t.astype(np.int64)
        freq[r, : len(t)] = t
        cum[r, : len(t)] = np.concatenate([[0], np.cumsum(t)[:-1]])
        slot[r] = np.repeat(np.arange(len(t)), t)
    freq[-1, 0] = m
    return freq, cum, slot


def _rans_encode_groups(
    groups: list[np.ndarray], tables: list[np.ndarray], scale: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Interleaved rANS over the concatenated groups: (lanes, final states u32, 16-bit words in read order)."""
    sizes = [len(g) for g in groups]
    n = sum(sizes)
    lanes = _rans_lanes(n)
    steps = -(-n // lanes)
    total = steps * lanes
    freq, cum, _ = _rans_tables(tables, scale)
    width = freq.shape[1]
    rows = np.full(total, len(groups), dtype=np.int64)
    rows[:n] = np.repeat(np.arange(len(groups)), sizes)
    sym_all = np.zeros(total, dtype=np.int64)
    sym_all[:n] = np.concatenate(groups)
    flat = rows * width + sym_all
    f_all = freq.reshape(-1)[flat].reshape(steps, lanes)
    c_all = cum.reshape(-1)[flat].reshape(steps, lanes)
    x = np.full(lanes, _RANS_L, dtype=np.uint64)
    shift = np.uint64(32 - scale)
    sc = np.uint64(scale)
    w16 = np.uint64(16)
    mask16 = np.uint64(0xFFFF)
    chunks: list[np.ndarray] = []
    for s in range(steps - 1, -1, -1):  # rANS encodes backwards; the decoder reads forwards
        f = f_all[s]
        emit = x >= (f << shift)
        if emit.any():
            chunks.append((x[emit] & mask16).astype(np.uint16))
            x[emit] >>= w16
        q, r = np.divmod(x, f)
        x = (q << sc) + r + c_all[s]
    words = np.concatenate(chunks[::-1]) if chunks else np.zeros(0, dtype=np.uint16)
    return lanes, x, words


def _rans_decode_groups(
    x: np.ndarray, words: np.ndarray, lanes: int, sizes: list[int], tables: list[np.ndarray], scale: int
) -> list[np.ndarray]:
    """Inverse of _rans_encode_groups; raises _Bad when the stream is inconsistent."""
    n = sum(sizes)
    steps = -(-n // lanes)
    m = 1 << scale
    freq, cum, slot = _rans_tables(tables, scale)
    width = freq.shape[1]
    bounds = np.cumsum(sizes)
    lane_ar = np.arange(lanes, dtype=np.int64)
    slot_flat = slot.reshape(-1)
    freq_flat = freq.reshape(-1)
    cum_flat = cum.reshape(-1)
    out = np.empty((steps, lanes), dtype=np.uint8)
    mask = np.uint64(m - 1)
    sc = np.uint64(scale)
    w16 = np.uint64(16)
    low = np.uint64(_RANS_L)
    n_words = int(words.size)
    wpos = 0
    for s in range(steps):
        row = np.searchsorted(bounds, s * lanes + lane_ar, side="right")  # past the end: the padding row
        sl = x & mask
        sym = slot_flat[row * m + sl.astype(np.int64)]
        k = row * width + sym
        x = freq_flat[k] * (x >> sc) + sl - cum_flat[k]
        need = x < low
        cnt = int(np.count_nonzero(need))
        if cnt:
            if wpos + cnt > n_words:
                raise _Bad("rANS payload ends early")
            x[need] = (x[need] << w16) | words[wpos : wpos + cnt]
            wpos += cnt
        out[s] = sym
    if wpos != n_words or bool((x != low).any()):
        raise _Bad("rANS payload does not decode to its final state")
    flat_out = out.reshape(-1)
    starts = np.concatenate([[0], bounds[:-1]])
    return [flat_out[a : a + size] for a, size in zip(starts.tolist(), sizes, strict=True)]


def _rans_encode(indices: np.ndarray, levels: list[int]) -> bytes | None:
    """rANS-coded payload of FSQ indices (t, h, w) (docs/FORMAT.md); None when it cannot beat plain packing."""
    if max(levels) > RANS_MAX_LEVEL or len(levels) > 255 or indices.size == 0:
        return None
    packed_len = (int(indices.size) * bits_for_levels(levels) + 7) // 8
    model = _choose_token_model(indices, levels)
    if _model_size(model) >= packed_len:
        return None
    lanes, states, words = _rans_encode_groups(model.groups, model.tables, _RANS_SCALE)
    n_coded = len(model.groups[-1])
    parts = [_RANS_HEAD.pack(_RANS_SCALE, int(model.repeat), 0, lanes, int(words.size), n_coded)]
    transforms = ([0] if model.repeat else []) + model.transforms
    for tr, t in zip(transforms, model.tables, strict=True):
        parts.append(bytes([tr]))
        parts.append(t.astype("<u2").tobytes())
    parts.append(states.astype("<u4").tobytes())
    parts.append(words.astype("<u2").tobytes())
    out = b"".join(parts)
    return out if len(out) < packed_len else None


def _rans_decode(data: bytes, levels: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Indices (shape) int64 from an rANS payload; raises _Bad on any inconsistency."""
    if len(data) < _RANS_HEAD.size:
        raise _Bad("rANS payload is shorter than its header")
    scale, model, reserved, lanes, n_words, n_coded = _RANS_HEAD.unpack_from(data, 0)
    if not 8 <= scale <= 16:
        raise _Bad(f"rANS payload has an invalid scale ({scale} bits)")
    if model not in (0, 1):
        raise _Bad(f"rANS token model {model} is unknown to this version of vidtok")
    repeat = model == 1
    t, h, w = (int(v) for v in shape)
    count, plane = t * h * w, h * w
    if not (plane <= n_coded <= count if repeat else n_coded == count):
        raise _Bad(f"rANS payload codes {n_coded} of {count} tokens, which is impossible")
    alphabets = ([2] if repeat else []) + list(levels)
    sizes = ([(t - 1) * plane] if repeat else []) + [n_coded] * len(levels)
    n = sum(sizes)
    if lanes < 1 or lanes > n:
        raise _Bad(f"rANS payload has an impossible lane count ({lanes})")
    steps = -(-n // lanes)
    if steps > RANS_MAX_STEPS:
        raise _Bad(f"rANS payload needs {steps} steps, more than the limit {RANS_MAX_STEPS}")
    expect = _RANS_HEAD.size + sum(1 + 2 * a for a in alphabets) + 4 * lanes + 2 * n_words
    if expect != len(data):
        raise _Bad(f"rANS payload is {len(data)} bytes, its header describes {expect}")
    m = 1 << scale
    pos = _RANS_HEAD.size
    transforms: list[int] = []
    tables: list[np.ndarray] = []
    for g, a in enumerate(alphabets):
        tr = data[pos]
        if tr not in (0, 1) or (repeat and g == 0 and tr != 0):
            raise _Bad(f"unknown digit transform {tr} in rANS payload")
        tab = np.frombuffer(data, dtype="<u2", count=a, offset=pos + 1).astype(np.int64)
        if int(tab.sum()) != m:
            raise _Bad("rANS frequency table does not sum to its scale")
        transforms.append(tr)
        tables.append(tab)
        pos += 1 + 2 * a
    x = np.frombuffer(data, dtype="<u4", count=lanes, offset=pos).astype(np.uint64)
    pos += 4 * lanes
    words = np.frombuffer(data, dtype="<u2", count=n_words, offset=pos).astype(np.uint64)
    if int(x.min()) < _RANS_L:
        raise _Bad("rANS payload has an invalid initial state")
    groups = _rans_decode_groups(x, words, lanes, sizes, tables, scale)
    if repeat:
        flags = groups[0].reshape(t - 1, h, w).astype(bool)
        groups, transforms = groups[1:], transforms[1:]
        mask = np.concatenate([np.ones((1, h, w), dtype=bool), ~flags])
        if int(mask.sum()) != n_coded:
            raise _Bad("rANS repeat flags do not match the number of coded tokens")
    else:
        flags = np.zeros((max(t - 1, 0), h, w), dtype=bool)
        mask = np.ones((t, h, w), dtype=bool)
    digits = np.zeros((len(levels), t, h, w), dtype=np.int64)
    for i, lv in enumerate(levels):
        grid = np.zeros((t, h, w), dtype=np.int64)
        grid[mask] = groups[i]
        digits[i, 0] = grid[0]
        for k in range(1, t):
            prev = digits[i, k - 1]
            new = (prev + grid[k]) % lv if transforms[i] else grid[k]
            digits[i, k] = np.where(flags[k - 1], prev, new)
    return _from_digits(digits, levels)


def _encode_tokens(indices: np.ndarray, levels: list[int], coding: str) -> tuple[int, bytes]:
    bits = bits_for_levels(levels)
    if coding in ("auto", "rans"):
        coded = _rans_encode(indices, levels)
        if coded is not None:
            return CODING_RANS, coded
    packed = pack_indices(indices, bits)
    return CODING_PACKED, packed


def _decode_tokens(data: bytes, coding: int, levels: list[int], shape: tuple[int, ...]) -> np.ndarray:
    count = _prod(shape)
    if coding == CODING_PACKED:
        bits = bits_for_levels(levels)
        need = (count * bits + 7) // 8
        if len(data) != need:
            raise _Bad(f"payload is {len(data)} bytes but {count} tokens at {bits} bits need {need}")
        out = unpack_indices(data, bits, count)
        if count and int(out.max()) >= math.prod(levels):
            raise _Bad("a token index is outside the codebook")
        return out.reshape(shape)
    if coding == CODING_RANS:
        if max(levels) > RANS_MAX_LEVEL:
            raise _Bad("rANS coding is not defined for FSQ levels above 256")
        return _rans_decode(data, levels, shape)
    raise _Bad(f"token coding {coding} is unknown to this version of vidtok")


def token_coding_report(indices: np.ndarray, levels: list[int] | tuple[int, ...]) -> dict[str, Any]:
    """Bits per token of plain packing vs the entropy coder on ``indices`` (t, h, w), stored as one record.

    Keys: tokens, bits_packed, bits_rans (None when the coder cannot beat packing), bits_kept, coding,
    entropy_bound (the empirical order-0 entropy of the coder's symbols, per token: the ideal for its
    model), repeat_flags (whether the repeat-flag model was chosen), transforms (plain or delta, per level).
    """
    lv = [int(v) for v in levels]
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim == 2:
        idx = idx[None]
    n = int(idx.size)
    packed = len(pack_indices(idx, bits_for_levels(lv)))
    coded = _rans_encode(idx, lv)
    if coded is not None:
        back = _rans_decode(coded, lv, idx.shape)
        if not np.array_equal(back, idx):  # pragma: no cover - a coder bug
            raise AssertionError("rANS round trip failed")
    model = _choose_token_model(idx, lv)
    kept = len(coded) if coded is not None else packed
    return {
        "tokens": n,
        "bits_packed": 8 * packed / n,
        "bits_rans": None if coded is None else 8 * len(coded) / n,
        "bits_kept": 8 * kept / n,
        "coding": "rans" if coded is not None else "packed",
        "entropy_bound": model.entropy / n,
        "repeat_flags": model.repeat,
        "transforms": ["delta" if t else "plain" for t in model.transforms],
    }


# ----------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class AudioPacket:
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


class LatentChunk(tuple):
    """``(first_latent, latents)``; also ``.first_frame``, ``.end_frame`` and ``.segment_start``.

    ``segment_start`` is True when the decoder must start from a fresh state (no causal cache) here.
    """

    first_frame: int
    end_frame: int
    segment_start: bool

    def __new__(
        cls, first_latent: int, latents: np.ndarray, first_frame: int, end_frame: int, segment_start: bool
    ) -> LatentChunk:
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


class TokenChunk(LatentChunk):
    """``(first_latent, indices)`` with indices int64 (t, h, w); same extra attributes as LatentChunk."""

    @property
    def indices(self) -> np.ndarray:
        return self[1]


class Record:
    """One record read from a file, its checksum verified; the payload is decoded on first access."""

    __slots__ = ("index", "offset", "type", "flags", "meta", "raw", "_reader", "_payload", "_decoded")

    def __init__(
        self, reader: VtokReader, index: int, offset: int, type: int, flags: int, meta: dict, raw: bytes
    ):
        self._reader = reader
        self.index = index
        self.offset = offset
        self.type = type
        self.flags = flags
        self.meta = meta
        self.raw = raw
        self._payload: Any = None
        self._decoded = False

    def __repr__(self) -> str:
        return (
            f"Record(index={self.index}, type={self.type_name!r}, frames={self.frames}, "
            f"latents={self.latents}, payload_bytes={len(self.raw)})"
        )

    @property
    def type_name(self) -> str:
        """latent, tokens, audio, segment, motion, twin, end, or ``type N``."""
        return RecordType.name(self.type)

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
        """Token coding of a tokens record (``packed`` or ``rans``), else None."""
        if self.type != RecordType.TOKENS:
            return None
        return _CODING_NAMES.get(self.flags & 0x0F, f"coding {self.flags & 0x0F}")

    @property
    def payload(self) -> Any:
        """Latents float32 (C, t, h, w), token indices int64 (t, h, w), an AudioPacket, or None.

        Records of types this version does not know give their raw payload bytes.
        """
        if not self._decoded:
            self._payload = self._reader._decode(self)
            self._decoded = True
        return self._payload


# ----------------------------------------------------------------------------------------------------------
# The writer


def _record_bytes(rtype: int, flags: int, meta: Mapping[str, Any], payload: bytes) -> bytes:
    m = _dumps(dict(meta))
    head = _RECORD_HEAD.pack(rtype, flags, 0, len(payload), len(m))
    crc = zlib.crc32(payload, zlib.crc32(m, zlib.crc32(head)))
    return b"".join((head, m, payload, _CRC.pack(crc)))


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
        if self.header["mode"] not in _WRITABLE_MODES:
            raise ContainerError(
                f"{self.path}: mode {self.header['mode']!r} is reserved; this version writes latent or tokens"
            )
        lat = self.header["latent"]
        self._levels: list[int] | None = lat["fsq_levels"] if self.header["mode"] == "tokens" else None
        if self.path.exists() and not force:
            raise ContainerError(f"{self.path} already exists; pass --force to overwrite it")
        if self.path.is_dir():
            raise ContainerError(f"{self.path} is a directory")
        parent = self.path.parent
        if not parent.is_dir():
            raise ContainerError(f"cannot write {self.path}: directory {parent} does not exist")
        self._tmp: Path | None = None
        self._file: BinaryIO | None = None
        for _ in range(100):
            tmp = parent / f".{self.path.name}.{secrets.token_hex(4)}.part"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                continue
            except OSError as e:
                raise ContainerError(f"cannot write {self.path}: {e.strerror or e}") from None
            self._tmp = tmp
            self._file = os.fdopen(fd, "wb")
            break
        else:  # pragma: no cover
            raise ContainerError(f"cannot create a temporary file next to {self.path}")
        self._closed = False
        self._index: list[list[Any]] = []
        self._offset = 0
        self._pos: tuple[int, int] | None = None  # (end_frame, end_latent) of the last video record
        self._updates: dict[str, Any] = {}
        try:
            hj = _dumps(self.header)
            pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION[0], FORMAT_VERSION[1], len(hj)) + hj
            self._write(pre + _CRC.pack(zlib.crc32(pre)))
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

    def write_latents(self, array: np.ndarray, first_frame: int, end_frame: int, first_latent: int) -> int:
        """Store a latent chunk (C, t, h, w) covering source frames [first_frame, end_frame); bytes written."""
        if self.header["mode"] != "latent":
            raise ValueError(f"this file's mode is {self.header['mode']!r}; latents go in mode 'latent'")
        a = np.asarray(array)
        if a.dtype.kind not in "fiu":
            raise ValueError("latents must be a real-valued array")
        lat = self.header["latent"]
        if a.ndim != 4 or a.shape[0] != lat["channels"] or a.shape[2:] != (lat["height"], lat["width"]):
            raise ValueError(
                f"latents must have shape ({lat['channels']}, t, {lat['height']}, {lat['width']}), not {a.shape}"
            )
        if a.size > MAX_VALUES_PER_RECORD:
            raise ValueError(f"a record holds at most {MAX_VALUES_PER_RECORD} values; write smaller chunks")
        t = int(a.shape[1])
        first_frame, end_frame, first_latent = int(first_frame), int(end_frame), int(first_latent)
        self._check_range(first_frame, end_frame, first_latent, t, empty=False)
        payload = _encode_latents(a, lat["dtype"])
        meta = {
            "frames": [first_frame, end_frame],
            "latents": [first_latent, first_latent + t],
            "shape": list(a.shape),
        }
        n = self._record(RecordType.LATENT, 0, meta, payload, (first_frame, end_frame))
        self._pos = (end_frame, first_latent + t)
        return n

    def write_tokens(
        self,
        indices: np.ndarray,
        first_frame: int,
        end_frame: int,
        first_latent: int,
        *,
        coding: str = "auto",
    ) -> int:
        """Store FSQ indices (t, h, w) covering source frames [first_frame, end_frame); bytes written.

        ``coding``: ``"auto"`` keeps the entropy-coded form when it is smaller than plain packing,
        ``"packed"`` always packs, ``"rans"`` is the same as auto (packing is the fallback).
        """
        if self.header["mode"] != "tokens" or self._levels is None:
            raise ValueError(f"this file's mode is {self.header['mode']!r}; tokens go in mode 'tokens'")
        if coding not in ("auto", "packed", "rans"):
            raise ValueError(f"coding must be auto, packed or rans, not {coding!r}")
        a = np.asarray(indices)
        if a.dtype.kind not in "iu":
            raise ValueError("token indices must be an integer array")
        lat = self.header["latent"]
        if a.ndim != 3 or a.shape[1:] != (lat["height"], lat["width"]):
            raise ValueError(
                f"token indices must have shape (t, {lat['height']}, {lat['width']}), not {a.shape}"
            )
        if a.size > MAX_VALUES_PER_RECORD:
            raise ValueError(f"a record holds at most {MAX_VALUES_PER_RECORD} values; write smaller chunks")
        k = math.prod(self._levels)
        if a.size and (int(a.min()) < 0 or int(a.max()) >= k):
            raise ValueError(f"token indices must lie in 0..{k - 1}")
        a = a.astype(np.int64)
        t = int(a.shape[0])
        first_frame, end_frame, first_latent = int(first_frame), int(end_frame), int(first_latent)
        self._check_range(first_frame, end_frame, first_latent, t, empty=False)
        code, payload = _encode_tokens(a, self._levels, "packed" if coding == "packed" else "auto")
        meta = {
            "frames": [first_frame, end_frame],
            "latents": [first_latent, first_latent + t],
            "shape": list(a.shape),
        }
        n = self._record(RecordType.TOKENS, code, meta, payload, (first_frame, end_frame))
        self._pos = (end_frame, first_latent + t)
        return n

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

        The keys that decide how records decode (mode, model, latent) cannot change.
        """
        frozen = [k for k in updates if k in _FROZEN_KEYS]
        if frozen:
            raise ValueError(f"header keys {', '.join(frozen)} cannot change after records are written")
        merged = _deep_merge(self._updates, updates)
        validate_header(_deep_merge(self.header, merged))
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
            self._write(_record_bytes(RecordType.END, 0, meta, _dumps(self._index)))
            self._write(_TRAILER.pack(footer_offset, END_MAGIC))
            assert self._file is not None and self._tmp is not None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._publish()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def _publish(self) -> None:
        assert self._tmp is not None
        try:
            if self.force:
                os.replace(self._tmp, self.path)
            else:
                try:
                    os.link(self._tmp, self.path)  # fails if the output appeared meanwhile
                except FileExistsError:
                    raise ContainerError(
                        f"{self.path} already exists; pass --force to overwrite it"
                    ) from None
                except OSError:  # no hard links on this file system
                    if self.path.exists():
                        raise ContainerError(
                            f"{self.path} already exists; pass --force to overwrite it"
                        ) from None
                    os.replace(self._tmp, self.path)
                else:
                    os.unlink(self._tmp)
        except OSError as e:
            raise ContainerError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._tmp = None

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
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------------------
# The reader


def _safe_frames(meta: Any) -> tuple[int, int] | None:
    fr = meta.get("frames") if isinstance(meta, dict) else None
    return (fr[0], fr[1]) if _int_pair(fr) and fr[0] <= fr[1] else None


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
        except (_Bad, _Cut) as e:  # pragma: no cover - defensive
            raise ContainerError(f"{self.path}: {e}") from None
        except OSError as e:
            raise ContainerError(f"cannot read {self.path}: {e.strerror or e}") from None
        except _PARSE_ERRORS as e:
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
        head = f.read(_PREAMBLE.size)
        if len(head) < 8 or head[:8] != MAGIC:
            raise self._err("not a .vtok file (wrong magic number)")
        if len(head) < _PREAMBLE.size:
            raise self._err("file is cut short inside its header")
        _, major, minor, hlen = _PREAMBLE.unpack(head)
        self.version = (major, minor)
        if major != FORMAT_VERSION[0]:
            newer = major > FORMAT_VERSION[0]
            raise self._err(
                f"made with .vtok format version {major}.{minor}; this vidtok ({__version__}) reads version "
                f"{FORMAT_VERSION[0]}.x" + ("; upgrade vidtok to read it" if newer else "")
            )
        if _PREAMBLE.size + hlen + 4 > self.file_size:
            raise self._err(
                f"file is cut short inside its header (header length {hlen}, file {self.file_size} bytes)"
            )
        body = f.read(hlen)
        crc = f.read(4)
        if len(body) != hlen or len(crc) != 4:
            raise self._err("file is cut short inside its header")
        if zlib.crc32(body, zlib.crc32(head)) != _CRC.unpack(crc)[0]:
            raise self._err("the header fails its CRC check: the file is damaged")
        try:
            header = _loads(body, "the header")
        except _Bad as e:
            raise self._err(str(e)) from None
        problem = _header_problem(header)
        if problem:
            raise self._err(f"invalid header: {problem}")
        self.header_initial: dict[str, Any] = header
        self.header: dict[str, Any] = header
        self.header_updates: dict[str, Any] = {}
        self._data_start = _PREAMBLE.size + hlen + 4

    def _read_footer(self, f: BinaryIO) -> str | None:
        """Reads the footer; None when it is valid, else "missing" or a description of the damage."""
        size = self.file_size
        if size < self._data_start + _MIN_RECORD + _TRAILER.size:
            return "missing"
        f.seek(size - _TRAILER.size)
        footer_offset, end_magic = _TRAILER.unpack(f.read(_TRAILER.size))
        if end_magic != END_MAGIC:
            return "missing"
        if not self._data_start <= footer_offset <= size - _TRAILER.size - _MIN_RECORD:
            return "the footer offset points outside the file: the file is damaged"
        try:
            rtype, flags, meta, payload = self._read_raw(f, footer_offset, size - _TRAILER.size, exact=True)
        except (_Bad, _Cut) as e:
            return f"the footer is damaged ({e})"
        if rtype != RecordType.END:
            return "the footer offset does not point at the footer: the file is damaged"
        try:
            entries = self._parse_index(payload, footer_offset)
            updates = meta.get("header_updates")
            if not isinstance(updates, dict) or meta.get("records") != len(entries):
                raise _Bad("footer metadata is inconsistent")
            self._apply_updates(updates)
        except _Bad as e:
            return f"the footer is damaged ({e})"
        self.index: list[IndexEntry] = entries
        self._data_end = footer_offset
        return None

    def _apply_updates(self, updates: dict[str, Any]) -> None:
        if any(k in updates for k in _FROZEN_KEYS):
            raise _Bad("header updates change frozen keys")
        merged = _deep_merge(self.header_initial, updates)
        problem = _header_problem(merged)
        if problem:
            raise _Bad(f"updated header is invalid: {problem}")
        self.header = merged
        self.header_updates = updates

    def _parse_index(self, payload: bytes, footer_offset: int) -> list[IndexEntry]:
        raw = _loads(payload, "the index")
        if not isinstance(raw, list):
            raise _Bad("the index is not a list")
        entries: list[IndexEntry] = []
        prev = self._data_start - 1
        pos: int | None = None
        for e in raw:
            if not (isinstance(e, list) and len(e) == 4 and _is_int(e[0]) and _is_int(e[1], 0, 254)):
                raise _Bad("an index entry is malformed")
            off, typ, a, b = e
            if not prev < off < footer_offset or (not entries and off != self._data_start):
                raise _Bad("index offsets are out of order")
            if typ in _VIDEO_TYPES:
                if not (_is_int(a) and _is_int(b) and a <= b):
                    raise _Bad("an index entry has an invalid frame range")
                if typ == RecordType.SEGMENT and a != b:
                    raise _Bad("a segment entry covers frames")
                if typ != RecordType.SEGMENT and a == b:
                    raise _Bad("a chunk entry covers no frames")
                if pos is not None and a != pos:
                    raise _Bad("index frame ranges are not contiguous")
                pos = b
            elif not (a is None and b is None) and not (_is_int(a) and _is_int(b) and a <= b):
                raise _Bad("an index entry has an invalid frame range")
            prev = off
            entries.append(IndexEntry(off, typ, a, b))
        if entries and entries[-1].offset + _MIN_RECORD > footer_offset:
            raise _Bad("the last index entry overlaps the footer")
        if not entries and footer_offset != self._data_start:
            raise _Bad("the index is empty but records precede the footer")
        return entries

    def _read_raw(self, f: BinaryIO, offset: int, limit: int, exact: bool) -> tuple[int, int, dict, bytes]:
        """(type, flags, meta, payload) of the record at ``offset``, CRC checked.

        Raises _Cut when the record runs past the end of the file, _Bad when it is damaged; with ``exact``
        the record must end exactly at ``limit``, else it must end at or before it.
        """
        f.seek(offset)
        head = f.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            raise _Cut("the file ends inside its fixed fields")
        rtype, flags, reserved, plen, mlen = _RECORD_HEAD.unpack(head)
        end = offset + _RECORD_HEAD.size + mlen + plen + 4
        if end > self.file_size:
            raise _Cut(f"its length ({end - offset} bytes) runs past the end of the file")
        if end > limit or (exact and end != limit):
            raise _Bad(f"its length ({end - offset} bytes) does not fit its place in the file")
        meta_b = f.read(mlen)
        payload = f.read(plen)
        crc_b = f.read(4)
        if len(meta_b) != mlen or len(payload) != plen or len(crc_b) != 4:
            raise _Cut("the file ends inside it")
        crc = zlib.crc32(payload, zlib.crc32(meta_b, zlib.crc32(head)))
        if crc != _CRC.unpack(crc_b)[0]:
            try:  # best effort: name the frames in the message
                frames = _safe_frames(_loads(meta_b, "metadata"))
            except _Bad:
                frames = None
            raise _Bad("it fails its CRC check", frames)
        meta = _loads(meta_b, "its metadata")
        if not isinstance(meta, dict):
            raise _Bad("its metadata is not a JSON object")
        return rtype, flags, meta, payload

    def _check_meta(self, rtype: int, flags: int, meta: dict, plen: int) -> None:
        """Checks a record's metadata against the header; raises _Bad."""
        lat = self.header["latent"]
        mode = self.header["mode"]
        if rtype in _VIDEO_TYPES:
            fr, lr = meta.get("frames"), meta.get("latents")
            if not (_int_pair(fr) and _int_pair(lr) and fr[0] <= fr[1] and lr[0] <= lr[1]):
                raise _Bad("its frame or latent range is malformed")
            if rtype == RecordType.SEGMENT:
                if fr[0] != fr[1] or lr[0] != lr[1] or plen != 0:
                    raise _Bad("a segment marker must cover no frames and carry no payload")
                return
            if fr[0] == fr[1] or lr[0] == lr[1]:
                raise _Bad("it covers no frames")
        if rtype in _CHUNK_TYPES:
            want = "latent" if rtype == RecordType.LATENT else "tokens"
            if mode != want:
                raise _Bad(f"a {RecordType.name(rtype)} record in a file of mode {mode!r}")
            shape = meta.get("shape")
            t = meta["latents"][1] - meta["latents"][0]
            hw = [lat["height"], lat["width"]]
            expect = [lat["channels"], t, *hw] if rtype == RecordType.LATENT else [t, *hw]
            if shape != expect:
                raise _Bad(f"its shape {shape} does not match the header (expected {expect})")
            if _prod(shape) > MAX_VALUES_PER_RECORD:
                raise _Bad("it holds more values than a record may")
            if rtype == RecordType.LATENT:
                need = _prod(shape) * _ITEMSIZE[lat["dtype"]]
                if flags != 0:
                    raise _Bad(f"latent coding {flags} is unknown to this version of vidtok")
                if plen != need:
                    raise _Bad(
                        f"its payload is {plen} bytes but shape {shape} in {lat['dtype']} needs {need}"
                    )
            elif flags & 0x0F not in _CODING_NAMES:
                raise _Bad(f"token coding {flags & 0x0F} is unknown to this version of vidtok")
        elif rtype == RecordType.AUDIO:
            if self.header["audio"] is None:
                raise _Bad("an audio packet in a file without audio")
            for k in ("pts", "dts", "duration"):
                v = meta.get(k)
                if v is not None and not _is_int(v, -(1 << 63)):
                    raise _Bad(f"its {k} is not an integer")
        elif rtype == RecordType.END:
            raise _Bad("a footer record in the middle of the file")

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
                    if self.file_size - end < _TRAILER.size:
                        problem = "cut"
                    elif footer_problem == "missing":
                        extra = self.file_size - end - _TRAILER.size
                        problem = (
                            f"{extra} unexpected bytes follow the footer"
                            if extra
                            else "the end marker of the file is damaged"
                        )
                    else:
                        problem = footer_problem
                    break
                self._check_meta(rtype, flags, meta, len(payload))
                fr = meta.get("frames") if rtype in _VIDEO_TYPES else None
                if rtype in _VIDEO_TYPES:
                    start = (fr[0], meta["latents"][0])
                    if pos is not None and start != pos:
                        raise _Bad("it does not continue where the previous chunk ended")
                    pos = (fr[1], meta["latents"][1])
                    if rtype in _CHUNK_TYPES:
                        last_video = (k, fr[1])
            except _Cut:
                problem = "cut"
                break
            except _Bad as e:
                frames = e.frames if isinstance(e, _Bad) and e.frames else _safe_frames(meta)
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
                raise _Bad(f"its type ({RecordType.name(rtype)}) differs from the index")
            self._check_meta(rtype, flags, meta, len(payload))
            if rtype in _VIDEO_TYPES and tuple(meta["frames"]) != e.frames:
                raise _Bad("its frame range differs from the index")
        except (_Bad, _Cut) as err:
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
        except (_Bad, _Cut, *_PARSE_ERRORS) as e:
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
                if rec.type in _VIDEO_TYPES:
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
            elif e.type in _VIDEO_TYPES and e[2] is not None and e[2] > start_frame:
                break
        return best

    def _decode(self, rec: Record) -> Any:
        try:
            return self._decode_payload(rec)
        except ContainerError:
            raise
        except (_Bad, *_PARSE_ERRORS) as e:
            raise self._err(f"{self._describe(rec.index, rec.type, rec.frames)} is damaged: {e}") from None

    def _decode_payload(self, rec: Record) -> Any:
        lat = self.header["latent"]
        if rec.type == RecordType.LATENT:
            return _decode_latents(rec.raw, lat["dtype"], tuple(rec.meta["shape"]))
        if rec.type == RecordType.TOKENS:
            return _decode_tokens(rec.raw, rec.flags & 0x0F, lat["fsq_levels"], tuple(rec.meta["shape"]))
        if rec.type == RecordType.AUDIO:
            return AudioPacket(rec.raw, rec.meta.get("pts"), rec.meta.get("dts"), rec.meta.get("duration"))
        if rec.type == RecordType.SEGMENT:
            return None
        if rec.type in (RecordType.MOTION, RecordType.TWIN):
            raise ContainerError(
                f"{self.path}: {rec.type_name} chunks are not supported by this version of vidtok"
            )
        return rec.raw

    def _chunks(self, start_frame: int | None, want_latents: bool) -> Iterator[LatentChunk]:
        mode = self.header["mode"]
        if mode not in _WRITABLE_MODES:
            raise self._err(f"mode {mode!r} is not supported by this version of vidtok")
        if not want_latents and mode != "tokens":
            raise self._err("holds latents, not tokens")
        levels = self.header["latent"]["fsq_levels"]
        fresh = True
        for rec in self._records(self._start_pos(start_frame)):
            if rec.type == RecordType.SEGMENT:
                fresh = True
            elif rec.type in _CHUNK_TYPES:
                value = rec.payload
                cls = TokenChunk
                if want_latents:
                    cls = LatentChunk
                    if rec.type == RecordType.TOKENS:
                        value = tokens_to_latents(value, levels)
                assert rec.latents is not None and rec.frames is not None
                yield cls(rec.latents[0], value, rec.frames[0], rec.frames[1], fresh)
                fresh = False

    def iter_latent_chunks(self, start_frame: int | None = None) -> Iterator[LatentChunk]:
        """(first_latent, latents float32 (C, t, h, w)) in order; tokens files give their FSQ codes.

        With ``start_frame`` the iteration begins at the nearest segment start at or before it; the chunks
        then still cover frames before ``start_frame``, which the caller decodes and drops.
        """
        return self._guard(self._chunks(start_frame, True))

    def iter_token_chunks(self, start_frame: int | None = None) -> Iterator[TokenChunk]:
        """(first_latent, indices int64 (t, h, w)) in order, like iter_latent_chunks (tokens files only)."""
        return self._guard(self._chunks(start_frame, False))  # type: ignore[arg-type]

    def audio_packets(self) -> Iterator[AudioPacket]:
        """The stored audio packets in file order (reads only the audio records)."""

        def gen() -> Iterator[AudioPacket]:
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
                tokens += _prod(rec.meta["shape"])
                token_bytes += len(rec.raw)
                c = rec.coding or "?"
                codings[c] = codings.get(c, 0) + 1
            elif rec.type == RecordType.LATENT:
                latent_bytes += len(rec.raw)
            elif rec.type == RecordType.AUDIO:
                audio_bytes += len(rec.raw)
            if rec.type in _CHUNK_TYPES:
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
