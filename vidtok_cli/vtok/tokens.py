"""The payload of a tokens record: the choice between plain bit packing and rANS, and decoding either."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .format import CODING_PACKED, CODING_RANS, RANS_MAX_LEVEL, Damaged
from .payloads import bits_for_levels, pack_indices, shape_size, unpack_indices
from .rans import choose_token_model, rans_decode, rans_encode


def encode_tokens(indices: np.ndarray, levels: list[int], coding: str) -> tuple[int, bytes]:
    """(coding number, payload): rANS when ``coding`` allows it and it beats packing, else packed bits."""
    bits = bits_for_levels(levels)
    if coding in ("auto", "rans"):
        coded = rans_encode(indices, levels)
        if coded is not None:
            return CODING_RANS, coded
    packed = pack_indices(indices, bits)
    return CODING_PACKED, packed


def decode_tokens(data: bytes, coding: int, levels: list[int], shape: tuple[int, ...]) -> np.ndarray:
    """Token indices int64 of ``shape`` from a tokens payload; raises Damaged when it is inconsistent."""
    count = shape_size(shape)
    if coding == CODING_PACKED:
        bits = bits_for_levels(levels)
        need = (count * bits + 7) // 8
        if len(data) != need:
            raise Damaged(f"payload is {len(data)} bytes but {count} tokens at {bits} bits need {need}")
        out = unpack_indices(data, bits, count)
        if count and int(out.max()) >= math.prod(levels):
            raise Damaged("a token index is outside the codebook")
        return out.reshape(shape)
    if coding == CODING_RANS:
        if max(levels) > RANS_MAX_LEVEL:
            raise Damaged("rANS coding is not defined for FSQ levels above 256")
        return rans_decode(data, levels, shape)
    raise Damaged(f"token coding {coding} is unknown to this version of vidtok")


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
    coded = rans_encode(idx, lv)
    if coded is not None:
        back = rans_decode(coded, lv, idx.shape)
        if not np.array_equal(back, idx):  # pragma: no cover - a coder bug
            raise AssertionError("rANS round trip failed")
    model = choose_token_model(idx, lv)
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
