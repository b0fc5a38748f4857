"""Record payloads: latents as float16 / bfloat16 / float32, bit-packed FSQ indices, and FSQ digits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .format import ContainerError


def shape_size(shape: Any) -> int:
    """Number of values in an array of ``shape``."""
    return math.prod(int(s) for s in shape)


def bits_for_levels(levels: list[int] | tuple[int, ...]) -> int:
    """Bits per packed FSQ index: ceil(log2(prod(levels))), at least 1 (18 for 6 levels of 8)."""
    k = math.prod(int(v) for v in levels)
    return max(1, (k - 1).bit_length())


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


def encode_latents(arr: np.ndarray, dtype: str) -> bytes:
    """Latent payload bytes (little-endian ``dtype``); ContainerError when values overflow float16."""
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


def decode_latents(data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 latents of ``shape`` from a latent payload stored as ``dtype``."""
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


def fsq_digits(indices: np.ndarray, levels: list[int]) -> np.ndarray:
    """FSQ digits (n_levels, *shape) of indices; digit 0 is the least significant (the FSQ convention)."""
    out = np.empty((len(levels),) + indices.shape, dtype=np.int64)
    rest = indices.astype(np.int64)
    for i, lv in enumerate(levels):
        out[i] = rest % lv
        rest = rest // lv
    return out


def from_fsq_digits(digits: np.ndarray, levels: list[int]) -> np.ndarray:
    """Indices int64 from FSQ digits (n_levels, *shape); the inverse of :func:`fsq_digits`."""
    out = np.zeros(digits.shape[1:], dtype=np.int64)
    basis = 1
    for i, lv in enumerate(levels):
        out += digits[i].astype(np.int64) * basis
        basis *= lv
    return out


def tokens_to_latents(indices: np.ndarray, levels: list[int] | tuple[int, ...]) -> np.ndarray:
    """FSQ codes (n_levels, *shape) float32 for indices (*shape); equal to FSQ.indices_to_latent's values."""
    lv = [int(v) for v in levels]
    d = fsq_digits(np.asarray(indices), lv)
    half = np.array([v // 2 for v in lv], dtype=np.int64).reshape((-1,) + (1,) * (d.ndim - 1))
    return (d - half).astype(np.float32) / half.astype(np.float32)
