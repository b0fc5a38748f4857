"""The payload of a token record (FSQ or VQ indices): the choice between plain bit packing and rANS over the
stream's digits, and decoding either."""

from __future__ import annotations

from typing import Any

import numpy as np

from .format import CODING_PACKED, CODING_RANS, RANS_MAX_LEVEL, Damaged
from .payloads import pack_indices, shape_size, unpack_indices
from .rans import choose_token_model, rans_decode, rans_encode
from .streams import Stream


def _steps_first(indices: np.ndarray, time_axis: int) -> np.ndarray:
    """Indices as (t, 1, n) with the time axis first: the layout the rANS coder works on."""
    a = np.moveaxis(indices, time_axis, 0)
    return np.ascontiguousarray(a).reshape(a.shape[0], 1, -1)


def encode_tokens(indices: np.ndarray, stream: Stream, coding: str) -> tuple[int, bytes]:
    """(coding number, payload): rANS when ``coding`` allows it and it beats packing, else packed bits."""
    if coding in ("auto", "rans"):
        coded = rans_encode(_steps_first(indices, stream.step_axis), stream.radices)
        if coded is not None:
            return CODING_RANS, coded
    return CODING_PACKED, pack_indices(indices, stream.bits)


def decode_tokens(data: bytes, coding: int, stream: Stream, shape: tuple[int, ...]) -> np.ndarray:
    """Token indices int64 of ``shape`` from a token payload; raises Damaged when it is inconsistent."""
    count = shape_size(shape)
    k = stream.codebook_size
    assert k is not None
    if coding == CODING_PACKED:
        bits = stream.bits
        need = (count * bits + 7) // 8
        if len(data) != need:
            raise Damaged(f"payload is {len(data)} bytes but {count} tokens at {bits} bits need {need}")
        out = unpack_indices(data, bits, count).reshape(shape)
    elif coding == CODING_RANS:
        radices = stream.radices
        if max(radices) > RANS_MAX_LEVEL:
            raise Damaged("rANS coding is not defined for FSQ levels above 256")
        moved = list(shape)
        t = moved.pop(stream.step_axis)
        flat = rans_decode(data, radices, (t, 1, count // t if t else 0))
        out = np.moveaxis(flat.reshape([t, *moved]), 0, stream.step_axis)
    else:
        raise Damaged(f"token coding {coding} is unknown to this version of vidtok")
    if count and int(out.max()) >= k:
        raise Damaged("a token index is outside the codebook")
    return np.ascontiguousarray(out)


def token_coding_report(
    indices: np.ndarray,
    levels: list[int] | tuple[int, ...] | None = None,
    *,
    codebook_size: int | None = None,
) -> dict[str, Any]:
    """Bits per token of plain packing vs the entropy coder on ``indices`` (t, ...), stored as one record.

    FSQ indices with ``levels``, or VQ indices with ``codebook_size``. Keys: tokens, bits_packed, bits_rans
    (None when the coder cannot beat packing), bits_kept, coding, entropy_bound (the empirical order-0
    entropy of the coder's symbols, per token: the ideal for its model), entropy_direct (the order-0
    entropy of whole indices, per token: the ideal of a model over the full codebook, its frequency table
    not counted), repeat_flags (whether the repeat-flag model was chosen), transforms (plain or delta, per
    digit), radices (the digits coded).
    """
    if levels is not None:
        lv = [int(v) for v in levels]
        stream = Stream(
            "tokens", "fsq", (), 0, levels=tuple(lv), codebook_size=int(np.prod(lv)), coding="auto"
        )
    else:
        assert codebook_size is not None, "pass FSQ levels or a VQ codebook size"
        stream = Stream("tokens", "vq", (), 0, codebook_size=int(codebook_size), coding="auto")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim == 2:
        idx = idx[None]
    n = int(idx.size)
    packed = len(pack_indices(idx, stream.bits))
    steps = _steps_first(idx, 0)
    coded = rans_encode(steps, stream.radices)
    if coded is not None:
        back = rans_decode(coded, stream.radices, steps.shape)
        if not np.array_equal(back.reshape(idx.shape), idx):  # pragma: no cover - a coder bug
            raise AssertionError("rANS round trip failed")
    model = choose_token_model(steps, stream.radices)
    counts = np.unique(idx, return_counts=True)[1].astype(np.float64)
    kept = len(coded) if coded is not None else packed
    return {
        "tokens": n,
        "bits_packed": 8 * packed / n,
        "bits_rans": None if coded is None else 8 * len(coded) / n,
        "bits_kept": 8 * kept / n,
        "coding": "rans" if coded is not None else "packed",
        "entropy_bound": model.entropy / n,
        "entropy_direct": float(-(counts * np.log2(counts / n)).sum()) / n,
        "repeat_flags": model.repeat,
        "transforms": ["delta" if t else "plain" for t in model.transforms],
        "radices": stream.radices,
    }
