"""Quantized continuous latents (docs/FORMAT.md, "Quantized latent payload"): uniform scalar quantization per
channel per record with the offset and step stored as float32, the integers entropy-coded with the
container's rANS, and a deterministic float32 dequantization."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .format import RANS_MAX_STEPS, ContainerError, Damaged
from .payloads import pack_indices, shape_size, unpack_indices
from .rans import _code_cost, _quantise_freqs, _rans_decode_groups, _rans_encode_groups
from .streams import Stream

QUANT_HEAD = struct.Struct("<BBHII")  # bits, rANS scale, reserved, lanes, n_words
CHANNEL_HEAD = struct.Struct("<ffBBH")  # offset, step, transform, low bits k, reserved

MAX_TABLE_BITS = 8  # the rANS-coded high part of a symbol has at most 2**8 values
TRANSFORMS = ("plain", "temporal", "previous")
_SCALE = 14


@dataclass(frozen=True)
class Quantized:
    """One record's quantized values: ``q`` (C, t, n) integers in [0, 2**bits), per-channel float32
    ``offset`` and ``step`` (value = offset + step * q), and the per-channel transform and low-bit split."""

    q: np.ndarray
    offset: np.ndarray
    step: np.ndarray
    transforms: tuple[int, ...] = ()
    low_bits: tuple[int, ...] = ()

    def values(self) -> np.ndarray:
        """The dequantized float32 values (C, t, n): ``step * q`` rounded to float32, plus ``offset`` rounded
        to float32 (two IEEE roundings, no fused multiply-add), identical on every machine."""
        prod = self.step[:, None, None] * self.q.astype(np.float32)
        return (prod + self.offset[:, None, None]).astype(np.float32)

    @property
    def max_error(self) -> float:
        """The bound on the absolute error of the dequantized values: half the largest step."""
        return float(self.step.max()) / 2 if self.step.size else 0.0


def record_axes(stream: Stream, ndim: int) -> tuple[int, int | None]:
    """(time axis, channel axis or None) of a record's array of ``ndim`` axes for ``stream``."""
    ta = stream.step_axis
    ca = stream.channel_axis
    if ca is None:
        return ta, None
    return ta, ca + (1 if ca >= ta else 0)


def to_channels(a: np.ndarray, stream: Stream) -> np.ndarray:
    """A record's array as (C, t, n): channel axis first (C = 1 without one), then time, then the rest."""
    ta, ca = record_axes(stream, a.ndim)
    if ca is None:
        b = np.moveaxis(a, ta, 0)[None]
    else:
        b = np.moveaxis(a, (ca, ta), (0, 1))
    return np.ascontiguousarray(b).reshape(b.shape[0], b.shape[1], -1)


def from_channels(x: np.ndarray, stream: Stream, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`to_channels`: (C, t, n) back to the record's ``shape``."""
    ta, ca = record_axes(stream, len(shape))
    if ca is None:
        moved = [shape[ta]] + [s for i, s in enumerate(shape) if i != ta]
        return np.ascontiguousarray(np.moveaxis(x.reshape(moved), 0, ta))
    rest = [s for i, s in enumerate(shape) if i not in (ca, ta)]
    return np.ascontiguousarray(np.moveaxis(x.reshape([shape[ca], shape[ta], *rest]), (0, 1), (ca, ta)))


def quantize(x: np.ndarray, bits: int) -> Quantized:
    """Uniform quantization of (C, t, n) values at ``bits`` bits per channel: offset = the channel's minimum,
    step = its range / (2**bits - 1) rounded up to a float32 that covers the maximum."""
    levels = (1 << bits) - 1
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ContainerError("latents hold NaN or infinite values, which cannot be quantized")
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(axis=1).astype(np.float32)
    hi = flat.max(axis=1).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        step = ((hi - lo.astype(np.float64)) / levels).astype(np.float32)
        top = step * np.float32(levels) * np.float32(1.001) + lo  # what decoding computes, with margin
        if not np.isfinite(top).all():
            raise ContainerError("latent values span a range too wide to quantize in float32")
    short = lo.astype(np.float64) + step.astype(np.float64) * levels < hi
    while short.any():  # float32 rounding left the top of the range uncovered: one ulp up
        step[short] = np.nextafter(step[short], np.float32(np.inf))
        short = lo.astype(np.float64) + step.astype(np.float64) * levels < hi
    safe = np.where(step > 0, step, 1).astype(np.float64)
    q = np.rint((x.astype(np.float64) - lo[:, None, None]) / safe[:, None, None])
    q = np.clip(q, 0, levels).astype(np.int64)
    return Quantized(q, lo, step)


def _zigzag_delta(q: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Transforms 1 (``axis`` 0: along time) and 2 (``axis`` 1: along a step's values): the first entry
    as is, later ones as the zigzag-mapped difference to the one before, taken modulo 2**bits (a
    difference d in [-2**(bits-1), 2**(bits-1)) maps to 2d or -2d-1)."""
    m, half = 1 << bits, 1 << (bits - 1)
    d = (np.diff(q, axis=axis) + half) % m - half
    head = q[:1] if axis == 0 else q[:, :1]
    return np.concatenate([head, np.where(d >= 0, 2 * d, -2 * d - 1)], axis=axis)


def _undo_zigzag_delta(s: np.ndarray, bits: int, axis: int) -> np.ndarray:
    d = np.where(s % 2 == 0, s // 2, -(s + 1) // 2)
    if axis == 0:
        d[0] = s[0]
    else:
        d[:, 0] = s[:, 0]
    return np.cumsum(d, axis=axis) % (1 << bits)


@dataclass
class _ChannelModel:
    transform: int
    k: int
    high: np.ndarray
    low: np.ndarray
    table: np.ndarray
    bits: float  # estimated coded size


def _channel_model(q: np.ndarray, bits: int) -> _ChannelModel:
    """The cheapest (transform, low-bit split) for one channel (t, n) by estimated size."""
    best: _ChannelModel | None = None
    for tr in (0, 1, 2) if q.shape[0] > 1 else (0, 2):
        s = q if tr == 0 else _zigzag_delta(q, bits, tr - 1)
        counts = np.bincount(s.reshape(-1), minlength=1 << bits)
        for k in range(max(0, bits - MAX_TABLE_BITS), bits + 1):
            hc = counts.reshape(-1, 1 << k).sum(axis=1)
            table = _quantise_freqs(hc, _SCALE)
            cost = _code_cost(hc, table, _SCALE) + s.size * k + 16 * len(table)
            if best is None or cost < best.bits:
                best = _ChannelModel(tr, k, s, s, table, cost)
    assert best is not None
    flat = best.high.reshape(-1)
    best.high, best.low = flat >> best.k, flat & ((1 << best.k) - 1)
    return best


def encode_quantized(a: np.ndarray, stream: Stream) -> bytes:
    """The quantized payload of a continuous record (its array in the stream's chunk shape)."""
    bits = stream.quant_bits
    assert bits is not None
    qz = quantize(to_channels(np.asarray(a, dtype=np.float32), stream), bits)
    models = [_channel_model(qz.q[c], bits) for c in range(qz.q.shape[0])]
    lanes, states, words = _rans_encode_groups([m.high for m in models], [m.table for m in models], _SCALE)
    parts = [QUANT_HEAD.pack(bits, _SCALE, 0, lanes, int(words.size))]
    for c, m in enumerate(models):
        parts.append(CHANNEL_HEAD.pack(float(qz.offset[c]), float(qz.step[c]), m.transform, m.k, 0))
        parts.append(m.table.astype("<u2").tobytes())
    parts.append(states.astype("<u4").tobytes())
    parts.append(words.astype("<u2").tobytes())
    parts.extend(pack_indices(m.low, m.k) for m in models if m.k)
    return b"".join(parts)


def decode_quantized(data: bytes, stream: Stream, shape: tuple[int, ...]) -> Quantized:
    """A quantized payload's integers, offsets and steps; raises Damaged on any inconsistency."""
    bits = stream.quant_bits
    assert bits is not None
    if len(data) < QUANT_HEAD.size:
        raise Damaged("quantized payload is shorter than its header")
    b, scale, reserved, lanes, n_words = QUANT_HEAD.unpack_from(data, 0)
    if b != bits:
        raise Damaged(f"quantized payload has {b} bits per value, the header says {bits}")
    if not 8 <= scale <= 16 or reserved:
        raise Damaged("quantized payload has an invalid rANS scale or reserved field")
    ta, ca = record_axes(stream, len(shape))
    channels = 1 if ca is None else shape[ca]
    t = shape[ta]
    per_channel = shape_size(shape) // channels
    n = per_channel * channels
    if lanes < 1 or lanes > n or -(-n // lanes) > RANS_MAX_STEPS:
        raise Damaged(f"quantized payload has an impossible lane count ({lanes})")
    pos = QUANT_HEAD.size
    offsets, steps, transforms, ks, tables = [], [], [], [], []
    for _ in range(channels):
        if pos + CHANNEL_HEAD.size > len(data):
            raise Damaged("quantized payload ends inside its channel tables")
        off, step, tr, k, res = CHANNEL_HEAD.unpack_from(data, pos)
        with np.errstate(over="ignore", invalid="ignore"):
            top = np.float32(np.float32(step) * np.float32((1 << bits) - 1)) + np.float32(off)
        if not (np.isfinite(off) and np.isfinite(step) and step >= 0 and np.isfinite(top)):
            raise Damaged("a quantization offset or step is not finite, or its values would not be")
        if tr >= len(TRANSFORMS) or res or not max(0, bits - MAX_TABLE_BITS) <= k <= bits:
            raise Damaged("a channel of the quantized payload has an unknown transform or split")
        pos += CHANNEL_HEAD.size
        size = 1 << (bits - k)
        if pos + 2 * size > len(data):
            raise Damaged("quantized payload ends inside its channel tables")
        tab = np.frombuffer(data, dtype="<u2", count=size, offset=pos).astype(np.int64)
        if int(tab.sum()) != 1 << scale:
            raise Damaged("rANS frequency table does not sum to its scale")
        pos += 2 * size
        offsets.append(off)
        steps.append(step)
        transforms.append(tr)
        ks.append(k)
        tables.append(tab)
    low_bytes = sum((per_channel * k + 7) // 8 for k in ks)
    if pos + 4 * lanes + 2 * n_words + low_bytes != len(data):
        raise Damaged(
            f"quantized payload is {len(data)} bytes, its header describes {pos + 4 * lanes + 2 * n_words + low_bytes}"
        )
    x = np.frombuffer(data, dtype="<u4", count=lanes, offset=pos).astype(np.uint64)
    pos += 4 * lanes
    words = np.frombuffer(data, dtype="<u2", count=n_words, offset=pos).astype(np.uint64)
    pos += 2 * n_words
    if int(x.min()) < 1 << 16:
        raise Damaged("rANS payload has an invalid initial state")
    highs = _rans_decode_groups(x, words, lanes, [per_channel] * channels, tables, scale)
    q = np.empty((channels, t, per_channel // t), dtype=np.int64)
    for c, (high, k, tr) in enumerate(zip(highs, ks, transforms, strict=True)):
        s = high.astype(np.int64) << k
        if k:
            nb = (per_channel * k + 7) // 8
            s |= unpack_indices(data[pos : pos + nb], k, per_channel)
            pos += nb
        s = s.reshape(t, -1)
        q[c] = _undo_zigzag_delta(s, bits, tr - 1) if tr else s
    return Quantized(
        q, np.asarray(offsets, np.float32), np.asarray(steps, np.float32), tuple(transforms), tuple(ks)
    )


def decode_quantized_latents(data: bytes, stream: Stream, shape: tuple[int, ...]) -> np.ndarray:
    """The dequantized float32 values of a quantized payload, in the record's ``shape``."""
    return from_channels(decode_quantized(data, stream, shape).values(), stream, shape)


def quantized_error_bound(data: bytes, stream: Stream, shape: tuple[int, ...]) -> float:
    """Half the largest quantization step of a quantized payload (reads only its channel headers)."""
    ta, ca = record_axes(stream, len(shape))
    channels = 1 if ca is None else shape[ca]
    bits = stream.quant_bits or 0
    pos, worst = QUANT_HEAD.size, 0.0
    for _ in range(channels):
        _, step, _, k, _ = CHANNEL_HEAD.unpack_from(data, pos)
        worst = max(worst, float(step))
        pos += CHANNEL_HEAD.size + 2 * (1 << (bits - k))
    return worst / 2
